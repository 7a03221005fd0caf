"""Checks of a registration against evidence it was not fitted to alone: the verified matches, the
sequences' own motion, the position priors, the free space the reference's cameras see through.

- `pose_agreement`: a registered image's verified matches with the other registered images (COLMAP's
  two-view RANSAC, one pair at a time, knowing nothing of the poses) must fit the epipolar geometry
  of the final poses: per image, the share within `max_error` pixels of their epipolar lines. Close
  to 1 for a right pose, low for a pose the images around it contradict. It is the image's
  registration confidence (`images.parquet` `registration_confidence`); images below
  `registration.min_pose_agreement` are not counted as registered (registration.py). It cannot see
  an error along the epipolar lines, nor a model that its own matches fit: random seeds 21 and 23
  (320x240, poses hidden) had night / dusk-rain sequences 11-17 % of the extent off, or broken
  inside, at 0.81-0.98, right ones at 0.92-0.99.
- `continuity`: a sequence's frames in time order; a step faster than the sequence's motion, or a
  turn of the direction of travel as seen from the camera (which a vehicle's turn leaves alone),
  breaks the trajectory. Measured on the frames of random seeds 21-26: right sequences turn it by
  0.1-3.4 degrees between steps, broken models (seeds 22, 23) by 9-86 degrees.
- `prior_offsets`: each sequence against the similarity that the other sequences give between the
  world and the position priors, in standard errors of the priors' noise; a misplaced sequence is
  set aside before the others are tested. Its power is what the priors' noise allows: the random
  preset's priors (0.5 m per axis on a 7.5 m extent, 10 images a sequence) show seed 21's night 26 %
  of the extent off at 11 standard errors, its dusk-rain 16 % off at only 4 (right sequences: up to
  3.5, limit 5).
- `free_space`: a sequence's cameras and points against the world's (the reference's): its points
  that the world does not observe, projected into the world's cameras, must not stand in front of
  what those cameras see in the same image cell (space they see through), beyond both points' depth
  noise (ray noise over the triangulation angle, `depth_sigma`); the world's points in its cameras
  likewise. A sequence misplaced on look-alike structure (a run of identical buildings) agrees on
  that structure only; its unique objects, and the world's, stand in the other's free space. On
  hidden builds of random seeds 21-34 and 41-46 (320x240, 10 images a sequence), right sequences
  have 2-14 % of their points in conflict either way (objects the other side did not triangulate in
  that cell), seed 33's dusk-rain pair (one image 10 % of the extent off) 23 of 41; seed 23's
  sequences broken against a broken world model 22-45 %. It needs points: a lone image, or a pair
  seen by the world through a few dozen points, is not decided (seed 32's night image 3 % off: 4 of
  15). Its power is limited where a sequence slides along flat facades and ground: the right
  sequences of seeds 21 and 31 moved by the translations that best superimpose their points on the
  world's (6-33 % of the extent) have 5-27 % of their points conflicting in the worse direction
  (4-12 % where they were), 2 of 20 above the limit.
What none of them sees: a lone image misplaced without position priors, its matches fitting its
wrong pose (seed 60's dusk-rain frame, 15 % of the extent off on 15 of 17 inliers; seed 64's, right,
had 15 of 18). So the registration (`registration._check_lone`) keeps the only registered frame of a
sequence of several only on `registration.lone_min_inliers` inliers. Nor which image of a failing
pair is the wrong one (both are left unregistered).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from xseason.core.geometry import Pose
from xseason.sfm.guided import essential_matrix
from xseason.sfm.sim3 import apply_sim3, umeyama


@dataclass(frozen=True)
class Agreement:
    """How many of an image's verified matches were tested against its pose, and the share that fit."""

    matches: int
    share: float  # NaN without any verified match to another registered image


