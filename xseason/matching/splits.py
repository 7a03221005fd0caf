"""Train / val / test splits by place: one split (or none) per image, every pair inside one split.

The route axis is the first principal axis of the registered camera centres (`route_axis`). What an
image looks at is told by the positions along that axis of the 3D points it observes (`image_views`):
its *place* is their median, its *view* the range between their ``0.5 - buffer`` and
``0.5 + buffer`` quantiles. An image observing fewer than `MIN_POINTS` points (a night image whose
features failed) is taken to look along its optical axis: its camera centre plus the axis times the
scene's point depths at the same quantiles.

`assign_splits`: the route between the first and the last place is cut into `blocks` equal blocks,
drawn whole (seeded) into train / val / test by `fractions` (`block_splits`). An image takes the
split of its place's block, and none when its view reaches into a block of a split held out further
than its own (test > val > train): no train image sees a val or test place, no val image a test
place (the buffer; ``buffer = 0`` looks at the place only). Images of `test_sequences` are test
wherever they are: a held-out traversal, not a held-out place, so they constrain no other image.

A pair belongs to its images' split and is dropped when its two images are not of one split
(`pair_splits`). `check_disjoint` checks that of a dataset's images and pairs tables.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xseason.core.errors import ConfigError, DatasetFormatError
from xseason.matching.association import PointTable
from xseason.matching.views import ImageView

SPLITS = ("train", "val", "test")  # in the order they are held out: a split may see no place of a later one
MIN_POINTS = 10  # an image observing fewer points is placed by its optical axis (module doc)


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


def _group_quantiles(values: np.ndarray, group: np.ndarray, groups: int, q: np.ndarray) -> np.ndarray:
    """(groups, len(q)) quantiles (linear interpolation) of `values` per `group` id; NaN for empty ones."""
    out = np.full((groups, len(q)), np.nan)
    if len(values) == 0:
        return out
    v = values[np.lexsort((values, group))]
    n = np.bincount(group, minlength=groups)
    start = np.cumsum(n) - n
    has = np.flatnonzero(n)
    pos = q[None, :] * (n[has, None] - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n[has, None] - 1)
    frac = pos - lo
    base = start[has, None]
    out[has] = v[base + lo] * (1 - frac) + v[base + hi] * frac
    return out


def image_views(table: PointTable, axis: RouteAxis, max_reproj_error: float, buffer: float) -> np.ndarray:
    """(I, 3) per image of `table`: positions along `axis` of its view's start, its place, its view's
    end (module doc), from its observations within `max_reproj_error` pixels; NaN when unregistered."""
    q = np.array([0.5 - buffer, 0.5, 0.5 + buffer])
    n_images = len(table.views)
    image = table.obs_image
    ok = np.flatnonzero(table.obs_err <= max_reproj_error)  # NaN (unregistered) compares False
    out = _group_quantiles(axis.position(table.xyz[table.obs_point[ok]]), image[ok], n_images, q)
    counts = np.bincount(image[ok], minlength=n_images)
    few = [k for k, v in enumerate(table.views) if v.pose is not None and counts[k] < MIN_POINTS]
    if few:
        seen = table.seen
        depth = np.quantile(table.depth[seen], q) if seen.any() else np.ones(3)
        centre = np.array([table.views[k].pose.center for k in few])
        optical = np.array([table.views[k].pose.R[2] for k in few])
        along = axis.position(centre)[:, None] + (optical @ axis.direction)[:, None] * depth[None, :]
        out[few] = np.sort(along, axis=1)
    return out


def block_splits(blocks: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Index into `SPLITS` of each of `blocks` blocks of route: whole blocks drawn (seeded) by `fractions`."""
    counts = np.floor(np.asarray(fractions) * blocks).astype(int)
    for k in (1, 2):  # at least one block for each non-empty split when possible
        if fractions[k] > 0 and counts[k] == 0 and blocks >= 3:
            counts[k] = 1
    counts[0] = blocks - counts[1] - counts[2]
    return np.repeat(np.arange(len(SPLITS)), counts)[np.random.default_rng(seed).permutation(blocks)]


