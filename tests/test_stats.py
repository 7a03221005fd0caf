"""`xseason stats` / `xseason show`: numbers per condition pair, and the drawing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_store import make_tables, write

from xseason.cli import main
from xseason.core.errors import XSeasonError
from xseason.reports.show import draw_pair
from xseason.reports.stats import (
    condition_pair_stats,
    dominance_warnings,
    format_match_classes,
    format_stats,
    match_class_histogram,
)


@pytest.fixture
def built(tmp_path):
    images, pairs, matches = make_tables(n_pairs=60, densified=True)
    return write(tmp_path, images, pairs, matches), images, pairs, matches


def test_stats_per_condition_pair_and_split(built):
    root, images, pairs, matches = built
    stats = condition_pair_stats(root)
    cond = images.set_index("image_id")["condition"]
    ref, other = cond[pairs["image_id0"]].to_numpy(), cond[pairs["image_id1"]].to_numpy()
    densified = (
        matches.groupby("pair_id")["densified"].sum().reindex(pairs["pair_id"], fill_value=0).to_numpy()
    )
    for (r, o), want in pairs.assign(r=ref, o=other, d=densified).groupby(["r", "o"]):
        got = stats[(stats.reference == r) & (stats.condition == o)].set_index("split")
        assert got.at["all", "pairs"] == len(want) and got.at["all", "matches"] == want["num_matches"].sum()
        assert got.at["all", "mpp_q50"] == pytest.approx(np.percentile(want["num_matches"], 50))
        assert got.at["all", "mpp_q95"] == pytest.approx(np.percentile(want["num_matches"], 95))
        assert got.at["all", "densified_share"] == pytest.approx(want["d"].sum() / want["num_matches"].sum())
        for split, part in want.groupby("split"):
            assert (
                got.at[split, "pairs"] == len(part) and got.at[split, "matches"] == part["num_matches"].sum()
            )
    assert stats.loc[stats.split == "all", "matches"].sum() == len(matches)
    assert "winter-snow" in format_stats(stats)


def test_stats_command_table_and_json(built, capsys):
    root, _, pairs, _ = built
    assert main(["stats", str(root)]) == 0
    assert "summer-day -> winter-snow" in capsys.readouterr().out
    assert main(["stats", str(root), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sum(r["pairs"] for r in records if r["split"] == "all") == len(pairs)


def test_stats_without_densified_column(tmp_path):
    stats = condition_pair_stats(write(tmp_path, *make_tables(n_pairs=12)))
    assert stats["densified_share"].isna().all() and stats["pairs"].sum() == 2 * 12


def test_show_draws_the_sampled_matches(tmp_path, built):
    root, images, pairs, _ = built
    rng = np.random.default_rng(0)
    for name in images["image"]:
        path = tmp_path / "imgs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(
            str(path),
            np.full((480, 640, 3), 40, np.uint8) + rng.integers(0, 5, (480, 640, 3), dtype=np.uint8),
        )
    pid = int(pairs.loc[pairs.num_matches > 20, "pair_id"].iloc[0])
    out = draw_pair(root, pid, tmp_path / "pair.png", max_matches=20)
    canvas = cv2.imread(str(out))
    assert canvas.shape == (480, 1280, 3)
    assert ((canvas.max(axis=2) > 60).sum()) > 20 * 30  # 20 lines across the two images were drawn
    assert main(["show", str(root), str(pid), "--out", str(tmp_path / "p.jpg"), "--max-matches", "5"]) == 0
    with pytest.raises(XSeasonError, match="needs the scene's ground truth"):
        draw_pair(root, pid, tmp_path / "x.png", color="error")
    assert main(["show", str(root), "999999", "--out", str(tmp_path / "q.png")]) == 2


REAL = (
    __import__("pathlib").Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "robotcar-daynight"
)


@pytest.mark.skipif(not REAL.is_dir(), reason="real sample data ../shared/data/robotcar-daynight is absent")
def test_show_on_real_day_night_images(tmp_path):
    """A day -> night pair of real RobotCar images, found through dataset.json's image root."""
    images, pairs, matches = make_tables(n_pairs=4, n_images=3)
    images["image"] = ["db1.jpg", "query1.jpg", "db2.jpg"]
    images["condition"] = ["day", "night", "day"]
    images[["width", "height"]] = 1024
    pairs[["image_id0", "image_id1"]] = [100, 101]
    matches[["x0", "y0", "x1", "y1"]] = np.random.default_rng(0).uniform(0, 1023, (len(matches), 4))
    root = write_dataset_at(tmp_path, images, pairs, matches)
    out = draw_pair(root, int(pairs["pair_id"].iloc[0]), tmp_path / "real.png", max_matches=50)
    canvas = cv2.imread(str(out))
    assert canvas.shape == (1024, 2048, 3)
    day = cv2.imread(str(REAL / "db1.jpg"))
    assert (
        np.median(np.abs(canvas[:, :1024].astype(int) - day)) <= 2
    )  # left half is the day image, lines aside


def write_dataset_at(tmp_path, images, pairs, matches):
    from xseason.store import write_dataset

    return write_dataset(
        tmp_path / "real", images, pairs, matches, config={}, manifest_checksum=None, image_root=REAL
    )


