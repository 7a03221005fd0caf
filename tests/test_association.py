"""Association of per-condition clouds: mutual nearest neighbours, adaptive radius, cleaning."""

from __future__ import annotations

import numpy as np
import pytest

from xseason.core.config import from_dict
from xseason.core.errors import ConfigError
from xseason.core.geometry import Camera, Pose
from xseason.matching.association import (
    AssociationConfig,
    AssociationError,
    adaptive_radius,
    associate,
    associate_clouds,
    build_point_table,
    clean_points,
    decode_point_id,
    encode_point_id,
    mutual_nearest_neighbours,
)
from xseason.matching.views import ImageView

CAM = Camera("PINHOLE", 200, 200, (100.0, 100.0, 100.0, 100.0))


def _views(conditions: dict[str, str]) -> list[ImageView]:
    """Two images per sequence at x = 0 and x = 1, looking along +z at the plane z = 10."""
    out = []
    for seq, cond in conditions.items():
        for x in (0.0, 1.0):
            pose = Pose(np.eye(3), np.array([-x, 0.0, 0.0]))
            out.append(ImageView(f"{seq}/{x}", seq, cond, CAM, pose))
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
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 0), (2, 2)]


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
    cfg = AssociationConfig(radius_factor=0.5, radius_depth=0.0, radius_max=0.2)
    assoc = associate(table, "summer", cfg)
    part, dist = assoc.partner["winter"], assoc.partner_dist["winter"]
    linked = np.flatnonzero(part >= 0)
    assert len(linked) == len(other)
    offset = table.xyz[part[linked]] - table.xyz[assoc.ref_points[linked]]
    np.testing.assert_allclose(offset, [[0.02, 0, 0]] * len(linked), atol=1e-9)
    np.testing.assert_allclose(dist[linked], 0.02, atol=1e-9)


def test_clean_points_drops_outliers_and_weak_points():
    views = _views({"a": "summer"})
    pts = np.concatenate([_plane(0.2, 0.002), [[0.0, 0.0, 30.0], [2.0, 2.0, 20.0]]])
    table = _table(views, {"a": pts})
    cfg = AssociationConfig(min_tri_angle=0.0, outlier_neighbors=8, outlier_std_ratio=2.0)
    out = clean_points(table, cfg)
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


def test_the_association_stage_cleans_associates_and_keeps_the_surface_points():
    views = _views({"a": "summer", "b": "winter"})
    pts = np.concatenate([_plane(0.2, 0.002), [[0.0, 0.0, 30.0]]])  # one outlier far behind the plane
    table = _table(views, {"a": pts, "b": _plane(0.2) + [0.02, 0.0, 0.0]})
    cfg = AssociationConfig(min_tri_angle=0.0, outlier_neighbors=8, outlier_std_ratio=2.0)
    out = associate_clouds(table, ["summer", "winter"], cfg)
    np.testing.assert_array_equal(out.points.point_id, clean_points(table, cfg).point_id)
    assert [a.reference for a in out.associations] == ["summer", "winter"]
    # surfaces see every well-measured point: outlier removal does not apply to them
    assert out.surface_points.num_points == table.num_points > out.points.num_points
    with pytest.raises(AssociationError, match="at least one reference"):
        associate_clouds(table, [], cfg)
