"""Bring every sequence's model into one world frame and register leftover images.

1. The world frame: the posed sequences' frame; with none, the largest model of the reference
   condition(s). A joint model is started with the world's images at their poses.
2. The other sequences, greedily, the best-connected first: each image is registered on its own
   against the joint model's points (absolute pose: 2D-3D through cross-sequence matches,
   LO-RANSAC + refinement); the rest of the sequence's model follows by a similarity fitted on
   the poses that agree (robust rotation mean + centres). When fewer than `min_located_images`
   register, the similarity comes from RANSAC on cross-sequence matches lifted to 3D-3D, each
   hypothesis checked against the position priors when there are any.
3. After each sequence the joint model is re-triangulated from all verified matches between
   its images (cross-sequence ones included) and bundle-adjusted (Cauchy loss, intrinsics fixed);
   posed world sequences stay fixed, otherwise two cameras fix the gauge, so that the reference
   model's own distortions get corrected too (the shift is recorded per sequence). A 3D-3D
   similarity alone is limited by the depth noise of short-baseline points.
4. Images still unregistered (typically at night) are matched against more registered images
   and registered one by one against the joint model; a sequence aligned only now brings the
   rest of its model along; the joint model is refined again.
5. Each sequence's final model is triangulated from its own matches with the final poses fixed.
Results: `build_dir/sfm/<sequence>/` (COLMAP binary, world frame) and `build_dir/registration.json`
(per sequence: method, similarity, inliers, residuals, refinement shift, final model; per image:
registered, method, reason), both written atomically; a finished registration is loaded.
Measured (poses hidden, median errors after one similarity to the truth): `tiny` 0.065 degrees /
0.22% of the extent; `demo` 100% of the images of every condition registered, 0.017 degrees / 0.014%
(benchmarks/bench_build_stages.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pycolmap
from tqdm import tqdm

from xseason.core.errors import XSeasonError
from xseason.sfm.features import FeatureConfig, FeatureIndex, MatchingConfig, match, read_camera, read_keypoints, verified_matches
from xseason.core.files import atomic_path, write_json
from xseason.core.geometry import Pose
from xseason.inputs.manifest import Manifest
from xseason.sfm.reconstruction import ReconstructionConfig, anchor_sequences, cross_pairs, feature_index, posed_model
from xseason.sfm.reconstruction import sequence_folder, triangulate_fixed

pycolmap.logging.minloglevel = 2


class RegistrationError(XSeasonError):
    """A registration output is missing or unreadable."""


@dataclass
class RegistrationConfig:
    """Alignment of sequences, joint refinement and one-by-one registration of images (see module doc)."""

    ransac_error: float = 0.02  # 3D-3D inlier distance, as a fraction of the world's extent
    ransac_trials: int = 2000  # 3D-3D similarity hypotheses
    prior_max_distance: float = 0.0  # with priors: aligned cameras' median distance to them (0 = 3x the world's own)
    prior_max_scale_ratio: float = 1.3  # with priors: allowed ratio between the alignment's and the priors' scale
    min_inliers: int = 12  # 3D-3D inliers needed to accept a sequence's transform
    pnp_max_error: float = 8.0  # pixels, absolute-pose RANSAC
    pnp_min_inliers: int = 15  # absolute pose: inliers needed to register an image
    pnp_min_inlier_ratio: float = 0.1  # ... and as a share of its 2D-3D matches
    min_located_images: int = 3  # images registered by absolute pose needed to align a sequence on them
    pose_max_rotation: float = 5.0  # degrees: such an image disagreeing more is left out of that fit
    pose_max_centre: float = 5.0  # ... or with a centre residual above this many times the median
    refine_rounds: int = 2  # joint triangulation + bundle adjustment rounds (0 = keep the similarity alignment)
    refine_max_iterations: int = 50  # per bundle adjustment
    refine_loss_scale: float = 1.0  # pixels, Cauchy loss of the joint bundle adjustment
    seed: int = 0  # RANSAC random seed

    def validate(self) -> None:
        if self.ransac_error <= 0 or self.pnp_max_error <= 0 or self.refine_loss_scale <= 0:
            raise ValueError("ransac_error, pnp_max_error and refine_loss_scale must be > 0")
        if self.ransac_trials < 1 or self.prior_max_distance < 0 or self.prior_max_scale_ratio <= 1:
            raise ValueError("ransac_trials must be >= 1, prior_max_distance >= 0, prior_max_scale_ratio > 1")
        if self.refine_rounds < 0 or self.refine_max_iterations < 1:
            raise ValueError("refine_rounds must be >= 0 and refine_max_iterations >= 1")


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
def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s * R @ src + t (Umeyama 1991) for (..., N, 3) point sets; returns (s, R, t)."""
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    mu_s, mu_d = src.mean(-2), dst.mean(-2)
    a, b = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    n = src.shape[-2]
    u, sig, vt = np.linalg.svd(np.swapaxes(b, -1, -2) @ a / n)
    d = np.ones(sig.shape)
    d[..., 2] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    rot = u @ (d[..., :, None] * vt)
    var = (a**2).sum((-1, -2)) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(var > 0, (sig * d).sum(-1) / var, 1.0) if with_scale else np.ones(var.shape)
    return scale, rot, mu_d - scale[..., None] * (rot @ mu_s[..., None])[..., 0]


