"""Local evidence for densified samples: what an image observed around a sample decides it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from test_surfaces import _grid, _table

from xseason.matching.support import ImagePoints, SupportRule, evidence, image_points

RULE = SupportRule(radius=40.0, neighbours=16, min_points=3, max_gap=180.0, occluder_radius=12.0, sigmas=3.0)
CAMERA = np.array([0.0, 0.0, 1.5])
THREE = [CAMERA, CAMERA + [1.0, 0.0, 0.0], CAMERA - [1.0, 0.0, 0.0]]  # a 1 m baseline each way
WALL_NORMAL = np.array([0.0, 1.0, 0.0])  # the wall y = 10


def _wall(x_max: float = 4.0) -> np.ndarray:
    """Wall points 0.5 m apart (7.5 px at 10 m) from x = -4 to `x_max`."""
    return _grid(
        np.arange(-4, x_max + 1e-9, 0.5), np.arange(0.5, 4.01, 0.5), lambda x, z: np.c_[x, 10 + 0 * x, z]
    )


def _accepted(points: dict[str, np.ndarray], samples: np.ndarray) -> np.ndarray:
    """Whether samples (world points on the wall) pass the first camera's evidence."""
    table = _table(points, {"day": THREE})
    seen = image_points(table, 0, np.ones(len(table.obs_point), bool), 150.0, 0.5)
    view = table.views[0]
    uv = view.camera.project(view.pose.transform(samples))
    normal = np.broadcast_to(WALL_NORMAL, samples.shape)
    return evidence(seen, uv, samples, normal, RULE).accepted(RULE)


def test_a_sample_behind_an_observed_thin_pole_is_rejected_and_one_beside_it_kept():
    pole = _grid(np.array([0.3]), np.arange(0.5, 4.01, 0.25), lambda x, z: np.c_[x, 6 + 0 * x, z])  # 6 m away
    behind = CAMERA + (np.array([0.3, 6.0, 2.0]) - CAMERA) * 10 / 6  # the wall straight behind a pole point
    beside = np.array([[-2.0, 10.0, 2.2], [2.6, 10.0, 1.2]])  # 37 px and 24 px from the pole in the image
    ok = _accepted({"day": np.concatenate([_wall(), pole])}, np.concatenate([[behind], beside]))
    assert ok.tolist() == [False, True, True]
    assert _accepted({"day": _wall()}, np.array([behind])).all()  # the same sample without the pole


def test_a_sample_beyond_the_extent_its_image_observed_is_rejected():
    samples = np.array([[-2.0, 10.0, 2.2], [-0.2, 10.0, 2.2], [1.0, 10.0, 2.2], [2.5, 10.0, 2.2]])
    ok = _accepted({"day": _wall(x_max=0.0)}, samples)  # the image saw the wall up to x = 0 only
    assert ok.tolist() == [True, True, False, False]  # 15 px past its last column: no support that side


def _ring(depth_offset: np.ndarray, sigma: float) -> tuple[ImagePoints, np.ndarray]:
    """A camera at the origin looking along +z (f = 100, centre 100, 100), a sample on the plane
    z = 10 at the image centre and six observed points 10 px around it, each `depth_offset` behind
    the plane along its ray, depth standard deviation `sigma`."""
    angle = np.arange(6) * np.pi / 3
    uv = 100 + 10 * np.c_[np.cos(angle), np.sin(angle)]
    ray = np.c_[(uv - 100) / 100, np.ones(6)]
    on_plane = ray * 10  # z = 10
    depth = np.linalg.norm(on_plane, axis=1) + depth_offset
    xyz = ray / np.linalg.norm(ray, axis=1, keepdims=True) * depth[:, None]
    points = ImagePoints(
        np.zeros(3), uv, xyz, depth, np.full(6, sigma), np.full(6, 0.01), cKDTree(uv), (200, 200)
    )
    return points, np.array([[0.0, 0.0, 10.0]])


def test_the_on_plane_tolerance_is_each_points_own_depth_uncertainty():
    normal = np.array([[0.0, 0.0, 1.0]])
    for offset, sigma, supporters, kept in [
        (0.0, 0.1, 6, True),
        (0.2, 0.1, 6, True),  # 2 sigma behind: on the plane
        (0.5, 0.1, 0, False),  # 5 sigma behind: seen through the plane
        (0.5, 0.2, 6, True),  # the same offset from points measured half as well: on the plane
        (-0.5, 0.1, 0, False),  # 5 sigma in front, nearer than the sample: occluders
    ]:
        points, sample = _ring(np.full(6, offset), sigma)
        ev = evidence(points, np.array([[100.0, 100.0]]), sample, normal, RULE)
        assert (ev.supporters[0], ev.accepted(RULE)[0]) == (supporters, kept), (offset, sigma)


def _subset(points: ImagePoints, keep: np.ndarray, size: tuple[int, int]) -> ImagePoints:
    """The observed points where `keep`, in an image of `size`."""
    arrays = (points.uv, points.xyz, points.depth, points.sigma_depth, points.sigma_lateral)
    uv, *rest = (a[keep] for a in arrays)
    return ImagePoints(points.centre, uv, *rest, cKDTree(uv), size)


def test_the_image_edge_closes_the_ring_of_supporters():
    ring, sample = _ring(np.zeros(6), 0.1)
    centre, normal = np.array([[100.0, 100.0]]), np.array([[0.0, 0.0, 1.0]])
    left = ring.uv[:, 0] < 100  # the three points left of the sample
    # the right edge 8.5 px from the sample: nothing right of it could have been observed
    assert evidence(_subset(ring, left, (109, 200)), centre, sample, normal, RULE).accepted(RULE).all()
    # the edge far away: nothing observed right of the sample, a gap of 240 degrees
    assert not evidence(_subset(ring, left, (200, 200)), centre, sample, normal, RULE).accepted(RULE).any()


def test_support_knobs_are_validated():
    from xseason.matching.correspondences import CorrespondenceConfig

    CorrespondenceConfig().validate()
    for bad in ({"support_max_gap": 400.0}, {"support_radius": 0.0}, {"support_min_points": -1}):
        with pytest.raises(ValueError, match="support"):
            CorrespondenceConfig(**bad).validate()
