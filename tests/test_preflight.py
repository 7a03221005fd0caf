"""Pre-flight checks (xseason.inputs.images) and the feature stage's downscaling of large images."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest
from scipy.spatial import cKDTree

from xseason.core.errors import OutputError
from xseason.inputs.images import (
    BYTES_PER_KEYPOINT,
    MARGIN_BYTES,
    check_free_space,
    check_writable,
    estimate_build_bytes,
    preflight_images,
)
from xseason.inputs.manifest import read_manifest, write_manifest
from xseason.sfm.config import FeatureConfig
from xseason.sfm.features import _image_features, _write_features


def _texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Images of three cameras, good and bad ones, and their manifest (`bad` names the bad ones)."""

    def image(name: str, width: int = 64, height: int = 48) -> str:
        cv2.imwrite(str(tmp_path / name), _texture(width, height, len(name)))
        return name

    good = [image("a0.png"), image("a1.jpg"), image("a2.png"), image("b1.png"), image("b2.png")]
    cv2.imwrite(str(tmp_path / "mask_ok.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(tmp_path / "mask_small.png"), np.zeros((24, 32), np.uint8))
    cv2.imwrite(str(tmp_path / "mask_all.png"), np.full((48, 64), 255, np.uint8))
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image, a text file renamed .jpg\n")
    png = (tmp_path / image("trunc.png")).read_bytes()
    (tmp_path / "trunc.png").write_bytes(png[: len(png) // 2])
    jpg = (tmp_path / image("trunc.jpg")).read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jpg[: len(jpg) // 2])
    rows = [
        dict(image="a0.png", mask="mask_ok.png"),
        dict(image="a1.jpg"),
        dict(image="zero.jpg"),
        dict(image="text.jpg"),
        dict(image="trunc.png"),
        dict(image="trunc.jpg"),
        dict(image="missing.png"),
        dict(image=image("tiny.png", 8, 8)),
        dict(image=image("bigger.png", 128, 96)),  # over the test's max_pixels
        dict(image=image("wrong_mask.png"), mask="mask_small.png"),
        dict(image=image("all_masked.png"), mask="mask_all.png"),
        dict(image="a2.png", mask="mask_ok.png"),
        # camera b: its first image has another size than the other two
        dict(image=image("b0_odd.png", 80, 60), camera="b"),
        dict(image="b1.png", camera="b"),
        dict(image="b2.png", camera="b"),
        # camera c: intrinsics of a 640x480 camera, principal point (320, 240) outside its 64x48 images
        dict(image=image("c0.png"), camera="c", camera_model="PINHOLE", camera_params="500 500 320 240"),
    ]
    write_manifest(tmp_path / "manifest.csv", [dict(sequence="s", condition="day", **r) for r in rows])
    (tmp_path / "good.txt").write_text("\n".join(good))
    return tmp_path


def test_every_bad_image_is_named_at_once(folder: Path):
    manifest = read_manifest(folder / "manifest.csv", check_files=False)
    checks = preflight_images(manifest, max_pixels=10_000, min_side=32)
    good = set((folder / "good.txt").read_text().split())
    bad = {r.image for r in manifest.images} - good
    assert set(checks.problems) == bad and len(bad) == 11
    reasons = checks.problems
    assert "empty file" in reasons["zero.jpg"]
    assert all("cannot decode" in reasons[name] for name in ("text.jpg", "trunc.png", "trunc.jpg"))
    assert "No such file" in reasons["missing.png"]
    assert "8x8" in reasons["tiny.png"]
    assert "128x96" in reasons["bigger.png"]
    assert "mask_small.png is 32x24" in reasons["wrong_mask.png"]
    assert "excludes the whole image" in reasons["all_masked.png"]
    assert "2 other image(s) of camera 'b' are 64x48" in reasons["b0_odd.png"]
    assert "principal point (320, 240)" in reasons["c0.png"]
    message = checks.message()
    assert message.startswith("11 image(s)") and all(name in message for name in bad)
    assert checks.camera_sizes == {"s": (64, 48), "b": (64, 48)}
    assert checks.sizes["b0_odd.png"] == (80, 60) and checks.sizes["a1.jpg"] == (64, 48)
    assert "zero.jpg" not in checks.sizes


def test_good_images_pass(folder: Path):
    good = (folder / "good.txt").read_text().split()
    rows = [dict(image=name, sequence="s", condition="day", camera=name[0]) for name in good]
    write_manifest(folder / "good.csv", rows)
    checks = preflight_images(read_manifest(folder / "good.csv"))
    assert checks.problems == {} and checks.message() == ""
    assert checks.camera_sizes == {"a": (64, 48), "b": (64, 48)}


def test_real_jpegs_are_not_flagged(shared_data: Path, tmp_path: Path):
    """Real camera JPEGs (EXIF, thumbnails) pass."""
    names = sorted(p for p in shared_data.rglob("*.jpg"))[:20]
    assert names
    images = [str(p.relative_to(shared_data)) for p in names]
    rows = [dict(image=name, sequence="s", condition="c", camera=name) for name in images]  # sizes differ
    write_manifest(tmp_path / "real.csv", rows)
    checks = preflight_images(read_manifest(tmp_path / "real.csv", image_root=shared_data))
    assert checks.problems == {}


def test_check_writable(tmp_path: Path):
    check_writable(tmp_path / "new" / "out")  # made later, under a writable parent
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a folder"):
        check_writable(tmp_path / "file" / "out")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:
        pytest.skip("running as root: a 0o555 folder is still writable")
    with pytest.raises(OutputError, match="cannot write in"):
        check_writable(locked / "out")


def test_free_space_and_estimate(tmp_path: Path):
    check_free_space(tmp_path / "out", 1)
    with pytest.raises(OutputError, match="GiB free"):
        check_free_space(tmp_path / "out", 1 << 60)
    # The tiny synthetic build (40 images of 320x240) wrote 5,809,334 B of work folder + 53,817 B of dataset.
    tiny = estimate_build_bytes([320 * 240] * 40, max_num_features=8192)
    assert 5_863_151 < tiny - MARGIN_BYTES < 2 * 5_863_151
    capped = estimate_build_bytes([8000 * 6000], max_num_features=8192)
    assert capped == 8192 * BYTES_PER_KEYPOINT + MARGIN_BYTES


def test_sift_memory_limits():
    cfg = FeatureConfig()
    assert cfg.sift_size(8000, 6000) == (3200, 2400) and cfg.sift_size(640, 480) == (640, 480)
    assert cfg.sift_memory(8000, 6000) < 3 << 30  # 3200x2400, doubled by first_octave=-1: 2.5 GB
    assert FeatureConfig(max_image_size=8000).sift_memory(8000, 6000) > 12 << 30  # the crash
    with pytest.raises(ValueError, match="first_octave=0"):
        FeatureConfig(max_image_size=8000).validate()
    FeatureConfig(max_image_size=8000, first_octave=0).validate()


def test_downscaled_keypoints_land_on_full_resolution_positions(tmp_path: Path):
    """Gaussian blobs at known sub-pixel centres: SIFT's keypoints at full size and downscaled 2x and
    2.56x all sit on the centres (COLMAP convention: + 0.5), with the same scale."""
    width, height, step, sigma = 1280, 960, 80, 6.0
    rng = np.random.default_rng(0)
    grid_x, grid_y = np.meshgrid(
        np.arange(step, width - step + 1, step), np.arange(step, height - step + 1, step)
    )
    centres = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1) + rng.uniform(-10, 10, (grid_x.size, 2))
    along_x = np.exp(-((np.arange(width)[:, None] - centres[:, 0]) ** 2) / (2 * sigma**2))
    along_y = np.exp(-((np.arange(height)[:, None] - centres[:, 1]) ** 2) / (2 * sigma**2))
    blobs = along_y @ along_x.T  # (height, width): the sum of the separable Gaussians
    cv2.imwrite(str(tmp_path / "blobs.png"), np.uint8(40 + 180 * blobs))
    write_manifest(tmp_path / "m.csv", [dict(image="blobs.png", sequence="s", condition="c")])
    rec = read_manifest(tmp_path / "m.csv").images[0]
    scales = {}
    for max_size in (4000, 640, 500):
        cfg = FeatureConfig(max_image_size=max_size)
        db = pycolmap.Database.open(tmp_path / f"{max_size}.db")
        try:
            extractor = pycolmap.FeatureExtractor.create(cfg.options(), pycolmap.Device.cpu)
            assert _write_features(db, rec, 1, 1, _image_features(extractor, rec, cfg), cfg) is None
            assert (db.read_camera(1).width, db.read_camera(1).height) == (width, height)
            kps = np.asarray(db.read_keypoints(1))
        finally:
            db.close()
        dist, nearest = cKDTree(centres + 0.5).query(kps[:, :2])
        on = dist < 2.0
        assert len(np.unique(nearest[on])) == len(centres)  # every blob found
        assert np.median(dist[on]) < 0.1 and dist[on].max() < 0.25  # a half-pixel slip would show
        scales[max_size] = np.median(kps[on, 2])
    assert scales[640] == pytest.approx(scales[4000], rel=0.05)
    assert scales[500] == pytest.approx(scales[4000], rel=0.05)
