"""Bring every sequence's model into one world frame and register leftover images.

1. The world frame: the posed sequences' frame; with none, the largest model of the reference
   condition(s). A joint model is started with the world's images at their poses.
2. The other sequences, greedily, the best-connected first: each image is registered on its own
   against the joint model's points (absolute pose: 2D-3D through cross-sequence matches,
   LO-RANSAC + refinement); the rest of the sequence's model follows by a similarity fitted on
   the poses that agree (robust rotation mean + centres, `sim3.fit_to_poses`). When fewer than
   `min_located_images` register, the similarity comes from RANSAC on cross-sequence matches
   lifted to 3D-3D, each hypothesis checked against the position priors when there are any.
3. After each sequence the joint model is re-triangulated from all verified matches between
   its images (cross-sequence ones included) and bundle-adjusted (Cauchy loss, intrinsics fixed);
   posed world sequences stay fixed, otherwise two cameras fix the gauge, so that the reference
   model's own distortions get corrected too (the shift is recorded per sequence). A 3D-3D
   similarity alone is limited by the depth noise of short-baseline points.
4. Images still unregistered (typically at night) are matched against more registered images
   and registered one by one against the joint model; a sequence aligned only now brings the
   rest of its model along; the joint model is refined again.
5. The final poses are checked (checks.py), in turn: every registered image against its verified
   matches (the share that fits the final poses' epipolar geometry is its confidence; below
   `min_pose_agreement` it is not counted as registered); each unposed sequence's trajectory
   (breaks: only its longest unbroken run stays, when it holds most of its frames); each
   sequence's cameras against their position priors; each unposed sequence outside the world
   against the world's free space (its points where the world's cameras see through, and the
   reverse: misplaced on look-alike structure). An image that fails is unregistered with the
   reason (confidence 0 for the sequence checks). Then a retry: the images the checks of single
   images took out (agreement, breaks: the model that placed them broke, not necessarily they) and
   those left out of their sequence's model when incremental mapping split it (said in the log and
   in their reason) are registered on their own by absolute pose against the points of the images
   that passed, along their sequence from its registered frames, and checked again with all the
   others; what passes is registered with a reason saying it was retried, what fails keeps its
   reason and what the retry found. A sequence that loses every image fails with the reasons.
6. Each sequence's final model is triangulated from its own matches with the final poses fixed;
   with `joint_tracks`, all registered images also together, from every verified match between
   them (the joint model: tracks that span sequences and conditions, e.g. a night keypoint matched
   to day ones, are triangulated once and checked against the poses by their reprojection error).
`register` returns a `Registration` (results.py) holding the registered models; it also writes
them (`BuildPaths.registered`, COLMAP binary, world frame) and `BuildPaths.registration`, both
atomically, as the stage's cache: a finished registration is loaded (`load_registration`).
Measured (poses hidden, median errors after one similarity to the truth): `tiny` 0.065 degrees /
0.22% of the extent; `demo` 100% of the images of every condition registered, 0.017 degrees / 0.014%
(benchmarks/bench_build_stages.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pycolmap

from xseason.core.colmap import (
    PointObservations,
    is_colmap_model,
    point_observations,
    pose_arrays,
    pose_from_rigid,
    quiet_logs,
    rigid_from_pose,
    sim3d,
)
from xseason.core.errors import XSeasonError
from xseason.core.executor import Executor
from xseason.core.files import atomic_path, write_json
from xseason.core.log import progress
from xseason.inputs.manifest import Manifest
from xseason.sfm.cachekeys import StageKey, stage_keys
from xseason.sfm.checks import Views, continuity, depth_sigma, free_space, pose_agreement, prior_offsets
from xseason.sfm.config import RegistrationConfig, SfMConfig
from xseason.sfm.features import (
    FeatureIndex,
    image_camera_ids,
    image_plane,
    match,
    read_camera,
    read_keypoints,
    verified_matches,
)
from xseason.sfm.pairs import cross_pairs
from xseason.sfm.paths import BuildPaths, sequence_folder
from xseason.sfm.reconstruction import ModelStatus, SequenceModels, posed_model, triangulate_fixed
from xseason.sfm.results import (
    ImageResult,
    PointFit,
    PoseFit,
    PoseMethod,
    Registration,
    SequenceResult,
    SequenceStatus,
)
from xseason.sfm.sim3 import (
    Plausibility,
    apply_sim3,
    fit_to_poses,
    ransac_sim3,
    rotation_differences,
    rotation_residuals_deg,
    umeyama,
)

log = logging.getLogger(__name__)

Poses = dict[str, pycolmap.Rigid3d]  # manifest image -> cam_from_world
Matches = dict[tuple[int, int], np.ndarray]  # database image ids -> (M, 2) verified keypoint indices


class RegistrationError(XSeasonError):
    """A registration output is missing or unreadable."""


def register(
    manifest: Manifest,
    index: FeatureIndex,
    reconstructions: SequenceModels,
    paths: BuildPaths,
    cfg: SfMConfig,
    reference: list[str],
    executor: Executor | None = None,
) -> Registration:
    """All models in one frame, leftover images registered (module doc); a finished registration is loaded.

    The sequences' own models (`reconstructions.models`) are moved into the world frame in place. The
    leftover images' pairs are matched by tasks on `executor` (`features.match`; default: this process).
    """
    quiet_logs()
    key = stage_keys(manifest, cfg, reference).registration
    if paths.registration.exists():
        stale = key.reason(json.loads(paths.registration.read_text()).get("key"))
        if stale is None:
            log.info("registration: reused from %s (same cache key)", paths.registration)
            return load_registration(paths)
        log.info("registration: done anew: %s", stale)
    models = dict(reconstructions.models)
    world = _world(manifest, models, reference)
    ctx = _Joint(
        manifest,
        index,
        paths.colmap,
        cfg,
        models,
        fixed={r.image for s in world if manifest.is_posed(s) for r in manifest.sequences()[s]},
    )
    sequences, methods = _align_all(ctx, models, world, reconstructions.status)
    images = _image_results(manifest, index, methods, sequences)
    leftovers = _register_leftovers(ctx, images, paths, executor)
    if leftovers and not _follow_models(ctx, models, sequences, images):
        ctx.refine(cfg.registration.refine_rounds)
    final = {
        name: ctx.model.image(index.image_ids[name]).cam_from_world()
        for name, result in images.items()
        if result.registered
    }
    _check_poses(ctx, final, images, sequences, world)
    _pose_shift(sequences, images, ctx.initial, final)
    registered = _sequence_models(ctx, final, sequences)
    joint = _joint_model(ctx, final) if cfg.registration.joint_tracks else None
    for seq in registered:
        result = sequences[seq]
        result.folder = sequence_folder(seq)
        result.registered_images = sum(1 for v in images.values() if v.sequence == seq and v.registered)
    reg = Registration(
        manifest.checksum,
        world,
        sequences,
        images,
        {seq: registered[seq] for seq in sequences if seq in registered},
        joint,
    )
    _save(reg, paths, key)
    return reg


def load_registration(paths: BuildPaths) -> Registration:
    """The finished registration of a build's work folder, its registered models included."""
    if not paths.registration.exists():
        raise RegistrationError(f"{paths.registration} not found: the registration stage has not finished")
    reg = Registration.from_json(json.loads(paths.registration.read_text()))
    reg.models = {
        seq: pycolmap.Reconstruction(paths.registered_model(result.folder))
        for seq, result in reg.sequences.items()
        if result.folder is not None
    }
    if json.loads(paths.registration.read_text()).get("joint"):
        reg.joint = pycolmap.Reconstruction(paths.joint)
    return reg


