"""Bring every sequence's model into one world frame and register leftover images.

1. The world frame: the posed sequences' frame; with none, the largest model of the
   reference condition(s).
2. Each other model is aligned by a similarity transform estimated with LO-RANSAC from
   cross-sequence matches lifted to 3D-3D (both keypoints triangulated), greedily, the
   best-connected sequence first, then refined by least squares on the inliers.
3. Images that their own sequence did not register (typically at night) are matched
   against registered images of the other sequences and registered one by one by
   absolute pose (2D-3D, LO-RANSAC + refinement).
Results: `build_dir/sfm/<sequence>/` (COLMAP binary, world frame) and
`build_dir/registration.json`, both written atomically; a finished registration is loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pycolmap
from tqdm import tqdm

from .errors import XSeasonError
from .features import FeatureConfig, FeatureIndex, MatchingConfig, match, read_camera, read_keypoints, verified_matches
from .files import atomic_path, write_json
from .manifest import Manifest
from .reconstruction import ReconstructionConfig, anchor_sequences, cross_pairs, empty_model, feature_index
from .reconstruction import sequence_folder

pycolmap.logging.minloglevel = 2


class RegistrationError(XSeasonError):
    """A registration output is missing or unreadable."""


@dataclass
class RegistrationConfig:
    """Similarity alignment of sequences and one-by-one registration of leftover images."""

    ransac_error: float = 0.02  # 3D-3D inlier distance, as a fraction of the world's extent
    min_inliers: int = 12  # 3D-3D inliers needed to accept a sequence's transform
    pnp_max_error: float = 8.0  # pixels, absolute-pose RANSAC
    pnp_min_inliers: int = 15
    pnp_min_inlier_ratio: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        if self.ransac_error <= 0 or self.pnp_max_error <= 0:
            raise ValueError("ransac_error and pnp_max_error must be > 0")


@dataclass
class SfMConfig:
    """The build-config sections read by `reconstruct` and `register` (the build config has them too)."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)


@dataclass
class Registration:
    """What `register` did: per sequence its transform and quality, per image its status."""

    world: list[str]  # sequences that define the world frame
    sequences: dict[str, dict]  # sequence -> {folder, status, scale, R, t, correspondences, inliers, residuals...}
    images: dict[str, dict]  # manifest image -> {sequence, registered, method, reason}

    def rate(self, condition_of: dict[str, str] | None = None) -> dict[str, float]:
        """Fraction of registered images, per sequence (or per condition with `condition_of`)."""
        groups: dict[str, list[bool]] = {}
        for info in self.images.values():
            key = condition_of[info["sequence"]] if condition_of else info["sequence"]
            groups.setdefault(key, []).append(info["registered"])
        return {k: float(np.mean(v)) for k, v in groups.items()}


