"""Local image-space evidence for densified samples: what each image itself observed around a sample.

A surface sample (surfaces.py) is the hit of a pixel's ray on a planar region fitted to the
reference cloud. The region's extent and its occluders are a model; the keypoints an image
observed (with their triangulated points) are evidence. `evidence` weighs, for samples at pixels
`uv` of one image with world points `xyz` on planes of normals `normal`, the image's own observed
points within `radius` px (at most `neighbours` nearest):

- each neighbour's point P, at distance d along its own ray from the camera, is compared with the
  sample's plane along that ray (plane depth t): residual e = d - t, tolerance ``sigmas`` times its
  depth standard deviation along the ray, ``sqrt(s_d^2 + (s_l * cot a)^2)``: s_d = d * s / (f *
  sin(tri_angle)) (triangulation), s_l = d * s / f (lateral, turned into depth by the angle a
  between the ray and the plane), s = max(the point's mean reprojection error, keypoint_sigma) px;
- a *supporter* lies on the plane (|e| within tolerance); a point *behind* it (e > tolerance) was
  seen through where the plane would be; an *occluder* is in front of the plane along its ray
  (or its ray never meets the plane) and nearer to the camera than the sample by more than its
  own depth tolerance (a pole, a trunk, a car the image saw);
- a sample is *contradicted* when its nearest decisive neighbour (supporter, behind or occluder)
  is not a supporter, and *occluded* when an occluder lies within `occluder_radius` px; either
  rejects it. With `min_points` > 0 it also needs that many supporters that surround it: the
  largest angular gap between them, seen from the sample, is at most `max_gap` degrees (180: the
  sample is inside what the image saw of the plane, not beyond its last point). An image edge
  within `radius` closes the ring like a supporter (nothing beyond it could be observed).

The correspondence stage (correspondences.py) asks for supporters in the reference image and, by
default, only for no contradiction and no occluder in the target image (night and rain images
observe few points). Everything is vectorised over samples x neighbours (a KD-tree of pixels per
image).

Measured (benchmarks/README.md, issue 14): on random seed 102 (640x480, posed) the densified
matches that were wrong (1.08 % of all matches: outside 0.53 %, misplaced 0.54 %) were all samples
on a plane beyond what the reference image observed of it, each with 8-16 supporters on one side
only; the surround test removes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from xseason.matching.association import PointTable


@dataclass(frozen=True)
class SupportRule:
    """How much local evidence a sample needs (see module doc)."""

    radius: float  # px, neighbourhood of a sample
    neighbours: int  # at most this many nearest observed points examined per sample
    min_points: int  # supporters needed (0: only the occluder and nearest-point tests)
    max_gap: float  # degrees, largest angular gap between the supporters around the sample
    occluder_radius: float  # px, an occluder this close rejects the sample
    sigmas: float  # tolerance, in standard deviations of each point's depth along its ray


@dataclass
class ImagePoints:
    """The points one image observed: pixels (projections), world points, depth uncertainty."""

    centre: np.ndarray  # (3,) camera centre
    uv: np.ndarray  # (N, 2) projections of the points in the image
    xyz: np.ndarray  # (N, 3) world points
    depth: np.ndarray  # (N,) distance from the camera centre
    sigma_depth: np.ndarray  # (N,) standard deviation of that distance (triangulation)
    sigma_lateral: np.ndarray  # (N,) standard deviation across the ray
    tree: cKDTree  # over `uv`
    size: tuple[int, int]  # image width, height (pixels)


def image_points(
    table: PointTable, k: int, valid: np.ndarray, focal: float, keypoint_sigma: float
) -> ImagePoints:
    """Image k's observed points whose observation is `valid` ((M,) over all observations)."""
    lo, hi = table.image_ptr[k], table.image_ptr[k + 1]
    obs = lo + np.flatnonzero(valid[lo:hi])
    points = table.obs_point[obs]
    centre = table.views[k].pose.center
    xyz = table.xyz[points]
    depth = np.linalg.norm(xyz - centre, axis=1)
    sigma_px = np.maximum(table.error[points], keypoint_sigma)
    lateral = depth * sigma_px / focal
    sin = np.sin(np.radians(np.clip(table.tri_angle[points], 1e-3, 90.0)))
    uv = table.obs_proj[obs]
    camera = table.views[k].camera
    tree = cKDTree(uv.reshape(-1, 2))
    return ImagePoints(centre, uv, xyz, depth, lateral / sin, lateral, tree, (camera.width, camera.height))


@dataclass
class Evidence:
    """Per sample: its supporters, and whether it is surrounded, contradicted and occluded."""

    supporters: np.ndarray  # (S,) observed points on its plane near it
    surrounded: np.ndarray  # (S,) bool: largest angular gap between supporters <= max_gap
    contradicted: np.ndarray  # (S,) bool: the nearest decisive neighbour is behind or an occluder
    occluded: np.ndarray  # (S,) bool: an occluder within occluder_radius

    def accepted(self, rule: SupportRule) -> np.ndarray:
        """Neither contradicted nor occluded; with `min_points`, also that many supporters around it."""
        ok = ~self.occluded & ~self.contradicted
        if rule.min_points > 0:
            ok &= (self.supporters >= rule.min_points) & self.surrounded
        return ok