def load_registered(paths: BuildPaths) -> dict[str, pycolmap.Reconstruction]:
    """The registered models (sequence -> model in the world frame) of a finished build."""
    return load_registration(paths).models


def _save(reg: Registration, paths: BuildPaths, key: StageKey) -> None:
    """The registered models and registration.json (with the stage's cache key), each written atomically."""
    written = {paths.registered_model(reg.sequences[seq].folder): model for seq, model in reg.models.items()}
    if reg.joint is not None:
        written[paths.joint] = reg.joint
    for folder, model in written.items():
        with atomic_path(folder, "folder", replace_only_if=is_colmap_model, what="a COLMAP model") as tmp:
            tmp.mkdir()
            model.write_binary(tmp)
    write_json(paths.registration, {**reg.to_json(), "key": key.to_json()})


# ----------------------------------------------------------------- model lookups
@dataclass
class _Points:
    """A model's 3D points for lookups through keypoints."""

    ids: np.ndarray  # (P,) point3D ids, sorted
    xyz: np.ndarray  # (P, 3)
    of_keypoints: dict[int, np.ndarray]  # posed image id -> per keypoint: index into ids / xyz, or -1

    @classmethod
    def of(cls, model: pycolmap.Reconstruction) -> _Points:
        obs = point_observations(model)
        per_image = zip(obs.image_ids.tolist(), obs.keypoint_points(), strict=True)
        return cls(obs.point_ids, obs.xyz, dict(per_image))


def _extent(points: np.ndarray) -> float:
    """Robust size of a point cloud: twice the median distance to its median."""
    if len(points) == 0:
        return 1.0
    return float(2 * np.median(np.linalg.norm(points - np.median(points, 0), axis=1))) or 1.0


# ----------------------------------------------------------------- the joint model
class _Joint:
    """The growing joint model: every image registered so far at its world pose, points from all matches."""

    def __init__(
        self,
        manifest: Manifest,
        index: FeatureIndex,
        work: Path,
        cfg: SfMConfig,
        models: dict[str, pycolmap.Reconstruction],
        fixed: set[str],
    ):
        self.manifest, self.index, self.work, self.cfg, self.fixed = manifest, index, work, cfg, fixed
        self.camera_of = {r.image: r.camera for r in manifest.images}
        self.cameras = {
            cid: _camera_for(models, seq, cid, index) for seq in models for cid in models[seq].cameras
        }
        self.cameras |= {
            cid: read_camera(index, cid) for cid in index.camera_ids.values() if cid not in self.cameras
        }
        self.model = pycolmap.Reconstruction()  # replaced by the first `add`
        self.initial: Poses = {}  # pose each image had when it joined
        self._rebuilt_from: Poses | None = None  # the poses `rebuild` last made the model of, while it is

    def add(self, poses: Poses, rounds: int) -> None:
        """Add images at `poses`, re-triangulate everything and refine (`refine_jointly`)."""
        self.initial |= poses
        self._rebuilt_from = None
        current = {im.name: im.cam_from_world() for im in self.model.images.values()} | poses
        model = posed_model(self.index, current, self.camera_of, self.cameras)
        self.model = refine_jointly(self.manifest, self.index, model, self.fixed, self.work, self.cfg, rounds)

    def place(self, name: str, cam_from_world: pycolmap.Rigid3d) -> None:
        """Add one image at its pose, without re-triangulating."""
        camera_id = self.index.camera_ids[self.camera_of[name]]
        if not self.model.exists_camera(camera_id):
            self.model.add_camera_with_trivial_rig(self.cameras[camera_id])
        image = pycolmap.Image(name=name, camera_id=camera_id, image_id=self.index.image_ids[name])
        self.model.add_image_with_trivial_frame(image, cam_from_world)
        self.initial[name] = cam_from_world
        self._rebuilt_from = None

    def refine(self, rounds: int) -> None:
        """Refine the joint model as it is (`refine_jointly`)."""
        self._rebuilt_from = None
        self.model = refine_jointly(
            self.manifest, self.index, self.model, self.fixed, self.work, self.cfg, rounds
        )

    def rebuild(self, poses: Poses) -> None:
        """The model of `poses` alone, its points triangulated with those poses fixed (no refinement); kept
        as it is when it was made of these very poses (the retries' rounds ask for it again)."""
        last = self._rebuilt_from
        if last is not None and last.keys() == poses.keys() and all(last[n] is p for n, p in poses.items()):
            return
        model = posed_model(self.index, poses, self.camera_of, self.cameras)
        self.model = refine_jointly(self.manifest, self.index, model, self.fixed, self.work, self.cfg, 0)
        self._rebuilt_from = dict(poses)

    def points(self) -> _Points:
        return _Points.of(self.model)


def refine_jointly(
    manifest: Manifest,
    index: FeatureIndex,
    model: pycolmap.Reconstruction,
    fixed: set[str],
    work: Path,
    cfg: SfMConfig,
    rounds: int,
) -> pycolmap.Reconstruction:
    """Triangulate all verified matches between the model's images, then `rounds` x (bundle-adjust,
    re-triangulate).

    Poses of images named in `fixed` and all intrinsics stay constant; with no fixed image the gauge is
    fixed by two cameras. Returns the input model unchanged when nothing triangulates.
    """
    rcfg = cfg.registration
    tri, _status = triangulate_fixed(manifest, index, model, work, cfg.reconstruction)
    for _ in progress(range(rounds), desc="joint refinement", unit="round", leave=False):
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