# ----------------------------------------------------------------- similarity transforms
def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s * R @ src + t (Umeyama 1991); returns (s, R, t)."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1
    rot = u @ np.diag(d) @ vt
    var = (a**2).sum() / len(src)
    scale = float((sig * d).sum() / var) if with_scale and var > 0 else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def apply_sim3(scale: float, rot: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points -> s R x + t."""
    return scale * np.asarray(points, float) @ rot.T + t


def to_sim3d(scale: float, rot: np.ndarray, t: np.ndarray) -> pycolmap.Sim3d:
    return pycolmap.Sim3d(scale, pycolmap.Rotation3d(rot), np.asarray(t, float))


def from_sim3d(sim: pycolmap.Sim3d) -> tuple[float, np.ndarray, np.ndarray]:
    return float(sim.scale), np.asarray(sim.rotation.matrix()), np.asarray(sim.translation, float)


# ----------------------------------------------------------------- model lookups
def point_table(model: pycolmap.Reconstruction) -> tuple[dict[int, np.ndarray], np.ndarray, np.ndarray]:
    """Per registered image id: point3D id per keypoint (-1 if none); plus all point ids and xyz (sorted by id)."""
    invalid = pycolmap.INVALID_POINT3D_ID
    per_image = {}
    for image_id in model.reg_image_ids():
        ids = np.fromiter((p.point3D_id for p in model.image(image_id).points2D), dtype=np.uint64)
        per_image[image_id] = np.where(ids == invalid, -1, ids.astype(np.int64))
    pids = np.fromiter(model.points3D.keys(), dtype=np.int64)
    xyz = np.array([p.xyz for p in model.points3D.values()], dtype=np.float64).reshape(-1, 3)
    order = np.argsort(pids)
    return per_image, pids[order], xyz[order]


def _lookup(pids: np.ndarray, xyz: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return xyz[np.searchsorted(pids, ids)]


def extent(points: np.ndarray) -> float:
    """Robust size of a point cloud: twice the median distance to its median."""
    if len(points) == 0:
        return 1.0
    return float(2 * np.median(np.linalg.norm(points - np.median(points, 0), axis=1))) or 1.0


# ----------------------------------------------------------------- main stage
def register(manifest: Manifest, models: dict[str, pycolmap.Reconstruction], build_dir: Path, cfg, reference: list[str]) -> Registration:
    """All models in one frame (written to build_dir/sfm/), leftover images registered, registration.json."""
    build_dir = Path(build_dir)
    done = build_dir / "registration.json"
    if done.exists():
        state = json.loads(done.read_text())
        if state.get("manifest") == manifest.checksum:
            return Registration(state["world"], state["sequences"], state["images"])
    rcfg: RegistrationConfig = cfg.registration
    index = feature_index(manifest, build_dir, cfg)
    seqs = manifest.sequences()
    models = {s: m for s, m in models.items()}
    world = _world(manifest, models, reference)
    tables = {s: point_table(m) for s, m in models.items()}
    scale_ref = extent(np.concatenate([tables[s][2] for s in world if s in tables] or [np.zeros((0, 3))]))
    matches = verified_matches(index)
    seq_of = {index.image_ids[r.image]: r.sequence for r in manifest.images if r.image in index.image_ids}
    seq_info: dict[str, dict] = {}
    for s in world:
        if s in models:
            seq_info[s] = {"status": "world", "scale": 1.0, "R": np.eye(3), "t": np.zeros(3)}
    aligned = [s for s in world if s in models]
    pending = [s for s in models if s not in aligned]
    while pending:
        corr = {s: _correspondences(s, aligned, matches, seq_of, tables) for s in pending}
        seq = max(pending, key=lambda s: len(corr[s][0]))
        pending.remove(seq)
        info = _align(corr[seq], rcfg, scale_ref)
        seq_info[seq] = info
        if info["status"] == "aligned":
            models[seq].transform(to_sim3d(info["scale"], info["R"], info["t"]))
            tables[seq] = point_table(models[seq])
            aligned.append(seq)
    for seq in seqs:
        seq_info.setdefault(seq, {"status": "failed", "reason": "no model (see colmap/models/<sequence>/status.json)"})
        if seq in models and seq not in aligned:
            del models[seq]
    for s in aligned:
        seq_info[s]["model"] = _model_status(build_dir, s)
    images = _image_status(manifest, index, models)
    _register_leftovers(manifest, index, models, aligned, images, build_dir, cfg)
    return _write(manifest, build_dir, world, seq_info, images, models)


def _world(manifest: Manifest, models: dict[str, pycolmap.Reconstruction], reference: list[str]) -> list[str]:
    anchors = anchor_sequences(manifest, reference)
    if any(manifest.is_posed(s) for s in anchors):
        return anchors
    candidates = [s for s in anchors if s in models] or list(models)
    if not candidates:
        return anchors[:1]
    return [max(candidates, key=lambda s: models[s].num_reg_images())]


def _correspondences(seq: str, aligned: list[str], matches, seq_of, tables) -> tuple[np.ndarray, np.ndarray]:
    """3D-3D pairs (src in `seq`'s frame, dst in the world) from verified cross-sequence matches."""
    src, dst, keys = [], [], []
    per_img, pids, xyz = tables[seq]
    for (i, j), m in matches.items():
        if seq_of.get(j) == seq:
            i, j, m = j, i, m[:, ::-1]
        if seq_of.get(i) != seq or seq_of.get(j) not in aligned or i not in per_img:
            continue
        other_img, other_pids, other_xyz = tables[seq_of[j]]
        if j not in other_img:
            continue
        a, b = per_img[i][m[:, 0]], other_img[j][m[:, 1]]
        ok = (a >= 0) & (b >= 0)
        src.append(_lookup(pids, xyz, a[ok]))
        dst.append(_lookup(other_pids, other_xyz, b[ok]))
        keys.append(np.stack([a[ok], b[ok], np.full(ok.sum(), aligned.index(seq_of[j]))], 1))
    if not src:
        return np.zeros((0, 3)), np.zeros((0, 3))
    _, first = np.unique(np.concatenate(keys), axis=0, return_index=True)
    return np.concatenate(src)[first], np.concatenate(dst)[first]


def _align(corr: tuple[np.ndarray, np.ndarray], cfg: RegistrationConfig, world_extent: float) -> dict:
    """LO-RANSAC similarity from 3D-3D pairs, refined on the inliers; a dict for registration.json."""
    src, dst = corr
    if len(src) < max(cfg.min_inliers, 3):
        return {"status": "failed", "reason": f"{len(src)} 3D-3D correspondences (< {cfg.min_inliers})",
                "correspondences": len(src)}
    opts = pycolmap.RANSACOptions()
    opts.max_error = cfg.ransac_error * world_extent
    opts.random_seed = cfg.seed
    sim = pycolmap.estimate_sim3d_robust(src, dst, opts)
    if sim is None:
        return {"status": "failed", "reason": "similarity RANSAC found no model", "correspondences": len(src)}
    scale, rot, t = from_sim3d(sim["tgt_from_src"])
    res = np.linalg.norm(apply_sim3(scale, rot, t, src) - dst, axis=1)
    inl = res < opts.max_error
    if inl.sum() < cfg.min_inliers:
        return {"status": "failed", "reason": f"{int(inl.sum())} 3D-3D inliers (< {cfg.min_inliers})",
                "correspondences": len(src), "inliers": int(inl.sum())}
    scale, rot, t = umeyama(src[inl], dst[inl])
    res = np.linalg.norm(apply_sim3(scale, rot, t, src) - dst, axis=1)
    inl = res < opts.max_error
    return {
        "status": "aligned", "scale": scale, "R": rot, "t": t, "correspondences": len(src),
        "inliers": int(inl.sum()), "inlier_ratio": float(inl.mean()),
        "residual_median": float(np.median(res[inl])), "residual_rmse": float(np.sqrt(np.mean(res[inl] ** 2))),
        "inlier_threshold": opts.max_error,
    }


def _model_status(build_dir: Path, seq: str) -> dict:
    path = build_dir / "colmap" / "models" / sequence_folder(seq) / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _image_status(manifest: Manifest, index: FeatureIndex, models) -> dict[str, dict]:
    out = {}
    for rec in manifest.images:
        model = models.get(rec.sequence)
        reg = (model is not None and rec.image in index.image_ids and model.exists_image(index.image_ids[rec.image])
               and model.image(index.image_ids[rec.image]).has_pose)
        reason = index.skipped.get(rec.image) or (None if reg else "not registered by its sequence's model")
        out[rec.image] = {"sequence": rec.sequence, "registered": bool(reg), "method": "sequence" if reg else None,
                          "reason": reason}
    return out


def _register_leftovers(manifest, index, models, aligned, images, build_dir, cfg) -> None:
    """Absolute pose of every readable unregistered image against the points of the registered models."""
    mcfg: MatchingConfig = cfg.matching
    todo = [r for r in manifest.images if not images[r.image]["registered"] and r.image in index.image_ids]
    if not todo or not aligned:
        return
    seqs = manifest.sequences()
    pairs = []
    for rec in todo:
        others = [r for s in aligned for r in seqs[s] if r.image in index.image_ids and images[r.image]["registered"]]
        pairs += cross_pairs(index, [rec], others, mcfg, mcfg.localize_max_pairs)
    match(index, pairs, build_dir / "colmap", mcfg, "localize")
    matches = verified_matches(index)
    seq_of = {index.image_ids[r.image]: r.sequence for r in manifest.images if r.image in index.image_ids}
    tables = {s: point_table(models[s]) for s in aligned}
    for rec in tqdm(todo, desc="absolute pose", unit="img", leave=False):
        image_id = index.image_ids[rec.image]
        pts2d, pts3d = _lift_2d3d(image_id, matches, seq_of, tables)
        camera = _camera_for(models, rec.sequence, index.camera_ids[rec.camera], index)
        result = _absolute_pose(index, image_id, pts2d, pts3d, camera, cfg.registration)
        info = images[rec.image]
        if isinstance(result, str):
            info["reason"] = f"{info['reason']}; absolute pose: {result}"
            continue
        model = models.setdefault(rec.sequence, empty_model(index, set()))
        if not model.exists_camera(camera.camera_id):
            model.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(name=rec.image, keypoints=read_keypoints(index, image_id), camera_id=camera.camera_id,
                               image_id=image_id)
        if model.exists_image(image_id):
            model.deregister_frame(model.image(image_id).frame_id)
            model.frame(model.image(image_id).frame_id).set_cam_from_world(camera.camera_id, result["cam_from_world"])
            model.register_frame(model.image(image_id).frame_id)
        else:
            model.add_image_with_trivial_frame(image, result["cam_from_world"])
        info.update(registered=True, method="absolute_pose", reason=None,
                    pnp_inliers=int(result["num_inliers"]), pnp_matches=len(pts2d))


def _lift_2d3d(image_id: int, matches, seq_of, tables) -> tuple[np.ndarray, np.ndarray]:
    """(keypoint index, world xyz) pairs for one image from its verified matches to registered images."""
    kp, xyz = [], []
    for (i, j), m in matches.items():
        if j == image_id:
            i, j, m = j, i, m[:, ::-1]
        if i != image_id or seq_of.get(j) not in tables:
            continue
        per_img, pids, pxyz = tables[seq_of[j]]
        if j not in per_img:
            continue
        b = per_img[j][m[:, 1]]
        ok = b >= 0
        kp.append(m[ok, 0])
        xyz.append(_lookup(pids, pxyz, b[ok]))
    if not kp:
        return np.zeros(0, int), np.zeros((0, 3))
    kp, xyz = np.concatenate(kp), np.concatenate(xyz)
    _, first = np.unique(kp, return_index=True)  # one 3D point per keypoint
    return kp[first], xyz[first]


def _camera_for(models, seq: str, camera_id: int, index: FeatureIndex) -> pycolmap.Camera:
    """The camera as refined by its own sequence's model, else by any model, else the database's."""
    ordered = [models[seq]] if seq in models else []
    for model in ordered + list(models.values()):
        if model.exists_camera(camera_id):
            return model.camera(camera_id)
    return read_camera(index, camera_id)


def _absolute_pose(index, image_id, kp_idx, pts3d, camera, cfg: RegistrationConfig) -> dict | str:
    if len(kp_idx) < cfg.pnp_min_inliers:
        return f"{len(kp_idx)} 2D-3D matches (< {cfg.pnp_min_inliers})"
    pts2d = read_keypoints(index, image_id)[kp_idx]
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = cfg.pnp_max_error
    est.ransac.random_seed = cfg.seed
    result = pycolmap.estimate_and_refine_absolute_pose(pts2d, pts3d, camera, est)
    if result is None:
        return f"RANSAC failed on {len(kp_idx)} 2D-3D matches"
    n = int(result["num_inliers"])
    if n < cfg.pnp_min_inliers or n < cfg.pnp_min_inlier_ratio * len(kp_idx):
        return f"{n} inliers of {len(kp_idx)} 2D-3D matches"
    return result


def _write(manifest, build_dir: Path, world, seq_info, images, models) -> Registration:
    for seq, model in models.items():
        with atomic_path(build_dir / "sfm" / sequence_folder(seq)) as tmp:
            tmp.mkdir()
            model.write_binary(tmp)
        seq_info[seq]["folder"] = sequence_folder(seq)
        seq_info[seq]["registered_images"] = sum(1 for v in images.values() if v["sequence"] == seq and v["registered"])
    for info in seq_info.values():
        for key in ("R", "t"):
            if key in info:
                info[key] = np.asarray(info[key]).tolist()
    reg = Registration(world, seq_info, images)
    write_json(build_dir / "registration.json", {"manifest": manifest.checksum, **asdict(reg)})
    return reg


def load_registered(build_dir: Path) -> dict[str, pycolmap.Reconstruction]:
    """The registered models (sequence -> model in the world frame) of a finished build."""
    path = Path(build_dir) / "registration.json"
    if not path.exists():
        raise RegistrationError(f"{path} not found: the registration stage has not finished")
    state = json.loads(path.read_text())
    out = {}
    for seq, info in state["sequences"].items():
        if "folder" in info:
            out[seq] = pycolmap.Reconstruction(Path(build_dir) / "sfm" / info["folder"])
    return out