def test_show_colours_by_error_against_ground_truth(tmp_path, monkeypatch):
    """`--color error`: the true position comes from xseason.groundtruth (replaced here by a known warp)."""
    import sys
    import types

    fake = types.ModuleType("xseason.synth.groundtruth")
    fake.load_truth = lambda scene_dir: {"shift": 3.0}
    fake.true_matches = lambda truth, a, b, pixels: (pixels + truth["shift"], pixels[:, 0] < 600)
    monkeypatch.setitem(sys.modules, "xseason.synth.groundtruth", fake)
    images, pairs, matches = make_tables(n_pairs=4, n_images=3)
    pid = int(pairs.loc[pairs["num_matches"].idxmax(), "pair_id"])
    sel = matches["pair_id"] == pid
    matches.loc[sel, ["x0", "y0"]] *= 0.99  # x1 = x0 + 3 stays inside the image
    matches.loc[sel, "x1"] = matches.loc[sel, "x0"] + 3  # exact where visible ...
    matches.loc[sel, "y1"] = matches.loc[sel, "y0"] + 3
    far = sel & (matches.index % 2 == 0)
    matches.loc[far, "y1"] += np.where(matches.loc[far, "y0"] < 240, 50, -50)  # ... or 50 px off
    for name in images["image"]:
        (tmp_path / "imgs" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "imgs" / name), np.zeros((480, 640, 3), np.uint8))
    root = write(tmp_path, images, pairs, matches)
    from xseason.reports.show import match_errors

    m = matches[sel]
    err = match_errors(tmp_path, "a", "b", m[["x0", "y0"]].to_numpy(), m[["x1", "y1"]].to_numpy())
    visible = m["x0"].to_numpy() < 600
    assert np.isnan(err[~visible]).all()
    assert np.allclose(err[visible], np.where(m.index[visible] % 2 == 0, 50, 0), atol=1e-3)
    out = cv2.imread(str(draw_pair(root, pid, tmp_path / "err.png", color="error", truth_dir=tmp_path)))
    bgr = out.reshape(-1, 3).astype(int)
    drawn = bgr[bgr.max(axis=1) > 100]
    greenish = (drawn[:, 1] > drawn[:, 2] + 50).sum()
    reddish = (drawn[:, 2] > drawn[:, 1] + 50).sum()
    assert greenish > 100 and reddish > 100  # exact matches green, 50 px errors red


def labelled_dataset(tmp_path, dominant: bool):
    """make_tables' dataset with labels on the reference images (the first of every 3), class by x0:
    thirds 1 / 2 / 0 of the width, or class 0 beyond x = 63.5 when `dominant`; the first reference
    image has no label, and rows y < 48 are IGNORE (255)."""
    images, pairs, matches = make_tables(n_pairs=60)
    labelled = (images["image_id"] % 3 == 1) & (images["image_id"] > 100)  # references are 100 + 3k
    images["label"] = [f"lab/{i}.png" if lab else None for i, lab in zip(images["image_id"], labelled)]
    label = np.zeros((480, 640), np.uint8)
    label[:, : 64 if dominant else 213] = 1
    if not dominant:
        label[:, 213:426] = 2
    label[:48] = 255
    (tmp_path / "imgs" / "lab").mkdir(parents=True)
    for name in images["label"].dropna():
        cv2.imwrite(str(tmp_path / "imgs" / name), label)
    return write(tmp_path, images, pairs, matches), images, pairs, matches


@pytest.mark.parametrize("dominant", [False, True])
def test_match_class_histogram_counts_reference_labels(tmp_path, dominant):
    root, images, pairs, matches = labelled_dataset(tmp_path, dominant)
    hist = match_class_histogram(root)
    m = matches.merge(pairs[["pair_id", "image_id0"]], on="pair_id")
    known = m["image_id0"].map(images.set_index("image_id")["label"].notna()) & (m["y0"] >= 47.5)
    x = m.loc[known, "x0"]
    want = (
        {1: (x < 63.5).sum(), 0: (x >= 63.5).sum()}
        if dominant
        else {1: (x < 212.5).sum(), 2: ((x >= 212.5) & (x < 425.5)).sum(), 0: (x >= 425.5).sum()}
    )
    total = hist[(hist["reference"] == "all") & (hist["split"] == "all")].iloc[0]
    assert total["matches"] == len(matches) and total["labelled"] == known.sum() > 500
    assert {c: total[f"class_{c}"] for c in want} == want
    assert total["top_share"] == pytest.approx(max(want.values()) / known.sum())
    per_pair = hist[(hist["reference"] != "all") & (hist["split"] != "all")]
    assert per_pair["matches"].sum() == len(matches) and per_pair["labelled"].sum() == known.sum()
    text = format_match_classes(hist)
    warnings = dominance_warnings(hist)
    assert (len(warnings) > 0) == dominant == ("WARNING: class 0 holds" in text)
    if dominant:
        assert (
            f"{100 * total['top_share']:.6g} % of the {known.sum():,} labelled matches of all condition pairs"
            in text
        )


def test_stats_command_prints_the_class_histogram(tmp_path, capsys):
    root, _, pairs, _ = labelled_dataset(tmp_path, dominant=True)
    assert main(["stats", str(root)]) == 0
    out = capsys.readouterr().out
    assert "reference image's label at (x0, y0)" in out and "WARNING: class 0 holds" in out
    assert main(["stats", str(root), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sum(r["pairs"] for r in records if r["split"] == "all") == len(pairs)
    assert all(r["top_class"] == 0 and r["class_0"] + r["class_1"] == r["labelled"] for r in records)


def test_no_labels_no_class_histogram(built):
    hist = match_class_histogram(built[0])
    assert hist.empty and "no image has a label" in format_match_classes(hist)