def _camera_for(
    models: Mapping[str, pycolmap.Reconstruction], seq: str, camera_id: int, index: FeatureIndex
) -> pycolmap.Camera:
    """The camera as refined by its own sequence's model, else by any model, else the database's."""
    ordered = [models[seq]] if seq in models else []
    for model in ordered + list(models.values()):
        if model.exists_camera(camera_id):
            return model.camera(camera_id)
    return read_camera(index, camera_id)


# ----------------------------------------------------------------- sequences into the world frame
def _world(
    manifest: Manifest, models: Mapping[str, pycolmap.Reconstruction], reference: list[str]
) -> list[str]:
    """The sequences that define the world frame: the posed ones; else the largest model of the reference
    condition(s) (of any sequence when none of them has a model)."""
    seqs = manifest.sequences()
    posed = [s for s in seqs if manifest.is_posed(s)]
    if posed:
        return posed
    anchors = [s for s, recs in seqs.items() if recs[0].condition in reference] or list(seqs)[:1]
    candidates = [s for s in anchors if s in models] or list(models)
    if not candidates:
        return anchors[:1]
    return [max(candidates, key=lambda s: models[s].num_reg_images())]


def _align_all(
    ctx: _Joint,
    models: dict[str, pycolmap.Reconstruction],
    world: list[str],
    own_status: dict[str, ModelStatus],
) -> tuple[dict[str, SequenceResult], dict[str, PoseMethod]]:
    """Bring every model into the joint model: per sequence its result, and image -> method.

    The world sequences' images go in first (a reference model is refined there: re-triangulated
    and bundle-adjusted with two cameras fixing the gauge). Then sequences are taken greedily, the
    best-connected first: each image is registered on its own against the joint model's points
    (absolute pose); the rest of the sequence's model follows by a similarity fitted on those poses
    (`_fit_on_poses`) or, when fewer than `min_located_images` agree, by RANSAC on 3D-3D matches
    checked against priors (`_fit_on_points`); then the joint model is refined.
    """
    manifest, index, rcfg = ctx.manifest, ctx.index, ctx.cfg.registration
    tables = {s: _Points.of(m) for s, m in models.items()}
    scale_ref = _extent(np.concatenate([tables[s].xyz for s in world if s in tables] or [np.zeros((0, 3))]))
    matches = verified_matches(index)
    seq_of = {index.image_ids[r.image]: r.sequence for r in manifest.images if r.image in index.image_ids}
    aligned = [s for s in world if s in models]
    results = {s: SequenceResult(SequenceStatus.WORLD) for s in world if s in models or manifest.is_posed(s)}
    start = {im.name: im.cam_from_world() for s in aligned for im in models[s].images.values() if im.has_pose}
    start |= {
        r.image: rigid_from_pose(r.pose)  # posed: even without a model
        for s in world
        if manifest.is_posed(s)
        for r in manifest.sequences()[s]
        if r.image in index.image_ids
    }
    methods = dict.fromkeys(start, PoseMethod.SEQUENCE)
    ctx.add(start, rcfg.refine_rounds)
    pending = [s for s in models if s not in aligned]
    while pending:
        corr = {s: _correspondences(s, aligned, matches, seq_of, tables) for s in pending}
        seq = max(pending, key=lambda s: len(corr[s][0]))
        pending.remove(seq)
        own = {im.name: im.cam_from_world() for im in models[seq].images.values() if im.has_pose}
        located = _located(_localize(index, list(own), matches, ctx.points(), ctx.cameras, rcfg))
        pose_fit = _fit_on_poses(own, located, rcfg)
        if pose_fit.similarity is not None:
            result = SequenceResult(SequenceStatus.ALIGNED, pose_fit)
        else:
            plausible = _prior_check(manifest, models, aligned, seq, rcfg)
            point_fit = _fit_on_points(corr[seq], rcfg, scale_ref, plausible)
            status = SequenceStatus.FAILED if point_fit.similarity is None else SequenceStatus.ALIGNED
            result = SequenceResult(status, pose_fit, point_fit)
        results[seq] = result
        new = {}
        if result.status is SequenceStatus.ALIGNED:
            sim = result.similarity
            models[seq].transform(sim3d(sim.scale, sim.rotation, sim.translation))
            tables[seq] = _Points.of(models[seq])
            aligned.append(seq)
            new = {im.name: im.cam_from_world() for im in models[seq].images.values() if im.has_pose}
        methods |= dict.fromkeys(new, PoseMethod.SEQUENCE) | dict.fromkeys(located, PoseMethod.ABSOLUTE_POSE)
        if new or located:
            ctx.add(new | located, rcfg.refine_rounds)
    for seq in manifest.sequences():
        no_model = SequenceResult(SequenceStatus.FAILED, reason=f"no model: {own_status[seq].reason}")
        results.setdefault(seq, no_model)
        if seq in models:
            results[seq].model = own_status[seq]
            if own_status[seq].other_models:
                log.warning("sequence %s: not registered as one model%s", seq, _split(own_status[seq]))
    return results, methods


def _correspondences(
    seq: str, aligned: list[str], matches: Matches, seq_of: dict[int, str], tables: dict[str, _Points]
) -> tuple[np.ndarray, np.ndarray]:
    """3D-3D pairs (src in `seq`'s frame, dst in the world) from verified cross-sequence matches."""
    src, dst, keys = [], [], []
    own = tables[seq]
    for (i, j), m in matches.items():
        if seq_of.get(j) == seq:
            i, j, m = j, i, m[:, ::-1]
        if seq_of.get(i) != seq or seq_of.get(j) not in aligned or i not in own.of_keypoints:
            continue
        other = tables[seq_of[j]]
        if j not in other.of_keypoints:
            continue
        a, b = own.of_keypoints[i][m[:, 0]], other.of_keypoints[j][m[:, 1]]
        ok = (a >= 0) & (b >= 0)
        src.append(own.xyz[a[ok]])
        dst.append(other.xyz[b[ok]])
        origin = np.full(ok.sum(), aligned.index(seq_of[j]))
        keys.append(np.stack([own.ids[a[ok]], other.ids[b[ok]], origin], 1))
    if not src:
        return np.zeros((0, 3)), np.zeros((0, 3))
    _, first = np.unique(np.concatenate(keys), axis=0, return_index=True)  # one pair per two points
    return np.concatenate(src)[first], np.concatenate(dst)[first]


