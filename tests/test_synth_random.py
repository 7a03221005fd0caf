"""The random scene family (`--preset random`): a new layout per seed, every element class,
cameras clear of geometry, moving objects per traversal in the moving mask, determinism."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import open3d as o3d
import pytest

from xseason.cli import main
from xseason.core.config import from_dict
from xseason.core.errors import ConfigError
from xseason.core.geometry import in_image, project_points
from xseason.synth import CLASS_NAMES, MOVING_CLASSES, SynthConfig, make_views, render_images, synth_config
from xseason.synth.conditions import CONDITIONS
from xseason.synth.random_world import CAMERA_CLEARANCE, build_random_world
from xseason.synth.world import (
    BICYCLE,
    CAR,
    K_BRONZE,
    K_COBBLE,
    K_DOME,
    K_PANE,
    K_STONE,
    K_WATER,
    K_WOOD,
    PERSON,
    SKY,
    Mesh,
    leaves,
)

SEEDS = range(1, 7)


@pytest.fixture(scope="module")
def worlds():
    out = {}
    for seed in SEEDS:
        cfg = synth_config("random", seed=seed)
        out[seed] = (cfg, build_random_world(cfg))
    return out


def test_new_classes_are_appended_and_moving() -> None:
    assert [CLASS_NAMES[k] for k in range(10)] == [
        "road",
        "sidewalk",
        "building",
        "vegetation",
        "pole",
        "sign",
        "car",
        "sky",
        "person",
        "bicycle",
    ]
    assert (SKY, PERSON, BICYCLE) == (7, 8, 9) and MOVING_CLASSES == {CAR, PERSON, BICYCLE}


def test_sequences_are_drawn_from_the_seed() -> None:
    a, b = synth_config("random", seed=1), synth_config("random", seed=2)
    assert [s.condition for s in a.sequences] == list(CONDITIONS)
    assert (a.images_per_sequence, a.width, a.height, a.world.layout) == (24, 640, 480, "random")
    assert [s.lateral for s in a.sequences] != [s.lateral for s in b.sequences]
    for s in a.sequences + b.sequences:
        assert abs(s.lateral) <= 1.2 and 1.3 <= s.height <= 2.3
        assert abs(s.heading_deg) <= 12 and abs(s.pitch_deg) <= 4 and abs(s.start_x) <= 1.5
    small = synth_config("random", overrides=["width=320", "height=240", "images_per_sequence=10"], seed=1)
    assert small.sequences == a.sequences and len(make_views(small)) == 50
    with pytest.raises(ConfigError, match="layout"):
        synth_config("random", overrides=["world.layout=maze"])


def test_seeds_give_different_layouts(worlds) -> None:
    statics = [w.static for _, w in worlds.values()]
    sizes = {len(m.triangles) for m in statics}
    assert len(sizes) >= len(statics) - 1  # triangle counts alone tell (nearly) all apart
    a, b = statics[0], statics[1]
    assert len(a.vertices) != len(b.vertices) or np.abs(a.vertices - b.vertices).max() > 1.0
    assert len({tuple(sorted(w.elements.items())) for _, w in worlds.values()}) == len(worlds)


def test_the_resolved_config_regenerates_the_world(worlds) -> None:
    cfg, world = worlds[1]
    from xseason.core.config import to_dict

    again = build_random_world(from_dict(SynthConfig, json.loads(json.dumps(to_dict(cfg)))))
    assert np.array_equal(again.static.vertices, world.static.vertices)
    assert np.array_equal(again.static.triangles, world.static.triangles)
    assert np.array_equal(again.movers[2][0].vertices, world.movers[2][0].vertices)


def test_every_element_class_appears_over_a_few_seeds(worlds) -> None:
    seen: set[str] = set()
    kinds: set[int] = set()
    for _, w in worlds.values():
        seen |= {k for k, n in w.elements.items() if n > 0}
        kinds |= set(np.unique(w.static.kind).tolist())
    wanted = {
        # places
        "street",
        "square",
        "courtyard",
        "gateway",
        # facades with depth and non-planar buildings
        "bay",
        "balcony",
        "arcade",
        "colonnade",
        "cornice",
        "tower",
        "dome",
        "curved front",
        "identical facades",
        # thin occluders
        "lamp post",
        "sign post",
        "railing",
        "fence",
        "bollards",
        "bike rack",
        # clutter and vegetation
        "fountain",
        "kiosk",
        "bus shelter",
        "statue",
        "planter",
        "bench",
        "tree",
        "hedge",
        # ground
        "slope",
        "stairs",
        "kerb",
        "terrace",
        # moving
        "cars",
        "person",
        "bicycle",
    }
    assert wanted <= seen, sorted(wanted - seen)
    assert {K_STONE, K_WATER, K_BRONZE, K_WOOD, K_DOME, K_PANE, K_COBBLE} <= kinds
    details = [w.detail for _, w in worlds.values()]
    assert min(details) < 0.3 and max(details) >= 0.7  # plain and busy scenes
    assert any(w.buildings.blank.any() for _, w in worlds.values())
    assert any((w.buildings.curve[:, 2] > 0).any() for _, w in worlds.values())


def test_foliage_changes_with_the_season(worlds) -> None:
    cfg, w = worlds[2]
    assert w.trees and w.hedges
    summer, autumn, bare = (len(leaves(w, s, 300, cfg.seed).triangles) for s in ("summer", "autumn", "none"))
    assert bare == 0 and 0.6 * summer < autumn < 0.8 * summer


def test_cameras_are_clear_of_all_geometry(worlds) -> None:
    for cfg, w in list(worlds.values())[:3]:
        views = make_views(cfg)
        cams = np.array([v.pose.center for v in views], np.float32)
        foliage = leaves(w, "summer", cfg.world.leaves_per_tree, cfg.seed)
        for si in range(len(cfg.sequences)):
            m = Mesh.concat([w.static, foliage, w.movers[si][0]])
            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(
                o3d.core.Tensor(m.vertices.astype(np.float32)), o3d.core.Tensor(m.triangles.astype(np.uint32))
            )
            d = scene.compute_distance(o3d.core.Tensor(cams)).numpy()
            assert d.min() >= CAMERA_CLEARANCE, (cfg.seed, si, d.min())


def test_movers_differ_between_traversals_and_are_masked(worlds) -> None:
    cfg, w = worlds[2]
    labels = [set(np.unique(m.label).tolist()) for m, _ in w.movers]
    assert all(lab <= MOVING_CLASSES for lab in labels)
    assert {PERSON, BICYCLE} <= set().union(*labels)
    v0, v1 = w.movers[0][0].vertices, w.movers[1][0].vertices
    assert len(v0) != len(v1) or np.abs(v0 - v1).max() > 0.1
    # Render the small view of sequence 0 that sees most pedestrian vertices.
    small = synth_config("random", seed=cfg.seed, overrides=["width=160", "height=120"])
    mesh = w.movers[0][0]
    people = mesh.vertices[np.unique(mesh.triangles[mesh.label == PERSON])]
    best, hits = None, -1
    for v in make_views(small):
        if v.seq_index != 0:
            continue
        px, z = project_points(v.camera, v.pose, people)
        n = int(np.sum((z > 0) & (z < 25) & in_image(v.camera, px)))
        best, hits = (v, n) if n > hits else (best, hits)
    r = render_images(small, [best.image])[best.image]
    assert (r.label == PERSON).sum() > 0
    assert np.array_equal(r.moving, np.isin(r.label, list(MOVING_CLASSES)))


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    """The CLI renders the same bytes twice (one process, then two workers); another seed differs."""
    small = ["--set", "width=64", "--set", "height=48", "--set", "images_per_sequence=2"]
    args = ["synth", "--preset", "random", "--seed", "3", *small]
    assert main([*args, "--out", str(tmp_path / "a"), "--jobs", "1"]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--jobs", "2"]) == 0
    files = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len([f for f in files if f.startswith("images/")]) == 10
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    truth = json.loads((tmp_path / "a" / "truth.json").read_text())
    assert truth["config"]["world"]["layout"] == "random" and len(truth["config"]["sequences"]) == 5
    assert truth["classes"]["8"] == "person" and truth["moving_classes"] == [6, 8, 9]
    assert main(["synth", "--preset", "random", "--seed", "4", *small, "--out", str(tmp_path / "c")]) == 0
    name = "images/00-summer-day/0000.png"
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
