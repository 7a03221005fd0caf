"""Per-sequence SfM with pycolmap: triangulation from known poses, or incremental mapping.

`reconstruct` runs features -> matching -> one model per sequence, caching every step
under `build_dir/colmap/` (database, `features.json`, `models/<sequence>/` with a
`status.json`), so a rerun loads what is there. Posed sequences are triangulated with
their poses fixed (already in the world frame); unposed ones are mapped incrementally
(their own frame; `registration.register` brings them into the world frame).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pycolmap
from tqdm import tqdm

from xseason.sfm.features import FeatureIndex, MatchingConfig, capped_pairs, extract, image_root, match, read_camera
from xseason.sfm.features import sequence_pairs, spatial_pairs
from xseason.core.files import atomic_path, write_json
from xseason.inputs.manifest import ImageRecord, Manifest

pycolmap.logging.minloglevel = 2

if TYPE_CHECKING:  # the build config has the same sections
    from xseason.sfm.registration import SfMConfig


@dataclass
class ReconstructionConfig:
    """Triangulation (posed sequences) and incremental mapping (unposed ones)."""

    min_tri_angle: float = 2.0  # degrees; 1.0 keeps 18% more points on `demo` but 14% worse median depth error
    ignore_two_view_tracks: bool = False  # keep points seen by two images only
    max_reproj_error: float = 4.0  # pixels, filtering after triangulation / BA
    init_min_num_inliers: int = 30  # incremental mapping: verified matches of the initial pair (COLMAP: 100)
    init_min_tri_angle: float = 8.0  # degrees, initial pair
    abs_pose_min_num_inliers: int = 12  # 2D-3D inliers to add an image to a model (20+ leaves night / rain sequences at 2 images)
    min_model_size: int = 3  # images; smaller models are discarded
    refine_intrinsics: bool = True  # unposed sequences without given intrinsics
    seed: int = 0  # RANSAC / mapper random seed
    num_threads: int = -1  # -1 = all cores

    def validate(self) -> None:
        if self.min_tri_angle <= 0 or self.max_reproj_error <= 0:
            raise ValueError("min_tri_angle and max_reproj_error must be > 0")

    def pipeline_options(self, names: list[str] | None = None, refine: bool = False) -> pycolmap.IncrementalPipelineOptions:
        """COLMAP options; `refine`: let BA refine intrinsics (only for cameras the manifest does not give)."""
        opts = pycolmap.IncrementalPipelineOptions()
        opts.random_seed = opts.mapper.random_seed = opts.triangulation.random_seed = self.seed
        opts.num_threads = self.num_threads
        opts.min_model_size = self.min_model_size
        opts.ba_refine_focal_length = opts.ba_refine_extra_params = refine and self.refine_intrinsics
        opts.mapper.abs_pose_refine_focal_length = opts.mapper.abs_pose_refine_extra_params = refine and self.refine_intrinsics
        opts.triangulation.min_angle = self.min_tri_angle
        opts.triangulation.ignore_two_view_tracks = self.ignore_two_view_tracks
        opts.triangulation.complete_max_reproj_error = self.max_reproj_error
        opts.triangulation.merge_max_reproj_error = self.max_reproj_error
        opts.mapper.filter_min_tri_angle = self.min_tri_angle
        opts.mapper.filter_max_reproj_error = self.max_reproj_error
        opts.mapper.init_min_num_inliers = self.init_min_num_inliers
        opts.mapper.init_min_tri_angle = self.init_min_tri_angle
        opts.mapper.abs_pose_min_num_inliers = self.abs_pose_min_num_inliers
        if names is not None:
            opts.image_names = names
        return opts


def sequence_folder(sequence: str) -> str:
    """A file-system-safe folder name for a sequence id (stable, unique)."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", sequence):
        return sequence
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", sequence).strip("._")[:60] or "seq"
    return f"{slug}-{hashlib.sha1(sequence.encode()).hexdigest()[:8]}"


def anchor_sequences(manifest: Manifest, reference: list[str]) -> list[str]:
    """Sequences that define the world frame: the posed ones, else those of the reference conditions."""
    seqs = manifest.sequences()
    posed = [s for s in seqs if manifest.is_posed(s)]
    if posed:
        return posed
    return [s for s, recs in seqs.items() if recs[0].condition in reference] or list(seqs)[:1]


