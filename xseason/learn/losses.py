"""Correspondence losses between the predictions for two images of one place.

Every loss works on predictions *sampled at the matches*: `sample_at` reads a prediction
map bilinearly at sub-pixel image coordinates (contract convention, centre of the top-left
pixel = (0, 0)), whatever the map's resolution. The per-match weights and the validity mask
of a padded batch are folded into one weight per match; each loss is a weighted mean over all
matches of the batch, or (`pair_average`) the weighted mean of each pair, then the mean over pairs.

The logit losses read the model's `logits`; the feature losses read its `features`, the map the
classifier is applied to (as the reference paper's hingeF does), so that a collapse of the
features costs the segmentation: they can't be satisfied by a side head the classifier never uses.

Losses (`LossConfig.kind`):
- `class`: cross-entropy of the target (image 1) logits against the argmax of the reference
  (image 0) logits; no gradient through the reference; optional confidence threshold;
  matches whose reference label is a moving class are ignored.
- `kl`: KL(p_ref || p_tgt), the reference distribution detached.
- `hinge_feature`: max(m_pos - <f0, f1>, 0) on L2-normalised features, the reference detached
  (the paper's reference pass has no gradient), plus optionally max(<f0, f1'> - m_neg, 0) for a
  negative f1' taken from another match of the batch.
- `hinge_logits`: the same on L2-normalised class logits.
- `contrastive`: InfoNCE over the matches of the batch (in-batch negatives; matches of the
  same pair closer than `negative_radius` px are not used as negatives).
- `cluster` (FGSN): cluster id of the reference feature (nearest k-means centroid) as the
  label; cross-entropy of both images' cluster scores (cosine to centroids / temperature).
Logits are only ever passed through one (log-)softmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

LossKind = Literal["class", "kl", "hinge_feature", "hinge_logits", "contrastive", "cluster"]

# Cityscapes train ids of dynamic classes: person, rider, car, truck, bus, train, motorcycle, bicycle.
CITYSCAPES_MOVING = [11, 12, 13, 14, 15, 16, 17, 18]


@dataclass
class LossConfig:
    """Settings of the correspondence loss."""

    kind: LossKind = "class"
    confidence_threshold: float = 0.0  # class: keep matches whose reference max-probability >= this
    moving_classes: list[int] = field(default_factory=lambda: list(CITYSCAPES_MOVING))
    margin_pos: float = 0.8  # hinge: positives pushed above this cosine similarity (paper: 0.8)
    margin_neg: float = 0.2  # hinge: negatives pushed below this cosine similarity (paper: 0.2)
    use_negatives: bool = False  # hinge: add the negative term (off in the paper)
    negative_radius: float = 8.0  # px in image 1: closer matches of the same pair are no negatives
    temperature: float = 0.1  # contrastive / cluster
    num_clusters: int = 20  # cluster (FGSN): k of the k-means
    kmeans_iters: int = 20
    pair_average: bool = False  # mean per pair, then over pairs (False: one mean over all matches)

    def validate(self) -> None:
        if not 0.0 <= self.confidence_threshold < 1.0:
            raise ValueError("confidence_threshold must be in [0, 1)")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.num_clusters < 2:
            raise ValueError("num_clusters must be >= 2")


def to_grid(points: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(..., 2) pixel coordinates (x, y) of an image of size (H, W) -> grid_sample coordinates.

    With `align_corners=False`, -1 and +1 are the outer edges of the border pixels, so pixel
    centre x maps to (2x + 1) / W - 1 at *any* map resolution covering the same image.
    """
    h, w = image_size
    scale = points.new_tensor([2.0 / w, 2.0 / h])
    return (points + 0.5) * scale - 1.0


