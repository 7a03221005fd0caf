"""Pose and camera conventions of docs/FORMAT.md §1."""

import numpy as np
import pycolmap
import pytest

from xseason.core.geometry import Camera, Pose, in_image, project_points, qvec_to_rotmat, rotmat_to_qvec


def random_quaternions(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.sign(q[:, :1])


def test_quaternion_round_trip_and_pycolmap_agreement():
    for q in random_quaternions(50):
        R = qvec_to_rotmat(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(rotmat_to_qvec(R), q, atol=1e-12)
        # pycolmap stores quaternions as (x, y, z, w)
        np.testing.assert_allclose(pycolmap.Rotation3d(np.r_[q[1:], q[0]]).matrix(), R, atol=1e-12)


def test_pose_conventions():
    pose = Pose.from_qt(random_quaternions(1, 1)[0], [1.0, -2.0, 0.5])
    c = pose.center
    np.testing.assert_allclose(pose.transform(c[None])[0], 0, atol=1e-12)  # the centre maps to the origin
    np.testing.assert_allclose((pose.inverse() @ pose).matrix(), np.eye(4), atol=1e-12)
    cam_to_world = pose.inverse().matrix()
    np.testing.assert_allclose(Pose.from_cam_to_world(cam_to_world).matrix(), pose.matrix(), atol=1e-12)


def test_pixel_convention_principal_point():
    # COLMAP principal point (W/2, H/2) is the image centre, i.e. (W-1)/2 in our convention.
    cam = Camera("PINHOLE", 640, 480, (500.0, 500.0, 320.0, 240.0))
    np.testing.assert_allclose(cam.project(np.array([[0.0, 0.0, 2.0]])), [[319.5, 239.5]])
    np.testing.assert_allclose(cam.calibration_matrix()[:2, 2], [319.5, 239.5])
    pix = np.array([[0.0, 0.0], [639.0, 479.0], [12.25, 300.75]])
    np.testing.assert_allclose(cam.project(cam.unproject(pix)), pix, atol=1e-12)
    assert in_image(cam, np.array([[-0.5, -0.5], [639.6, 0.0]])).tolist() == [True, False]


@pytest.mark.parametrize(
    "model, params",
    [
        ("SIMPLE_RADIAL", (500.0, 320.0, 240.0, 0.05)),
        ("OPENCV", (500.0, 510.0, 320.0, 240.0, 0.02, -0.01, 0.001, 0.002)),
    ],
)
def test_distorted_models_match_colmap(model, params):
    cam = Camera(model, 640, 480, params)
    pts = np.random.default_rng(2).normal(size=(100, 3)) * [1, 1, 0.1] + [0, 0, 4]
    ours = cam.project(pts)
    colmap = np.asarray(cam.to_pycolmap().img_from_cam(pts)) - 0.5
    np.testing.assert_allclose(ours, colmap, atol=1e-9)
    rays = cam.unproject(ours)
    np.testing.assert_allclose(rays[:, :2], pts[:, :2] / pts[:, 2:], atol=1e-9)


def test_points_behind_are_nan():
    cam = Camera("SIMPLE_PINHOLE", 100, 100, (80.0, 50.0, 50.0))
    px, depth = project_points(cam, Pose(np.eye(3), np.zeros(3)), np.array([[0, 0, -1.0], [0, 0, 1.0]]))
    assert np.isnan(px[0]).all() and np.isfinite(px[1]).all() and depth.tolist() == [-1.0, 1.0]


def test_bad_camera():
    with pytest.raises(ValueError, match="takes 4 parameters"):
        Camera("PINHOLE", 10, 10, (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="unknown camera model"):
        Camera("FISHY", 10, 10, (1.0,))
