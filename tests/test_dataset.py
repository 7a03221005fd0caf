"""The torch Dataset: matches stay on the same content through every transform; collate, sampler, workers."""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader
from toy import make_toy_dataset

from xseason.learn.dataset import (
    AugmentConfig,
    CorrespondenceDataset,
    ImageTransform,
    PadCollate,
    PairBatchSampler,
    PairFilter,
    plan_transform,
)
from xseason.learn.losses import sample_at
from xseason.store import StoreConfig, write_dataset

SLOPE = 2.5  # ramp: R = SLOPE * u, G = SLOPE * v for canvas coordinates (u, v)


def _ramp(width: int, height: int, scale: float, ox: float, oy: float) -> np.ndarray:
    """RGB image of the ramp canvas seen at `scale` (image px per canvas px) from offset (ox, oy)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u = (xs + 0.5) / scale - 0.5 + ox
    v = (ys + 0.5) / scale - 0.5 + oy
    return np.clip(np.stack([SLOPE * u, SLOPE * v, np.full_like(u, 128)], -1) + 0.5, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ramp_dataset(tmp_path_factory):
    """Two pairs: (80x60 at scale 1) with (90x75 at scale 1.25), content known at every pixel."""
    root = tmp_path_factory.mktemp("ramp")
    (root / "img").mkdir()
    views = [(80, 60, 1.0, 5.0, 10.0), (90, 75, 1.25, 12.0, 8.0), (70, 50, 0.8, 0.0, 0.0)]
    images = []
    for i, (w, h, k, ox, oy) in enumerate(views):
        cv2.imwrite(str(root / "img" / f"{i}.png"), _ramp(w, h, k, ox, oy)[..., ::-1])
        images.append(
            {
                "image_id": i,
                "image": f"{i}.png",
                "sequence": f"s{i}",
                "condition": ["day", "night", "snow"][i],
                "season": None,
                "daytime": None,
                "weather": None,
                "camera_model": "PINHOLE",
                "width": w,
                "height": h,
                "params": [50.0, 50.0, w / 2, h / 2],
                "registered": False,
                **{c: None for c in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")},
            }
        )
    rng = np.random.default_rng(0)
    u = rng.uniform(14, 60, 400)
    v = rng.uniform(12, 55, 400)
    table = []
    for pair_id, other in ((0, 1), (1, 2)):

        def to_image(view):
            _, _, k, ox, oy = view
            return (u - ox + 0.5) * k - 0.5, (v - oy + 0.5) * k - 0.5

        x0, y0 = to_image(views[0])
        x1, y1 = to_image(views[other])
        table.append(
            pd.DataFrame(
                {
                    "pair_id": pair_id,
                    "x0": x0,
                    "y0": y0,
                    "x1": x1,
                    "y1": y1,
                    "weight": 1.0,
                    "point3d_id": np.arange(400),
                    "dist3d": 0.0,
                    "err0": 0.0,
                    "err1": 0.0,
                }
            )
        )
    pairs = pd.DataFrame(
        {
            "pair_id": [0, 1],
            "image_id0": [0, 0],
            "image_id1": [1, 2],
            "num_matches": [400, 400],
            "overlap": [0.5, 0.5],
            "split": ["train", "test"],
        }
    )
    return write_dataset(
        root / "ds",
        pd.DataFrame(images),
        pairs,
        pd.concat(table),
        config={},
        manifest_checksum=None,
        image_root=root / "img",
        store_config=StoreConfig(coord_step=0, mantissa_bits=23),
    )


def _decode(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Canvas (u, v) read from the ramp colours at image points (bilinear)."""
    h, w = image.shape[-2:]
    rgb = sample_at(image[None].double(), points[None].double(), (h, w))[0]
    return rgb[:, :2] / SLOPE


