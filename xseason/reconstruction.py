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

from .features import FeatureIndex, MatchingConfig, capped_pairs, extract, image_root, match, read_camera
from .features import sequence_pairs, spatial_pairs
from .files import atomic_path, write_json
from .manifest import ImageRecord, Manifest

pycolmap.logging.minloglevel = 2

if TYPE_CHECKING:  # the build config has the same sections
    from .registration import SfMConfig


@dataclass
class ReconstructionConfig:
    """Triangulation (posed sequences) and incremental mapping (unposed ones)."""

    min_tri_angle: float = 1.0  # degrees; COLMAP's 1.5 loses many points on short baselines
    ignore_two_view_tracks: bool = False  # keep points seen by two images only
    max_reproj_error: float = 4.0  # pixels, filtering after triangulation / BA
    init_min_num_inliers: int = 50
    init_min_tri_angle: float = 8.0
    abs_pose_min_num_inliers: int = 20
    min_model_size: int = 3
    refine_intrinsics: bool = True  # unposed sequences without given intrinsics
    seed: int = 0
    num_threads: int = -1

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


def reconstruct(manifest: Manifest, build_dir: Path, cfg: "SfMConfig", reference: list[str]) -> dict[str, pycolmap.Reconstruction]:
    """Features, matching and one model per sequence (unposed ones in their own frame), cached."""
    work = Path(build_dir) / "colmap"
    index = extract(manifest, work, cfg.features)
    match(index, candidate_pairs(manifest, index, cfg.matching, reference), work, cfg.matching, "sequences")
    models = {}
    for seq, recs in tqdm(manifest.sequences().items(), desc="reconstruction", unit="seq", leave=False):
        model = sequence_model(manifest, index, seq, recs, work, cfg.reconstruction)
        if model is not None:
            models[seq] = model
    return models


def feature_index(manifest: Manifest, build_dir: Path, cfg: SfMConfig) -> FeatureIndex:
    """The build's feature database (extracting what is missing)."""
    return extract(manifest, Path(build_dir) / "colmap", cfg.features)


def candidate_pairs(manifest: Manifest, index: FeatureIndex, cfg: MatchingConfig, reference: list[str]) -> list[tuple[str, str]]:
    """Within every sequence, plus every unposed sequence against every world-frame sequence."""
    seqs = manifest.sequences()
    pairs = [p for recs in seqs.values() for p in sequence_pairs(index.names(recs), cfg)]
    anchors = anchor_sequences(manifest, reference)
    for seq, recs in seqs.items():
        if manifest.is_posed(seq):
            continue
        for anchor in anchors:
            if anchor != seq:
                pairs += cross_pairs(index, recs, seqs[anchor], cfg, cfg.cross_max_pairs)
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
    """The cached model of one sequence, made now if missing; None when the sequence failed."""
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
    return model


def _triangulate(manifest: Manifest, index: FeatureIndex, recs: list[ImageRecord], tmp: Path,
                 cfg: ReconstructionConfig) -> tuple[pycolmap.Reconstruction | None, dict]:
    """Points from fixed poses; ids equal to the database's (COLMAP requires it)."""
    recs = [r for r in recs if r.image in index.image_ids]
    model = empty_model(index, {index.camera_ids[r.camera] for r in recs})
    for r in recs:
        image = pycolmap.Image(name=r.image, camera_id=index.camera_ids[r.camera], image_id=index.image_ids[r.image])
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(r.pose.R), r.pose.t)
        model.add_image_with_trivial_frame(image, pose)
    if len(recs) < 2:
        return None, {"ok": False, "reason": f"{len(recs)} readable image(s): nothing to triangulate"}
    opts = cfg.pipeline_options()
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        model = pycolmap.triangulate_points(model, index.db_path, image_root(manifest), out, True, opts, False)
    n = model.num_points3D()
    if n == 0:
        return None, {"ok": False, "reason": "0 points triangulated (no verified matches with enough parallax)"}
    return model, {"ok": True, "points": n, "images": model.num_reg_images(), "mean_reproj_error": model.compute_mean_reprojection_error()}


def _map(manifest: Manifest, index: FeatureIndex, names: list[str], tmp: Path,
         cfg: ReconstructionConfig, refine: bool) -> tuple[pycolmap.Reconstruction | None, dict]:
    """Incremental mapping of one sequence; keep the largest model, report the others."""
    if len(names) < 2:
        return None, {"ok": False, "reason": f"{len(names)} readable image(s): nothing to map"}
    with tempfile.TemporaryDirectory(dir=tmp) as out:
        found = pycolmap.incremental_mapping(index.db_path, image_root(manifest), out, cfg.pipeline_options(names, refine))
    models = sorted(found.values(), key=lambda m: m.num_reg_images(), reverse=True)
    if not models:
        return None, {"ok": False, "reason": "incremental mapping found no initial pair / model"}
    best = models[0]
    return best, {
        "ok": True, "points": best.num_points3D(), "images": best.num_reg_images(),
        "mean_reproj_error": best.compute_mean_reprojection_error(),
        "other_models": [m.num_reg_images() for m in models[1:]],
    }


def empty_model(index: FeatureIndex, camera_ids: set[int]) -> pycolmap.Reconstruction:
    """A model holding the database's cameras `camera_ids` (one trivial rig each), no images."""
    model = pycolmap.Reconstruction()
    for camera_id in sorted(camera_ids):
        model.add_camera_with_trivial_rig(read_camera(index, camera_id))
    return model
