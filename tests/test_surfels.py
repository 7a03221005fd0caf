"""Surfels of the visibility model: thin occluders occlude, curved surfaces give exact samples."""

from __future__ import annotations

import numpy as np
from test_surfaces import WALL, _grid, _table

from xseason.core.geometry import in_image
from xseason.matching.surfels import SurfelConfig, build_surfels


def _cylinder(centre, radius: float, z: np.ndarray, step: float) -> np.ndarray:
    """Points on a vertical cylinder, about `step` apart around it and at heights `z`."""
    angles = np.arange(0, 2 * np.pi, step / radius)
    return _grid(
        angles, z, lambda a, h: np.c_[centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a), h]
    )


CAMERA = np.array([0.0, 0.0, 1.5])
POLE = _cylinder((0.0, 8.0), 0.05, np.arange(0.0, 4.0, 0.1), 0.04)  # 10 cm thick, 8 m away


def test_a_thin_pole_hides_the_wall_behind_it():
    three = [CAMERA, CAMERA + [1.0, 0.0, 0.0], CAMERA - [1.0, 0.0, 0.0]]  # a blob needs 3 observations
    table = _table({"day": np.concatenate([WALL, POLE])}, {"day": three})
    model = build_surfels(table, SurfelConfig(occlusion=True))
    behind = np.array([[0.0, 10.0, 1.5], [0.0, 10.0, 3.0]])  # on the wall, straight behind the pole
    beside = np.array([[0.5, 10.0, 1.5], [-0.5, 10.0, 3.0], [2.0, 10.0, 1.0]])
    assert not model.unoccluded(CAMERA, behind, (0,)).any()
    assert model.unoccluded(CAMERA, beside, (0,)).all()
    assert model.first_surface(CAMERA, beside, (0,)).all()
    assert not model.first_surface(CAMERA, behind, (0,)).any()
    assert not model.first_surface(CAMERA, np.array([[1.0, 12.0, 1.5]]), (0,)).any()  # behind the wall


def test_patch_samples_lie_on_a_curved_tower():
    tower = _cylinder((0.0, 14.0), 3.0, np.arange(0.0, 8.0, 0.2), 0.2)
    cams = [CAMERA, CAMERA + [1.5, 0.0, 0.0]]
    table = _table({"day": tower}, {"day": cams}, target=(0.0, 11.0, 2.0))
    model = build_surfels(table, SurfelConfig(edge_px=4.0, patches=True))
    view = table.views[0]
    uv = np.stack(np.meshgrid(np.arange(10, 190, 5.0), np.arange(10, 140, 5.0)), -1).reshape(-1, 2)
    ok, xyz = model.patch_samples(view, uv, 0)
    # which pixels see the tower (analytic ray / cylinder intersection)
    d = view.camera.unproject(uv) @ view.pose.R
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = CAMERA[:2] - [0.0, 14.0]
    a, b, c = (d[:, :2] ** 2).sum(1), 2 * d[:, :2] @ o, o @ o - 9.0
    disc = b * b - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    exact = CAMERA + d * t[:, None]
    inner = (disc > 0) & (exact[:, 2] > 0.3) & (exact[:, 2] < 7.5)
    on_tower = (disc > 0) & (exact[:, 2] > -0.1) & (exact[:, 2] < 7.9)
    assert ok[inner].mean() > 0.6 and not ok[~on_tower].any()
    other = table.views[1]
    px, pe = (other.camera.project(other.pose.transform(p)) for p in (xyz[ok], exact[ok]))
    err = np.linalg.norm(px - pe, axis=1)
    assert in_image(other.camera, pe).mean() > 0.5
    assert np.median(err) < 0.05 and err.max() < 0.5, (np.median(err), err.max())


def test_support_needs_a_point_of_the_other_condition_nearby():
    hedge = _grid(
        np.arange(-2, 2.01, 0.1), np.arange(0.0, 1.01, 0.1), lambda x, z: np.c_[x, np.full_like(x, 6.0), z]
    )
    table = _table(
        {"summer": np.concatenate([WALL, hedge]), "winter": WALL}, {"summer": [CAMERA], "winter": [CAMERA]}
    )
    model = build_surfels(table)
    summer, winter = table.condition_index("summer"), table.condition_index("winter")
    assert model.supported(hedge[::7], summer).all()
    assert not model.supported(hedge[::7], winter).any()
    assert model.supported(WALL[::7] + [0.0, 0.02, 0.0], winter).all()
