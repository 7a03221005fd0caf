"""A small generated correspondence dataset with exact matches and labels, for tests and benchmarks,
and the small pinhole camera `CAMERA` (W x H pixels) of the geometric tests.

Benchmarks import it with the tests folder on `sys.path` (see benchmarks/bench_train.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from xseason.core.geometry import Camera
from xseason.learn.train import TrainConfig
from xseason.store import StoreConfig, write_dataset

W, H = 160, 120
CAMERA = Camera("PINHOLE", W, H, (110.0, 110.0, W / 2, H / 2))


def make_toy_dataset(
    root: str | Path,
    places: int = 12,
    size: tuple[int, int] = (160, 120),
    conditions: Sequence[str] = ("day", "night"),
    num_classes: int = 4,
    matches_per_pair: int = 300,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Path:
    """A small generated dataset with exact matches and labels, for tests, benchmarks and smoke runs.

    Every place is a label map of blobs (class 0 above, 1 below the horizon, 2..K-1 blobs) seen
    through windows of `size` at random offsets, one image per condition; each class has a
    textured colour per condition (conditions differ strongly in colour). Pairs link the first
    condition (reference) to every other one; matches are random sub-pixel points of the
    overlap (exact: the views differ by a translation). Images and labels go to `root/images`,
    the dataset to `root/dataset` (returned), with the optional `label` column in images.parquet.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    w, h = size
    margin = max(w, h) // 4
    palettes = rng.integers(20, 236, size=(len(conditions), num_classes, 3))
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, pairs, matches = [], [], []
    n_test = max(1, round(places * test_fraction))
    for place in range(places):
        lab = _toy_labels(rng, (h + 2 * margin, w + 2 * margin), num_classes)
        offsets = []
        for c, cond in enumerate(conditions):
            ox, oy = (int(v) for v in rng.integers(0, 2 * margin + 1, size=2))
            offsets.append((ox, oy))
            window = lab[oy : oy + h, ox : ox + w]
            texture = (
                rng.normal(0, 12, size=(h, w, 1)) + np.sin(np.arange(w) * (0.3 + 0.2 * c))[None, :, None] * 10
            )
            img = np.clip(palettes[c][window] + texture, 0, 255).astype(np.uint8)
            name = f"p{place:03d}_{cond}.png"
            cv2.imwrite(str(img_dir / name), img[..., ::-1])
            cv2.imwrite(str(img_dir / f"p{place:03d}_{cond}_label.png"), window.astype(np.uint8))
            images.append(
                {
                    "image_id": len(images),
                    "image": name,
                    "sequence": f"{cond}-run",
                    "condition": cond,
                    "season": None,
                    "daytime": cond,
                    "weather": None,
                    "camera_model": "PINHOLE",
                    "width": w,
                    "height": h,
                    "params": [float(w), float(w), w / 2, h / 2],
                    "registered": False,
                    **{k: None for k in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")},
                    "label": f"p{place:03d}_{cond}_label.png",
                }
            )
        ref = len(images) - len(conditions)
        for c in range(1, len(conditions)):
            dx, dy = offsets[0][0] - offsets[c][0], offsets[0][1] - offsets[c][1]  # x1 = x0 + (dx, dy)
            x0 = rng.uniform(max(0, -dx), min(w, w - dx) - 1, matches_per_pair)
            y0 = rng.uniform(max(0, -dy), min(h, h - dy) - 1, matches_per_pair)
            pair_id = len(pairs)
            matches.append(
                {
                    "pair_id": np.full(matches_per_pair, pair_id, np.int64),
                    "x0": x0.astype(np.float32),
                    "y0": y0.astype(np.float32),
                    "x1": (x0 + dx).astype(np.float32),
                    "y1": (y0 + dy).astype(np.float32),
                    "weight": np.ones(matches_per_pair, np.float32),
                    "point3d_id": np.arange(matches_per_pair, dtype=np.int64),
                    **{k: np.zeros(matches_per_pair, np.float32) for k in ("dist3d", "err0", "err1")},
                }
            )
            overlap = (w - abs(dx)) * (h - abs(dy)) / (w * h)
            pairs.append(
                {
                    "pair_id": pair_id,
                    "image_id0": ref,
                    "image_id1": ref + c,
                    "num_matches": matches_per_pair,
                    "overlap": overlap,
                    "split": "test" if place >= places - n_test else "train",
                }
            )
    table = {k: np.concatenate([m[k] for m in matches]) for k in matches[0]}
    return write_dataset(
        root / "dataset",
        pd.DataFrame(images),
        pd.DataFrame(pairs),
        table,
        config={"toy": {"places": places, "size": list(size), "seed": seed}},
        manifest_checksum=None,
        image_root=img_dir,
        store_config=StoreConfig(coord_step=0, mantissa_bits=23),
    )


def match_frame(
    pair_id: int, xy0: np.ndarray, xy1: np.ndarray, point3d_id: np.ndarray, **columns
) -> pd.DataFrame:
    """The matches table of one pair from (N, 2) pixels in each image; `columns`: weight, dist3d, err0,
    err1 (default: weight 1, exact matches of one shared point)."""
    base = {"weight": 1.0, "dist3d": 0.0, "err0": 0.0, "err1": 0.0}
    xy = {"x0": xy0[:, 0], "y0": xy0[:, 1], "x1": xy1[:, 0], "y1": xy1[:, 1]}
    return pd.DataFrame({"pair_id": pair_id, **xy, "point3d_id": point3d_id, **(base | columns)})


def toy_train_config(dataset: Path, **kw) -> TrainConfig:
    """A trainer config small enough for a test on the toy dataset (a few seconds); `kw` overrides."""
    from xseason.learn.dataset import AugmentConfig
    from xseason.learn.models import ModelConfig
    from xseason.learn.train import DataConfig

    data = DataConfig(
        num_workers=0,
        augment=AugmentConfig(short_side=40, crop=(48, 40), hflip=0.5, brightness=0.2, max_matches=32),
    )
    base = dict(
        dataset=dataset,
        model=ModelConfig(num_classes=4, widths=(8, 8, 16), decoder_width=8),
        data=data,
        steps=6,
        batch_size=2,
        corr_start_step=2,
        checkpoint_every=3,
        log_every=1,
        progress=False,
        threads=1,
    )
    return TrainConfig(**(base | kw))


def _toy_labels(rng: np.random.Generator, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """Class 0 above a wavy horizon, 1 below it, blobs of the other classes on top."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    horizon = h * rng.uniform(0.35, 0.55) + 6 * np.sin(xs / rng.uniform(8, 20))
    lab = (ys > horizon).astype(np.int64)
    for k in range(2, num_classes):
        for _ in range(int(rng.integers(2, 5))):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 18)
            lab[(xs - cx) ** 2 + ((ys - cy) * 1.3) ** 2 < r * r] = k
    return lab
