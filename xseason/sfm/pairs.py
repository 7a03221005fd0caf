"""Which image pairs are matched: within a sequence, between sequences, for one image.

- `sequence_pairs`: within one sequence, exhaustive when small, else each image with its next ones;
- `cross_pairs`: between two sequences, by position (`spatial_pairs`) when both have poses or
  both have position priors, else all pairs evenly subsampled (`capped_pairs`);
- `candidate_pairs`: what the reconstruction matches (every sequence, and every two sequences;
  two posed ones only with `cross_posed`).
Pairs are manifest image strings; the lists are deterministic (same input, same order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xseason.inputs.manifest import ImageRecord, Manifest
from xseason.sfm.config import MatchingConfig
from xseason.sfm.features import FeatureIndex

Pair = tuple[str, str]


def sequence_pairs(names: Sequence[str], cfg: MatchingConfig) -> list[Pair]:
    """Pairs within one sequence (names in capture order): exhaustive when small, else sequential."""
    n = len(names)
    window = n if n <= cfg.exhaustive_max_images else cfg.sequential_overlap
    i, j = np.triu_indices(n, k=1)
    keep = j - i <= window
    return [(names[a], names[b]) for a, b in zip(i[keep], j[keep], strict=True)]


def spatial_pairs(
    names0: Sequence[str],
    centers0: np.ndarray,
    dirs0: np.ndarray | None,
    names1: Sequence[str],
    centers1: np.ndarray,
    dirs1: np.ndarray | None,
    cfg: MatchingConfig,
) -> list[Pair]:
    """Each image of set 0 with its nearest images of set 1 that look the same way (when known)."""
    if not len(names0) or not len(names1):
        return []
    dist = np.linalg.norm(centers0[:, None] - centers1[None], axis=-1)
    if dirs0 is not None and dirs1 is not None:
        dist[dirs0 @ dirs1.T < np.cos(np.radians(cfg.cross_max_angle))] = np.inf
    k = min(cfg.cross_neighbors, len(names1))
    nearest = np.argsort(dist, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(names0)), k)
    cols = nearest.ravel()
    ok = np.isfinite(dist[rows, cols])
    return [(names0[a], names1[b]) for a, b in zip(rows[ok], cols[ok], strict=True)]


def capped_pairs(names0: Sequence[str], names1: Sequence[str], max_pairs: int) -> list[Pair]:
    """All pairs between two sets, both evenly subsampled so that at most `max_pairs` remain."""
    n0, n1 = len(names0), len(names1)
    if not n0 or not n1:
        return []
    ratio = min(1.0, np.sqrt(max_pairs / (n0 * n1)))
    k0, k1 = max(1, int(n0 * ratio)), max(1, int(n1 * ratio))
    k0 = min(n0, max(k0, max_pairs // k1))
    pick0 = np.unique(np.linspace(0, n0 - 1, k0).round().astype(int))
    pick1 = np.unique(np.linspace(0, n1 - 1, k1).round().astype(int))
    return [(names0[a], names1[b]) for a in pick0 for b in pick1]


def candidate_pairs(manifest: Manifest, index: FeatureIndex, cfg: MatchingConfig) -> list[Pair]:
    """Within every sequence, plus between every two sequences (two posed ones with `cross_posed`).

    Pairs between unposed sequences (not only against the world's) give the joint refinement of
    the registration cross-condition constraints between all of them; pairs between posed ones
    (their nearest images looking the same way) give the joint triangulation of the registration
    tracks across conditions, i.e. point matches from features that verify under the known poses.
    """
    seqs = manifest.sequences()
    pairs = [p for recs in seqs.values() for p in sequence_pairs(index.names(recs), cfg)]
    names = list(seqs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if cfg.cross_posed or not (manifest.is_posed(a) and manifest.is_posed(b)):
                pairs += cross_pairs(index, seqs[a], seqs[b], cfg, cfg.cross_max_pairs)
    return pairs


def cross_pairs(
    index: FeatureIndex,
    recs0: list[ImageRecord],
    recs1: list[ImageRecord],
    cfg: MatchingConfig,
    max_pairs: int,
) -> list[Pair]:
    """Pairs between two sets of images: by position when both have poses or both priors, else capped."""
    recs0 = [r for r in recs0 if r.image in index.image_ids]
    recs1 = [r for r in recs1 if r.image in index.image_ids]
    pos0, pos1 = _positions(recs0), _positions(recs1)
    names0, names1 = [r.image for r in recs0], [r.image for r in recs1]
    if pos0 is not None and pos1 is not None and pos0.from_poses == pos1.from_poses:
        return spatial_pairs(
            names0, pos0.centres, pos0.directions, names1, pos1.centres, pos1.directions, cfg
        )
    return capped_pairs(names0, names1, max_pairs)


@dataclass
class _Positions:
    """Where a set of images was taken: from their poses (with viewing directions) or their priors."""

    centres: np.ndarray  # (N, 3)
    directions: np.ndarray | None  # (N, 3) optical axes, from poses only
    from_poses: bool


def _positions(recs: list[ImageRecord]) -> _Positions | None:
    """The images' positions from their poses, else from their priors; None when some have neither."""
    if recs and all(r.pose is not None for r in recs):
        rot = np.stack([r.pose.R for r in recs])
        centers = -np.einsum("nji,nj->ni", rot, np.stack([r.pose.t for r in recs]))
        return _Positions(centers, rot[:, 2, :], True)
    if recs and all(r.prior is not None for r in recs):
        return _Positions(np.stack([np.asarray(r.prior, float) for r in recs]), None, False)
    return None
