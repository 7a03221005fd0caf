"""Similarity transforms (scale, rotation, translation) between two frames.

- from point pairs: `umeyama` (least squares, batched), `ransac_sim3` (robust, with an optional
  plausibility test of the hypotheses);
- from camera poses: `fit_to_poses`, the one rotation-mean + scale fit, used by the registration
  (a sequence's model onto its absolutely posed images) and by `pose_errors` (an evaluation of
  registered poses against known ones).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pycolmap

from xseason.core.colmap import pose_arrays
from xseason.core.geometry import Pose

# (scales (K,), rotations (K, 3, 3), translations (K, 3)) -> (K,) bool: which hypotheses to keep
Plausibility = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class Similarity:
    """x -> scale * rotation @ x + translation."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Similarity):
            return NotImplemented
        return (
            self.scale == other.scale
            and np.array_equal(self.rotation, other.rotation)
            and np.array_equal(self.translation, other.translation)
        )

    __hash__ = None  # mutable arrays inside

    @classmethod
    def identity(cls) -> Similarity:
        return cls(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points mapped."""
        return apply_sim3(self.scale, self.rotation, self.translation, points)


def apply_sim3(scale: float, rot: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points -> s R x + t."""
    return scale * np.asarray(points, float) @ rot.T + t


def umeyama(
    src: np.ndarray, dst: np.ndarray, with_scale: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s * R @ src + t (Umeyama 1991) of (..., N, 3) point sets: (s, R, t)."""
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


def ransac_sim3(
    src: np.ndarray,
    dst: np.ndarray,
    max_error: float,
    num_trials: int,
    seed: int = 0,
    plausible: Plausibility | None = None,
) -> tuple[Similarity, np.ndarray] | None:
    """Similarity dst ~ s R src + t: RANSAC over 3-point samples (vectorised), then two least-squares refits.

    `plausible` rejects hypotheses (batched) before scoring, e.g. those that put the cameras far
    from their position priors. Returns (the similarity, its inlier mask), or None.
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
        mapped = s[:, None, None] * np.einsum("kij,nj->kni", r, src) + t[:, None]
        res = np.linalg.norm(mapped - dst[None], axis=2)
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
    scale, rot, t = sim
    return Similarity(float(scale), rot, t), inl


def rotation_differences(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Per camera, the rotation target_from_source (N, 3, 3) from its cam_from_target and cam_from_source."""
    return np.einsum("nji,njk->nik", target, source)


def rotation_residuals_deg(differences: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Angle (degrees) between each of `differences` and `rotation`."""
    return np.degrees(np.arccos(np.clip((np.einsum("nij,ij->n", differences, rotation) - 1) / 2, -1, 1)))


def fit_to_poses(
    differences: np.ndarray, source_centres: np.ndarray, target_centres: np.ndarray
) -> Similarity:
    """Similarity source frame -> target frame from cameras posed in both.

    Rotation: the chordal mean of the per-camera `rotation_differences`; scale and translation:
    least squares on the camera centres given that rotation (a centre-only fit would leave the roll
    about a straight route undetermined).
    """
    u, _, vt = np.linalg.svd(differences.sum(0))
    rot = u @ np.diag([1, 1, np.linalg.det(u @ vt)]) @ vt
    a = source_centres - source_centres.mean(0)
    scale = float(np.sum((a @ rot.T) * (target_centres - target_centres.mean(0))) / max(np.sum(a * a), 1e-12))
    return Similarity(scale, rot, target_centres.mean(0) - scale * rot @ source_centres.mean(0))


class PoseErrors(NamedTuple):
    """Per registered image with a known pose: its name, rotation error (degrees) and centre error."""

    names: list[str]
    rotation_deg: np.ndarray
    centre: np.ndarray


def pose_errors(models: Mapping[str, pycolmap.Reconstruction], truth: Mapping[str, Pose]) -> PoseErrors:
    """Errors of every registered image against known poses after ONE similarity of the whole registration
    to the truth (`fit_to_poses`)."""
    posed = {im.name: im.cam_from_world() for m in models.values() for im in m.images.values() if im.has_pose}
    names = [n for n in posed if n in truth]
    if not names:
        return PoseErrors(names, np.zeros(0), np.zeros(0))
    est_r, est_c = pose_arrays(posed[n] for n in names)
    true_r = np.array([truth[n].R for n in names]).reshape(-1, 3, 3)
    true_c = np.array([truth[n].center for n in names]).reshape(-1, 3)
    differences = rotation_differences(true_r, est_r)
    fit = fit_to_poses(differences, est_c, true_c)
    centre = np.linalg.norm(fit.apply(est_c) - true_c, axis=1)
    return PoseErrors(names, rotation_residuals_deg(differences, fit.rotation), centre)
