"""Image-disjoint splits by place (xseason/matching/splits.py): one split per image, pairs inside one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from toy import CAMERA

from xseason.core.errors import ConfigError, DatasetFormatError
from xseason.core.geometry import Pose
from xseason.matching.association import build_point_table
from xseason.matching.splits import (
    MIN_POINTS,
    SPLITS,
    RouteAxis,
    assign_splits,
    block_splits,
    check_disjoint,
    image_views,
    pair_splits,
)
from xseason.matching.views import ImageView
from xseason.pipeline.build import load_build_config, run_build
from xseason.store import open_dataset

X_AXIS = RouteAxis(np.zeros(3), np.array([1.0, 0.0, 0.0]))


def _route(n: int = 400, width: float = 0.0, seed: int = 0) -> np.ndarray:
    """`image_views` rows of n images placed uniformly on 0..100, viewing +-width around their place."""
    place = np.sort(np.random.default_rng(seed).uniform(0, 100, n))
    return np.c_[place - width, place, place + width]


def _blocks(x: np.ndarray, blocks: int, views: np.ndarray) -> np.ndarray:
    lo, hi = views[:, 1].min(), views[:, 1].max()
    return np.clip(((x - lo) / (hi - lo) * blocks).astype(int), 0, blocks - 1)


def test_whole_blocks_of_route_per_split():
    views = _route()
    split = assign_splits(views, ["s"] * len(views), 10, (0.8, 0.1, 0.1), 0)
    block = _blocks(views[:, 1], 10, views)
    assert all(len(set(split[block == b])) == 1 for b in range(10))  # one split per stretch of route
    per_block = pd.Series(split).groupby(block).first()
    assert per_block.value_counts().to_dict() == {"train": 8, "val": 1, "test": 1}
    assert (np.sort(block_splits(20, (0.8, 0.1, 0.1), 3)) == np.repeat([0, 1, 2], [16, 2, 2])).all()
    assert not (block_splits(20, (0.8, 0.1, 0.1), 3) == block_splits(20, (0.8, 0.1, 0.1), 4)).all()
    assert (block_splits(5, (0.9, 0.05, 0.05), 0) > 0).sum() == 2  # a non-empty share gets one block at least


def test_buffer_keeps_held_out_places_unseen():
    """No image sees a block of a split held out further than its own: a train image no val or test
    block, a val image no test block; images that would are in no split, test images see anything."""
    views = _route(width=4.0)
    split = assign_splits(views, ["s"] * len(views), 10, (0.6, 0.2, 0.2), 1)
    rank = block_splits(10, (0.6, 0.2, 0.2), 1)  # index into SPLITS of each block
    start, own, end = (_blocks(views[:, c], 10, views) for c in range(3))
    furthest = np.array([rank[a : b + 1].max() for a, b in zip(start, end, strict=True)])
    assert (split == np.where(furthest > rank[own], None, np.array(SPLITS, object)[rank[own]])).all()
    assert pd.isna(split).sum() > 20 and (rank[own][pd.isna(split)] < 2).all()  # test images are kept
    no_buffer = assign_splits(views[:, [1, 1, 1]], ["s"] * len(views), 10, (0.6, 0.2, 0.2), 1)
    kept = pd.notna(split)
    assert pd.notna(no_buffer).all() and (no_buffer[kept] == split[kept]).all()


def test_test_sequences_are_test_wherever_they_are():
    views = _route(n=200)
    sequences = np.where(np.arange(200) % 4 == 0, "held-out", "drive")
    views[5] = np.nan  # not registered
    split = assign_splits(views, sequences, 10, (0.8, 0.1, 0.1), 0, test_sequences=["held-out"])
    plain = assign_splits(views, sequences, 10, (0.8, 0.1, 0.1), 0)
    held = (sequences == "held-out") & np.isfinite(views[:, 1])
    assert (split[held] == "test").all() and (split[~held] == plain[~held]).all()
    assert split[5] is None and (plain[held] != "test").sum() > 30
    with pytest.raises(ConfigError, match="no sequence 'nope'; the sequences: drive, held-out"):
        assign_splits(views, sequences, 10, (0.8, 0.1, 0.1), 0, test_sequences=["nope"])


def _look(x: float) -> Pose:
    """Camera at (x, 0, 1.6) looking along +x (image y down)."""
    R = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    return Pose(R, -R @ np.array([x, 0.0, 1.6]))


def test_image_views_are_quantiles_of_the_observed_points():
    """Place = median position of the points an image observes, view = its quantiles 0.5 -+ buffer;
    with fewer than MIN_POINTS points, the camera centre plus the optical axis times the scene's depths."""
    rng = np.random.default_rng(0)
    centres = [0.0, 10.0, 20.0, 30.0, 40.0]
    views = [ImageView(f"{k}.png", "s", "c", CAMERA, _look(x)) for k, x in enumerate(centres)]
    views[3] = ImageView("3.png", "s", "c", CAMERA, None)
    xyz, obs_image, obs_point, obs_xy = [], [], [], []
    for k, count in enumerate([200, 150, 300, 50, MIN_POINTS - 1]):
        ahead = rng.uniform(3, 30, count)
        X = np.c_[centres[k] + ahead, ahead * rng.uniform(-0.5, 0.5, count), rng.uniform(0, 3, count)]
        uv = CAMERA.project(_look(centres[k]).transform(X))
        xyz.append(X)
        obs_image.append(np.full(count, k))
        obs_point.append(np.arange(count) + sum(len(x) for x in xyz[:-1]))
        obs_xy.append(uv)
    c = np.concatenate
    n = len(c(xyz))
    table = build_point_table(views, c(xyz), ["s"] * n, np.arange(n), c(obs_image), c(obs_point), c(obs_xy))
    got = image_views(table, X_AXIS, max_reproj_error=1.0, buffer=0.45)
    for k in range(3):
        want = np.quantile(xyz[k][:, 0], [0.05, 0.5, 0.95])
        np.testing.assert_allclose(got[k], want, atol=1e-9)
    assert np.isnan(got[3]).all()  # not registered
    depth = np.quantile(table.depth[table.seen], [0.05, 0.5, 0.95])
    np.testing.assert_allclose(got[4], 40.0 + depth)  # too few points: along its optical axis


