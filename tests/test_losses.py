"""Losses against plain reference computations (loops are fine here), and sub-pixel sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xseason.learn.losses import LossConfig, correspondence_loss, kmeans, sample_at

torch.manual_seed(0)


def bilinear_reference(img: np.ndarray, x: float, y: float) -> np.ndarray:
    """Bilinear read of (C, H, W) at pixel-centre coordinates, borders clamped."""
    c, h, w = img.shape
    x = min(max(x, 0.0), w - 1.0)
    y = min(max(y, 0.0), h - 1.0)
    x0, y0 = int(math.floor(x)), int(math.floor(y))
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    ax, ay = x - x0, y - y0
    return (
        img[:, y0, x0] * (1 - ax) * (1 - ay)
        + img[:, y0, x1] * ax * (1 - ay)
        + img[:, y1, x0] * (1 - ax) * ay
        + img[:, y1, x1] * ax * ay
    )


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_sample_at_integer_pixels_is_exact(dtype, tol):
    maps = torch.randn(2, 3, 7, 9, dtype=dtype)
    ys, xs = np.meshgrid(np.arange(7), np.arange(9), indexing="ij")
    pts = torch.tensor(np.stack([xs.ravel(), ys.ravel()], 1), dtype=dtype).expand(2, -1, -1)
    out = sample_at(maps, pts, (7, 9))
    expected = maps.flatten(2).transpose(1, 2)
    assert (out - expected).abs().max().item() < tol


def test_sample_at_subpixel_matches_bilinear():
    maps = torch.randn(1, 4, 6, 8, dtype=torch.float64)
    pts = torch.tensor([[[0.25, 0.5], [3.7, 2.2], [6.99, 4.01], [7.0, 5.0], [1.5, 0.0]]], dtype=torch.float64)
    out = sample_at(maps, pts, (6, 8))[0].numpy()
    for i, (x, y) in enumerate(pts[0].tolist()):
        np.testing.assert_allclose(out[i], bilinear_reference(maps[0].numpy(), x, y), atol=1e-12)


def test_sample_at_lower_resolution_map():
    """A map at 1/4 resolution: image pixel x lies at map coordinate (x + 0.5) / 4 - 0.5."""
    maps = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    pts = torch.tensor([[[1.5, 1.5], [10.0, 7.0], [13.3, 17.9], [5.5, 9.5]]], dtype=torch.float64)
    out = sample_at(maps, pts, (20, 24))[0].numpy()
    for i, (x, y) in enumerate(pts[0].tolist()):
        ref = bilinear_reference(maps[0].numpy(), (x + 0.5) / 4 - 0.5, (y + 0.5) / 4 - 0.5)
        np.testing.assert_allclose(out[i], ref, atol=1e-12)
    # The centre of map cell (1, 1) covers image pixels 4..7; its centre is at image x = 5.5.
    np.testing.assert_allclose(out[3], maps[0, :, 2, 1].numpy(), atol=1e-12)


def _batch(k: int = 5, d: int = 8, b: int = 2, n: int = 6, size=(12, 16)):
    h, w = size
    out0 = {
        "logits": torch.randn(b, k, h, w, dtype=torch.float64),
        "features": torch.randn(b, d, h, w, dtype=torch.float64),
    }
    out1 = {
        "logits": torch.randn(b, k, h, w, dtype=torch.float64),
        "features": torch.randn(b, d, h, w, dtype=torch.float64),
    }
    xy0 = torch.stack([torch.randint(0, w, (b, n)), torch.randint(0, h, (b, n))], -1)
    xy1 = torch.stack([torch.randint(0, w, (b, n)), torch.randint(0, h, (b, n))], -1)
    matches = torch.cat([xy0, xy1], -1).double()
    weights = torch.rand(b, n, dtype=torch.float64) + 0.1
    valid = torch.ones(b, n, dtype=torch.bool)
    valid[1, -2:] = False
    return out0, out1, matches, weights, valid


def _rows(out0, out1, matches, weights, valid, head):
    """Loop over matches: (pair, f0, f1, p1 xy, w) at integer coordinates, valid ones only."""
    rows = []
    for bi in range(matches.shape[0]):
        for ni in range(matches.shape[1]):
            if not valid[bi, ni]:
                continue
            x0, y0, x1, y1 = (int(v) for v in matches[bi, ni].tolist())
            rows.append(
                (
                    bi,
                    out0[head][bi, :, y0, x0].numpy(),
                    out1[head][bi, :, y1, x1].numpy(),
                    (x1, y1),
                    float(weights[bi, ni]),
                )
            )
    return rows


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


@pytest.mark.parametrize("threshold", [0.0, 0.3])
def test_class_loss(threshold):
    out0, out1, m, w, v = _batch()
    cfg = LossConfig(kind="class", confidence_threshold=threshold, moving_classes=[1])
    num = den = 0.0
    for _, l0, l1, _, wi in _rows(out0, out1, m, w, v, "logits"):
        p0 = _softmax(l0)
        label = int(np.argmax(p0))
        if p0[label] < threshold or label == 1:
            continue
        num += wi * -np.log(_softmax(l1)[label])
        den += wi
    got = correspondence_loss(out0, out1, m, w, v, (12, 16), cfg)
    assert den > 0
    assert got.item() == pytest.approx(num / den, rel=1e-6)


def test_class_loss_applies_one_softmax():
    """Target logits that confidently agree with the reference give a loss near 0. A softmax applied
    before the cross-entropy (the reference code's defect) would floor it at log(e + K - 1) - 1 = 0.90
    for K = 5."""
    out0, out1, m, w, v = _batch()
    out0["logits"][:, 2] += 10.0  # the reference says class 2 everywhere; the target agrees, confidently
    out1["logits"] = torch.zeros_like(out1["logits"])
    out1["logits"][:, 2] = 40.0
    got = correspondence_loss(out0, out1, m, w, v, (12, 16), LossConfig(kind="class", moving_classes=[]))
    assert got.item() < 1e-12


def test_class_loss_has_no_gradient_through_reference():
    out0, out1, m, w, v = _batch()
    for o in (out0, out1):
        o["logits"].requires_grad_(True)
    correspondence_loss(out0, out1, m, w, v, (12, 16), LossConfig(kind="class", moving_classes=[])).backward()
    assert out0["logits"].grad is None or out0["logits"].grad.abs().sum() == 0
    assert out1["logits"].grad.abs().sum() > 0


def test_kl_loss():
    out0, out1, m, w, v = _batch()
    num = den = 0.0
    for _, l0, l1, _, wi in _rows(out0, out1, m, w, v, "logits"):
        p, q = _softmax(l0), _softmax(l1)
        num += wi * float(np.sum(p * (np.log(p) - np.log(q))))
        den += wi
    got = correspondence_loss(out0, out1, m, w, v, (12, 16), LossConfig(kind="kl"))
    assert got.item() == pytest.approx(num / den, rel=1e-6)


@pytest.mark.parametrize("kind,head", [("hinge_feature", "features"), ("hinge_logits", "logits")])
@pytest.mark.parametrize("negatives", [False, True])
def test_hinge_losses(kind, head, negatives):
    out0, out1, m, w, v = _batch()
    cfg = LossConfig(kind=kind, use_negatives=negatives, negative_radius=3.0)
    rows = _rows(out0, out1, m, w, v, head)
    num = den = 0.0
    for i, (pair, f0, f1, p1, wi) in enumerate(rows):
        f0, f1 = f0 / np.linalg.norm(f0), f1 / np.linalg.norm(f1)
        loss = max(0.8 - f0 @ f1, 0.0)
        if negatives:
            npair, _, g1, q1, _ = rows[(i + 1) % len(rows)]
            far = npair != pair or math.dist(p1, q1) >= 3.0
            loss += far * max(f0 @ (g1 / np.linalg.norm(g1)) - 0.2, 0.0)
        num += wi * loss
        den += wi
    got = correspondence_loss(out0, out1, m, w, v, (12, 16), cfg)
    assert got.item() == pytest.approx(num / den, rel=1e-6)


def test_contrastive_loss():
    out0, out1, m, w, v = _batch()
    cfg = LossConfig(kind="contrastive", temperature=0.5, negative_radius=4.0)
    rows = _rows(out0, out1, m, w, v, "features")
    num = den = 0.0
    for i, (pair, f0, _f1, p1, wi) in enumerate(rows):
        f0 = f0 / np.linalg.norm(f0)
        logits = []
        for j, (pj, _, g1, q1, _) in enumerate(rows):
            if j == i or pj != pair or math.dist(p1, q1) >= 4.0:
                logits.append(f0 @ (g1 / np.linalg.norm(g1)) / 0.5)
            else:
                logits.append(-np.inf)
        logits = np.array(logits)
        num += wi * -(logits[i] - np.log(np.sum(np.exp(logits))))
        den += wi
    got = correspondence_loss(out0, out1, m, w, v, (12, 16), cfg)
    assert got.item() == pytest.approx(num / den, rel=1e-6)


def test_cluster_loss():
    out0, out1, m, w, v = _batch()
    centroids = torch.randn(4, 8, dtype=torch.float64)
    cfg = LossConfig(kind="cluster", temperature=0.2, num_clusters=4)
    c = centroids.numpy() / np.linalg.norm(centroids.numpy(), axis=1, keepdims=True)
    num = den = 0.0
    for _, f0, f1, _, wi in _rows(out0, out1, m, w, v, "features"):
        s0 = c @ (f0 / np.linalg.norm(f0)) / 0.2
        s1 = c @ (f1 / np.linalg.norm(f1)) / 0.2
        label = int(np.argmax(s0))
        num += wi * (-np.log(_softmax(s0)[label]) - np.log(_softmax(s1)[label]))
        den += wi
    got = correspondence_loss(out0, out1, m, w, v, (12, 16), cfg, centroids=centroids)
    assert got.item() == pytest.approx(num / den, rel=1e-6)


def test_kmeans_recovers_separated_clusters():
    gen = torch.Generator().manual_seed(1)
    centres = torch.eye(4, 6)
    labels = torch.arange(400) % 4
    x = centres[labels] + 0.05 * torch.randn(400, 6, generator=gen)
    cents = kmeans(x, 4, iters=10, seed=3)
    assign = (torch.nn.functional.normalize(x, dim=-1) @ cents.T).argmax(-1)
    # Each true cluster maps to one k-means cluster and no two share one.
    mapping = {int(labels[i]): int(assign[i]) for i in range(400)}
    assert len(set(mapping.values())) == 4
    assert all(mapping[int(labels[i])] == int(assign[i]) for i in range(400))


def test_invalid_matches_are_ignored():
    out0, out1, m, w, v = _batch()
    cfg = LossConfig(kind="kl")
    base = correspondence_loss(out0, out1, m, w, v, (12, 16), cfg)
    m2 = m.clone()
    m2[~v] = 3.0  # garbage at padded slots must not change anything
    assert correspondence_loss(out0, out1, m2, w * 1.0, v, (12, 16), cfg).item() == pytest.approx(
        base.item(), rel=1e-12
    )


@pytest.mark.parametrize("kind", ["class", "kl", "hinge_feature"])
def test_pair_average(kind):
    """pair_average: the weighted mean of each pair, then the plain mean over the pairs with any weight
    (a pair without valid matches does not count), i.e. the mean of the pairs' own losses."""
    out0, out1, m, w, v = _batch(b=3, n=6)
    v[1, 2:] = False  # pair 0 keeps six matches, pair 1 two, pair 2 none
    v[2] = False
    cfg = LossConfig(kind=kind, moving_classes=[], pair_average=True)
    got = correspondence_loss(out0, out1, m, w, v, (12, 16), cfg).item()
    flat = LossConfig(kind=kind, moving_classes=[])
    per_pair = []
    for p in (0, 1):
        only = torch.zeros_like(v)
        only[p] = v[p]
        per_pair.append(correspondence_loss(out0, out1, m, w, only, (12, 16), flat).item())
    assert got == pytest.approx(np.mean(per_pair), rel=1e-6)
    everything = correspondence_loss(out0, out1, m, w, v, (12, 16), flat).item()  # pair 0 weighs 3x more
    assert abs(got - everything) > 1e-3 * abs(everything)


def _tiny_segnet():
    from xseason.learn.models import ModelConfig, build_model

    torch.manual_seed(0)
    return build_model(ModelConfig(num_classes=4, widths=(8, 8, 16), decoder_width=8))


@pytest.mark.parametrize("kind", ["hinge_feature", "contrastive", "cluster"])
def test_feature_losses_act_on_the_classifier_input(kind):
    """The feature losses reach the map the classifier reads (a collapse of it costs the segmentation)
    and nothing of a side head; with the paper's hinge, only through the target image."""
    model = _tiny_segnet()
    seen = []
    model.classifier.register_forward_pre_hook(lambda _m, inp: seen.append(inp[0]) or inp[0].retain_grad())
    images = torch.rand(4, 3, 32, 40)
    outs = model(images)
    out0 = {k: t[:2] for k, t in outs.items()}
    out1 = {k: t[2:] for k, t in outs.items()}
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(2, 30, 4, generator=gen) * torch.tensor([39.0, 31.0, 39.0, 31.0])
    w, v = torch.ones(2, 30), torch.ones(2, 30, dtype=torch.bool)
    centroids = kmeans(outs["features"].detach().permute(0, 2, 3, 1).reshape(-1, 8), 3)
    cfg = LossConfig(kind=kind, num_clusters=3)
    loss = correspondence_loss(out0, out1, m, w, v, (32, 40), cfg, centroids)
    loss.backward()
    grad = seen[0].grad
    assert grad[2:].abs().sum() > 0  # the target images' classifier input
    if kind == "hinge_feature":
        assert grad[:2].abs().sum() == 0  # the reference is detached, as in the paper


def test_constant_target_features_are_not_a_minimum():
    """Against varied reference features, a constant target feature map (collapse) costs the hinge and
    the contrastive loss, and the gradient pushes away from it; aligned features cost ~nothing."""
    out0, out1, m, w, v = _batch(d=8)
    m[..., 2:] = m[..., :2]  # the target image = the reference image: out0 is the aligned target map
    for kind in ("hinge_feature", "contrastive"):
        cfg = LossConfig(kind=kind, temperature=0.1, negative_radius=0.0)
        constant = {"features": torch.ones_like(out1["features"]).requires_grad_(True)}
        collapsed = correspondence_loss(out0, constant, m, w, v, (12, 16), cfg)
        collapsed.backward()
        aligned = correspondence_loss(out0, out0, m, w, v, (12, 16), cfg)
        assert collapsed.item() > 0.5 and constant["features"].grad.abs().sum() > 0
        assert aligned.item() < 0.5 * collapsed.item()
    # InfoNCE on a collapsed map is log(number of candidates), its chance level.
    both = {"features": torch.ones_like(out1["features"])}
    got = correspondence_loss(
        both, both, m, w, v, (12, 16), LossConfig(kind="contrastive", negative_radius=0)
    )
    assert got.item() == pytest.approx(math.log(int(v.sum())), rel=1e-6)


@pytest.mark.parametrize("kind", ["class", "kl", "hinge_feature", "hinge_logits", "contrastive", "cluster"])
def test_losses_on_bf16_autocast_outputs(kind):
    """The trainer's mixed-precision path (forward under bf16 autocast, losses on its outputs), run on
    the CPU: every loss is finite, within 5 % of the float32 value, and back-propagates."""
    model = _tiny_segnet().eval()  # fixed BatchNorm statistics: both precisions see the same network
    images = torch.rand(4, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(0)
    m = torch.rand(2, 30, 4, generator=gen) * torch.tensor([39.0, 31.0, 39.0, 31.0])
    w, v = torch.ones(2, 30), torch.ones(2, 30, dtype=torch.bool)
    cfg = LossConfig(kind=kind, num_clusters=3)
    losses = []
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outs = model(images)
        assert (outs["logits"].dtype == torch.bfloat16) == bf16
        centroids = kmeans(outs["features"].detach().float().permute(0, 2, 3, 1).reshape(-1, 8), 3)
        out0, out1 = ({k: t[s] for k, t in outs.items()} for s in (slice(0, 2), slice(2, 4)))
        losses.append(correspondence_loss(out0, out1, m, w, v, (32, 40), cfg, centroids))
    assert torch.isfinite(losses[1]) and losses[1].item() == pytest.approx(losses[0].item(), rel=0.05)
    losses[1].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
