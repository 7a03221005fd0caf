"""hloc's features.h5 / matches.h5 as the SfM's feature back-end (issue 18): a build from the files
that hold the SIFT build's own keypoints and verified matches is as complete and accurate."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pycolmap
import pytest

from xseason.cli import main
from xseason.core.colmap import from_colmap_pixels
from xseason.core.errors import ConfigError
from xseason.pipeline.build import load_build_config
from xseason.sfm.hloc import HlocFeatures, HlocMatches
from xseason.sfm.paths import BuildPaths
from xseason.store import open_dataset
from xseason.synth.groundtruth import load_truth, true_matches

ONE_THREAD = ["--set", "matching.num_threads=1", "--set", "reconstruction.num_threads=1"]
ONE_THREAD += ["--set", "correspondences.split_fractions=[1.0, 0.0, 0.0]"]  # every pair kept: about pairing


def _pair_key(a: str, b: str) -> str:
    return f"{a.replace('/', '-')}/{b.replace('/', '-')}"


def write_hloc_files(db_path: Path, out: Path) -> tuple[Path, Path]:
    """features.h5 (every image's keypoints, our pixels) and matches.h5 (every verified pair, in
    hloc's layout, half of them under the reversed order) from a COLMAP database."""
    db = pycolmap.Database.open(db_path)
    try:
        names = {im.image_id: im.name for im in db.read_all_images()}
        with h5py.File(out / "features.h5", "w") as f:
            for image_id, name in names.items():
                kp = from_colmap_pixels(np.asarray(db.read_keypoints(image_id))[:, :2]).astype(np.float32)
                f.create_group(name).create_dataset("keypoints", data=kp)
        pair_ids, geometries = db.read_two_view_geometries()
        with h5py.File(out / "matches.h5", "w") as f:
            for k, (pair_id, geometry) in enumerate(zip(pair_ids, geometries, strict=True)):
                a, b = pycolmap.pair_id_to_image_pair(pair_id)
                m = np.asarray(geometry.inlier_matches)
                if len(m) == 0:
                    continue
                if k % 2:  # the other order: the reader must find it either way
                    a, b, m = b, a, m[:, ::-1]
                matches0 = np.full(len(db.read_keypoints(a)), -1, np.int32)
                matches0[m[:, 0]] = m[:, 1]
                f.create_group(_pair_key(names[a], names[b])).create_dataset("matches0", data=matches0)
    finally:
        db.close()
    return out / "features.h5", out / "matches.h5"


@pytest.fixture(scope="module")
def hidden_m2(tiny_scene_hidden: Path, tmp_path_factory) -> Path:
    lines = (tiny_scene_hidden / "manifest.csv").read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("hloc") / "m2.csv"
    path.write_text("".join(lines[:17]))
    return path


def _build(manifest: Path, root: Path, out: Path, *extra: str) -> int:
    args = ["build", str(manifest), "--image-root", str(root), "--out", str(out), "--quiet", *ONE_THREAD]
    return main([*args, *extra])


def test_a_build_from_hloc_files_of_the_sift_matches_is_as_good_as_the_sift_build(
    hidden_m2, tiny_scene_hidden, tmp_path
):
    sift = tmp_path / "sift"
    assert _build(hidden_m2, tiny_scene_hidden, sift) == 0
    features, matches = write_hloc_files(BuildPaths.beside(sift).database, tmp_path)
    hloc = tmp_path / "hloc"
    extra = ["--set", f"features.hloc_features={features}", "--set", f"matching.hloc_matches={matches}"]
    assert _build(hidden_m2, tiny_scene_hidden, hloc, *extra) == 0
    truth = load_truth(tiny_scene_hidden)
    sift_stats, hloc_stats = _true_errors(open_dataset(sift), truth), _true_errors(open_dataset(hloc), truth)
    # every image registered, at least 90 % as many pairs, as accurate (the mapper gets the verified
    # matches of every pair the SIFT build verified, so the models differ a little)
    assert open_dataset(hloc).images["registered"].all() and open_dataset(sift).images["registered"].all()
    assert hloc_stats["pairs"] >= 0.9 * sift_stats["pairs"], (sift_stats, hloc_stats)
    assert hloc_stats["median_px"] <= 1.5 * sift_stats["median_px"] + 0.05, (sift_stats, hloc_stats)
    assert hloc_stats["wrong"] <= sift_stats["wrong"] + 0.02, (sift_stats, hloc_stats)


def _true_errors(store, truth) -> dict[str, float]:
    """Pairs, median true pixel error and the share of matches > 5 px off (or not visible)."""
    names = store.images.set_index("image_id")["image"]
    errors = []
    for _, pair in store.pairs.iterrows():
        m = store.matches(int(pair["pair_id"]))
        x0, x1 = np.c_[m["x0"], m["y0"]], np.c_[m["x1"], m["y1"]]
        true, visible = true_matches(truth, names[pair["image_id0"]], names[pair["image_id1"]], x0)
        errors.append(np.where(visible, np.linalg.norm(true - x1, axis=1), np.inf))
    e = np.concatenate(errors)
    return {"pairs": len(store.pairs), "median_px": float(np.median(e)), "wrong": float(np.mean(e > 5))}


def test_hloc_readers_find_pairs_in_either_order_and_under_the_old_key(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_group("a/x.png").create_dataset("keypoints", data=np.zeros((3, 2), np.float32))
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.create_group("a-x.png/b-y.png").create_dataset("matches0", data=np.array([2, -1, 0], np.int32))
        f.create_group("c.png_d.png").create_dataset("matches0", data=np.array([-1, 1], np.int32))
    feats, m = HlocFeatures(tmp_path / "f.h5"), HlocMatches(tmp_path / "m.h5")
    assert feats.keypoints("a/x.png").shape == (3, 2) and feats.keypoints("nope.png") is None
    assert m.matches("a/x.png", "b/y.png").tolist() == [[0, 2], [2, 0]]
    assert m.matches("b/y.png", "a/x.png").tolist() == [[2, 0], [0, 2]]
    assert m.matches("c.png", "d.png").tolist() == [[1, 1]] and m.matches("a/x.png", "c.png") is None


def test_hloc_matches_without_hloc_features_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs features.hloc_features"):
        load_build_config(overrides=[f"matching.hloc_matches={tmp_path / 'm.h5'}"])