@pytest.mark.parametrize(
    "augment",
    [
        AugmentConfig(short_side=0, crop=(0, 0)),
        AugmentConfig(short_side=48, crop=(0, 0)),
        AugmentConfig(short_side=45, crop=(40, 32), hflip=0.5, scale_jitter=0.3),
        AugmentConfig(short_side=30, crop=(48, 40), hflip=1.0),  # crop larger than the image: padding
    ],
)
def test_matches_stay_on_the_same_content(ramp_dataset, augment):
    ds = CorrespondenceDataset(ramp_dataset, augment=augment, with_labels=False)
    errors, kept = [], 0
    for seed in range(12):
        for index in range(len(ds)):
            s = ds[(index, seed)]
            m = s["matches"]
            for img in (s["image0"], s["image1"]):
                assert img.shape[0] == 3 and img.dtype == torch.uint8
            # Compare content only away from the outer pixel ring (border clamping, area filter edges).
            h0, w0 = s["image0"].shape[-2:]
            h1, w1 = s["image1"].shape[-2:]
            inner = (
                (m[:, 0] > 1)
                & (m[:, 0] < w0 - 2)
                & (m[:, 1] > 1)
                & (m[:, 1] < h0 - 2)
                & (m[:, 2] > 1)
                & (m[:, 2] < w1 - 2)
                & (m[:, 3] > 1)
                & (m[:, 3] < h1 - 2)
            )
            uv0 = _decode(s["image0"], m[inner, :2])
            uv1 = _decode(s["image1"], m[inner, 2:])
            errors.append((uv0 - uv1).norm(dim=1))
            kept += len(m)
            # All kept matches lie on both output images.
            assert (m[:, 0] >= -0.5).all() and (m[:, 0] < w0 - 0.5).all() and (m[:, 3] < h1 - 0.5).all()
    err = torch.cat(errors)
    assert kept > 0 and len(err) > 0.5 * kept
    # Canvas pixels; quantisation of the 8-bit ramp alone is 0.2 px, area resize of a 0.5x scale ~0.4 px.
    assert err.median() < 0.35, err.median()
    assert torch.quantile(err, 0.99) < 1.0, torch.quantile(err, 0.99)


def test_transform_formulas():
    t = ImageTransform(sx=0.5, sy=0.25, resized=(50, 25), x0=3, y0=2, out=(20, 10), flip=True)
    xy = np.array([[0.0, 0.0], [9.5, 11.5], [99.0, 99.0]])
    x = (xy[:, 0] + 0.5) * 0.5 - 0.5 - 3
    y = (xy[:, 1] + 0.5) * 0.25 - 0.5 - 2
    np.testing.assert_allclose(t.points(xy), np.stack([20 - 1 - x, y], 1))
    # The crop is centred on the chosen match (up to rounding), clamped inside the image.
    cfg = AugmentConfig(short_side=60, crop=(40, 30))
    rng = np.random.default_rng(0)
    t = plan_transform((160, 120), np.array([70.0, 50.0]), cfg, rng)
    c = t.points(np.array([[70.0, 50.0]]))[0]
    assert abs(c[0] - 19.5) <= 0.5 + 1e-9 and abs(c[1] - 14.5) <= 0.5 + 1e-9
    t = plan_transform((160, 120), np.array([1.0, 1.0]), cfg, rng)
    assert (t.x0, t.y0) == (0, 0)


def test_dropped_matches_are_exactly_those_leaving_an_image(ramp_dataset):
    aug = AugmentConfig(short_side=45, crop=(30, 24), max_matches=10_000)
    ds = CorrespondenceDataset(ramp_dataset, augment=aug, with_labels=False)
    store = ds.store
    m = store.matches(0)
    s = ds[(0, 7)]
    rng = np.random.default_rng([0, 0, 7])
    centre = int(rng.integers(400))
    ts = [
        plan_transform(ds._size[i], np.array([m[f"x{k}"][centre], m[f"y{k}"][centre]]), aug, rng)
        for k, i in enumerate((0, 1))
    ]
    p0 = ts[0].points(np.stack([m["x0"], m["y0"]], 1))
    p1 = ts[1].points(np.stack([m["x1"], m["y1"]], 1))
    inside = ((p0 >= -0.5) & (p0 < np.array(aug.crop) - 0.5)).all(1) & (
        (p1 >= -0.5) & (p1 < np.array(aug.crop) - 0.5)
    ).all(1)
    assert 0 < inside.sum() < 400
    assert len(s["matches"]) == inside.sum()
    np.testing.assert_allclose(s["matches"].numpy(), np.concatenate([p0, p1], 1)[inside], atol=1e-4)


