"""`xseason report`: the page's content and numbers, its figures, and that it renders in headless Chromium."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from test_exports import SEQUENCES, make_fake_build
from toy import make_toy_dataset

from xseason.cli import main
from xseason.core.plots import draw_histogram
from xseason.reports.exports import condition_colors
from xseason.reports.report import ReportConfig, ReportError, truth_errors, write_report
from xseason.store import open_dataset, write_dataset

BAR_BGR = (178, 114, 0)
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


def img_srcs(page: str) -> list[str]:
    parser = _Images()
    parser.feed(page)
    return parser.srcs


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_fake_build(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def report(fake) -> Path:
    return write_report(fake["dataset"], fake["dataset"].parent / "report", build_dir=fake["build"])


def test_histogram_bars_are_proportional_to_counts():
    values = np.r_[
        np.full(20, 0.1), np.full(10, 0.9), np.full(10, 5.0), np.nan
    ]  # 5.0 -> last bin, NaN ignored
    image = draw_histogram(values, "t", "x", bins=2, value_range=(0.0, 1.0), size=(300, 200))
    bar = np.all(image == BAR_BGR, axis=2)
    heights = bar.sum(0)
    cols = np.flatnonzero(heights)
    left, right = heights[cols[: len(cols) // 2]].max(), heights[cols[len(cols) // 2 :]].max()
    assert left == right > 100  # 20 and 10 + 10 clipped
    image = draw_histogram(values[:30], "t", "x", bins=2, value_range=(0.0, 1.0), size=(300, 200))
    heights = np.all(image == BAR_BGR, axis=2).sum(0)
    cols = np.flatnonzero(heights)
    ratio = heights[cols[: len(cols) // 2]].max() / heights[cols[len(cols) // 2 :]].max()
    assert abs(ratio - 2.0) < 0.02


def test_page_holds_summary_registration_stats_and_escaped_text(fake, report):
    page = report.read_text()
    for section in ("summary", "registration", "stats", "classes", "histograms", "examples"):
        assert f"id='{section}'" in page
    assert "No image has a label" in page and "class='warn'" not in page
    pairs, images = fake["pairs"], fake["images"].set_index("image_id")
    per_condition = pairs.groupby(images.loc[pairs["image_id1"], "condition"].to_numpy())["num_matches"].sum()
    assert set(per_condition.index) == {"winter-snow", "night"}
    for total in per_condition:  # the stats table's matches per condition pair
        assert f'<td class="n">{total:,}</td>' in page
    assert f"<td>{len(fake['matches']):,}</td>" in page  # summary: total matches
    # registration: night has 2 of 3 images registered; its 3D-3D inliers; the unregistered image, its reason
    row = re.search(r"<tr><td>night/run1</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[1:4] == ["aligned", "3", "2"] and cells[8] == "102 / 122"
    assert "night/run1/img2.png" in page
    assert "too dark: &lt;2% of the SIFT budget&gt; &amp; blurry" in page and "<2% of" not in page
    # one colour swatch per condition, in the palette's colours
    for cond, (r, g, b) in condition_colors(c for c, _ in SEQUENCES.values()).items():
        assert f'background:rgb({r},{g},{b})"></span>{cond}' in page


def test_every_image_is_a_local_png_of_the_report(fake, report):
    srcs = img_srcs(report.read_text())
    n_condition_pairs = 2
    assert len(srcs) == 1 + 5 + 2 * n_condition_pairs  # top view, 5 histograms, 2 examples per condition pair
    for src in srcs:
        assert src.startswith("img/") and ".." not in src
        image = cv2.imread(str(report.parent / src))
        assert image is not None and image.std() > 5  # readable and not blank
    assert sorted(p.name for p in (report.parent / "img").iterdir()) == sorted(Path(s).name for s in srcs)


def test_top_view_shows_every_condition_in_its_colour(report):
    view = cv2.imread(str(report.parent / "img" / "top_view.png"))
    for cond, rgb in condition_colors(c for c, _ in SEQUENCES.values()).items():
        pixels = np.all(view == np.array(rgb[::-1]), axis=2).sum()
        assert pixels > 300, cond  # ~130 to 200 points per condition, 3 x 3 dots


def test_truth_section_measures_known_pixel_errors(tmp_path):
    """A rendered mini scene; matches placed at the true positions, a quarter of them moved by 4 px."""
    from xseason.synth import render_scene, synth_config
    from xseason.synth.groundtruth import load_truth, true_matches

    cfg = synth_config("tiny", overrides=["images_per_sequence=2"])
    cfg = dataclasses.replace(cfg, sequences=cfg.sequences[:2])
    manifest = pd.read_csv(render_scene(tmp_path / "scene", cfg, jobs=1, progress=False))
    truth = load_truth(tmp_path / "scene")
    images = pd.DataFrame(
        {
            "image_id": np.arange(len(manifest)),
            "image": manifest["image"],
            "sequence": manifest["sequence"],
            "condition": manifest["condition"],
            "season": None,
            "daytime": None,
            "weather": None,
            "camera_model": "PINHOLE",
            "width": 320,
            "height": 240,
            "params": [[float(v) for v in p.split()] for p in manifest["camera_params"]],
            "registered": True,
            **{k: manifest[k] for k in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")},
        }
    )
    grid = (
        np.stack(np.meshgrid(np.arange(8, 320, 12), np.arange(8, 240, 12)), -1).reshape(-1, 2).astype(float)
    )
    pairs, chunks = [], []
    for k in range(2):  # image k of the first sequence with image k of the second
        a, b = k, 2 + k
        p1, visible = true_matches(truth, images["image"][a], images["image"][b], grid)
        p0, p1 = grid[visible], p1[visible]
        p1[::4, 0] += np.where(p1[::4, 0] < 160, 4.0, -4.0)
        n = len(p0)
        chunks.append(
            pd.DataFrame(
                {
                    "pair_id": k,
                    "x0": p0[:, 0],
                    "y0": p0[:, 1],
                    "x1": p1[:, 0],
                    "y1": p1[:, 1],
                    "weight": 1.0,
                    "point3d_id": None,
                    "dist3d": 0.0,
                    "err0": 0.0,
                    "err1": 0.0,
                }
            )
        )
        pairs.append(
            {"pair_id": k, "image_id0": a, "image_id1": b, "num_matches": n, "overlap": 0.5, "split": "train"}
        )
    dataset = write_dataset(
        tmp_path / "ds",
        images,
        pd.DataFrame(pairs),
        pd.concat(chunks),
        config={},
        manifest_checksum=None,
        image_root=tmp_path / "scene",
    )
    store = open_dataset(dataset)
    table = truth_errors(store, tmp_path / "scene")
    assert (
        len(table) == 1
        and table["pairs checked"][0] == 2
        and table["matches"][0] == store.meta["counts"]["matches"]
    )
    assert table["matches"][0] > 200
    assert table["visible"][0] > 0.99  # every match was chosen visible (a 4 px move may leave a few at edges)
    assert table["median px"][0] < 0.01
    moved = np.ceil(np.array([len(c) for c in chunks]) / 4).sum() / table["matches"][0]
    assert abs(table["< 1 px"][0] - (1 - moved)) < 0.01 and abs(table["< 3 px"][0] - (1 - moved)) < 0.01
    index = write_report(dataset, tmp_path / "report", truth_dir=tmp_path / "scene", examples_per_pair=1)
    page = index.read_text()
    assert "id='truth'" in page and "id='registration'" not in page
    assert len(img_srcs(page)) == 5 + 1


def test_classes_section_warns_when_one_class_holds_most_matches(tmp_path):
    """Toy labels (4 classes in blobs); every reference label is then made class 3 but for its top
    6 rows (class 1): 30 of 36 rows, so class 3 holds about 5/6 of the matches and the page warns."""
    dataset = make_toy_dataset(tmp_path, places=3, size=(48, 36), matches_per_pair=200, seed=3)
    index = write_report(dataset, tmp_path / "r0", examples_per_pair=1)
    page = index.read_text()
    assert "id='classes'" in page and "class='warn'" not in page and "<th>class 2 %</th>" in page
    for label in (tmp_path / "images").glob("*_day_label.png"):
        lab = np.full((36, 48), 3, np.uint8)
        lab[:6] = 1
        cv2.imwrite(str(label), lab)
    matches = open_dataset(dataset).pairs["num_matches"].sum()
    page = write_report(dataset, tmp_path / "r1", examples_per_pair=1).read_text()
    warnings = re.findall(r"<p class='warn'>(.*?)</p>", page)
    assert len(warnings) == 2  # the one condition pair, and all pairs
    share = float(re.search(r"class 3 holds ([0-9.]+) %", warnings[-1]).group(1))
    assert 75 < share < 90 and f"of the {matches:,} labelled matches of all condition pairs" in warnings[-1]
    assert "<th>class 2 %</th>" not in page and "<th>class 3 %</th>" in page


@pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)"
)
def test_report_renders_in_headless_chromium(report, tmp_path):
    """Every <img> loads at its file's size, and the rendered page is not blank."""
    probe = report.parent / "probe.html"
    script = (
        "<script>window.addEventListener('load',()=>{const o=document.createElement('pre');o.id='probe';"
        "o.textContent=[...document.images].map(i=>i.getAttribute('src')+' '"
        "+(i.complete?i.naturalWidth:-1)+' '+i.naturalHeight).join('\\n');"
        "document.body.appendChild(o);});</script></body>"
    )
    probe.write_text(report.read_text().replace("</body>", script))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ]
    try:
        dom = subprocess.run(
            [CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'a'}", "--dump-dom", probe.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        shot = tmp_path / "shot.png"
        subprocess.run(
            [
                CHROMIUM,
                *flags,
                f"--user-data-dir={tmp_path / 'b'}",
                "--window-size=1200,1600",
                f"--screenshot={shot}",
                report.as_uri(),
            ],
            capture_output=True,
            timeout=120,
        )
    finally:
        probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    loaded = [line.split() for line in found.group(1).strip().splitlines()]
    assert [src for src, _, _ in loaded] == img_srcs(report.read_text())
    for src, width, height in loaded:
        image = cv2.imread(str(report.parent / src))
        assert (int(width), int(height)) == (image.shape[1], image.shape[0]), src
    page = cv2.imread(str(shot))
    assert page is not None and page.shape[:2] == (1600, 1200)
    assert (np.abs(page.astype(int) - 255).sum(2) > 30).mean() > 0.05  # a real page, not a blank one


def test_failed_report_leaves_no_folder_and_errors_are_clear(fake, tmp_path, monkeypatch):
    import xseason.reports.report as report_module

    def boom(*args, **kwargs):
        raise ReportError("drawing failed")

    monkeypatch.setattr(report_module, "draw_pair", boom)
    with pytest.raises(ReportError, match="drawing failed"):
        write_report(fake["dataset"], tmp_path / "r")
    assert not (tmp_path / "r").exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(ReportError, match="no registration.json"):
        write_report(fake["dataset"], tmp_path / "r", build_dir=tmp_path)
    with pytest.raises(ValueError, match="upper_quantile"):
        ReportConfig(upper_quantile=2).validate()


def cli(*args: object) -> int:
    """`xseason ARGS...` in this process (paths and numbers given as they are)."""
    return main([str(a) for a in args])


def test_cli_report_and_export(fake, tmp_path, capsys):
    out = tmp_path / "rep"
    dataset, build = fake["dataset"], fake["build"]
    settings = ["--examples", 1, "--set", "example_max_matches=20"]
    assert cli("report", dataset, "--build", build, "--out", out, *settings) == 0
    assert len(img_srcs((out / "index.html").read_text())) == 1 + 5 + 2
    assert cli("report", tmp_path / "missing", "--out", tmp_path / "x") == 2
    assert "not a dataset folder" in capsys.readouterr().err

    colmap, ply = tmp_path / "m", tmp_path / "c.ply"
    assert cli("export", dataset, "--build", build, "--colmap", colmap, "--ply", ply) == 0
    assert (colmap / "points3D.bin").is_file() and ply.is_file()
    assert "night" in capsys.readouterr().out
