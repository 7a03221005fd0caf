"""Association of per-condition clouds: mutual nearest neighbours, adaptive radius, support, cleaning."""

from __future__ import annotations

import numpy as np
import pytest

from xseason.association import (
    AssociationConfig,
    AssociationError,
    ImageView,
    adaptive_radius,
    associate,
    build_point_table,
    clean_points,
    confirmed,
    decode_point_id,
    encode_point_id,
    mutual_nearest_neighbours,
)
from xseason.config import from_dict
from xseason.errors import ConfigError
from xseason.geometry import Camera, Pose

CAM = Camera("PINHOLE", 200, 200, (100.0, 100.0, 100.0, 100.0))


def _views(conditions: dict[str, str], seasons: dict[str, str] | None = None) -> list[ImageView]:
    """Two images per sequence at x = 0 and x = 1, looking along +z at the plane z = 10."""
    out = []
    for seq, cond in conditions.items():
        for x in (0.0, 1.0):
            pose = Pose(np.eye(3), np.array([-x, 0.0, 0.0]))
            out.append(ImageView(f"{seq}/{x}", seq, cond, CAM, pose, season=(seasons or {}).get(cond)))
    return out


def _table(views, clouds: dict[str, np.ndarray]):
    """Each sequence's points observed (exactly) by both of its images."""
    xyz, seq, local, o_img, o_pt, o_xy = [], [], [], [], [], []
    n = 0
    for s, pts in clouds.items():
        idx = np.arange(n, n + len(pts))
        for k, v in enumerate(views):
            if v.sequence == s:
                o_img.append(np.full(len(pts), k))
                o_pt.append(idx)
                o_xy.append(v.camera.project(v.pose.transform(pts)))
        xyz.append(pts), seq.append(np.full(len(pts), s, object)), local.append(np.arange(len(pts)) + 1)
        n += len(pts)
    c = np.concatenate
    return build_point_table(views, c(xyz), c(seq), c(local), c(o_img), c(o_pt), c(o_xy))


def _plane(step: float, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    g = np.arange(-3, 3 + 1e-9, step)
    p = np.stack(np.meshgrid(g, g, [10.0]), -1).reshape(-1, 3)
    return p + np.random.default_rng(seed).normal(0, jitter, p.shape)


def test_mutual_nearest_neighbours_and_radius():
    a = np.array([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]])
    b = np.array([[0.1, 0, 0], [0.15, 0, 0], [5.5, 0, 0]])
    i, j, d = mutual_nearest_neighbours(a, b, np.full(3, 0.2), np.full(3, 0.2))
    # a0<->b0 mutual; b1's nearest is a0 too but a0 chose b0; a2-b2 too far (0.5 > 0.2).
    assert i.tolist() == [0] and j.tolist() == [0] and np.allclose(d, [0.1])
    # A larger radius on either side admits the far pair.
    i, j, _ = mutual_nearest_neighbours(a, b, np.array([0.2, 0.2, 0.6]), np.full(3, 0.2))
    assert sorted(zip(i.tolist(), j.tolist())) == [(0, 0), (2, 2)]


def test_adaptive_radius_follows_spacing():
    views = _views({"a": "summer", "b": "winter"})
    table = _table(views, {"a": _plane(0.1), "b": _plane(0.5)})
    cfg = AssociationConfig(radius_factor=2.0, radius_depth=0.0, radius_max=10.0, spacing_k=4)
    r = adaptive_radius(table, cfg)
    dense, sparse = r[table.point_condition == 0], r[table.point_condition == 1]
    # The 4 nearest neighbours on a square grid are at one step (interior points).
    assert np.median(dense) == pytest.approx(2 * 0.1, rel=1e-6)
    assert np.median(sparse) == pytest.approx(2 * 0.5, rel=1e-6)
    assert adaptive_radius(table, AssociationConfig(radius_max=0.3)).max() <= 0.3


def test_associate_links_same_places_only():
    views = _views({"a": "summer", "b": "winter"})
    ref = _plane(0.25)
    other = ref[::3] + np.array([0.02, 0.0, 0.0])  # every third place seen again, 2 cm off
    far = np.array([[0.0, 0.0, 14.0]])  # a place only the winter cloud has
    table = _table(views, {"a": ref, "b": np.concatenate([other, far])})
    cfg = AssociationConfig(radius_factor=0.5, radius_depth=0.0, radius_max=0.2, support="condition")
    assoc = associate(table, "summer", cfg)
    part, dist = assoc.partner["winter"], assoc.partner_dist["winter"]
    linked = np.flatnonzero(part >= 0)
    assert len(linked) == len(other)
    np.testing.assert_allclose(table.xyz[part[linked]] - table.xyz[assoc.ref_points[linked]], [[0.02, 0, 0]] * len(linked), atol=1e-9)
    np.testing.assert_allclose(dist[linked], 0.02, atol=1e-9)
    # Support: every reference point within its radius (0.5 * spacing) of a winter point.
    sup = np.isfinite(assoc.support_dist["winter"])
    assert sup.sum() == len(other)
    assert assoc.counts()["winter"] == (len(other), len(other))