def _fit_on_poses(own: Poses, world: Poses, cfg: RegistrationConfig) -> PoseFit:
    """Similarity own frame -> world from images posed in both (`sim3.fit_to_poses`), fitted three times,
    each time dropping images off by more than `pose_max_rotation` degrees or `pose_max_centre` x the
    median centre residual."""
    names = [n for n in own if n in world]
    if len(names) < cfg.min_located_images:
        return PoseFit(
            len(names),
            reason=f"{len(names)} image(s) registered by absolute pose (< {cfg.min_located_images})",
        )
    r_own, c_own = pose_arrays(own[n] for n in names)
    r_w, c_w = pose_arrays(world[n] for n in names)
    diffs = rotation_differences(r_w, r_own)  # world_from_own rotation per image
    keep = np.ones(len(names), bool)
    for _ in range(3):
        fit = fit_to_poses(diffs[keep], c_own[keep], c_w[keep])
        rot_err = rotation_residuals_deg(diffs, fit.rotation)
        res = np.linalg.norm(fit.apply(c_own) - c_w, axis=1)
        max_centre = cfg.pose_max_centre * max(np.median(res[keep]), 1e-9)
        keep = (rot_err < cfg.pose_max_rotation) & (res <= max_centre)
        if keep.sum() < cfg.min_located_images or fit.scale <= 0:
            return PoseFit(
                len(names), reason=f"absolute poses disagree ({int(keep.sum())} consistent of {len(names)})"
            )
    return PoseFit(
        len(names),
        fit,
        inliers=int(keep.sum()),
        residual_median=float(np.median(res[keep])),
        residual_rmse=float(np.sqrt(np.mean(res[keep] ** 2))),
        rotation_residual_median_deg=float(np.median(rot_err[keep])),
    )


def _fit_on_points(
    corr: tuple[np.ndarray, np.ndarray],
    cfg: RegistrationConfig,
    world_extent: float,
    plausible: Plausibility | None = None,
) -> PointFit:
    """RANSAC similarity from 3D-3D pairs (checked against position priors when given)."""
    src, dst = corr
    fit = PointFit(len(src), plausible is not None)
    if len(src) < max(cfg.min_inliers, 3):
        fit.reason = f"{len(src)} 3D-3D correspondences (< {cfg.min_inliers})"
        return fit
    max_error = cfg.ransac_error * world_extent
    found = ransac_sim3(src, dst, max_error, cfg.ransac_trials, cfg.seed, plausible)
    if found is None:
        why = " consistent with the position priors" if plausible is not None else ""
        fit.reason = f"similarity RANSAC found no model{why}"
        return fit
    sim, inl = found
    res = np.linalg.norm(sim.apply(src) - dst, axis=1)
    fit.inliers, fit.inlier_ratio, fit.inlier_threshold = int(inl.sum()), float(inl.mean()), max_error
    if inl.sum() < cfg.min_inliers:
        fit.reason = f"{int(inl.sum())} 3D-3D inliers (< {cfg.min_inliers})"
        return fit
    fit.similarity = sim
    fit.residual_median = float(np.median(res[inl]))
    fit.residual_rmse = float(np.sqrt(np.mean(res[inl] ** 2)))
    return fit


def _prior_check(
    manifest: Manifest,
    models: dict[str, pycolmap.Reconstruction],
    world: list[str],
    seq: str,
    cfg: RegistrationConfig,
) -> Plausibility | None:
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
    world_residuals = np.linalg.norm(apply_sim3(s_w, r_w, t_w, ref_c) - ref_p, axis=1)
    tol = cfg.prior_max_distance or 3.0 * float(np.median(world_residuals))
    s_own = umeyama(*own)[0]

    def plausible(scale: np.ndarray, rot: np.ndarray, t: np.ndarray) -> np.ndarray:
        world_c = scale[:, None, None] * np.einsum("kij,nj->kni", rot, own[0]) + t[:, None]
        dist = np.linalg.norm(apply_sim3(s_w, r_w, t_w, world_c) - own[1], axis=2)
        ratio = scale * s_w / s_own
        return (np.median(dist, axis=1) < tol) & (np.maximum(ratio, 1 / ratio) < cfg.prior_max_scale_ratio)

    return plausible


def _centres_and_priors(
    manifest: Manifest, model: pycolmap.Reconstruction
) -> tuple[np.ndarray, np.ndarray] | None:
    """Camera centres of the model's images that have a prior, and those priors (None when fewer than 3)."""
    prior = {r.image: r.prior for r in manifest.images if r.prior is not None}
    imgs = [im for im in model.images.values() if im.has_pose and im.name in prior]
    if len(imgs) < 3:
        return None
    _, centres = pose_arrays(im.cam_from_world() for im in imgs)
    return centres, np.array([prior[im.name] for im in imgs], float)


# ----------------------------------------------------------------- images one by one
def _image_results(
    manifest: Manifest,
    index: FeatureIndex,
    methods: dict[str, PoseMethod],
    sequences: dict[str, SequenceResult],
) -> dict[str, ImageResult]:
    """Per image: how it got its world pose (with its aligned model, or on its own), or why not."""
    out = {}
    for rec in manifest.images:
        method = methods.get(rec.image)
        if method is not None:
            reason = None
        elif rec.image in index.skipped:
            reason = index.skipped[rec.image]
        elif sequences[rec.sequence].status is SequenceStatus.FAILED:
            reason = f"sequence not aligned: {sequences[rec.sequence].failure}"
        else:
            reason = "not registered by its sequence's model" + _split(sequences[rec.sequence].model)
        out[rec.image] = ImageResult(rec.sequence, method, reason)
    return out


def _split(model: ModelStatus | None) -> str:
    """What to add to an image's reason when incremental mapping split its sequence into several models."""
    if model is None or not model.other_models:
        return ""
    return (
        f" (incremental mapping split the sequence into models of {[model.images, *model.other_models]} "
        "images: the largest is kept)"
    )


def _register_leftovers(
    ctx: _Joint, images: dict[str, ImageResult], paths: BuildPaths, executor: Executor | None = None
) -> int:
    """Absolute pose of every readable unregistered image against the joint model's points; how many."""
    manifest, index, mcfg = ctx.manifest, ctx.index, ctx.cfg.matching
    todo = [r for r in manifest.images if not images[r.image].registered and r.image in index.image_ids]
    registered = [r for r in manifest.images if images[r.image].registered]
    if not todo or not registered:
        return 0
    pairs = [p for rec in todo for p in cross_pairs(index, [rec], registered, mcfg, mcfg.localize_max_pairs)]
    match(index, pairs, paths.pair_list("localize"), mcfg, executor=executor)
    located = _localize(
        index,
        [r.image for r in todo],
        verified_matches(index),
        ctx.points(),
        ctx.cameras,
        ctx.cfg.registration,
    )
    for rec in todo:
        pose, result = located[rec.image], images[rec.image]
        if pose.cam_from_world is None:
            result.reason = f"{result.reason}; absolute pose: {pose.reason}"
            continue
        ctx.place(rec.image, pose.cam_from_world)
        result.method, result.reason = PoseMethod.ABSOLUTE_POSE, None
        result.pnp_inliers, result.pnp_matches = pose.inliers, pose.matches
    return len(_located(located))