def test_collate_pads_to_fixed_length(ramp_dataset):
    ds = CorrespondenceDataset(
        ramp_dataset, augment=AugmentConfig(short_side=45, crop=(30, 24), max_matches=64), with_labels=False
    )
    samples = [ds[(0, 1)], ds[(1, 2)]]
    batch = PadCollate(64)(samples)
    assert batch["matches"].shape == (2, 64, 4) and batch["image0"].shape == (2, 3, 24, 30)
    assert batch["valid"].sum(1).tolist() == [len(s["matches"]) for s in samples]
    assert torch.equal(batch["matches"][1, : len(samples[1]["matches"])], samples[1]["matches"])
    assert batch["pair_id"].tolist() == [0, 1] and batch["condition1"] == ["night", "snow"]
    assert (batch["weights"][~batch["valid"]] == 0).all()


def test_filters(ramp_dataset):
    assert len(CorrespondenceDataset(ramp_dataset, PairFilter(splits=["test"]))) == 1
    assert len(CorrespondenceDataset(ramp_dataset, PairFilter(conditions=["night"]))) == 1
    assert len(CorrespondenceDataset(ramp_dataset, PairFilter(min_matches=401))) == 0


def test_sampler_balances_condition_pairs_and_splits_ranks():
    groups = ["day|night"] * 90 + ["day|snow"] * 10
    sampler = PairBatchSampler(groups, batch_size=8, num_steps=200, seed=3, balance=True)
    counts = Counter(groups[i] for batch in sampler for i, _ in batch)
    assert abs(counts["day|snow"] / 1600 - 0.5) < 0.06
    ranks = [list(PairBatchSampler(groups, 4, 5, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    full = list(PairBatchSampler(groups, 8, 5, seed=3))
    for step in range(5):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(full[step])
    # Unbalanced: epochs are permutations; resuming at a step gives the same batches.
    plain = list(PairBatchSampler(groups, 10, 20, seed=1, balance=False))
    assert sorted(i for b in plain[:10] for i, _ in b) == list(range(100))
    assert list(PairBatchSampler(groups, 10, 20, seed=1, balance=False, start_step=13)) == plain[13:]


def test_workers_give_the_same_batches(tmp_path):
    path = make_toy_dataset(tmp_path, places=4, size=(64, 48), matches_per_pair=50)
    ds = CorrespondenceDataset(
        path, augment=AugmentConfig(short_side=40, crop=(40, 32), hflip=0.5, brightness=0.3, max_matches=32)
    )

    def batches(workers):
        sampler = PairBatchSampler(ds.condition_pairs(), batch_size=2, num_steps=4, seed=5)
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=PadCollate(32), num_workers=workers)
        return list(loader)

    a, b = batches(0), batches(2)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        for key in ("image0", "image1", "label0", "label1", "matches", "valid"):
            assert torch.equal(x[key], y[key])


def test_labels_follow_the_matches(tmp_path):
    """Toy scene: both ends of a match see the same class (labels resized with exact nearest)."""
    path = make_toy_dataset(tmp_path, places=3, size=(96, 72), matches_per_pair=200)
    ds = CorrespondenceDataset(path, augment=AugmentConfig(short_side=36, crop=(40, 32), hflip=0.5))
    agree = total = 0
    for seed in range(6):
        for i in range(len(ds)):
            s = ds[(i, seed)]
            m = s["matches"].round().long()
            l0 = s["label0"][m[:, 1].clamp(0, 31), m[:, 0].clamp(0, 39)]
            l1 = s["label1"][m[:, 3].clamp(0, 31), m[:, 2].clamp(0, 39)]
            assert (l0 != 255).all() and (l1 != 255).all()
            agree += int((l0 == l1).sum())
            total += len(m)
    assert total > 300 and agree / total > 0.93


def test_photometric_jitter_is_per_image(tmp_path):
    path = make_toy_dataset(tmp_path, places=2, size=(64, 48), conditions=("a", "b"), matches_per_pair=50)
    plain = CorrespondenceDataset(path, augment=AugmentConfig(short_side=0, crop=(0, 0)))
    jit = CorrespondenceDataset(path, augment=AugmentConfig(short_side=0, crop=(0, 0), brightness=0.4))
    ratios = []
    for seed in range(4):
        a, b = plain[(0, seed)], jit[(0, seed)]
        ratios.append([float(b[f"image{k}"].float().mean() / a[f"image{k}"].float().mean()) for k in (0, 1)])
    ratios = np.array(ratios)
    assert np.abs(ratios - 1).max() > 0.05  # jitter happened
    assert np.abs(ratios[:, 0] - ratios[:, 1]).max() > 0.02  # and differs between the two images


def test_cache_gives_identical_items_and_keeps_small_resized_arrays(tmp_path):
    path = make_toy_dataset(tmp_path, places=3, size=(96, 72), matches_per_pair=60)
    aug = AugmentConfig(short_side=36, crop=(40, 32), hflip=0.5, brightness=0.3, max_matches=32)
    cached = CorrespondenceDataset(path, augment=aug)
    plain = CorrespondenceDataset(path, augment=aug, cache_mb=0)
    for seed in range(3):
        for i in range(len(cached)):
            a, b = cached[(i, seed)], plain[(i, seed)]
            for key in ("image0", "image1", "label0", "label1", "matches", "weights"):
                assert torch.equal(a[key], b[key]), key
    images = {int(i) for i in cached.image_ids.ravel()}
    assert len(cached.cache) == 2 * len(images) and len(plain.cache) == 0  # one image + one label each
    assert cached.cache.bytes == len(images) * 48 * 36 * 4  # stored at 48x36 (short side 36), not 96x72
    img, lab = cached.view(sorted(images)[0])
    assert img.shape == (36, 48, 3) and lab.shape == (36, 48) and not img.flags.writeable
    cached[(0, 0)]["label0"][:] = 7  # items are copies: the cache is untouched
    assert (cached.view(int(cached.image_ids[0, 0]))[1] != 7).any()


def test_array_cache_drops_least_recently_used():
    from xseason.learn.dataset import ArrayCache

    cache = ArrayCache(max_bytes=300)
    made = []

    def make(k):
        made.append(k)
        return np.zeros(100, np.uint8)

    for k in ("a", "b", "c", "a", "d", "b"):  # d evicts b (a was used again), then b is made again
        cache.get(k, lambda k=k: make(k))
    assert made == ["a", "b", "c", "d", "b"] and cache.bytes == 300 and len(cache) == 3
    assert (
        len(ArrayCache(50).get("big", lambda: np.zeros(100, np.uint8))) == 100
    )  # too big: returned, not kept


def test_max_labels_ignores_255(tmp_path):
    from xseason.learn.dataset import max_labels

    values = [np.array([[0, 2], [255, 1]]), np.full((3, 4), 255), np.array([[7, 255]]), np.zeros((2, 2))]
    paths = []
    for i, lab in enumerate(values):
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), lab.astype(np.uint8))
    assert max_labels(paths, workers=2).tolist() == [2, -1, 7, 0]
    assert max_labels([]).tolist() == []
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(Exception, match="rgb.png: label must be a single-channel uint8 PNG"):
        max_labels([tmp_path / "rgb.png"])


def test_view_batches_group_images_by_size(ramp_dataset):
    """Three images of three sizes at short side 0 (native): three batches, each image as `view` gives it."""
    ds = CorrespondenceDataset(ramp_dataset, augment=AugmentConfig(short_side=0, crop=(0, 0)))
    batches = list(ds.view_batches([2, 0, 1, 0], batch_size=4))
    assert [ids for ids, _ in batches] == [[2], [0, 0], [1]]
    for ids, images in batches:
        assert images.dtype == torch.uint8 and images.shape[1] == 3
        for k, i in enumerate(ids):
            assert np.array_equal(images[k].permute(1, 2, 0).numpy(), ds.view(i)[0])
    assert [ids for ids, _ in ds.view_batches([0, 0, 0], batch_size=2)] == [[0, 0], [0]]
