"""Ground-truth matches exported for matcher tools (issue 18): each format read back with its own
conventions gives the dataset's matches exactly (as stored)."""

from __future__ import annotations

import h5py
import numpy as np
import pycolmap
import pytest
from test_store import make_tables, write

from xseason.cli import main
from xseason.core.geometry import Pose
from xseason.reports.matcher_exports import (
    export_colmap_database,
    export_hloc,
    export_kapture,
    export_megadepth,
    ground_truth_keypoints,
    names_to_pair,
)
from xseason.store import open_dataset


@pytest.fixture()
def store(tmp_path):
    images, pairs, matches = make_tables(n_pairs=12, mean=30)
    # two pairs of one reference image share some of its pixels: one keypoint serves both
    ref = pairs["image_id0"].to_numpy()
    a, b = next(
        (i, j)
        for i in range(len(ref))
        for j in range(i + 1, len(ref))
        if ref[i] == ref[j] and i != 3 and j != 3
    )
    rows_a = np.flatnonzero(matches["pair_id"] == pairs["pair_id"][a])[:5]
    rows_b = np.flatnonzero(matches["pair_id"] == pairs["pair_id"][b])[:5]
    matches.loc[rows_b, ["x0", "y0"]] = matches.loc[rows_a, ["x0", "y0"]].to_numpy()
    return open_dataset(write(tmp_path, images, pairs, matches))


def _expected(store) -> dict[int, set]:
    """pair_id -> set of (x0, y0, x1, y1) as stored (float32)."""
    out = {}
    for pid in store.pairs["pair_id"]:
        m = store.matches(int(pid))
        rows = np.stack([m["x0"], m["y0"], m["x1"], m["y1"]], 1).astype(np.float32)
        out[int(pid)] = {tuple(r) for r in rows.tolist()}
    return out


def _expected_by_images(store) -> dict[tuple[int, int], set]:
    """(image a, image b) of the first pair of those two images -> the matches of all of them (a first)."""
    out: dict[tuple[int, int], set] = {}
    for (_, a, b), rows in zip(
        store.pairs[["pair_id", "image_id0", "image_id1"]].itertuples(index=False), _expected(store).values()
    ):
        if (b, a) in out:
            out[(b, a)] |= {(r[2], r[3], r[0], r[1]) for r in rows}
        else:
            out.setdefault((a, b), set()).update(rows)
    return out


def test_keypoints_are_the_distinct_match_pixels_of_each_image(store):
    gt = ground_truth_keypoints(store)
    assert gt.offsets[-1] == sum(len(s) for s in _expected(store).values())
    for p, (a, b) in enumerate(gt.pair_images):
        i0, i1, _ = gt.matches_of(p)
        assert np.array_equal(gt.keypoints[int(a)][i0], gt.xy0[gt.offsets[p] : gt.offsets[p + 1]])
        assert np.array_equal(gt.keypoints[int(b)][i1], gt.xy1[gt.offsets[p] : gt.offsets[p + 1]])
    for kp in gt.keypoints.values():
        assert len(np.unique(kp, axis=0)) == len(kp)  # distinct
    total = sum(len(kp) for kp in gt.keypoints.values())
    assert total < 2 * gt.offsets[-1]  # the shared pixels are one keypoint