def _follow_models(
    ctx: _Joint,
    models: dict[str, pycolmap.Reconstruction],
    sequences: dict[str, SequenceResult],
    images: dict[str, ImageResult],
) -> int:
    """Sequences not aligned before whose images were then registered one by one: their model's other
    images follow by a similarity fitted on those poses (`_fit_on_poses`); returns how many images joined."""
    added: Poses = {}
    for seq, model in models.items():
        if sequences[seq].status is not SequenceStatus.FAILED:
            continue
        own = {im.name: im.cam_from_world() for im in model.images.values() if im.has_pose}
        located = {
            n: ctx.model.image(ctx.index.image_ids[n]).cam_from_world() for n in own if images[n].registered
        }
        fit = _fit_on_poses(own, located, ctx.cfg.registration)
        if fit.similarity is None or len(located) == len(own):
            continue
        sequences[seq] = SequenceResult(SequenceStatus.ALIGNED, fit, first_attempt=sequences[seq])
        model.transform(sim3d(fit.similarity.scale, fit.similarity.rotation, fit.similarity.translation))
        follow = {n: model.image(ctx.index.image_ids[n]).cam_from_world() for n in own if n not in located}
        for name in follow:
            images[name].method, images[name].reason = PoseMethod.SEQUENCE, None
        added |= follow
    if added:
        ctx.add(added, ctx.cfg.registration.refine_rounds)
    return len(added)


@dataclass
class _AbsolutePose:
    """An image's pose against the joint model's points, or why it has none."""

    cam_from_world: pycolmap.Rigid3d | None
    reason: str | None = None
    inliers: int = 0
    matches: int = 0  # 2D-3D matches tried


def _located(results: dict[str, _AbsolutePose]) -> Poses:
    """The poses found among `results`."""
    return {name: r.cam_from_world for name, r in results.items() if r.cam_from_world is not None}


def _localize(
    index: FeatureIndex,
    names: list[str],
    matches: Matches,
    points: _Points,
    cameras: dict[int, pycolmap.Camera],
    cfg: RegistrationConfig,
) -> dict[str, _AbsolutePose]:
    """Absolute pose of each image against `points` (through its verified matches to their images)."""
    out = {}
    camera_of_image = image_camera_ids(index)
    for name in progress(names, desc="absolute pose", unit="img", leave=False):
        image_id = index.image_ids[name]
        kp_idx, pts3d = _lift_2d3d(image_id, matches, points)
        out[name] = _absolute_pose(index, image_id, kp_idx, pts3d, cameras[camera_of_image[image_id]], cfg)
    return out


def _lift_2d3d(image_id: int, matches: Matches, points: _Points) -> tuple[np.ndarray, np.ndarray]:
    """(keypoint index, world xyz) pairs for one image from its verified matches to the model's images."""
    kp, xyz = [], []
    for (i, j), m in matches.items():
        if j == image_id:
            i, j, m = j, i, m[:, ::-1]
        if i != image_id or j not in points.of_keypoints:
            continue
        b = points.of_keypoints[j][m[:, 1]]
        ok = b >= 0
        kp.append(m[ok, 0])
        xyz.append(points.xyz[b[ok]])
    if not kp:
        return np.zeros(0, int), np.zeros((0, 3))
    kp, xyz = np.concatenate(kp), np.concatenate(xyz)
    _, first = np.unique(kp, return_index=True)  # one 3D point per keypoint
    return kp[first], xyz[first]


def _absolute_pose(
    index: FeatureIndex,
    image_id: int,
    kp_idx: np.ndarray,
    pts3d: np.ndarray,
    camera: pycolmap.Camera,
    cfg: RegistrationConfig,
) -> _AbsolutePose:
    if len(kp_idx) < cfg.pnp_min_inliers:
        return _AbsolutePose(None, f"{len(kp_idx)} 2D-3D matches (< {cfg.pnp_min_inliers})")
    pts2d = read_keypoints(index, image_id)[kp_idx]
    est = pycolmap.AbsolutePoseEstimationOptions()
    est.ransac.max_error = cfg.pnp_max_error
    est.ransac.random_seed = cfg.seed
    result = pycolmap.estimate_and_refine_absolute_pose(pts2d, pts3d, camera, est)
    if result is None:
        return _AbsolutePose(None, f"RANSAC failed on {len(kp_idx)} 2D-3D matches")
    n = int(result["num_inliers"])
    if n < cfg.pnp_min_inliers or n < cfg.pnp_min_inlier_ratio * len(kp_idx):
        return _AbsolutePose(None, f"{n} inliers of {len(kp_idx)} 2D-3D matches")
    return _AbsolutePose(result["cam_from_world"], inliers=n, matches=len(kp_idx))


# ----------------------------------------------------------------- final models
def _check_poses(
    ctx: _Joint,
    final: Poses,
    images: dict[str, ImageResult],
    sequences: dict[str, SequenceResult],
    world: list[str],
) -> None:
    """The registration's checks of the final poses (`_run_checks`), then a second chance (`_retry`)
    for the images that the checks of single images took out (their pose contradicts their matches,
    or their sequence's trajectory breaks: the model that placed them broke; each may still register
    on its own) and for those left out of their sequence's model when incremental mapping split it;
    last, the only registered frame of a sequence needs more inliers (`_check_lone`). An image that
    fails leaves `final`, unregistered with the reason; a sequence that lost every image this way
    fails."""
    before = set(final)
    rejected = _run_checks(ctx, final, images, world)
    split = {
        name
        for name, result in images.items()
        if name not in before
        and name in ctx.index.image_ids
        and sequences[result.sequence].status is not SequenceStatus.FAILED
        and _split(sequences[result.sequence].model)
    }
    _retry(ctx, final, images, [r.image for r in ctx.manifest.images if r.image in rejected | split], world)
    _check_lone(ctx, final, images)
    for seq in {images[n].sequence for n in before} - {images[n].sequence for n in final}:
        reasons = sorted({images[n].reason for n in before if images[n].sequence == seq})
        log.warning("sequence %s: not registered, it fails the registration checks: %s", seq, reasons[0])
        sequences[seq] = SequenceResult(
            SequenceStatus.FAILED,
            reason=f"registration checks: {'; '.join(reasons)}",
            model=sequences[seq].model,
        )