def reconstruct(manifest: Manifest, build_dir: Path, cfg: "SfMConfig") -> dict[str, pycolmap.Reconstruction]:
    """Features, matching and one model per sequence (unposed ones in their own frame), cached."""
    work = Path(build_dir) / "colmap"
    index = extract(manifest, work, cfg.features)
    match(index, candidate_pairs(manifest, index, cfg.matching), work, cfg.matching, "sequences")
    models = {}
    for seq, recs in tqdm(manifest.sequences().items(), desc="reconstruction", unit="seq", leave=False):
        model = sequence_model(manifest, index, seq, recs, work, cfg.reconstruction)
        if model is not None:
            models[seq] = model
    return models


def feature_index(manifest: Manifest, build_dir: Path, cfg: SfMConfig) -> FeatureIndex:
    """The build's feature database (extracting what is missing)."""
    return extract(manifest, Path(build_dir) / "colmap", cfg.features)


def candidate_pairs(manifest: Manifest, index: FeatureIndex, cfg: MatchingConfig) -> list[tuple[str, str]]:
    """Within every sequence, plus between every two sequences of which at least one is unposed.

    Pairs between unposed sequences (not only against the world's) give the joint refinement of
    `registration.register` cross-condition constraints between all of them.
    """
    seqs = manifest.sequences()
    pairs = [p for recs in seqs.values() for p in sequence_pairs(index.names(recs), cfg)]
    names = list(seqs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if not (manifest.is_posed(a) and manifest.is_posed(b)):
                pairs += cross_pairs(index, seqs[a], seqs[b], cfg, cfg.cross_max_pairs)
    return pairs


def cross_pairs(index: FeatureIndex, recs0: list[ImageRecord], recs1: list[ImageRecord], cfg: MatchingConfig,
                max_pairs: int) -> list[tuple[str, str]]:
    """Pairs between two sequences: by position when both have poses or priors, else capped exhaustive."""
    recs0 = [r for r in recs0 if r.image in index.image_ids]
    recs1 = [r for r in recs1 if r.image in index.image_ids]
    pos0, pos1 = _positions(recs0), _positions(recs1)
    if pos0 is not None and pos1 is not None and pos0[2] == pos1[2]:
        return spatial_pairs([r.image for r in recs0], pos0[0], pos0[1], [r.image for r in recs1], pos1[0], pos1[1], cfg)
    return capped_pairs([r.image for r in recs0], [r.image for r in recs1], max_pairs)


def _positions(recs: list[ImageRecord]) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """(centres, viewing directions or None, kind) from poses ('pose') or priors ('prior')."""
    if recs and all(r.pose is not None for r in recs):
        rot = np.stack([r.pose.R for r in recs])
        centers = -np.einsum("nji,nj->ni", rot, np.stack([r.pose.t for r in recs]))
        return centers, rot[:, 2, :], "pose"
    if recs and all(r.prior is not None for r in recs):
        return np.stack([np.asarray(r.prior, float) for r in recs]), None, "prior"
    return None


def sequence_model(manifest: Manifest, index: FeatureIndex, seq: str, recs: list[ImageRecord], work: Path,
                   cfg: ReconstructionConfig) -> pycolmap.Reconstruction | None:
    """The cached model of one sequence, made now if missing; None when the sequence failed.

    A new model is returned as read back from its folder, so that a resumed build gets exactly the
    same input (a model read from disk iterates its images in another order than the mapper's, and
    the registration's result depends on that order).
    """
    folder = work / "models" / sequence_folder(seq)
    if (folder / "status.json").exists():
        status = json.loads((folder / "status.json").read_text())
        return pycolmap.Reconstruction(folder) if status["ok"] else None
    names = index.names(recs)
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        if manifest.is_posed(seq):
            model, status = _triangulate(manifest, index, recs, tmp, cfg)
        else:
            given = all(r.camera_params is not None for r in recs)
            model, status = _map(manifest, index, names, tmp, cfg, refine=not given)
        if model is not None:
            model.write_binary(tmp)
        write_json(tmp / "status.json", {"sequence": seq, "posed": manifest.is_posed(seq), **status})
    return None if model is None else pycolmap.Reconstruction(folder)


def _triangulate(manifest: Manifest, index: FeatureIndex, recs: list[ImageRecord], tmp: Path,
                 cfg: ReconstructionConfig) -> tuple[pycolmap.Reconstruction | None, dict]:
    """Points from the manifest's fixed poses."""
    poses = {r.image: pycolmap.Rigid3d(pycolmap.Rotation3d(r.pose.R), r.pose.t) for r in recs if r.image in index.image_ids}
    return triangulate_fixed(manifest, index, posed_model(index, poses, {r.image: r.camera for r in recs}), tmp, cfg)


def posed_model(index: FeatureIndex, poses: dict[str, pycolmap.Rigid3d], camera_of: dict[str, str],
                cameras: dict[int, pycolmap.Camera] | None = None) -> pycolmap.Reconstruction:
    """A model without points holding `poses` (manifest image -> cam_from_world), ids equal to the database's.

    `camera_of`: manifest image -> manifest camera id; `cameras`: database camera id -> camera to use
    instead of the database's (e.g. intrinsics refined by a sequence's own model).
    """
    cam_ids = {index.camera_ids[camera_of[name]] for name in poses}
    model = empty_model(index, cam_ids, cameras)
    for name, pose in poses.items():
        image = pycolmap.Image(name=name, camera_id=index.camera_ids[camera_of[name]], image_id=index.image_ids[name])
        model.add_image_with_trivial_frame(image, pose)
    return model


def triangulate_fixed(manifest: Manifest, index: FeatureIndex, model: pycolmap.Reconstruction, tmp: Path,
                      cfg: ReconstructionConfig) -> tuple[pycolmap.Reconstruction | None, dict]:
    """Triangulate the database's verified matches between the images of `model`, poses and intrinsics fixed.

    Avoids the usual "0 points" causes: image / camera ids equal to the database's, a low
    `min_tri_angle`, two-view tracks kept (config), unreadable images left out beforehand.
    """
    if model.num_reg_images() < 2:
        return None, {"ok": False, "reason": f"{model.num_reg_images()} posed image(s): nothing to triangulate"}
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        model = pycolmap.triangulate_points(model, index.db_path, image_root(manifest), out, True,
                                            cfg.pipeline_options(), False)
    n = model.num_points3D()
    if n == 0:
        return None, {"ok": False, "reason": "0 points triangulated (no verified matches with enough parallax)"}
    return model, {"ok": True, "points": n, "images": model.num_reg_images(),
                   "mean_reproj_error": model.compute_mean_reprojection_error()}


def _map(manifest: Manifest, index: FeatureIndex, names: list[str], tmp: Path,
         cfg: ReconstructionConfig, refine: bool) -> tuple[pycolmap.Reconstruction | None, dict]:
    """Incremental mapping of one sequence; keep the largest model, report the others.

    A largest model under `min_model_size` images fails the sequence (COLMAP keeps its first model
    whatever its size, e.g. two images joined by matches on the ego-vehicle).
    """
    if len(names) < 2:
        return None, {"ok": False, "reason": f"{len(names)} readable image(s): nothing to map"}
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        found = pycolmap.incremental_mapping(index.db_path, image_root(manifest), out, cfg.pipeline_options(names, refine))
    models = sorted(found.values(), key=lambda m: m.num_reg_images(), reverse=True)
    if not models:
        return None, {"ok": False, "reason": "incremental mapping found no initial pair / model"}
    if models[0].num_reg_images() < cfg.min_model_size:
        sizes = [m.num_reg_images() for m in models]
        return None, {"ok": False, "reason": f"incremental mapping found only models of {sizes} images "
                                             f"(< min_model_size {cfg.min_model_size})"}
    best = models[0]
    return best, {
        "ok": True, "points": best.num_points3D(), "images": best.num_reg_images(),
        "mean_reproj_error": best.compute_mean_reprojection_error(),
        "other_models": [m.num_reg_images() for m in models[1:]],
    }


def empty_model(index: FeatureIndex, camera_ids: set[int],
                cameras: dict[int, pycolmap.Camera] | None = None) -> pycolmap.Reconstruction:
    """A model holding cameras `camera_ids` (from `cameras`, else the database; one trivial rig each), no images."""
    model = pycolmap.Reconstruction()
    for camera_id in sorted(camera_ids):
        model.add_camera_with_trivial_rig((cameras or {}).get(camera_id) or read_camera(index, camera_id))
    return model


def point_observations(model: pycolmap.Reconstruction) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One row per (3D point, observing image): image names, keypoints (contract pixels), point xyz."""
    names, kps, xyz = [], [np.zeros((0, 2))], [np.zeros((0, 3))]
    pids, pxyz = np.fromiter(model.points3D.keys(), dtype=np.int64), [p.xyz for p in model.points3D.values()]
    order = np.argsort(pids)
    pids, pxyz = pids[order], np.asarray(pxyz, float).reshape(-1, 3)[order]
    for image in model.images.values():
        p2d = image.points2D
        ids = np.fromiter((p.point3D_id for p in p2d), dtype=np.uint64, count=len(p2d))
        has = ids != pycolmap.INVALID_POINT3D_ID
        if not has.any():
            continue
        names += [image.name] * int(has.sum())
        kps.append(np.array([p.xy for p in p2d])[has] - 0.5)
        xyz.append(pxyz[np.searchsorted(pids, ids[has].astype(np.int64))])
    return names, np.concatenate(kps), np.concatenate(xyz)

