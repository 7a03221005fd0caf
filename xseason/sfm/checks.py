"""Checks of a registration against evidence it was not fitted to alone: the verified matches, the
sequences' own motion, the position priors.

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
What none of them sees: a sequence consistently misplaced without position priors (seed 21's
night and dusk-rain localised on a run of identical buildings).
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


__all__ = ["Agreement", "Continuity", "PriorOffset", "continuity", "pose_agreement", "prior_offsets"]