def test_season_support_backs_a_sparse_condition():
    conds = {"a": "summer-day", "b": "summer-night", "c": "winter-day"}
    views = _views(conds, {"summer-day": "summer", "summer-night": "summer", "winter-day": "winter"})
    table = _table(views, {"a": _plane(0.25), "b": _plane(1.5), "c": _plane(1.5)})
    cfg = AssociationConfig(radius_depth=0.0, radius_max=0.1)
    assoc = associate(table, "summer-day", cfg)
    assert np.isfinite(assoc.support_dist["summer-night"]).all()  # same season: geometry of summer
    assert np.isfinite(assoc.support_dist["winter-day"]).sum() < 0.1 * len(assoc.ref_points)
    strict = associate(table, "summer-day", AssociationConfig(radius_depth=0.0, radius_max=0.1, support="condition"))
    assert np.isfinite(strict.support_dist["summer-night"]).sum() < 0.1 * len(strict.ref_points)


def test_clean_points_drops_outliers_and_weak_points():
    views = _views({"a": "summer"})
    pts = np.concatenate([_plane(0.2, 0.002), [[0.0, 0.0, 30.0], [2.0, 2.0, 20.0]]])
    table = _table(views, {"a": pts})
    out = clean_points(table, AssociationConfig(min_tri_angle=0.0, outlier_neighbors=8, outlier_std_ratio=2.0))
    assert out.num_points == len(pts) - 2 and (out.xyz[:, 2] < 10.1).all()
    # The baseline of 1 unit at depth 10 gives ~5.7 degrees: a 10 degree floor removes all.
    assert clean_points(table, AssociationConfig(min_tri_angle=10.0, outlier_neighbors=0)).num_points == 0
    # Observations follow their points.
    assert out.image_ptr[-1] == 2 * out.num_points and out.obs_err.max() < 1e-9
    vox = clean_points(table, AssociationConfig(min_tri_angle=0.0, outlier_neighbors=0, voxel_size=0.5))
    keys = lambda xyz: {tuple(k) for k in np.floor(xyz / 0.5).astype(int)}  # noqa: E731
    assert vox.num_points == len(keys(vox.xyz)) == len(keys(pts)) < len(pts) / 2


def test_point_ids_and_errors():
    ids = encode_point_id(np.array([0, 3]), np.array([7, 123456789]))
    s, loc = decode_point_id(ids)
    assert s.tolist() == [0, 3] and loc.tolist() == [7, 123456789]
    views = _views({"a": "summer"})
    table = _table(views, {"a": _plane(1.0)})
    with pytest.raises(AssociationError, match="unknown condition"):
        associate(table, "autumn", AssociationConfig())
    with pytest.raises(ConfigError, match="radius_min"):
        from_dict(AssociationConfig, {"radius_min": 2.0, "radius_max": 1.0})
    with pytest.raises(AssociationError, match="does not exist"):
        build_point_table(views, np.zeros((1, 3)), ["a"], [1], [0], [5], [[0.0, 0.0]])


def test_confirmation_by_another_sequence():
    """A reference point is confirmed when another sequence has a point within the radius; a
    mistriangulated point (1 m in front of the wall) that no other traversal made is not."""
    views = _views({"a": "summer", "a2": "summer", "b": "winter"})
    wall = _plane(0.5)
    stray = np.array([[0.1, 0.2, 9.0]])
    table = _table(views, {"a": np.concatenate([wall, stray]), "a2": wall[::2] + [0.01, 0, 0], "b": wall[1::2] + [0, 0.01, 0]})
    ref = np.flatnonzero(table.point_sequence == table.sequences.index("a"))
    ok = confirmed(table, ref, np.full(len(ref), 0.05))
    is_stray = table.xyz[ref, 2] < 9.5
    assert is_stray.sum() == 1 and not ok[is_stray].any() and ok[~is_stray].all()
    assert not confirmed(table, ref, np.full(len(ref), 0.005)).any()  # 1 cm away > 5 mm radius
    cfg = AssociationConfig(confirm_factor=1.0, outlier_neighbors=0, radius_max=0.05, radius_depth=0.0)
    assoc = associate(table, "summer", cfg)
    stray_ref = table.xyz[assoc.ref_points, 2] < 9.5
    assert not assoc.confirmed[stray_ref].any() and assoc.confirmed[~stray_ref].mean() > 0.99
    assert associate(table, "summer", AssociationConfig(outlier_neighbors=0)).confirmed.all()  # off by default