def ransac_sim3(src: np.ndarray, dst: np.ndarray, max_error: float, num_trials: int, seed: int = 0,
                plausible=None) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None:
    """Similarity dst ~ s R src + t: RANSAC over 3-point samples (vectorised), then two least-squares refits.

    `plausible(s, R, t) -> bool mask` rejects hypotheses (batched) before scoring, e.g. those that put
    the cameras far from their position priors. Returns ((s, R, t), inlier mask), or None.
    """
    rng = np.random.default_rng(seed)
    n = len(src)
    best, best_count = None, 0
    for chunk in np.array_split(np.arange(num_trials), max(1, num_trials * n // 2_000_000)):
        idx = rng.integers(0, n, (len(chunk), 3))
        idx = idx[(idx[:, 0] != idx[:, 1]) & (idx[:, 0] != idx[:, 2]) & (idx[:, 1] != idx[:, 2])]
        if not len(idx):
            continue
        s, r, t = umeyama(src[idx], dst[idx])
        ok = np.isfinite(s) & (s > 0) & (plausible(s, r, t) if plausible is not None else True)
        res = np.linalg.norm(s[:, None, None] * np.einsum("kij,nj->kni", r, src) + t[:, None] - dst[None], axis=2)
        counts = np.where(ok, (res < max_error).sum(1), 0)
        k = int(np.argmax(counts))
        if counts[k] > best_count:
            best, best_count = res[k] < max_error, int(counts[k])
    if best is None or best_count < 3:
        return None
    inl = best
    for _ in range(2):
        sim = umeyama(src[inl], dst[inl])
        inl = np.linalg.norm(apply_sim3(*sim, src) - dst, axis=1) < max_error
        if inl.sum() < 3:
            return None
    if plausible is not None and not plausible(*(np.asarray(x)[None] for x in sim))[0]:
        return None
    return sim, inl


def apply_sim3(scale: float, rot: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points -> s R x + t."""
    return scale * np.asarray(points, float) @ rot.T + t


def to_sim3d(scale: float, rot: np.ndarray, t: np.ndarray) -> pycolmap.Sim3d:
    return pycolmap.Sim3d(scale, pycolmap.Rotation3d(rot), np.asarray(t, float))


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
    index = feature_index(manifest, build_dir, cfg)
    models = dict(models)
    world = _world(manifest, models, reference)
    ctx = _Joint(manifest, index, build_dir / "colmap", cfg, models,
                 fixed={r.image for s in world if manifest.is_posed(s) for r in manifest.sequences()[s]})
    seq_info, methods = _align_all(ctx, models, world)
    images = _image_status(manifest, index, methods, seq_info)
    if _register_leftovers(ctx, images, build_dir) and not _follow_models(ctx, models, seq_info, images):
        ctx.refine(cfg.registration.refine_rounds)
    final = {name: ctx.model.image(index.image_ids[name]).cam_from_world() for name, v in images.items() if v["registered"]}
    _pose_shift(seq_info, images, ctx.initial, final)
    out_models = _sequence_models(manifest, index, final, ctx.camera_of, ctx.cameras, ctx.work, cfg, seq_info)
    return _write(manifest, build_dir, world, seq_info, images, out_models)


class _Joint:
    """The growing joint model: every image registered so far at its world pose, points from all their matches."""

    def __init__(self, manifest: Manifest, index: FeatureIndex, work: Path, cfg, models: dict, fixed: set[str]):
        self.manifest, self.index, self.work, self.cfg, self.fixed = manifest, index, work, cfg, fixed
        self.camera_of = {r.image: r.camera for r in manifest.images}
        self.cameras = {cid: _camera_for(models, seq, cid, index) for seq in models for cid in models[seq].cameras}
        self.cameras |= {cid: read_camera(index, cid) for cid in index.camera_ids.values() if cid not in self.cameras}
        self.model = pycolmap.Reconstruction()  # replaced by the first `add`
        self.initial: dict[str, pycolmap.Rigid3d] = {}  # pose each image had when it joined

    def add(self, poses: dict[str, pycolmap.Rigid3d], rounds: int) -> None:
        """Add images at `poses`, re-triangulate everything and refine (`refine_jointly`)."""
        self.initial |= poses
        current = {im.name: im.cam_from_world() for im in self.model.images.values()} | poses
        model = posed_model(self.index, current, self.camera_of, self.cameras)
        self.model = refine_jointly(self.manifest, self.index, model, self.fixed, self.work, self.cfg, rounds)

    def refine(self, rounds: int) -> None:
        self.model = refine_jointly(self.manifest, self.index, self.model, self.fixed, self.work, self.cfg, rounds)

    def table(self):
        return point_table(self.model)


def _align_all(ctx: _Joint, models: dict[str, pycolmap.Reconstruction], world: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """Bring every model into the joint model: per sequence info, and image -> method.

    The world sequences' images go in first (a reference model is refined there: re-triangulated
    and bundle-adjusted with two cameras fixing the gauge). Then sequences are taken greedily, the
    best-connected first: each image is registered on its own against the joint model's points
    (absolute pose, method "absolute_pose"); the rest of the sequence's model follows by a similarity
    fitted on those poses (`_sim3_from_poses`) or, when fewer than `min_located_images` agree, by
    RANSAC on 3D-3D matches checked against priors (`_align`); then the joint model is refined.
    """
    manifest, index, rcfg = ctx.manifest, ctx.index, ctx.cfg.registration
    tables = {s: point_table(m) for s, m in models.items()}
    scale_ref = extent(np.concatenate([tables[s][2] for s in world if s in tables] or [np.zeros((0, 3))]))
    matches = verified_matches(index)
    seq_of = {index.image_ids[r.image]: r.sequence for r in manifest.images if r.image in index.image_ids}
    aligned = [s for s in world if s in models]
    seq_info: dict[str, dict] = {s: {"status": "world", "scale": 1.0, "R": np.eye(3), "t": np.zeros(3)}
                                 for s in world if s in models or manifest.is_posed(s)}
    start = {im.name: im.cam_from_world() for s in aligned for im in models[s].images.values() if im.has_pose}
    start |= {r.image: pycolmap.Rigid3d(pycolmap.Rotation3d(r.pose.R), r.pose.t)  # posed: even without a model
              for s in world if manifest.is_posed(s) for r in manifest.sequences()[s] if r.image in index.image_ids}
    methods = dict.fromkeys(start, "sequence")
    ctx.add(start, rcfg.refine_rounds)
    pending = [s for s in models if s not in aligned]
    while pending:
        corr = {s: _correspondences(s, aligned, matches, seq_of, tables) for s in pending}
        seq = max(pending, key=lambda s: len(corr[s][0]))
        pending.remove(seq)
        own = {im.name: im.cam_from_world() for im in models[seq].images.values() if im.has_pose}
        located = _localize(index, list(own), matches, ctx.table(), ctx.cameras, rcfg)
        located = {n: r["cam_from_world"] for n, r in located.items() if isinstance(r, dict)}
        info = _sim3_from_poses(own, located, rcfg)
        if info["status"] != "aligned":
            info = _align(corr[seq], rcfg, scale_ref, _prior_check(manifest, models, aligned, seq, rcfg)) | {
                "absolute_pose": info}
        seq_info[seq] = info | {"located_images": len(located)}
        new = {}
        if info["status"] == "aligned":
            models[seq].transform(to_sim3d(info["scale"], info["R"], info["t"]))
            tables[seq] = point_table(models[seq])
            aligned.append(seq)
            new = {im.name: im.cam_from_world() for im in models[seq].images.values() if im.has_pose}
        methods |= dict.fromkeys(new, "sequence") | dict.fromkeys(located, "absolute_pose")
        if new or located:
            ctx.add(new | located, rcfg.refine_rounds)
    for seq in manifest.sequences():
        status = _model_status(ctx.work, seq)
        seq_info.setdefault(seq, {"status": "failed", "reason": f"no model: {status.get('reason', 'none made')}"})
        if seq in models:
            seq_info[seq]["model"] = status
    return seq_info, methods


def _sim3_from_poses(own: dict[str, pycolmap.Rigid3d], world: dict[str, pycolmap.Rigid3d], cfg: RegistrationConfig) -> dict:
    """Similarity own frame -> world from images posed in both: rotation = robust chordal mean of the
    per-image rotation differences, scale and translation = least squares on the centres, twice after
    dropping images off by more than `pose_max_rotation` degrees or `pose_max_centre` x the median residual."""
    names = [n for n in own if n in world]
    info: dict = {"status": "failed", "method": "absolute_pose", "located_images": len(names)}
    if len(names) < cfg.min_located_images:
        return info | {"reason": f"{len(names)} image(s) registered by absolute pose (< {cfg.min_located_images})"}
    r_own = np.array([own[n].rotation.matrix() for n in names])
    r_w = np.array([world[n].rotation.matrix() for n in names])
    c_own = np.array([own[n].inverse().translation for n in names])
    c_w = np.array([world[n].inverse().translation for n in names])
    diffs = np.einsum("nji,njk->nik", r_w, r_own)  # world_from_own rotation per image
    keep = np.ones(len(names), bool)
    for _ in range(3):
        u, _, vt = np.linalg.svd(diffs[keep].sum(0))
        rot = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
        a = c_own[keep] - c_own[keep].mean(0)
        scale = float(np.sum((a @ rot.T) * (c_w[keep] - c_w[keep].mean(0))) / max(np.sum(a * a), 1e-12))
        t = c_w[keep].mean(0) - scale * rot @ c_own[keep].mean(0)
        rot_err = np.degrees(np.arccos(np.clip((np.einsum("nij,ij->n", diffs, rot) - 1) / 2, -1, 1)))
        res = np.linalg.norm(apply_sim3(scale, rot, t, c_own) - c_w, axis=1)
        keep = (rot_err < cfg.pose_max_rotation) & (res <= cfg.pose_max_centre * max(np.median(res[keep]), 1e-9))
        if keep.sum() < cfg.min_located_images or scale <= 0:
            return info | {"reason": f"absolute poses disagree ({int(keep.sum())} consistent of {len(names)})"}
    return info | {
        "status": "aligned", "scale": scale, "R": rot, "t": t, "inliers": int(keep.sum()),
        "residual_median": float(np.median(res[keep])), "residual_rmse": float(np.sqrt(np.mean(res[keep] ** 2))),
        "rotation_residual_median_deg": float(np.median(rot_err[keep])),
    }


def refine_jointly(manifest: Manifest, index: FeatureIndex, model: pycolmap.Reconstruction, fixed: set[str],
                   work: Path, cfg, rounds: int) -> pycolmap.Reconstruction:
    """Triangulate all verified matches between the model's images, then `rounds` x (bundle-adjust, re-triangulate).

    Poses of images named in `fixed` and all intrinsics stay constant; with no fixed image the gauge is
    fixed by two cameras. Returns the input model unchanged when nothing triangulates.
    """
    rcfg: RegistrationConfig = cfg.registration
    tri, _status = triangulate_fixed(manifest, index, model, work, cfg.reconstruction)
    for _ in tqdm(range(rounds), desc="joint refinement", unit="round", leave=False):
        if tri is None:
            return model
        config = pycolmap.BundleAdjustmentConfig()
        for image_id in tri.reg_image_ids():
            config.add_image(image_id)
            if tri.image(image_id).name in fixed:
                config.set_constant_rig_from_world_pose(tri.image(image_id).frame_id)
        for camera_id in tri.cameras:
            config.set_constant_cam_intrinsics(camera_id)
        if not fixed:
            config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
        opts = pycolmap.BundleAdjustmentOptions()
        opts.print_summary = False
        opts.refine_focal_length = opts.refine_extra_params = opts.refine_principal_point = False
        opts.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
        opts.ceres.loss_function_scale = rcfg.refine_loss_scale
        opts.ceres.solver_options.max_num_iterations = rcfg.refine_max_iterations
        pycolmap.create_default_bundle_adjuster(opts, config, tri).solve()
        model = tri
        tri, _status = triangulate_fixed(manifest, index, model, work, cfg.reconstruction)
    return tri if tri is not None else model


def _pose_shift(seq_info: dict[str, dict], images: dict[str, dict], before: dict, after: dict) -> None:
    """Record, per sequence, how far the joint refinement moved its cameras (median, world units and degrees)."""
    for seq, info in seq_info.items():
        names = [n for n, v in images.items() if v["sequence"] == seq and n in before and n in after]
        if not names:
            continue
        c0 = np.array([before[n].inverse().translation for n in names])
        c1 = np.array([after[n].inverse().translation for n in names])
        r0 = np.array([before[n].rotation.matrix() for n in names])
        r1 = np.array([after[n].rotation.matrix() for n in names])
        cos = (np.einsum("nij,nij->n", r0, r1) - 1) / 2
        info["refine_centre_shift_median"] = float(np.median(np.linalg.norm(c1 - c0, axis=1)))
        info["refine_rotation_shift_median_deg"] = float(np.median(np.degrees(np.arccos(np.clip(cos, -1, 1)))))


def _sequence_models(manifest: Manifest, index: FeatureIndex, poses: dict[str, pycolmap.Rigid3d],
                     camera_of: dict[str, str], cameras: dict[int, pycolmap.Camera], work: Path, cfg,
                     seq_info: dict[str, dict]) -> dict[str, pycolmap.Reconstruction]:
    """Per sequence: its registered images at their final poses, points triangulated from its own matches."""
    out = {}
    for seq, recs in manifest.sequences().items():
        mine = {r.image: poses[r.image] for r in recs if r.image in poses}
        if not mine:
            continue
        model = posed_model(index, mine, camera_of, cameras)
        tri, status = triangulate_fixed(manifest, index, model, work, cfg.reconstruction)
        out[seq] = tri if tri is not None else model
        seq_info[seq]["final_model"] = status
    return out


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


def _align(corr: tuple[np.ndarray, np.ndarray], cfg: RegistrationConfig, world_extent: float, plausible=None) -> dict:
    """RANSAC similarity from 3D-3D pairs (checked against position priors when given); a dict for registration.json."""
    src, dst = corr
    info: dict = {"status": "failed", "correspondences": len(src), "prior_check": plausible is not None}
    if len(src) < max(cfg.min_inliers, 3):
        return info | {"reason": f"{len(src)} 3D-3D correspondences (< {cfg.min_inliers})"}
    max_error = cfg.ransac_error * world_extent
    found = ransac_sim3(src, dst, max_error, cfg.ransac_trials, cfg.seed, plausible)
    if found is None:
        why = " consistent with the position priors" if plausible is not None else ""
        return info | {"reason": f"similarity RANSAC found no model{why}"}
    (scale, rot, t), inl = found
    res = np.linalg.norm(apply_sim3(scale, rot, t, src) - dst, axis=1)
    info |= {"inliers": int(inl.sum()), "inlier_ratio": float(inl.mean()), "inlier_threshold": max_error}
    if inl.sum() < cfg.min_inliers:
        return info | {"reason": f"{int(inl.sum())} 3D-3D inliers (< {cfg.min_inliers})"}
    return info | {
        "status": "aligned", "scale": float(scale), "R": rot, "t": t,
        "residual_median": float(np.median(res[inl])), "residual_rmse": float(np.sqrt(np.mean(res[inl] ** 2))),
    }


def _prior_check(manifest: Manifest, models: dict[str, pycolmap.Reconstruction], world: list[str], seq: str,
                 cfg: RegistrationConfig):
    """A batched plausibility test of seq -> world similarities from position priors, or None without priors.

    The world's cameras give a similarity world -> prior frame; a hypothesis is plausible when, mapped
    through it, the sequence's cameras are near their priors (median distance) and its scale agrees with
    the scale of the sequence's own fit to its priors. Only centres are compared, so a straight route
    (whose roll about its axis the priors cannot fix) is still checked.
    """
    own = _centres_and_priors(manifest, models[seq])
    ref = [_centres_and_priors(manifest, models[s]) for s in world if s in models]
    ref = [r for r in ref if r is not None]
    if own is None or not ref:
        return None
    ref_c, ref_p = np.concatenate([r[0] for r in ref]), np.concatenate([r[1] for r in ref])
    s_w, r_w, t_w = umeyama(ref_c, ref_p)
    tol = cfg.prior_max_distance or 3.0 * float(np.median(np.linalg.norm(apply_sim3(s_w, r_w, t_w, ref_c) - ref_p, axis=1)))
    s_own = umeyama(*own)[0]

    def plausible(scale: np.ndarray, rot: np.ndarray, t: np.ndarray) -> np.ndarray:
        world_c = scale[:, None, None] * np.einsum("kij,nj->kni", rot, own[0]) + t[:, None]
        dist = np.linalg.norm(apply_sim3(s_w, r_w, t_w, world_c) - own[1], axis=2)
        ratio = scale * s_w / s_own
        return (np.median(dist, axis=1) < tol) & (np.maximum(ratio, 1 / ratio) < cfg.prior_max_scale_ratio)

    return plausible


def _centres_and_priors(manifest: Manifest, model: pycolmap.Reconstruction) -> tuple[np.ndarray, np.ndarray] | None:
    """Camera centres of the model's images that have a prior, and those priors (None when fewer than 3)."""
    prior = {r.image: r.prior for r in manifest.images if r.prior is not None}
    imgs = [im for im in model.images.values() if im.has_pose and im.name in prior]
    if len(imgs) < 3:
        return None
    centres = np.array([im.cam_from_world().inverse().translation for im in imgs])
    return centres, np.array([prior[im.name] for im in imgs], float)


def _model_status(work: Path, seq: str) -> dict:
    path = work / "models" / sequence_folder(seq) / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _image_status(manifest: Manifest, index: FeatureIndex, methods: dict[str, str], seq_info: dict[str, dict]) -> dict[str, dict]:
    """Per image: how it got its world pose ("sequence": with its aligned model, "absolute_pose"), or why not."""
    out = {}
    for rec in manifest.images:
        method = methods.get(rec.image)
        if method is not None:
            reason = None
        elif rec.image in index.skipped:
            reason = index.skipped[rec.image]
        elif seq_info[rec.sequence]["status"] == "failed":
            reason = f"sequence not aligned: {seq_info[rec.sequence].get('reason', 'no model')}"
        else:
            reason = "not registered by its sequence's model"
        out[rec.image] = {"sequence": rec.sequence, "registered": method is not None, "method": method, "reason": reason}
    return out


def _register_leftovers(ctx: _Joint, images: dict[str, dict], build_dir: Path) -> int:
    """Absolute pose of every readable unregistered image against the joint model's points; returns how many."""
    manifest, index, mcfg = ctx.manifest, ctx.index, ctx.cfg.matching
    todo = [r for r in manifest.images if not images[r.image]["registered"] and r.image in index.image_ids]
    registered = [r for r in manifest.images if images[r.image]["registered"]]
    if not todo or not registered:
        return 0
    pairs = [p for rec in todo for p in cross_pairs(index, [rec], registered, mcfg, mcfg.localize_max_pairs)]
    match(index, pairs, build_dir / "colmap", mcfg, "localize")
    located = _localize(index, [r.image for r in todo], verified_matches(index), ctx.table(), ctx.cameras,
                        ctx.cfg.registration)
    for rec in todo:
        result, info = located[rec.image], images[rec.image]
        if isinstance(result, str):
            info["reason"] = f"{info['reason']}; absolute pose: {result}"
            continue
        camera_id = index.camera_ids[rec.camera]
        if not ctx.model.exists_camera(camera_id):
            ctx.model.add_camera_with_trivial_rig(ctx.cameras[camera_id])
        image = pycolmap.Image(name=rec.image, camera_id=camera_id, image_id=index.image_ids[rec.image])
        ctx.model.add_image_with_trivial_frame(image, result["cam_from_world"])
        ctx.initial[rec.image] = result["cam_from_world"]
        info.update(registered=True, method="absolute_pose", reason=None,
                    pnp_inliers=int(result["num_inliers"]), pnp_matches=int(result["num_matches"]))
    return sum(isinstance(r, dict) for r in located.values())


def _follow_models(ctx: _Joint, models: dict[str, pycolmap.Reconstruction], seq_info: dict[str, dict],
                   images: dict[str, dict]) -> int:
    """Sequences not aligned before whose images were then registered one by one: their model's other
    images follow by a similarity fitted on those poses (`_sim3_from_poses`); returns how many images joined."""
    added: dict[str, pycolmap.Rigid3d] = {}
    for seq, model in models.items():
        if seq_info[seq]["status"] != "failed":
            continue
        own = {im.name: im.cam_from_world() for im in model.images.values() if im.has_pose}
        located = {n: ctx.model.image(ctx.index.image_ids[n]).cam_from_world() for n in own if images[n]["registered"]}
        info = _sim3_from_poses(own, located, ctx.cfg.registration)
        if info["status"] != "aligned" or len(located) == len(own):
            continue
        seq_info[seq] = info | {"first_attempt": seq_info[seq]}
        model.transform(to_sim3d(info["scale"], info["R"], info["t"]))
        follow = {n: model.image(ctx.index.image_ids[n]).cam_from_world() for n in own if n not in located}
        for name in follow:
            images[name].update(registered=True, method="sequence", reason=None)
        added |= follow
    if added:
        ctx.add(added, ctx.cfg.registration.refine_rounds)
    return len(added)


def _localize(index: FeatureIndex, names: list[str], matches, table, cameras: dict[int, pycolmap.Camera],
              cfg: RegistrationConfig) -> dict[str, dict | str]:
    """Absolute pose of each image against the points of `table` (through its verified matches): result or reason."""
    out: dict[str, dict | str] = {}
    camera_of_image = _db_camera_ids(index)
    for name in tqdm(names, desc="absolute pose", unit="img", leave=False):
        image_id = index.image_ids[name]
        kp_idx, pts3d = _lift_2d3d(image_id, matches, table)
        out[name] = _absolute_pose(index, image_id, kp_idx, pts3d, cameras[camera_of_image[image_id]], cfg)
    return out


def _db_camera_ids(index: FeatureIndex) -> dict[int, int]:
    """Database image id -> database camera id."""
    db = pycolmap.Database.open(index.db_path)
    try:
        return {im.image_id: im.camera_id for im in db.read_all_images()}
    finally:
        db.close()


def _lift_2d3d(image_id: int, matches, table) -> tuple[np.ndarray, np.ndarray]:
    """(keypoint index, world xyz) pairs for one image from its verified matches to the model's images."""
    per_img, pids, pxyz = table
    kp, xyz = [], []
    for (i, j), m in matches.items():
        if j == image_id:
            i, j, m = j, i, m[:, ::-1]
        if i != image_id or j not in per_img:
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
    return result | {"num_matches": len(kp_idx)}


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


def pose_errors(models: dict[str, pycolmap.Reconstruction], truth: dict[str, Pose]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rotation errors (degrees) and camera-centre errors of every registered image against known poses,
    after ONE similarity of the whole registration to the truth: its rotation is the chordal mean of the
    per-image rotation differences, its scale and translation the least-squares fit of the centres (a
    centre-only fit would leave the roll about a straight route undetermined). Returns names, angles, errors."""
    names = [im.name for m in models.values() for im in m.images.values() if im.has_pose and im.name in truth]
    if not names:
        return names, np.zeros(0), np.zeros(0)
    poses = {im.name: im.cam_from_world() for m in models.values() for im in m.images.values() if im.has_pose}
    est_r = np.array([poses[n].rotation.matrix() for n in names]).reshape(-1, 3, 3)
    est_c = np.array([poses[n].inverse().translation for n in names]).reshape(-1, 3)
    gt_r = np.array([truth[n].R for n in names]).reshape(-1, 3, 3)
    gt_c = np.array([truth[n].center for n in names]).reshape(-1, 3)
    u, _, vt = np.linalg.svd(np.einsum("nji,njk->ik", gt_r, est_r))
    rot = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    a, b = est_c - est_c.mean(0), gt_c - gt_c.mean(0)
    scale = np.sum((a @ rot.T) * b) / max(np.sum(a * a), 1e-300)
    rel = np.einsum("nij,nkj->nik", gt_r, est_r @ rot.T)
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return names, angle, np.linalg.norm(scale * a @ rot.T - b, axis=1)


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