def pose_agreement(
    poses: Mapping[int, Pose],
    keypoints: Mapping[int, np.ndarray],
    focal: Mapping[int, float],
    matches: Mapping[tuple[int, int], np.ndarray],
    max_error: float,
) -> dict[int, Agreement]:
    """Per image id of `poses`: its verified matches with other images of `poses` that fit their
    epipolar geometry within `max_error` pixels in both images (module doc).

    `keypoints`: image id -> (N, 2) normalised (undistorted) keypoint coordinates; `focal`: image id
    -> focal length in pixels; `matches`: (image id, image id) -> (M, 2) keypoint indices."""
    tested = dict.fromkeys(poses, 0)
    fit = dict.fromkeys(poses, 0)
    for (a, b), pairs in matches.items():
        if a not in poses or b not in poses or not len(pairs):
            continue
        e = essential_matrix(poses[a], poses[b])
        x0 = np.c_[keypoints[a][pairs[:, 0]], np.ones(len(pairs))]
        x1 = np.c_[keypoints[b][pairs[:, 1]], np.ones(len(pairs))]
        line1, line0 = x0 @ e.T, x1 @ e
        residual = np.abs(np.sum(x1 * line1, axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            d1 = residual / np.linalg.norm(line1[:, :2], axis=1) * focal[b]
            d0 = residual / np.linalg.norm(line0[:, :2], axis=1) * focal[a]
        n_fit = int(np.count_nonzero((d0 <= max_error) & (d1 <= max_error)))
        for image in (a, b):
            tested[image] += len(pairs)
            fit[image] += n_fit
    return {k: Agreement(tested[k], fit[k] / tested[k] if tested[k] else float("nan")) for k in poses}


# ----------------------------------------------------------------- continuity of a sequence
@dataclass(frozen=True)
class Continuity:
    """The steps between consecutive registered frames of one sequence and the breaks among them.

    Step k goes from frame k to frame k + 1 (time order). `speed_ratio`: its length per unit of time
    over the sequence's median; `turn_deg` (n - 2,): at each inner frame, the angle between the
    directions of travel of its two steps, each seen from the camera at its start (NaN where a step is
    too short to have a direction); `breaks`: steps that the sequence's own motion cannot explain
    (`continuity`)."""

    speed_ratio: np.ndarray  # (n - 1,)
    turn_deg: np.ndarray  # (n - 2,)
    breaks: np.ndarray  # (n - 1,) bool

    @property
    def step_turn_deg(self) -> np.ndarray:
        """(n - 1,) per step: the larger turn at its two ends (NaN where neither has one)."""
        with np.errstate(invalid="ignore"):
            return np.fmax(np.r_[np.nan, self.turn_deg], np.r_[self.turn_deg, np.nan])

    def parts(self) -> list[np.ndarray]:
        """Frame indices of the runs between breaks, in time order."""
        cuts = np.flatnonzero(self.breaks) + 1
        return np.split(np.arange(len(self.breaks) + 1), cuts)


def continuity(
    times: np.ndarray,
    rotations: np.ndarray,
    centres: np.ndarray,
    max_ratio: float,
    min_turn: float,
    min_jump: float,
) -> Continuity:
    """Breaks in a trajectory of n frames in time order (`times` (n,) strictly increasing: timestamps, or
    frame numbers when the manifest has none; `rotations` (n, 3, 3) cam_from_world; `centres` (n, 3)).

    Two things a camera moving with its vehicle keeps, and a wrong pose breaks:
    - its speed: a step faster than `max_ratio` x the sequence's median speed (times normalised by the
      median time step, so that a frame missing in between allows twice the length) and longer than
      `min_jump` (world units; jitter of a standing camera is no break) is a break;
    - the direction of travel seen from the camera: when the vehicle turns, camera and route turn
      together and that direction stays; a pose rotated or moved off its neighbours turns it. Where it
      turns by more than `min_turn` degrees between two steps, both steps are breaks (the frame between
      them and its neighbours end up in runs of their own). An absolute limit, not one relative to the
      sequence's median turn: in a model broken at most frames, that median is itself large.
      Steps shorter than `min_jump` or than the median step / `max_ratio` have no direction.
    Needs three frames (two steps) or more to have a median; fewer give no break."""
    n = len(times)
    if n < 3:
        return Continuity(np.ones(max(n - 1, 0)), np.zeros(max(n - 2, 0)), np.zeros(max(n - 1, 0), bool))
    dt = np.diff(np.asarray(times, float))
    dt = dt / np.median(dt)
    step = np.diff(centres, axis=0)
    length = np.linalg.norm(step, axis=1)
    speed = length / dt
    speed_ratio = speed / max(float(np.median(speed)), np.finfo(float).tiny)
    breaks = (speed_ratio > max_ratio) & (length > min_jump)
    seen = np.einsum("nij,nj->ni", rotations[:-1], step) / np.maximum(length, np.finfo(float).tiny)[:, None]
    turn = np.degrees(np.arccos(np.clip(np.sum(seen[1:] * seen[:-1], axis=1), -1, 1)))
    directed = length > max(min_jump, float(np.median(length)) / max_ratio)
    turn[~(directed[1:] & directed[:-1])] = np.nan
    turned = np.nan_to_num(turn, nan=0.0) > min_turn
    breaks[:-1] |= turned
    breaks[1:] |= turned
    return Continuity(speed_ratio, turn, breaks)


# ----------------------------------------------------------------- position priors
@dataclass(frozen=True)
class PriorOffset:
    """How far a group of cameras (a sequence) sits from its position priors when the others are fitted
    to theirs (`prior_offsets`)."""

    images: int  # cameras with a prior
    offset: float  # length of their mean residual, prior units
    z: float  # offset in standard errors (Mahalanobis) of the priors' noise and of the others' fit
    share: float  # offset / the priors' extent
    consistent: bool


def prior_offsets(
    centres: Mapping[str, np.ndarray],
    priors: Mapping[str, np.ndarray],
    max_z: float,
    min_share: float,
    fixed: frozenset[str] = frozenset(),
    bootstrap: int = 200,
) -> dict[str, PriorOffset]:
    """Per group (sequence -> (n, 3) camera centres in the world and their (n, 3) priors): is it where
    its priors put it, given where the other groups' priors put them?

    The priors' noise sigma (per axis) is pooled from each group's own similarity fit to its priors
    (which absorbs a group's misplacement, not the noise). A group is tested against the similarity
    fitted to all other consistent groups: the mean of its residuals (noise averages out over its n
    cameras) is inconsistent when it is above `max_z` standard errors (Mahalanobis: the noise of its
    mean, sigma^2 / n, plus the uncertainty of the others' fit where it predicts this group, from
    `bootstrap` resamples of their cameras: a fit on straight routes leaves their roll loose, which
    moves a group away from them) and above `min_share` of the priors' extent (per-drive GNSS biases
    of real data are no error).
    The worst group is set aside and the rest tested again until none is inconsistent, so that a
    misplaced group does not bias the fit of the others. Groups in `fixed` (posed by the manifest)
    are never set aside. Smaller groups are tested, not fitted: needs two groups, one of three or more
    cameras (a lone such group is then not tested itself); otherwise returns {}."""
    groups = [g for g in centres if len(centres[g]) >= 3]
    if not groups or len(centres) < 2:
        return {}
    residual = [_similarity_residuals(centres[g], priors[g]) for g in groups]
    dof = sum(3 * len(r) - 7 for r in residual)
    sigma = float(np.sqrt(sum(np.sum(r**2) for r in residual) / max(dof, 1)))
    every = np.concatenate([priors[g] for g in centres])
    extent = float(2 * np.median(np.linalg.norm(every - np.median(every, 0), axis=1))) or 1.0

    rng = np.random.default_rng(0)

    def offset(group: str, others: list[str]) -> PriorOffset:
        src = np.concatenate([centres[g] for g in others])
        dst = np.concatenate([priors[g] for g in others])
        mean = np.mean(apply_sim3(*umeyama(src, dst), centres[group]) - priors[group], axis=0)
        pick = rng.integers(0, len(src), (bootstrap, len(src)))  # the fit's own uncertainty, resampled
        s, r, t = umeyama(src[pick], dst[pick])
        predicted = s[:, None] * np.einsum("kij,j->ki", r, centres[group].mean(0)) + t
        cov = np.cov(predicted.T) + sigma**2 / len(centres[group]) * np.eye(3)
        size = float(np.linalg.norm(mean))
        z = float(np.sqrt(mean @ np.linalg.solve(cov, mean)))
        share = size / extent
        return PriorOffset(len(centres[group]), size, z, share, z <= max_z or share <= min_share)

    kept = list(groups)
    while len(kept) > 2:
        found = {g: offset(g, [o for o in kept if o != g]) for g in kept if g not in fixed}
        worst = max(found, key=lambda g: found[g].z, default=None)
        if worst is None or found[worst].consistent:
            break
        kept.remove(worst)
    out = {g: offset(g, [o for o in kept if o != g]) for g in centres if kept != [g]}
    return {g: r if g not in fixed else replace(r, consistent=True) for g, r in out.items()}


def _similarity_residuals(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Residuals (n, 3) of dst after the least-squares similarity src -> dst."""
    return apply_sim3(*umeyama(src, dst), src) - dst


# ----------------------------------------------------------------- free space
@dataclass(frozen=True)
class Views:
    """Cameras and the points they observe (`free_space`): `rotations` (C, 3, 3) cam_from_world,
    `centres` (C, 3), `focal` (C,) pixels; observation k: camera `obs_camera[k]` sees point
    `obs_point[k]` (an index into the points given with the views)."""

    rotations: np.ndarray
    centres: np.ndarray
    focal: np.ndarray
    obs_camera: np.ndarray
    obs_point: np.ndarray


def depth_sigma(xyz: np.ndarray, views: Views, pixel_noise: float) -> np.ndarray:
    """(P,) relative depth uncertainty of each point of `xyz` triangulated from its observations in
    `views`: the angular noise of a ray (`pixel_noise` / focal) over the point's triangulation angle
    (twice the largest angle between one of its rays and their mean); inf without two distinct rays."""
    ray = views.centres[views.obs_camera] - xyz[views.obs_point]
    ray /= np.maximum(np.linalg.norm(ray, axis=1, keepdims=True), np.finfo(float).tiny)
    mean = np.zeros_like(xyz)
    np.add.at(mean, views.obs_point, ray)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), np.finfo(float).tiny)
    cos = np.clip(np.sum(ray * mean[views.obs_point], axis=1), -1, 1)
    angle = np.zeros(len(xyz))
    np.maximum.at(angle, views.obs_point, 2 * np.arccos(cos))
    noise = np.zeros(len(xyz))
    np.maximum.at(noise, views.obs_point, pixel_noise / views.focal[views.obs_camera])
    return np.divide(noise, angle, out=np.full(len(xyz), np.inf), where=angle > 0)


def seen_through(
    xyz: np.ndarray,
    sigma: np.ndarray,
    tested: np.ndarray,
    views: Views,
    cell: float,
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per point of `tested` (indices into `xyz`): in how many cameras of `views` it falls on a cell
    (`cell` pixels square) where the camera sees a point, and in how many it lies in front of every
    point the camera sees there by more than their depth noise: its far bound (depth x (1 + its
    sigma)) before their nearest near bound (depth x (1 - sigma)) x (1 - `margin`). Such a point
    stands in space the camera sees through. `sigma`: (P,) relative depth uncertainty of every point
    (`depth_sigma`); the tested points should be none the cameras observe themselves."""
    n_tested, n_front = np.zeros(len(tested), int), np.zeros(len(tested), int)
    x = xyz[tested]
    for c in range(len(views.centres)):
        seen = views.obs_point[views.obs_camera == c]
        if not len(seen) or not len(x):
            continue
        near_keys, near_depth = _cells(views, c, xyz[seen], cell)
        near = near_depth * (1 - sigma[seen])
        order = np.argsort(near_keys, kind="stable")
        order = order[near_keys[order] >= 0]
        if not len(order):
            continue
        keys, first = np.unique(near_keys[order], return_index=True)
        bound = np.minimum.reduceat(near[order], first) * (1 - margin)
        point_keys, depth = _cells(views, c, x, cell)
        slot = np.minimum(np.searchsorted(keys, point_keys), len(keys) - 1)
        hit = (keys[slot] == point_keys) & (point_keys >= 0) & (bound[slot] > 0)
        n_tested += hit
        n_front += hit & (depth * (1 + sigma[tested]) < bound[slot])
    return n_tested, n_front


def _cells(views: Views, camera: int, xyz: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Points seen from one camera of `views`: the key of the image cell each falls on (-1 behind the
    camera or far off the image) and its depth."""
    cam = (xyz - views.centres[camera]) @ views.rotations[camera].T
    depth = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ij = np.floor(cam[:, :2] / depth[:, None] * views.focal[camera] / cell)
    span = 1 << 20
    ok = (depth > 0) & np.all(np.abs(ij) < span // 2, axis=1)
    ij = np.where(ok[:, None], ij, 0).astype(np.int64) + span // 2
    return np.where(ok, ij[:, 0] * span + ij[:, 1], -1), depth


@dataclass(frozen=True)
class SeenThrough:
    """A side's own points (`free_space`) tested against the other side's cameras."""

    tested: int  # points on a cell where one of those cameras sees a point
    conflicting: int  # of them in front of what most of those cameras see there

    @property
    def share(self) -> float:
        return self.conflicting / self.tested if self.tested else float("nan")

    def lower_share(self, z: float) -> float:
        """The share's lower confidence bound (Wilson score, `z` standard errors); 0 when nothing tested."""
        if not self.tested:
            return 0.0
        n, p = self.tested, self.share
        centre = p + z * z / (2 * n)
        spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return float(max(0.0, (centre - spread) / (1 + z * z / n)))


def free_space(
    xyz: np.ndarray,
    sigma: np.ndarray,
    a: Views,
    b: Views,
    cell: float,
    margin: float,
    max_sigma: float,
) -> tuple[SeenThrough, SeenThrough]:
    """Two groups of registered cameras against each other: the points that `a` observes and `b` does
    not, against `b`'s cameras; and the points `b` observes and `a` does not, against `a`'s cameras
    (`seen_through`; points with a relative depth uncertainty above `max_sigma` are left out). A point
    conflicts when it stands in front of what most cameras that test it see there (space they see
    through). Right placements leave a few (objects one side did not triangulate, cars that moved); a
    group misplaced on look-alike structure agrees on that structure only, its other points float in
    the other's free space."""
    own_a, own_b = np.unique(a.obs_point), np.unique(b.obs_point)
    out = []
    for own, other, views in ((own_a, own_b, b), (own_b, own_a, a)):
        pts = np.setdiff1d(own, other)
        pts = pts[sigma[pts] <= max_sigma]
        n_tested, n_front = seen_through(xyz, sigma, pts, views, cell, margin)
        conflicting = np.count_nonzero(2 * n_front > n_tested)
        out.append(SeenThrough(int(np.count_nonzero(n_tested)), int(conflicting)))
    return out[0], out[1]


__all__ = [
    "Agreement",
    "Continuity",
    "PriorOffset",
    "SeenThrough",
    "Views",
    "continuity",
    "depth_sigma",
    "free_space",
    "pose_agreement",
    "prior_offsets",
    "seen_through",
]