def test_megadepth_round_trip(store, tmp_path):
    out = export_megadepth(store, tmp_path / "md")
    info = np.load(out / "scene_info.npz", allow_pickle=True)
    gt = np.load(out / "gt_matches.npz")
    images = store.images.set_index("image_id", drop=False)
    assert list(info["image_paths"]) == images["image"].tolist()
    expected = _expected(store)
    for p, ((i, j), overlap, _) in enumerate(info["pair_infos"]):
        pid = int(gt["pair_ids"][p])
        row = store.pairs.set_index("pair_id").loc[pid]
        assert (images.index[i], images.index[j]) == (row["image_id0"], row["image_id1"])
        assert overlap == pytest.approx(float(row["overlap"]))
        a, b = gt["offsets"][p], gt["offsets"][p + 1]
        got = {tuple(r) for r in np.c_[gt["kpts0"][a:b], gt["kpts1"][a:b]].tolist()}
        assert got == expected[pid]
    k = images.index.get_loc(int(images.index[1]))
    reg = images.iloc[k]
    assert np.allclose(info["intrinsics"][k], [[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    if reg["registered"]:
        pose = Pose.from_qt(
            reg[["qw", "qx", "qy", "qz"]].to_numpy(float), reg[["tx", "ty", "tz"]].to_numpy(float)
        )
        assert np.allclose(info["poses"][k], pose.matrix())
    assert np.isnan(info["poses"][~images["registered"].to_numpy()]).all()


def test_hloc_round_trip(store, tmp_path):
    out = export_hloc(store, tmp_path / "hloc")
    names = store.images.set_index("image_id")["image"]
    expected = _expected_by_images(store)
    assert len(expected) < len(store.pairs)  # the fixture has two pairs of the same images: merged
    pairs_txt = (out / "pairs.txt").read_text().splitlines()
    assert len(pairs_txt) == len(expected)
    with h5py.File(out / "features.h5") as feats, h5py.File(out / "matches.h5") as matches:
        for a, b in expected:
            n0, n1 = names[a], names[b]
            group = matches[names_to_pair(n0, n1)]
            m0, scores = group["matches0"][()], group["matching_scores0"][()]
            kp0, kp1 = feats[n0]["keypoints"][()], feats[n1]["keypoints"][()]
            valid = m0 >= 0
            got = {tuple(r) for r in np.c_[kp0[valid], kp1[m0[valid]]].tolist()}
            assert got == expected[(a, b)]
            assert ((scores[valid] > 0) & (scores[valid] <= 1)).all()


def test_colmap_database_round_trip(store, tmp_path):
    path = export_colmap_database(store, tmp_path / "gt.db")
    names = store.images.set_index("image_id")["image"]
    expected = _expected_by_images(store)
    db = pycolmap.Database.open(path)
    try:
        assert db.num_images() == len(store.images)
        for image_a, image_b in expected:
            a, b = image_a + 1, image_b + 1
            assert db.read_image(a).name == names[image_a]
            geometry = db.read_two_view_geometry(a, b)
            inliers = np.asarray(geometry.inlier_matches)
            kp0 = np.asarray(db.read_keypoints(a))[:, :2] - 0.5  # COLMAP convention -> ours
            kp1 = np.asarray(db.read_keypoints(b))[:, :2] - 0.5
            got = {
                tuple(r) for r in np.c_[kp0[inliers[:, 0]], kp1[inliers[:, 1]]].astype(np.float32).tolist()
            }
            assert got == expected[(image_a, image_b)]
    finally:
        db.close()


def test_kapture_round_trip(store, tmp_path):
    out = export_kapture(store, tmp_path / "kapture")
    names = store.images.set_index("image_id")["image"]
    expected = _expected_by_images(store)
    rec = out / "reconstruction"
    assert "gt, float32, 2" in (rec / "keypoints" / "gt" / "keypoints.txt").read_text()
    for a, b in expected:
        n0, n1 = names[a], names[b]
        first, second = sorted((n0, n1))
        table = np.fromfile(rec / "matches" / "gt" / f"{first}.overlapping" / f"{second}.matches", np.float64)
        table = table.reshape(-1, 3)
        kp = {
            n: np.fromfile(rec / "keypoints" / "gt" / f"{n}.kpt", np.float32).reshape(-1, 2) - 0.5
            for n in (n0, n1)
        }
        idx = table[:, :2].astype(int)
        if first != n0:
            idx = idx[:, ::-1]
        got = {tuple(r) for r in np.c_[kp[n0][idx[:, 0]], kp[n1][idx[:, 1]]].astype(np.float32).tolist()}
        assert got == expected[(a, b)]


def test_the_export_command_writes_every_format(store, tmp_path, capsys):
    args = ["export", str(store.root), "--megadepth", str(tmp_path / "md"), "--hloc", str(tmp_path / "h")]
    args += ["--colmap-db", str(tmp_path / "gt.db"), "--kapture", str(tmp_path / "k")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    for name in ("megadepth", "hloc", "colmap-db", "kapture"):
        assert f"({name})" in printed
    assert (tmp_path / "md" / "scene_info.npz").is_file() and (tmp_path / "gt.db").is_file()
    # a rerun replaces its own exports; a user's folder is refused
    assert main(args) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert main(["export", str(store.root), "--hloc", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
