"""hloc's features.h5 / matches.h5 and kapture's keypoint / match folders as the SfM's feature
back-end (issue 18): a build from the files that hold the SIFT build's own keypoints and verified
matches is as complete and accurate."""

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
from xseason.sfm.kapture import KaptureError, KaptureKeypoints, KaptureMatches
from xseason.sfm.paths import BuildPaths
from xseason.store import open_dataset
from xseason.synth.groundtruth import load_truth, true_matches

ONE_THREAD = ["--set", "matching.num_threads=1", "--set", "reconstruction.num_threads=1"]
ONE_THREAD += ["--set", "correspondences.split_fractions=[1.0, 0.0, 0.0]"]  # every pair kept: about pairing


def _pair_key(a: str, b: str) -> str:
    return f"{a.replace('/', '-')}/{b.replace('/', '-')}"


def _database_features(db_path: Path) -> tuple[dict[str, np.ndarray], list[tuple[str, str, np.ndarray]]]:
    """Every image's keypoints (COLMAP pixels) and every verified pair's inlier matches (name0, name1,
    (M, 2) indices; every other pair given in the reversed order) of a COLMAP database."""
    db = pycolmap.Database.open(db_path)
    try:
        names = {im.image_id: im.name for im in db.read_all_images()}
        keypoints = {name: np.asarray(db.read_keypoints(i))[:, :2] for i, name in names.items()}
        pairs = []
        for k, (pair_id, geometry) in enumerate(zip(*db.read_two_view_geometries(), strict=True)):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            m = np.asarray(geometry.inlier_matches)
            if len(m) == 0:
                continue
            if k % 2:  # the other order: the reader must find it either way
                a, b, m = b, a, m[:, ::-1]
            pairs.append((names[a], names[b], m))
    finally:
        db.close()
    return keypoints, pairs


def write_hloc_files(keypoints: dict, pairs: list, out: Path) -> list[str]:
    """features.h5 (our pixels) and matches.h5 (hloc's layout) of keypoints and matches
    (`_database_features`); returns the build settings that read them."""
    with h5py.File(out / "features.h5", "w") as f:
        for name, kp in keypoints.items():
            f.create_group(name).create_dataset("keypoints", data=from_colmap_pixels(kp).astype(np.float32))
    with h5py.File(out / "matches.h5", "w") as f:
        for a, b, m in pairs:
            matches0 = np.full(len(keypoints[a]), -1, np.int32)
            matches0[m[:, 0]] = m[:, 1]
            f.create_group(_pair_key(a, b)).create_dataset("matches0", data=matches0)
    return [f"features.hloc_features={out / 'features.h5'}", f"matching.hloc_matches={out / 'matches.h5'}"]


def write_kapture_files(keypoints: dict, pairs: list, out: Path) -> list[str]:
    """kapture's reconstruction/keypoints/sift (float32 x, y plus a scale column, COLMAP pixels) and
    reconstruction/matches/sift (name0 < name1) of keypoints and matches (`_database_features`);
    returns the build settings that read them."""
    kp_dir, match_dir = (
        out / "reconstruction" / "keypoints" / "sift",
        out / "reconstruction" / "matches" / "sift",
    )
    kp_dir.mkdir(parents=True)
    (kp_dir / "keypoints.txt").write_text("# kapture format: 1.1\n# name, dtype, dsize\nsift, float32, 3\n")
    for name, kp in keypoints.items():
        (kp_dir / f"{name}.kpt").parent.mkdir(parents=True, exist_ok=True)
        np.c_[kp, np.ones(len(kp))].astype(np.float32).tofile(kp_dir / f"{name}.kpt")
    for a, b, m in pairs:
        if b < a:
            a, b, m = b, a, m[:, ::-1]
        path = match_dir / f"{a}.overlapping" / f"{b}.matches"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.c_[m, np.ones(len(m))].astype(np.float64).tofile(path)
    return [f"features.kapture_keypoints={kp_dir}", f"matching.kapture_matches={match_dir}"]


@pytest.fixture(scope="module")
def hidden_m2(tiny_scene_hidden: Path, tmp_path_factory) -> Path:
    lines = (tiny_scene_hidden / "manifest.csv").read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("hloc") / "m2.csv"
    path.write_text("".join(lines[:17]))
    return path


def _build(manifest: Path, root: Path, out: Path, *extra: str) -> int:
    args = ["build", str(manifest), "--image-root", str(root), "--out", str(out), "--quiet", *ONE_THREAD]
    return main([*args, *extra])


@pytest.fixture(scope="module")
def sift_build(hidden_m2, tiny_scene_hidden, tmp_path_factory) -> Path:
    sift = tmp_path_factory.mktemp("sift") / "ds"
    assert _build(hidden_m2, tiny_scene_hidden, sift) == 0
    return sift


@pytest.mark.parametrize("write_files", [write_hloc_files, write_kapture_files], ids=["hloc", "kapture"])
def test_a_build_from_imported_files_of_the_sift_matches_is_as_good_as_the_sift_build(
    hidden_m2, tiny_scene_hidden, sift_build, tmp_path, write_files
):
    settings = write_files(*_database_features(BuildPaths.beside(sift_build).database), tmp_path)
    imported = tmp_path / "imported"
    assert _build(hidden_m2, tiny_scene_hidden, imported, *(a for s in settings for a in ("--set", s))) == 0
    truth = load_truth(tiny_scene_hidden)
    sift_stats, stats = (
        _true_errors(open_dataset(sift_build), truth),
        _true_errors(open_dataset(imported), truth),
    )
    # every image registered, at least 90 % as many pairs, as accurate (the mapper gets the verified
    # matches of every pair the SIFT build verified, so the models differ a little)
    assert (
        open_dataset(imported).images["registered"].all()
        and open_dataset(sift_build).images["registered"].all()
    )
    assert stats["pairs"] >= 0.9 * sift_stats["pairs"], (sift_stats, stats)
    assert stats["median_px"] <= 1.5 * sift_stats["median_px"] + 0.05, (sift_stats, stats)
    assert stats["wrong"] <= sift_stats["wrong"] + 0.02, (sift_stats, stats)


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