def sample_at(maps: torch.Tensor, points: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear read of (B, C, h, w) maps at (B, N, 2) image pixel coordinates -> (B, N, C).

    `image_size` = (H, W) of the image the points refer to; the map may have another resolution.
    """
    grid = to_grid(points.to(maps.dtype), image_size).unsqueeze(1)  # (B, 1, N, 2)
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2)


def weighted_mean(
    values: torch.Tensor, weights: torch.Tensor, pairs: torch.Tensor | None = None
) -> torch.Tensor:
    """sum(w * v) / sum(w) over the M matches; zero (with a graph) when no weight is left.

    `pairs` (M, P) one-hot pair membership: that mean within each pair, then the plain mean over
    the pairs that have weight.
    """
    if pairs is None:
        return (values * weights).sum() / weights.sum().clamp_min(1e-12)
    sums = (values * weights) @ pairs
    totals = weights @ pairs
    means = sums / totals.clamp_min(1e-12)
    return means.sum() / (totals > 0).sum().clamp_min(1)


def class_loss(
    ref_logits: torch.Tensor,
    tgt_logits: torch.Tensor,
    weights: torch.Tensor,
    cfg: LossConfig,
    pairs: torch.Tensor | None = None,
) -> torch.Tensor:
    """(M, K) logits at the matches -> CE of target vs. argmax of the (detached) reference."""
    with torch.no_grad():
        prob = ref_logits.float().softmax(-1)
        conf, label = prob.max(-1)
        keep = conf >= cfg.confidence_threshold
        if cfg.moving_classes:
            keep &= ~torch.isin(label, label.new_tensor(cfg.moving_classes))
    ce = F.cross_entropy(tgt_logits.float(), label, reduction="none")
    return weighted_mean(ce, weights * keep, pairs)


def kl_loss(
    ref_logits: torch.Tensor,
    tgt_logits: torch.Tensor,
    weights: torch.Tensor,
    pairs: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(p_ref || p_tgt) per match, reference detached."""
    log_ref = ref_logits.detach().float().log_softmax(-1)
    log_tgt = tgt_logits.float().log_softmax(-1)
    kl = (log_ref.exp() * (log_ref - log_tgt)).sum(-1)
    return weighted_mean(kl, weights, pairs)


def hinge_loss(
    f0: torch.Tensor,
    f1: torch.Tensor,
    weights: torch.Tensor,
    cfg: LossConfig,
    negative_ok: torch.Tensor | None = None,
    pairs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Hinge on L2-normalised (M, D) vectors, `f0` (the reference) detached; the negative of
    match i is f1 of match i+1 (cyclic)."""
    f0 = F.normalize(f0.detach().float(), dim=-1)
    f1 = F.normalize(f1.float(), dim=-1)
    loss = (cfg.margin_pos - (f0 * f1).sum(-1)).clamp_min(0)
    if cfg.use_negatives and len(f0) > 1:
        neg = ((f0 * f1.roll(-1, 0)).sum(-1) - cfg.margin_neg).clamp_min(0)
        loss = loss + neg * (1.0 if negative_ok is None else negative_ok.float())
    return weighted_mean(loss, weights, pairs)


def contrastive_loss(
    f0: torch.Tensor,
    f1: torch.Tensor,
    weights: torch.Tensor,
    temperature: float,
    negative_ok: torch.Tensor,
    pairs: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE: match i's f0 must pick its own f1 among all f1 of the batch.

    `negative_ok` (M, M) says which f1 may serve as negatives of which f0 (the diagonal is
    always kept as the positive).
    """
    f0 = F.normalize(f0.float(), dim=-1)
    f1 = F.normalize(f1.float(), dim=-1)
    sim = f0 @ f1.T / temperature
    eye = torch.eye(len(f0), dtype=torch.bool, device=f0.device)
    sim = sim.masked_fill(~(negative_ok | eye), float("-inf"))
    ce = F.cross_entropy(sim, torch.arange(len(f0), device=f0.device), reduction="none")
    return weighted_mean(ce, weights, pairs)


def cluster_scores(features: torch.Tensor, centroids: torch.Tensor, temperature: float) -> torch.Tensor:
    """(M, D) features, (K, D) centroids -> (M, K) cosine scores / temperature."""
    return F.normalize(features.float(), dim=-1) @ F.normalize(centroids.float(), dim=-1).T / temperature


def cluster_loss(
    f0: torch.Tensor,
    f1: torch.Tensor,
    weights: torch.Tensor,
    centroids: torch.Tensor,
    temperature: float,
    pairs: torch.Tensor | None = None,
) -> torch.Tensor:
    """FGSN: label = nearest centroid of the (detached) reference feature; CE on both images."""
    s0 = cluster_scores(f0, centroids, temperature)
    s1 = cluster_scores(f1, centroids, temperature)
    label = s0.detach().argmax(-1)
    ce = F.cross_entropy(s0, label, reduction="none") + F.cross_entropy(s1, label, reduction="none")
    return weighted_mean(ce, weights, pairs)


def kmeans(features: torch.Tensor, k: int, iters: int = 20, seed: int = 0) -> torch.Tensor:
    """Spherical k-means of (M, D) features -> (k, D) unit centroids (k-means++-free: random init)."""
    x = F.normalize(features.detach().float(), dim=-1)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.randperm(len(x), generator=gen)[:k].to(x.device)
    if len(idx) < k:
        idx = idx.repeat(k // max(len(idx), 1) + 1)[:k]
    centroids = x[idx].clone()
    for _ in range(iters):
        assign = (x @ centroids.T).argmax(-1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, F.normalize(sums, dim=-1), centroids)
    return centroids


def _distinct(
    pair_a: torch.Tensor, pair_b: torch.Tensor, pts_a: torch.Tensor, pts_b: torch.Tensor, radius: float
) -> torch.Tensor:
    """Broadcast mask: b may serve as a negative of a unless same pair and within `radius` px."""
    return (pair_a != pair_b) | ((pts_a - pts_b).float().norm(dim=-1) >= radius)


def loss_input(kind: LossKind) -> str:
    """The model output a loss kind reads: "logits" or "features" (the map the classifier reads)."""
    return "logits" if kind in ("class", "kl", "hinge_logits") else "features"


def correspondence_loss(
    out0: dict[str, torch.Tensor],
    out1: dict[str, torch.Tensor],
    matches: torch.Tensor,
    weights: torch.Tensor,
    valid: torch.Tensor,
    image_size: tuple[int, int],
    cfg: LossConfig,
    centroids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The configured loss for a batch.

    out0/out1: model outputs for the reference / target images (`logits`, `features`: the map the
    classifier reads, (B, C, h, w)); matches (B, N, 4) = x0, y0, x1, y1 in pixels of the
    (transformed) input images of size `image_size` = (H, W); weights (B, N); valid (B, N) bool.
    """
    head = loss_input(cfg.kind)
    a = sample_at(out0[head], matches[..., :2], image_size)[valid]  # (M, C)
    b = sample_at(out1[head], matches[..., 2:], image_size)[valid]
    w = weights[valid].float()
    pair_index = torch.arange(len(matches), device=matches.device)[:, None].expand_as(valid)[valid]
    pairs = F.one_hot(pair_index, len(matches)).to(w.dtype) if cfg.pair_average else None
    if cfg.kind == "class":
        return class_loss(a, b, w, cfg, pairs)
    if cfg.kind == "kl":
        return kl_loss(a, b, w, pairs)
    points1 = matches[..., 2:][valid]
    if cfg.kind in ("hinge_feature", "hinge_logits"):
        neg_ok = _distinct(
            pair_index, pair_index.roll(-1, 0), points1, points1.roll(-1, 0), cfg.negative_radius
        )
        return hinge_loss(a, b, w, cfg, neg_ok, pairs)
    if cfg.kind == "contrastive":
        neg_ok = _distinct(
            pair_index[:, None], pair_index[None], points1[:, None], points1[None], cfg.negative_radius
        )
        return contrastive_loss(a, b, w, cfg.temperature, neg_ok, pairs)
    if centroids is None:
        raise ValueError("the cluster loss needs centroids (see kmeans)")
    return cluster_loss(a, b, w, centroids, cfg.temperature, pairs)


__all__ = [
    "LossConfig",
    "LossKind",
    "CITYSCAPES_MOVING",
    "to_grid",
    "sample_at",
    "weighted_mean",
    "class_loss",
    "kl_loss",
    "hinge_loss",
    "contrastive_loss",
    "cluster_scores",
    "cluster_loss",
    "kmeans",
    "loss_input",
    "correspondence_loss",
]