def _run_checks(ctx: _Joint, final: Poses, images: dict[str, ImageResult], world: list[str]) -> set[str]:
    """The checks of the poses in `final` (checks.py), in turn: each image against its verified matches
    (`_check_agreement`), each sequence's trajectory for breaks (`_check_continuity`), each sequence's
    cameras against their position priors (`_check_priors`), each sequence's points and cameras against
    the world's free space (`_check_free_space`; on `ctx.model`, which holds the poses of `final`).
    Returns the images the checks of single images took out (agreement, trajectory)."""
    out = _check_agreement(ctx, final, images) | _check_continuity(ctx, final, images)
    _check_priors(ctx, final, images)
    _check_free_space(ctx, final, images, world)
    return out


def _retry(
    ctx: _Joint, final: Poses, images: dict[str, ImageResult], names: list[str], world: list[str]
) -> None:
    """A second chance for the unregistered images `names` (in time order), round after round: the
    joint model is made anew from the poses that passed the checks (points triangulated with them
    fixed); the images to try next (`_next_frames`: along their sequence from its registered frames;
    all, after a round that registered none) are registered on their own against its points (absolute
    pose), of a sequence with no registered frame only the one with the most inliers (it starts the
    sequence again), and checked with all the others (`_check_retried`). An image checked is done,
    whether it passes or not; one that finds no pose is tried again in later rounds. What passes is
    registered (absolute pose; its reason says it was retried); the others keep their reason, followed
    by what the retry found."""
    if not names:
        return
    rcfg, matches = ctx.cfg.registration, verified_matches(ctx.index)
    log.info("retry: %d image(s) by absolute pose against the images that passed the checks", len(names))
    seq_of = {r.image: r.sequence for r in ctx.manifest.images}
    first, base = {n: images[n].reason for n in names}, set(final)
    why: dict[str, str] = {}
    pending, every = list(names), False
    while pending:
        ready = list(pending) if every else _next_frames(ctx.manifest, final, pending)
        ctx.rebuild(final)
        tried = _localize(ctx.index, ready, matches, ctx.points(), ctx.cameras, rcfg)
        why |= {n: f"absolute pose: {r.reason}" for n, r in tried.items() if r.cam_from_world is None}
        placed = _one_start({n: r for n, r in tried.items() if r.cam_from_world is not None}, seq_of, final)
        if not placed and (every or len(ready) == len(pending)):
            break
        every = not (placed and _check_retried(placed, ctx, final, images, base, world, why))
        pending = [n for n in pending if n not in placed]
    for name in names:
        if name not in final:
            images[name].reason = f"{first[name]}; retried: {why[name]}"
    for seq in dict.fromkeys(images[n].sequence for n in names):
        mine = [n for n in names if images[n].sequence == seq]
        left = [why[n] for n in mine if n not in final]
        log.warning(
            "sequence %s: %d image(s) retried by absolute pose against the images that passed the checks: "
            "%d registered and passed the checks%s",
            seq,
            len(mine),
            len(mine) - len(left),
            f", {len(left)} not (e.g. {left[0]})" if left else "",
        )


def _next_frames(manifest: Manifest, final: Poses, pending: list[str]) -> list[str]:
    """The images of `pending` to retry next: per sequence, those next to one of its registered frames
    (manifest order), or all of a sequence none of whose frames is registered; all when none is next
    to one (a frame between them failed)."""
    waiting, ready = set(pending), set()
    for recs in manifest.sequences().values():
        names = [r.image for r in recs]
        registered = np.array([n in final for n in names])
        near = np.zeros(len(names), bool) if registered.any() else np.ones(len(names), bool)
        near[1:] |= registered[:-1]
        near[:-1] |= registered[1:]
        ready |= {n for n, ok in zip(names, near, strict=True) if ok and n in waiting}
    return [n for n in pending if n in ready] or list(pending)


def _one_start(
    placed: dict[str, _AbsolutePose], seq_of: dict[str, str], final: Poses
) -> dict[str, _AbsolutePose]:
    """`placed` less, in each sequence none of whose frames is in `final`, all but its image with the
    most inliers (the sequence starts again from there, `_next_frames`)."""
    started, first = {seq_of[n] for n in final}, {}
    for name in sorted(placed, key=lambda n: -placed[n].inliers):
        first.setdefault(seq_of[name], name)
    return {n: r for n, r in placed.items() if seq_of[n] in started or first[seq_of[n]] == n}


def _check_retried(
    placed: dict[str, _AbsolutePose],
    ctx: _Joint,
    final: Poses,
    images: dict[str, ImageResult],
    base: set[str],
    world: list[str],
    why: dict[str, str],
) -> int:
    """The images `placed` by a retry checked with all those of `final` (`_run_checks` on copies, the
    joint model made anew with them). Those that fail, and a sequence's placed images whose presence
    makes an image of `base` (those that passed before the retry) fail, are set aside (the reason in
    `why`) and the rest checked again until none fails. What passes joins `final`, images retried in
    earlier rounds that now fail leave it (confidences from that last check); returns how many joined."""
    how = {n: f"absolute pose ({r.inliers} inliers of {r.matches} 2D-3D matches)" for n, r in placed.items()}
    kept = _located(placed)
    while kept:
        trial = final | kept
        ctx.rebuild(trial)
        results = {n: replace(v) for n, v in images.items()}
        for name in kept:
            results[name].method = PoseMethod.ABSOLUTE_POSE
        _run_checks(ctx, trial, results, world)
        out = {n for n in kept if n not in trial}
        why |= {n: f"{how[n]}, then the checks: {results[n].reason}" for n in out}
        lost = [n for n in base if n not in trial]
        if lost and not out:  # right as they look, they make an image that passed fail: set aside
            hit = {images[n].sequence for n in lost}
            out = {n for n in kept if images[n].sequence in hit} or set(kept)
            said = f"{len(lost)} image(s) that passed fail them ({lost[0]}: {results[lost[0]].reason})"
            why |= {n: f"{how[n]}, then with the checks {said}" for n in out}
        if not out:
            break
        kept = {n: pose for n, pose in kept.items() if n not in out}
    if not kept:
        return 0
    for name in [n for n in final if n not in trial]:  # retried earlier, fails with these
        why[name] = f"registered on a retry, then with later ones the checks: {results[name].reason}"
        del final[name]
        images[name] = results[name]
    for name in final:
        images[name].confidence = results[name].confidence
    for name, pose in kept.items():
        first, images[name] = images[name].reason, results[name]
        images[name].pnp_inliers, images[name].pnp_matches = placed[name].inliers, placed[name].matches
        images[name].reason = (
            f"registered on a retry by {how[name]} against the images that passed the checks, then "
            f"checked with them; first: {first}"
        )
        final[name] = pose
    return len(kept)


