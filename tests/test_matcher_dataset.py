"""The matcher-training Dataset (issue 18, item 4): K and T of the resized images reproduce the stored
matches, resized pixels map back with `scale`, padding collate, image-root override."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader
from toy import match_frame

from xseason.core.errors import DatasetFormatError
from xseason.core.geometry import Camera, Pose, project_points, rotmat_to_qvec
from xseason.learn.matcher_dataset import MatcherDataset, collate_matcher
from xseason.store import StoreConfig, open_dataset, write_dataset

# (camera, pose, split) of each image; image 3 is not registered, so its train pair is left out
CAMERAS = [
    Camera("PINHOLE", 320, 240, (300.0, 310.0, 161.3, 118.7)),
    Camera("SIMPLE_PINHOLE", 200, 260, (220.0, 99.2, 131.6)),  # portrait
    Camera("PINHOLE", 240, 180, (250.0, 245.0, 120.0, 90.0)),
    Camera("PINHOLE", 240, 180, (250.0, 245.0, 120.0, 90.0)),
    Camera("PINHOLE", 300, 200, (280.0, 280.0, 150.5, 99.5)),
    Camera("SIMPLE_RADIAL", 300, 200, (270.0, 151.0, 101.0, 0.0)),  # distortion-free: K stays exact
]
PAIRS = [(0, 1, "train"), (0, 2, "train"), (0, 3, "train"), (4, 5, "test")]


def _pose(yaw_deg: float, centre) -> Pose:
    a = np.radians(yaw_deg)
    R = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    return Pose(R, -R @ np.asarray(centre, float))


POSES = [_pose(0, (0, 0, 0)), _pose(8, (0.6, 0.1, 0.2)), _pose(-6, (-0.5, -0.2, 0.4))]
POSES += [POSES[2], _pose(3, (0.1, 0, 0)), _pose(-4, (0.9, 0.2, -0.3))]


def make_geometric_dataset(root: Path, seed: int = 0) -> tuple[Path, np.ndarray]:
    """Images of random texture and the exact projections of random world points as matches (stored
    bit-exactly); returns the dataset folder and the world points (row = point3d_id)."""
    rng = np.random.default_rng(seed)
    points = np.c_[rng.uniform(-2, 2, (400, 2)), rng.uniform(4, 8, 400)]
    (root / "images").mkdir(parents=True)
    rows = []
    for k, (cam, pose) in enumerate(zip(CAMERAS, POSES)):
        cv2.imwrite(
            str(root / "images" / f"{k}.png"), rng.integers(0, 256, (cam.height, cam.width, 3), np.uint8)
        )
        rows.append(
            {
                "image_id": k,
                "image": f"{k}.png",
                "sequence": f"s{k}",
                "condition": "winter" if k % 2 else "summer",
                **{tag: None for tag in ("season", "daytime", "weather")},
                "camera_model": cam.model,
                "width": cam.width,
                "height": cam.height,
                "params": list(cam.params),
                "registered": k != 3,
                **dict(zip(["qw", "qx", "qy", "qz", "tx", "ty", "tz"], [*rotmat_to_qvec(pose.R), *pose.t])),
            }
        )
    matches, counts = [], []
    for pair_id, (a, b, _) in enumerate(PAIRS):
        (xy0, _), (xy1, _) = (project_points(CAMERAS[k], POSES[k], points) for k in (a, b))
        inside = np.flatnonzero(
            np.all((xy0 > -0.5) & (xy0 < [CAMERAS[a].width - 0.5, CAMERAS[a].height - 0.5]), 1)
            & np.all((xy1 > -0.5) & (xy1 < [CAMERAS[b].width - 0.5, CAMERAS[b].height - 0.5]), 1)
        )
        counts.append(len(inside))
        matches.append(
            match_frame(pair_id, xy0[inside], xy1[inside], inside, weight=rng.uniform(0.5, 1, len(inside)))
        )
    pairs = pd.DataFrame(
        {
            "pair_id": np.arange(len(PAIRS)),
            "image_id0": [a for a, _, _ in PAIRS],
            "image_id1": [b for _, b, _ in PAIRS],
            "num_matches": counts,
            "overlap": 0.5,
            "split": [s for _, _, s in PAIRS],
        }
    )
    ds = write_dataset(
        root / "ds",
        pd.DataFrame(rows),
        pairs,
        pd.concat(matches),
        config={},
        manifest_checksum=None,
        image_root=root / "images",
        store_config=StoreConfig(coord_step=0, mantissa_bits=23),
    )
    return ds, points


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_geometric_dataset(tmp_path_factory.mktemp("matcher"))


def _project(K: np.ndarray, cam_points: np.ndarray) -> np.ndarray:
    uvw = cam_points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


@pytest.mark.parametrize(("resize", "divisible_by"), [(None, 1), (128, 1), (640, 1), (100, 8), (None, 16)])
@pytest.mark.parametrize("split", ["train", "test"])
def test_K_and_T_reproduce_the_stored_matches(scene, split, resize, divisible_by):
    ds_path, points = scene
    ds = MatcherDataset(ds_path, split=split, resize=resize, divisible_by=divisible_by)
    store = open_dataset(ds_path)
    for item in ds:
        ids = store.matches(item["pair_id"])["point3d_id"]
        assert len(ids) >= 50
        T0 = POSES[item["image_id0"]].matrix()
        cam0 = points[ids] @ T0[:3, :3].T + T0[:3, 3]  # the points in camera 0
        T = item["T_0to1"].numpy()
        cam1 = cam0 @ T[:3, :3].T + T[:3, 3]
        err0 = np.abs(_project(item["K0"].numpy(), cam0) - item["kpts0"].numpy()).max()
        err1 = np.abs(_project(item["K1"].numpy(), cam1) - item["kpts1"].numpy()).max()
        assert max(err0, err1) < 1e-3
        # the epipolar constraint x1^T F x0 = 0, as distance to the line in resized pixels
        t, R = T[:3, 3], T[:3, :3]
        tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
        F = np.linalg.inv(item["K1"].numpy()).T @ tx @ R @ np.linalg.inv(item["K0"].numpy())
        x0, x1 = (np.c_[item[k].numpy(), np.ones(len(ids))] for k in ("kpts0", "kpts1"))
        lines = x0 @ F.T
        assert np.abs((x1 * lines).sum(1) / np.linalg.norm(lines[:, :2], axis=1)).max() < 1e-3


def test_only_registered_pairs_of_the_split(scene, caplog):
    assert MatcherDataset(scene[0], split="train").pair_ids.tolist() == [0, 1]  # pair 2: image 3 unposed
    assert "distortion" not in caplog.text
    assert MatcherDataset(scene[0], split="test").pair_ids.tolist() == [3]
    assert "camera models SIMPLE_RADIAL: K is their pinhole part" in caplog.text
    assert MatcherDataset(scene[0], split=None).pair_ids.tolist() == [0, 1, 3]
    with pytest.raises(DatasetFormatError, match="split 'val'"):
        MatcherDataset(scene[0], split="val")


def test_resized_pixels_map_back_with_scale(scene):
    ds_path, _ = scene
    store = open_dataset(ds_path)
    for item in MatcherDataset(ds_path, split=None, resize=128):
        m = store.matches(item["pair_id"])
        for side in (0, 1):
            cam = CAMERAS[item[f"image_id{side}"]]
            h, w = item[f"size{side}"].tolist()
            assert max(h, w) == 128 and item[f"image{side}"].shape == (1, h, w)
            assert item[f"original_size{side}"].tolist() == [cam.height, cam.width]
            assert np.allclose(
                item[f"scale{side}"].numpy(), [cam.width / w, cam.height / h], rtol=0, atol=1e-12
            )
            original = (item[f"kpts{side}"].double() + 0.5) * item[f"scale{side}"] - 0.5
            stored = np.c_[m[f"x{side}"], m[f"y{side}"]]
            assert np.abs(original.numpy() - stored).max() < 1e-4


def test_full_resolution_is_the_file(scene):
    ds_path, _ = scene
    store = open_dataset(ds_path)
    item = MatcherDataset(ds_path, resize=None)[0]
    m = store.matches(item["pair_id"])
    assert item["scale0"].tolist() == [1.0, 1.0] and item["scale1"].tolist() == [1.0, 1.0]
    grey = cv2.cvtColor(cv2.imread(str(store.image_path(item["image_id1"]))), cv2.COLOR_BGR2GRAY)
    assert torch.equal(item["image1"][0], torch.from_numpy(grey.astype(np.float32) / 255))
    assert np.array_equal(item["kpts1"].numpy(), np.c_[m["x1"], m["y1"]])
    assert np.allclose(item["K0"].numpy(), CAMERAS[0].calibration_matrix(), rtol=0, atol=1e-12)
    assert item["K0"][0, 2] == pytest.approx(161.3 - 0.5)  # COLMAP's cx - 0.5


def test_sides_divisible_and_colour(scene):
    """`divisible_by=8`: every side a multiple of 8 near the aspect-kept size (e.g. the portrait
    200x260 image at longer side 100: 77x100 -> 80x96, a tie rounded to even); `color=True`: RGB of
    the same size, whose grey conversion is the grey item."""
    ds_path, _ = scene
    grey = MatcherDataset(ds_path, split=None, resize=100, divisible_by=8)
    rgb = MatcherDataset(ds_path, split=None, resize=100, divisible_by=8, color=True)
    for a, b in zip(grey, rgb):
        for side in (0, 1):
            h, w = a[f"size{side}"].tolist()
            assert h % 8 == 0 and w % 8 == 0 and a[f"image{side}"].shape == (1, h, w)
            H, W = a[f"original_size{side}"].tolist()
            assert abs(w - 100 * W / max(H, W)) <= 4 and abs(h - 100 * H / max(H, W)) <= 4
            assert b[f"image{side}"].shape == (3, h, w)
            weights = torch.tensor([0.299, 0.587, 0.114])[:, None, None]
            assert (b[f"image{side}"] * weights).sum(0).sub(a[f"image{side}"][0]).abs().max() < 2 / 255
    assert grey[0]["size1"].tolist() == [96, 80]  # image 1: 200x260 (W x H)


def test_T_1to0_inverts_T_0to1(scene):
    for item in MatcherDataset(scene[0], split=None):
        T, T_inv = item["T_0to1"].numpy(), item["T_1to0"].numpy()
        assert np.abs(T @ T_inv - np.eye(4)).max() < 1e-12
        expected = POSES[item["image_id1"]].matrix() @ np.linalg.inv(POSES[item["image_id0"]].matrix())
        assert np.abs(T - expected).max() < 1e-9


def test_image_root_override_finds_moved_images(tmp_path):
    ds_path, _ = make_geometric_dataset(tmp_path / "a")
    before = MatcherDataset(ds_path, resize=64)[1]
    shutil.move(tmp_path / "a" / "images", tmp_path / "moved")
    with pytest.raises(DatasetFormatError, match="missing or not a readable image"):
        MatcherDataset(ds_path, resize=64)[1]
    after = MatcherDataset(ds_path, resize=64, image_root=tmp_path / "moved")[1]
    assert torch.equal(before["image0"], after["image0"]) and torch.equal(before["image1"], after["image1"])
    with pytest.raises(DatasetFormatError, match="not a folder"):
        MatcherDataset(ds_path, image_root=tmp_path / "nowhere")


def test_collate_pads_images_and_matches(scene):
    ds = MatcherDataset(scene[0], split=None, resize=96)
    items = [ds[0], ds[2]]  # image 1: 74x96 portrait, 96x64 landscape
    batch = collate_matcher(items)
    hmax = max(it["image1"].shape[1] for it in items)
    wmax = max(it["image1"].shape[2] for it in items)
    assert batch["image1"].shape == (2, 1, hmax, wmax)
    n = [len(it["weights"]) for it in items]
    assert batch["kpts0"].shape == (2, max(n), 2) and n[0] != n[1]
    assert batch["valid"].sum(1).tolist() == n
    for i, it in enumerate(items):
        h, w = it["image1"].shape[1:]
        assert torch.equal(batch["image1"][i, :, :h, :w], it["image1"])
        assert batch["image1"][i, :, h:].abs().sum() == 0 and batch["image1"][i, :, :, w:].abs().sum() == 0
        assert batch["mask1"][i].sum() == h * w and batch["mask1"][i, :h, :w].all()
        assert torch.equal(batch["kpts1"][i, : n[i]], it["kpts1"])
        assert torch.equal(batch["weights"][i, : n[i]], it["weights"])
        assert batch["kpts1"][i, n[i] :].abs().sum() == 0 and batch["weights"][i, n[i] :].sum() == 0
        for key in ("K0", "K1", "T_0to1", "T_1to0", "scale0", "scale1", "original_size0", "size1"):
            assert torch.equal(batch[key][i], it[key])
    assert batch["pair_id"].tolist() == [0, 3]
    assert batch["condition1"] == ["winter", "winter"]


def test_dataloader_batches_with_max_matches(scene):
    ds = MatcherDataset(scene[0], split=None, resize=64, max_matches=20, seed=3)
    full = MatcherDataset(scene[0], split=None, resize=64)
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate_matcher)))
    assert batch["image0"].shape[0] == 2 and batch["K0"].shape == (2, 3, 3)
    assert batch["T_0to1"].dtype == torch.float64 and batch["valid"].sum(1).tolist() == [20, 20]
    for i in range(2):  # a subset of the pair's matches, in order, the same on every read
        whole = full[i]["kpts0"].numpy()
        rows = [np.flatnonzero((whole == p).all(1))[0] for p in batch["kpts0"][i].numpy()]
        assert rows == sorted(set(rows))
        assert torch.equal(ds[i]["kpts0"], batch["kpts0"][i])


def test_store_gives_camera_and_pose(scene):
    """`CorrespondenceStore.camera` / `.pose`: the stored intrinsics and world-to-camera pose of an image
    (None for an unregistered one)."""
    store = open_dataset(scene[0])
    for k in (0, 1, 5):
        assert store.camera(k).model == CAMERAS[k].model
        assert np.allclose(store.camera(k).calibration_matrix(), CAMERAS[k].calibration_matrix(), atol=1e-9)
        assert np.allclose(store.pose(k).matrix(), POSES[k].matrix(), atol=1e-9)
    assert store.pose(3) is None
    with pytest.raises(DatasetFormatError, match="no image_id 17"):
        store.camera(17)