def test_pairs_take_their_images_split():
    image_split = np.array(["train", "train", "test", None, "val"], dtype=object)
    split = pair_splits(image_split, np.array([0, 0, 2, 3, 4]), np.array([1, 2, 2, 1, 3]))
    assert split.tolist() == ["train", None, "test", None, None]


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    images = pd.DataFrame(
        {
            "image_id": np.arange(5),
            "image": [f"{k}.png" for k in range(5)],
            "split": ["train"] * 2 + ["test"] * 3,
        }
    )
    pairs = pd.DataFrame(
        {
            "pair_id": [0, 1, 2],
            "image_id0": [0, 2, 3],
            "image_id1": [1, 3, 4],
            "split": ["train", "test", "test"],
        }
    )
    return images, pairs


def test_check_disjoint_names_the_offending_image():
    images, pairs = _tables()
    check_disjoint(images, pairs)
    check_disjoint(images.drop(columns="split"), pairs)
    mixed = pairs.assign(image_id1=[1, 3, 1])
    with pytest.raises(DatasetFormatError, match=r"image 1 \(1.png\) is in test and train pairs \(1 image"):
        check_disjoint(images.drop(columns="split"), mixed)
    with pytest.raises(DatasetFormatError, match=r"pair 2 is test but its image 4 \(4.png\) is in no split"):
        check_disjoint(images.assign(split=["train"] * 2 + ["test"] * 2 + [None]), pairs)
    with pytest.raises(DatasetFormatError, match=r"pair 0 is train but its image 0 \(0.png\) is val"):
        check_disjoint(images.assign(split=["val"] + ["train"] + ["test"] * 3), pairs)
    with pytest.raises(DatasetFormatError, match="column 'split' has 'dev'"):
        check_disjoint(images.assign(split="dev"), pairs)


def test_a_build_writes_image_disjoint_splits(two_condition_scene, tmp_path):
    """The tiny scene's two conditions, built: every image in one split (the store's `split` column)
    and in pairs of that split only; dataset.json counts them."""
    cfg = load_build_config(overrides=["correspondences.split_blocks=5"])
    run_build(two_condition_scene / "m2.csv", tmp_path / "ds", cfg, progress=False)
    store = open_dataset(tmp_path / "ds")
    images, pairs = store.images, store.pairs
    check_disjoint(images, pairs)
    split = images.set_index("image_id")["split"]
    assert (split[pairs["image_id0"]].to_numpy() == pairs["split"]).all()
    assert (split[pairs["image_id1"]].to_numpy() == pairs["split"]).all()
    per_image = pd.concat(
        [
            pairs[["image_id0", "split"]].set_axis(["image_id", "split"], axis=1),
            pairs[["image_id1", "split"]].set_axis(["image_id", "split"], axis=1),
        ]
    )
    assert (per_image.groupby("image_id")["split"].nunique() == 1).all()
    counts = json.loads((tmp_path / "ds" / "dataset.json").read_text())["splits"]
    assert counts["pairs"] == pairs["split"].value_counts().reindex(SPLITS, fill_value=0).to_dict()
    assert sum(counts["images"].values()) == len(images) == 16 and split.notna().sum() == 16
    assert len(pairs) >= 5 and counts["dropped_pairs"]["no_split"] == 0  # no buffer by default
    assert counts["dropped_pairs"]["two_splits"] > 0  # measured: 30 of 56 pairs straddle two splits