def assign_splits(
    views: np.ndarray,
    sequences: Sequence[str],
    blocks: int,
    fractions: Sequence[float],
    seed: int,
    test_sequences: Collection[str] = (),
) -> np.ndarray:
    """train/val/test or None (object array) per image from its `image_views` row (I, 3) and sequence
    (module doc)."""
    sequences = np.asarray(sequences, dtype=object)
    unknown = sorted(set(test_sequences) - set(sequences))
    if unknown:
        raise ConfigError(
            f"correspondences.test_sequences: no sequence {unknown[0]!r}; the sequences: "
            f"{', '.join(sorted(set(sequences)))}"
        )
    out = np.full(len(views), None, dtype=object)
    placed = np.isfinite(views).all(axis=1)
    if placed.any():
        rank = block_splits(blocks, fractions, seed)
        lo, hi = views[placed, 1].min(), views[placed, 1].max()
        block = np.clip(((views[placed] - lo) / max(hi - lo, 1e-9) * blocks).astype(np.int64), 0, blocks - 1)
        own = rank[block[:, 1]]
        # blocks of each split up to each block, to count those in [view start, view end]
        upto = np.vstack([np.zeros((1, len(SPLITS)), np.int64), np.cumsum(np.eye(len(SPLITS))[rank], 0)])
        inside = upto[block[:, 2] + 1] - upto[block[:, 0]]  # (n, splits)
        later = np.arange(len(SPLITS))[None, :] > own[:, None]
        clear = ~(later & (inside > 0)).any(axis=1)
        out[np.flatnonzero(placed)[clear]] = np.array(SPLITS, dtype=object)[own[clear]]
    out[np.isin(sequences, list(test_sequences)) & placed] = "test"
    return out


def pair_splits(image_split: np.ndarray, image0: np.ndarray, image1: np.ndarray) -> np.ndarray:
    """The split of each pair (object array): its images' one split, None when they have none in common."""
    a, b = image_split[image0], image_split[image1]
    return np.where((a == b) & pd.notna(a), a, None)


def check_disjoint(images: pd.DataFrame, pairs: pd.DataFrame) -> None:
    """Raise `DatasetFormatError` when an image is in pairs of two splits, or (with the images table's
    optional `split` column) a pair's split is not its images' split."""
    ids = np.concatenate([pairs["image_id0"].to_numpy(), pairs["image_id1"].to_numpy()])
    split = np.concatenate([pairs["split"].to_numpy(dtype=object)] * 2)
    uses = pd.DataFrame({"image_id": ids, "split": split}).drop_duplicates()
    twice = uses["image_id"][uses["image_id"].duplicated()].unique()
    name = images.set_index("image_id")["image"]
    if len(twice):
        first = int(twice[0])
        found = sorted(uses.loc[uses["image_id"] == first, "split"])
        raise DatasetFormatError(
            f"splits: image {first} ({name[first]}) is in {' and '.join(found)} pairs "
            f"({len(twice)} image(s) in pairs of two splits)"
        )
    if "split" not in images:
        return
    wrong = images["split"].dropna()
    wrong = wrong[~wrong.isin(SPLITS)]
    if len(wrong):
        raise DatasetFormatError(
            f"images: column 'split' has {wrong.iloc[0]!r}; allowed: {', '.join(SPLITS)}"
        )
    own = images.set_index("image_id")["split"].reindex(ids).to_numpy(dtype=object)
    bad = np.flatnonzero(own != split)
    if bad.size:
        k, image, its = bad[0] % len(pairs), int(ids[bad[0]]), own[bad[0]]
        raise DatasetFormatError(
            f"splits: pair {pairs['pair_id'].iloc[k]} is {split[bad[0]]} but its image {image} "
            f"({name[image]}) is {'in no split' if pd.isna(its) else its} ({bad.size} disagreement(s))"
        )


__all__ = [
    "MIN_POINTS",
    "SPLITS",
    "RouteAxis",
    "assign_splits",
    "block_splits",
    "check_disjoint",
    "image_views",
    "pair_splits",
    "route_axis",
]