def _check_lone(ctx: _Joint, final: Poses, images: dict[str, ImageResult]) -> None:
    """Frames registered on their own (absolute pose) as the only registered frame of a sequence of
    several leave `final` on fewer than `registration.lone_min_inliers` inliers: no neighbour confirms
    them, and a frame whose neighbours all fail is as likely placed on a look-alike of its place
    (repeated facades) as right, with as many inliers."""
    limit = ctx.cfg.registration.lone_min_inliers
    for recs in ctx.manifest.sequences().values():
        placed = [r.image for r in recs if r.image in final]
        if len(recs) < 2 or len(placed) != 1 or placed[0] in ctx.fixed:
            continue
        found = images[placed[0]]
        if found.method is PoseMethod.ABSOLUTE_POSE and (found.pnp_inliers or 0) < limit:
            _reject(
                final,
                images,
                placed[0],
                f"the only registered frame of its sequence, by absolute pose on {found.pnp_inliers} inliers "
                f"(< registration.lone_min_inliers {limit}): no neighbour confirms its pose",
            )


def _reject(final: Poses, images: dict[str, ImageResult], name: str, reason: str) -> None:
    """Take an image's pose out of `final`: unregistered, with why."""
    del final[name]
    result = images[name]
    result.method, result.pnp_inliers, result.pnp_matches, result.reason = None, None, None, reason


def _check_agreement(ctx: _Joint, final: Poses, images: dict[str, ImageResult]) -> set[str]:
    """Each registered image's confidence (checks.pose_agreement); images the manifest did not pose
    and whose verified matches mostly contradict their pose leave `final`, unregistered with why
    (returned)."""
    index, cfg = ctx.index, ctx.cfg
    camera_of_image = image_camera_ids(index)
    ids = {name: index.image_ids[name] for name in final}
    cameras = {i: ctx.cameras[camera_of_image[i]] for i in ids.values()}
    keypoints = {i: image_plane(camera, read_keypoints(index, i)) for i, camera in cameras.items()}
    agreement = pose_agreement(
        {i: pose_from_rigid(final[name]) for name, i in ids.items()},
        keypoints,
        {i: camera.mean_focal_length() for i, camera in cameras.items()},
        verified_matches(index),
        cfg.matching.max_error,
    )
    limit = cfg.registration.min_pose_agreement
    out = set()
    for name, i in ids.items():
        found = agreement[i]
        images[name].confidence = None if np.isnan(found.share) else round(found.share, 4)
        if name in ctx.fixed or not found.share < limit:
            continue
        _reject(
            final,
            images,
            name,
            f"its pose contradicts its verified matches: {found.share:.0%} of {found.matches} fit the "
            f"final poses (< registration.min_pose_agreement {limit})",
        )
        out.add(name)
    shares = np.array([a.share for a in agreement.values() if not np.isnan(a.share)])
    if len(shares):
        log.info(
            "pose agreement with the verified matches: median %.3f, min %.3f over %d images; %d below %.2f",
            np.median(shares),
            shares.min(),
            len(shares),
            int(np.count_nonzero(shares < limit)),
            limit,
        )
    return out


def _check_continuity(ctx: _Joint, final: Poses, images: dict[str, ImageResult]) -> set[str]:
    """Per sequence the manifest did not pose: its registered frames in time order (timestamps, else
    manifest order), broken where a step is beyond the sequence's own motion (`checks.continuity`).
    The longest unbroken run stays registered when it holds most of the frames; the other runs (or
    all, when no run holds most) leave `final` with the breaks as their reason (confidence 0).
    Returns the frames taken out."""
    rcfg = ctx.cfg.registration
    out: set[str] = set()
    min_jump = rcfg.continuity_min_jump * _extent(ctx.points().xyz)
    for seq, recs in ctx.manifest.sequences().items():
        frames = [(k, r) for k, r in enumerate(recs) if r.image in final and r.image not in ctx.fixed]
        if len(frames) < 3:
            continue
        names = [r.image for _, r in frames]
        times = np.array([r.timestamp if r.timestamp is not None else np.nan for _, r in frames])
        if not np.all(np.diff(times) > 0):  # no (or equal) timestamps: manifest order
            times = np.array([k for k, _ in frames], float)
        rotations, centres = pose_arrays(final[n] for n in names)
        found = continuity(
            times, rotations, centres, rcfg.continuity_max_ratio, rcfg.continuity_min_turn, min_jump
        )
        parts = found.parts()
        if len(parts) == 1:
            continue
        longest = max(parts, key=len)
        kept = longest if 2 * len(longest) > len(names) else np.zeros(0, int)
        steps, turn = np.flatnonzero(found.breaks), found.step_turn_deg
        said = "; ".join(
            f"{names[j]} -> {names[j + 1]}: {found.speed_ratio[j]:.1f}x the median speed, turning "
            f"{turn[j]:.1f} deg"
            for j in steps[:3]
        )
        more = f" and {len(steps) - 3} more" if len(steps) > 3 else ""
        run = f"its longest unbroken run ({len(longest)} of {len(names)} frames)"
        where = f"not in {run}" if len(kept) else f"no unbroken run holds most of its frames ({run})"
        reason = (
            f"its sequence's trajectory breaks at {len(steps)} step(s) (a speed or a turn of the travel "
            f"direction in the camera beyond registration.continuity_*: {said}{more}); {where}"
        )
        log.warning("sequence %s: %s", seq, reason)
        for k in np.setdiff1d(np.arange(len(names)), kept):
            _reject(final, images, names[k], reason)
            images[names[k]].confidence = 0.0
            out.add(names[k])
    return out


