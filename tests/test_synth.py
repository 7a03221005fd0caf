"""The built-in scene: determinism, manifest, exact geometry, condition changes, SIFT-friendliness, CLI."""

from __future__ import annotations

import csv
import filecmp
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xseason.cli import main
from xseason.core.errors import ConfigError, XSeasonError
from xseason.core.geometry import Pose, project_points
from xseason.synth import CLASS_NAMES, make_views, render_images, render_scene, synth_config
from xseason.synth.groundtruth import load_truth, world_points
from xseason.synth.world import CAR, ROAD, SIDEWALK, SKY, build_world, cars_for_sequence, leaves

POSE_COLUMNS = ["qw", "qx", "qy", "qz", "tx", "ty", "tz"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_tiny_is_deterministic(tiny_scene: Path, tmp_path: Path) -> None:
    """Same seed -> identical bytes, whatever the number of worker processes."""
    again = render_scene(tmp_path / "again", synth_config("tiny"), jobs=1, progress=False).parent
    files = _files(tiny_scene)
    assert files == _files(again)
    assert len([f for f in files if f.parts[0] == "images"]) == 40
    _, mismatch, errors = filecmp.cmpfiles(tiny_scene, again, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


def test_seed_changes_the_scene(tiny_scene: Path) -> None:
    name = "images/00-summer-day/0000.png"
    other = render_images(synth_config("tiny", seed=1), [name])[name]
    ref = cv2.imread(str(tiny_scene / name))[..., ::-1]
    assert np.mean(np.abs(other.rgb.astype(int) - ref)) > 10


def test_manifest_follows_the_contract(tiny_scene: Path, tiny_scene_hidden: Path) -> None:
    rows = _rows(tiny_scene / "manifest.csv")
    truth = load_truth(tiny_scene)
    assert len(rows) == 40 and {r["condition"] for r in rows} == {
        "summer-day",
        "autumn-overcast",
        "winter-snow",
        "night",
        "dusk-rain",
    }
    for r in rows:
        assert (tiny_scene / r["image"]).is_file() and (tiny_scene / r["mask"]).is_file()
        assert r["camera_model"] == "PINHOLE"
        fx, fy, cx, cy = map(float, r["camera_params"].split())
        assert (cx, cy) == (160.0, 120.0) and fx == fy == 224.0
        pose = Pose.from_qt([float(r[k]) for k in POSE_COLUMNS[:4]], [float(r[k]) for k in POSE_COLUMNS[4:]])
        true = truth.images[r["image"]].pose
        assert np.abs(pose.R - true.R).max() < 1e-8 and np.abs(pose.t - true.t).max() < 1e-8
        prior = np.array([float(r[k]) for k in ("prior_x", "prior_y", "prior_z")])
        assert np.linalg.norm(prior - true.center) < 5 * 0.5 * np.sqrt(3)
        label = cv2.imread(str(tiny_scene / r["label"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(tiny_scene / r["mask"]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask > 0, label == CAR)
        assert set(np.unique(label)) <= set(CLASS_NAMES)
    hidden = _rows(tiny_scene_hidden / "manifest.csv")
    assert [r["image"] for r in hidden] == [r["image"] for r in rows]
    assert not set(POSE_COLUMNS) & set(hidden[0]) and "prior_x" in hidden[0]
    assert (tiny_scene_hidden / hidden[0]["image"]).is_file()


def test_depth_is_exact_at_pixel_centres(tiny_scene: Path) -> None:
    """Back-projecting every pixel with its depth and projecting again returns the pixel; road and
    sidewalk points lie on their planes; sky has depth 0."""
    truth = load_truth(tiny_scene)
    cfg = synth_config("tiny")
    for name in ["images/00-summer-day/0003.png", "images/03-night/0005.png"]:
        img = truth.images[name]
        cam = img.camera
        v, u = np.mgrid[0 : cam.height, 0 : cam.width]
        px = np.stack([u.ravel(), v.ravel()], 1).astype(float)
        depth, label = truth.depth(name).ravel(), truth.labels(name).ravel()
        assert np.array_equal(depth == 0, label == SKY)
        pts = world_points(truth, name, px)
        hit = depth > 0
        back, z = project_points(cam, img.pose, pts[hit])
        assert np.abs(back - px[hit]).max() < 1e-3
        assert np.abs(pts[label == ROAD, 2]).max() < 1e-3
        top = (label == SIDEWALK) & (np.abs(pts[:, 2] - cfg.world.curb_height) < 0.01)
        assert top.sum() > 100


def test_seasonal_geometry_and_cars() -> None:
    cfg = synth_config("tiny")
    world = build_world(cfg.world, 0)
    summer, autumn, winter = (len(leaves(world, s, 200, 0).triangles) for s in ("summer", "autumn", "none"))
    assert winter == 0 and 0.6 * summer < autumn < 0.8 * summer
    c0 = cars_for_sequence(world, 0.55, 0, 0)[0].vertices
    c1 = cars_for_sequence(world, 0.55, 0, 1)[0].vertices
    assert len(c0) != len(c1) or np.abs(c0 - c1).max() > 0.1


@pytest.mark.parametrize("preset, digest", [("demo", "045fae6317b19190"), ("tiny", "b75488348c246acb")])
def test_street_layout_geometry_is_unchanged(preset: str, digest: str) -> None:
    """The street layout's meshes (static, leaves by season, the first two traversals' cars) hash as
    before the random layout was added (its renders were byte-identical then; digests of vertices to
    the micrometre since 2026-12-05, when a fresh install changed their raw bytes with the code unchanged)."""
    cfg = synth_config(preset)
    world = build_world(cfg.world, cfg.seed)
    meshes = [world.static]
    meshes += [leaves(world, s, cfg.world.leaves_per_tree, cfg.seed) for s in ("summer", "autumn", "none")]
    meshes += [cars_for_sequence(world, cfg.world.car_occupancy, cfg.seed, i)[0] for i in range(2)]
    h = hashlib.sha256()
    for m in meshes:  # vertices to the micrometre: the last bits of numpy's maths vary between releases
        for a in (np.round(m.vertices, 6) + 0.0, m.triangles, m.label, m.kind, m.obj):
            h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest()[:16] == digest


def test_demo_views_have_sift_features_except_night() -> None:
    """Every non-night condition of the demo scene gives >= 500 SIFT features over >= 75% of a 4x4 grid."""
    cfg = synth_config("demo")
    by_cond = {}
    for v in make_views(cfg):
        if v.index == 12:
            by_cond.setdefault(v.condition, v.image)
    renders = render_images(cfg, list(by_cond.values()))
    sift = cv2.SIFT_create()
    stats = {}
    for cond, name in by_cond.items():
        grey = cv2.cvtColor(renders[name].rgb, cv2.COLOR_RGB2GRAY)
        xy = np.array([k.pt for k in sift.detect(grey, None)]).reshape(-1, 2)
        cells = np.unique((xy[:, 0] * 4 // grey.shape[1]) * 4 + xy[:, 1] * 4 // grey.shape[0])
        stats[cond] = (len(xy), len(cells))
    print("SIFT features, 4x4 cells covered:", stats)
    for cond, (n, cells) in stats.items():
        if cond != "night":
            assert n >= 500 and cells >= 12, (cond, n, cells)
    assert stats["night"][0] > 50  # dark and noisy, but not black


def test_config_layers_and_errors(tmp_path: Path) -> None:
    yml = tmp_path / "s.yaml"
    yml.write_text("width: 128\nworld:\n  car_occupancy: 0.2\n")
    cfg = synth_config("tiny", yml, ["height=96", "world.lamp_spacing=20"], seed=3)
    assert (cfg.width, cfg.height, cfg.seed) == (128, 96, 3)
    assert (cfg.world.car_occupancy, cfg.world.lamp_spacing, cfg.world.x_end) == (0.2, 20.0, 55.0)
    with pytest.raises(ConfigError, match="unknown condition"):
        synth_config("tiny", overrides=["sequences=[{condition: moon}]"])
    with pytest.raises(ConfigError, match="unknown preset"):
        synth_config("huge")
    with pytest.raises(XSeasonError, match="not images of this scene"):
        render_images(cfg, ["images/nope/0000.png"])


def test_cli_writes_scene_and_root_manifest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, root = tmp_path / "data" / "s", tmp_path / "root.csv"
    args = [
        "synth",
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--set",
        "images_per_sequence=2",
        "--set",
        "width=64",
        "--set",
        "height=48",
        "--hide-poses",
        "--root-manifest",
        str(root),
        "--jobs",
        "1",
    ]
    assert main(args) == 0
    assert "wrote 10 images" in capsys.readouterr().out
    rows = _rows(out / "manifest.csv")
    assert len(rows) == 10 and "qw" not in rows[0]
    assert [r["image"] for r in _rows(root)] == ["data/s/" + r["image"] for r in rows]
    assert json.loads((out / "truth.json").read_text())["config"]["width"] == 64
    assert main(["synth", "--preset", "tiny", "--out", str(out), "--set", "widht=3"]) == 2
    assert "did you mean 'width'" in capsys.readouterr().err
