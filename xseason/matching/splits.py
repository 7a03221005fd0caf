"""Train / val / test splits by place.

The place of a pair is the median of its matched 3D points, projected on the route axis: the
first principal axis of the registered camera centres (`route_axis`). That axis is cut into
`blocks` equal blocks and whole blocks are drawn (seeded) into train / val / test by `fractions`
(`assign_splits`): all pairs looking at the same stretch of route share one split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xseason.matching.views import ImageView

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class RouteAxis:
    """A line through the scene: a point on it and its unit direction."""

    origin: np.ndarray  # (3,)
    direction: np.ndarray  # (3,) unit

    def position(self, xyz: np.ndarray) -> np.ndarray:
        """Signed position along the axis of world points (N, 3) -> (N,), or of one point -> scalar."""
        return (xyz - self.origin) @ self.direction


def route_axis(views: Sequence[ImageView]) -> RouteAxis:
    """The first principal axis of the registered camera centres (the x axis with fewer than two)."""
    c = np.array([v.pose.center for v in views if v.pose is not None]).reshape(-1, 3)
    if len(c) < 2:
        return RouteAxis(np.zeros(3), np.array([1.0, 0.0, 0.0]))
    mean = c.mean(axis=0)
    _, _, vt = np.linalg.svd(c - mean, full_matrices=False)
    return RouteAxis(mean, vt[0])


def assign_splits(
    place: np.ndarray, axis: RouteAxis, blocks: int, fractions: Sequence[float], seed: int
) -> np.ndarray:
    """train/val/test (object array) per place (N, 3) (module doc): whole blocks of route per split."""
    if len(place) == 0:
        return np.zeros(0, dtype=object)
    s = axis.position(place)
    lo, hi = float(s.min()), float(s.max())
    block = np.clip(((s - lo) / max(hi - lo, 1e-9) * blocks).astype(np.int64), 0, blocks - 1)
    counts = np.floor(np.asarray(fractions) * blocks).astype(int)
    for k in (1, 2):  # at least one block for each non-empty split when possible
        if fractions[k] > 0 and counts[k] == 0 and blocks >= 3:
            counts[k] = 1
    counts[0] = blocks - counts[1] - counts[2]
    names = np.repeat(np.array(SPLITS, dtype=object), counts)
    perm = np.random.default_rng(seed).permutation(blocks)
    return names[perm][block]


__all__ = ["SPLITS", "RouteAxis", "assign_splits", "route_axis"]