def _check_priors(ctx: _Joint, final: Poses, images: dict[str, ImageResult]) -> None:
    """Sequences whose registered cameras sit off their position priors, given where the other
    sequences' priors put those (`checks.prior_offsets`), leave `final` (confidence 0)."""
    rcfg = ctx.cfg.registration
    prior = {r.image: r.prior for r in ctx.manifest.images if r.prior is not None and r.image in final}
    names = {
        seq: [r.image for r in recs if r.image in prior] for seq, recs in ctx.manifest.sequences().items()
    }
    names = {seq: found for seq, found in names.items() if found}
    centres = {seq: pose_arrays(final[n] for n in found)[1] for seq, found in names.items()}
    priors = {seq: np.array([prior[n] for n in found], float) for seq, found in names.items()}
    posed = frozenset(seq for seq in names if ctx.manifest.is_posed(seq))
    offsets = prior_offsets(centres, priors, rcfg.prior_max_z, rcfg.prior_min_offset, posed)
    for seq, off in offsets.items():
        log.info(
            "sequence %s: %.1f%% of the priors' extent off its %d position priors (%.1f standard errors)",
            seq,
            100 * off.share,
            off.images,
            off.z,
        )
        if off.consistent:
            continue
        reason = (
            f"its sequence's cameras are {off.share:.0%} of the priors' extent off their position priors, "
            f"{off.z:.1f} standard errors of the priors' noise (> registration.prior_max_z "
            f"{rcfg.prior_max_z} and > registration.prior_min_offset {rcfg.prior_min_offset:.0%})"
        )
        log.warning("sequence %s: %s", seq, reason)
        for rec in ctx.manifest.sequences()[seq]:
            if rec.image in final:
                _reject(final, images, rec.image, reason)
                images[rec.image].confidence = 0.0


def _check_free_space(ctx: _Joint, final: Poses, images: dict[str, ImageResult], world: list[str]) -> None:
    """Per sequence neither posed nor of the world: its points against the world's cameras and the
    world's points against its cameras (`checks.free_space`, on the joint model's points). When the
    share of points standing in space the other side sees through is, by its binomial lower bound at
    `free_space_z` standard errors, above `free_space_max_share` in either direction, the sequence
    leaves `final` (confidence 0): consistently misplaced, e.g. on look-alike buildings."""
    rcfg = ctx.cfg.registration
    seq_of = {r.image: r.sequence for r in ctx.manifest.images}
    obs = point_observations(ctx.model, final)
    if not obs.image_names:
        return
    sigma = depth_sigma(obs.xyz, _views(ctx, obs, obs.image_names), rcfg.free_space_depth_noise)
    mine = [n for n in obs.image_names if seq_of[n] in world]
    if not mine:
        return
    reference = _views(ctx, obs, mine)
    for seq, recs in ctx.manifest.sequences().items():
        names = [r.image for r in recs if r.image in final]
        if seq in world or ctx.manifest.is_posed(seq) or not names:
            continue
        forward, backward = free_space(
            obs.xyz,
            sigma,
            _views(ctx, obs, names),
            reference,
            rcfg.free_space_cell,
            rcfg.free_space_margin,
            rcfg.free_space_max_sigma,
        )
        found = max(forward.lower_share(rcfg.free_space_z), backward.lower_share(rcfg.free_space_z))
        log.info(
            "sequence %s: %d of %d of its points in the world's free space, %d of %d of the world's in its",
            seq,
            forward.conflicting,
            forward.tested,
            backward.conflicting,
            backward.tested,
        )
        if found <= rcfg.free_space_max_share:
            continue
        reason = (
            f"its sequence's points and the world's contradict each other (misplaced on look-alike "
            f"structure?): {forward.conflicting} of {forward.tested} of its points stand in space the "
            f"world's cameras see through, {backward.conflicting} of {backward.tested} of the world's "
            f"in its cameras' (share above registration.free_space_max_share {rcfg.free_space_max_share} "
            f"by {rcfg.free_space_z} standard errors)"
        )
        log.warning("sequence %s: %s", seq, reason)
        for name in names:
            _reject(final, images, name, reason)
            images[name].confidence = 0.0


def _views(ctx: _Joint, obs: PointObservations, names: list[str]) -> Views:
    """The images `names` of the joint model (all in `obs.image_names`) and their observations of `obs`'s
    points, for `checks.free_space`."""
    index = {name: k for k, name in enumerate(obs.image_names)}
    picked = np.array([index[n] for n in names], int)
    camera = np.full(len(obs.image_names), -1)
    camera[picked] = np.arange(len(picked))
    seen = camera[obs.obs_image] >= 0
    model_images = [ctx.model.image(int(obs.image_ids[k])) for k in picked]
    rotations, centres = pose_arrays(im.cam_from_world() for im in model_images)
    focal = np.array([ctx.cameras[im.camera_id].mean_focal_length() for im in model_images])
    return Views(rotations, centres, focal, camera[obs.obs_image[seen]], obs.obs_point[seen])


def _pose_shift(
    sequences: dict[str, SequenceResult], images: dict[str, ImageResult], before: Poses, after: Poses
) -> None:
    """Record per sequence how far the joint refinement moved its cameras (medians: world units, degrees)."""
    for seq, result in sequences.items():
        names = [n for n, v in images.items() if v.sequence == seq and n in before and n in after]
        if not names:
            continue
        r0, c0 = pose_arrays(before[n] for n in names)
        r1, c1 = pose_arrays(after[n] for n in names)
        cos = (np.einsum("nij,nij->n", r0, r1) - 1) / 2
        result.refine_centre_shift_median = float(np.median(np.linalg.norm(c1 - c0, axis=1)))
        result.refine_rotation_shift_median_deg = float(np.median(np.degrees(np.arccos(np.clip(cos, -1, 1)))))


def _sequence_models(
    ctx: _Joint, poses: Poses, sequences: dict[str, SequenceResult]
) -> dict[str, pycolmap.Reconstruction]:
    """Per sequence: its registered images at their final poses, points triangulated from its own matches."""
    out = {}
    for seq, recs in ctx.manifest.sequences().items():
        mine = {r.image: poses[r.image] for r in recs if r.image in poses}
        if not mine:
            continue
        model = posed_model(ctx.index, mine, ctx.camera_of, ctx.cameras)
        tri, sequences[seq].final_model = triangulate_fixed(
            ctx.manifest, ctx.index, model, ctx.work, ctx.cfg.reconstruction
        )
        out[seq] = tri if tri is not None else model
    return out


def _joint_model(ctx: _Joint, poses: Poses) -> pycolmap.Reconstruction | None:
    """All registered images at their final poses, triangulated from every verified match between
    them; None with fewer than two sequences (a sequence's own model is then the same) or no point."""
    sequences = {rec.sequence for rec in ctx.manifest.images if rec.image in poses}
    if len(sequences) < 2:
        return None
    model = posed_model(ctx.index, poses, ctx.camera_of, ctx.cameras)
    joint, status = triangulate_fixed(ctx.manifest, ctx.index, model, ctx.work, ctx.cfg.reconstruction)
    log.info("joint model: %s", status.reason or f"{joint.num_points3D()} points in {len(poses)} images")
    return joint