def test_kapture_readers(tmp_path):
    """Keypoints: the first two of dsize values, COLMAP pixels -> ours (- 0.5); matches found under
    either order of the names (stored with name0 < name1); broken files are named."""
    kp_dir, m_dir = tmp_path / "kp", tmp_path / "m"
    (kp_dir / "a").mkdir(parents=True)
    (kp_dir / "keypoints.txt").write_text("# kapture format: 1.1\n# name, dtype, dsize\nd2, float64, 4\n")
    np.array([[10.5, 20.5, 1, 0], [0.5, 0.5, 2, 0]], np.float64).tofile(kp_dir / "a" / "x.png.kpt")
    (m_dir / "a" / "x.png.overlapping").mkdir(parents=True)
    np.array([[1, 4, 0.9], [0, 2, 0.5]], np.float64).tofile(
        m_dir / "a" / "x.png.overlapping" / "b.png.matches"
    )
    kps, matches = KaptureKeypoints(kp_dir), KaptureMatches(m_dir)
    assert kps.keypoints("a/x.png").tolist() == [[10.0, 20.0], [0.0, 0.0]] and kps.keypoints("b.png") is None
    assert matches.matches("a/x.png", "b.png").tolist() == [[1, 4], [0, 2]]
    assert matches.matches("b.png", "a/x.png").tolist() == [[4, 1], [2, 0]]
    assert matches.matches("a/x.png", "c.png") is None
    np.zeros(5).tofile(kp_dir / "a" / "y.png.kpt")
    with pytest.raises(KaptureError, match="y.png.kpt: 5 values are not whole keypoints of 4"):
        kps.keypoints("a/y.png")
    with pytest.raises(KaptureError, match="no such kapture matches folder"):
        KaptureMatches(tmp_path / "nowhere")


def test_imported_matches_without_their_keypoints_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="needs features.hloc_features"):
        load_build_config(overrides=[f"matching.hloc_matches={tmp_path / 'm.h5'}"])
    with pytest.raises(ConfigError, match="needs features.kapture_keypoints"):
        load_build_config(overrides=[f"matching.kapture_matches={tmp_path / 'm'}"])
    both = [f"features.hloc_features={tmp_path / 'f.h5'}", f"features.kapture_keypoints={tmp_path / 'k'}"]
    with pytest.raises(ConfigError, match="hloc_features or kapture_keypoints, not both"):
        load_build_config(overrides=both)


def _true_cross_matches(keypoints: dict, truth, names: list[str], conditions: dict) -> list:
    """Matches between the keypoints (COLMAP pixels) of every two images of different conditions from
    the scene's exact geometry: a keypoint of a whose true position in b is within 1 px of a keypoint
    of b (each keypoint of b used once); pairs with fewer than 30 are left out."""
    from scipy.spatial import cKDTree

    pairs = []
    for a in names:
        for b in names:
            if a >= b or conditions[a] == conditions[b]:
                continue
            xa, xb = from_colmap_pixels(keypoints[a]), from_colmap_pixels(keypoints[b])
            true_b, visible = true_matches(truth, a, b, xa)
            ia = np.flatnonzero(visible)
            dist, ib = cKDTree(xb).query(true_b[ia])
            ia, ib = ia[dist < 1.0], ib[dist < 1.0]
            ib, first = np.unique(ib, return_index=True)
            if len(ib) >= 30:
                pairs.append((a, b, np.stack([ia[first], ib], 1)))
    return pairs


def test_imported_cross_condition_matches_register_a_condition(
    hidden_m2, tiny_scene_hidden, sift_build, tmp_path
):
    """Imported files whose matches tie the two conditions register the second one; the same files
    without the cross-condition matches leave it unregistered, with the reason: what a user with
    SuperPoint + LightGlue night-to-day matches (where SIFT finds none) relies on."""
    keypoints, pairs = _database_features(BuildPaths.beside(sift_build).database)
    images = open_dataset(sift_build).images
    conditions = dict(zip(images["image"], images["condition"]))
    within = [(a, b, m) for a, b, m in pairs if conditions[a] == conditions[b]]
    cross = _true_cross_matches(keypoints, load_truth(tiny_scene_hidden), sorted(keypoints), conditions)
    assert len(cross) >= 10

    def build(name: str, matches: list):
        folder = tmp_path / name
        folder.mkdir()
        settings = write_kapture_files(keypoints, matches, folder)
        out = folder / "ds"
        code = _build(
            hidden_m2, tiny_scene_hidden, out, "--allow-partial", *(a for s in settings for a in ("--set", s))
        )
        assert code == 0
        return open_dataset(out)

    alone = build("within", within)
    registered = alone.images.groupby("condition")["registered"].sum().to_dict()
    assert registered == {"autumn-overcast": 0, "summer-day": 8}
    reasons = [d["reason"] for d in alone.meta["dropped"]["images"] if d["condition"] == "autumn-overcast"]
    assert len(reasons) == 8 and all("0 3D-3D correspondences" in r for r in reasons)
    assert build("tied", within + cross).images["registered"].all()