def evidence(
    points: ImagePoints, uv: np.ndarray, xyz: np.ndarray, normal: np.ndarray, rule: SupportRule
) -> Evidence:
    """The local evidence of samples at pixels `uv` (S, 2) with world points `xyz` on planes of unit
    `normal` (S, 3), from the image's observed `points` (module doc)."""
    n_samples = len(uv)
    k = min(rule.neighbours, points.tree.n)
    if n_samples == 0 or k == 0:
        none = np.zeros(n_samples, bool)
        return Evidence(np.zeros(n_samples, np.int64), none, none, none)
    dist, idx = points.tree.query(uv, k=k, distance_upper_bound=rule.radius)
    dist, idx = dist.reshape(n_samples, k), idx.reshape(n_samples, k)
    near = np.isfinite(dist)
    idx = np.where(near, idx, 0)
    p, d = points.xyz[idx], points.depth[idx]  # (S, K, 3), (S, K)
    ray = (p - points.centre) / d[..., None]
    cos = np.einsum("skc,sc->sk", ray, normal)
    reach = np.einsum("sc,sc->s", xyz - points.centre, normal)  # the plane's offset from the camera
    with np.errstate(divide="ignore", invalid="ignore"):
        t = reach[:, None] / cos  # depth of the plane along each neighbour's ray
        cot = np.sqrt(np.maximum(1 - cos**2, 0.0)) / np.abs(cos)
        tol = rule.sigmas * np.hypot(points.sigma_depth[idx], points.sigma_lateral[idx] * cot)
    meets = np.isfinite(t) & (t > 0)
    e = np.where(meets, d - t, -np.inf)
    supporter = near & meets & (np.abs(e) <= tol)
    behind = near & meets & (e > tol)
    sample_depth = np.linalg.norm(xyz - points.centre, axis=1)
    nearer = d < sample_depth[:, None] - rule.sigmas * points.sigma_depth[idx]
    occluder = near & ~supporter & ~behind & nearer
    decisive = supporter | behind | occluder
    first = np.argmax(decisive, axis=1)  # neighbours come sorted by pixel distance
    contradicted = decisive.any(axis=1) & ~supporter[np.arange(n_samples), first]
    occluded = (occluder & (dist <= rule.occluder_radius)).any(axis=1)
    return Evidence(
        supporter.sum(axis=1),
        _surrounded(
            points.uv[idx] - uv[:, None], supporter, _border(uv, points.size, rule.radius), rule.max_gap
        ),
        contradicted,
        occluded,
    )


def _border(uv: np.ndarray, size: tuple[int, int], radius: float) -> np.ndarray:
    """(S, 4, 2) offsets from each pixel to the nearest point of each image edge, NaN where that edge
    is farther than `radius`: beyond the edge the image cannot have observed anything, so an edge
    closes the ring of supporters like one of them."""
    low, high = -0.5 - uv, np.array(size) - 0.5 - uv  # (S, 2) each
    zero = np.zeros(len(uv))
    out = np.stack(
        [np.stack([low[:, 0], zero], 1), np.stack([high[:, 0], zero], 1)]
        + [np.stack([zero, low[:, 1]], 1), np.stack([zero, high[:, 1]], 1)],
        axis=1,
    )
    out[np.linalg.norm(out, axis=2) > radius] = np.nan
    return out


def _surrounded(offset: np.ndarray, member: np.ndarray, border: np.ndarray, max_gap: float) -> np.ndarray:
    """(S,) whether the `member` offsets (S, K, 2) around each sample, with the image edges within
    reach (`border`, (S, 4, 2), NaN: none), leave no angular gap wider than `max_gap` degrees (at
    most 180: the sample lies inside their convex hull)."""
    offset = np.concatenate([offset, np.nan_to_num(border)], axis=1)
    member = np.concatenate([member, np.isfinite(border[..., 0])], axis=1)
    angle = np.where(member, np.arctan2(offset[..., 1], offset[..., 0]), np.inf)
    angle = np.sort(angle, axis=1)
    count = member.sum(axis=1)
    first = angle[:, 0]
    last = np.take_along_axis(angle, np.maximum(count - 1, 0)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore"):
        steps = np.diff(angle, axis=1)
    steps = np.where(np.isfinite(steps), steps, 0.0)
    with np.errstate(invalid="ignore"):
        gap = np.maximum(steps.max(axis=1, initial=0.0), 2 * np.pi - (last - first))
    return (count >= 2) & (gap <= np.radians(max_gap))


__all__ = ["Evidence", "ImagePoints", "SupportRule", "evidence", "image_points"]
