"""Matching along known epipolar lines (xseason.sfm.guided) on synthetic keypoints with exact truth."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from xseason.core.geometry import Pose
from xseason.sfm import features
from xseason.sfm.config import MatchingConfig
from xseason.sfm.guided import epipolar_errors, epipolar_matches, essential_matrix

F = 500.0  # focal length (px) of both cameras; normalised coordinates below are pixels / F


def _rotation(yaw_deg: float) -> np.ndarray:
    a = np.radians(yaw_deg)
    return np.array([[np.cos(a), 0.0, -np.sin(a)], [0.0, 1.0, 0.0], [np.sin(a), 0.0, np.cos(a)]])


def _scene(pose1: Pose, n: int = 1500, seed: int = 0):
    """Points in front of camera 0 (identity pose), seen by both; descriptors shared by each point's
    two keypoints (plus noise), and every descriptor also used by a look-alike keypoint elsewhere in
    image 1 (repeated structure), so that plain nearest-neighbour matching is ambiguous everywhere."""
    rng = np.random.default_rng(seed)
    xyz = np.c_[rng.uniform(-4, 4, (n, 2)), rng.uniform(6, 20, n)]
    cam1 = xyz @ pose1.R.T + pose1.t
    keep = cam1[:, 2] > 1
    xyz, cam1 = xyz[keep], cam1[keep]
    x0 = xyz[:, :2] / xyz[:, 2:] + rng.normal(0, 0.3 / F, (len(xyz), 2))
    x1 = cam1[:, :2] / cam1[:, 2:] + rng.normal(0, 0.3 / F, (len(xyz), 2))
    desc = rng.normal(size=(len(xyz), 128))
    d0 = desc + rng.normal(0, 0.15, desc.shape)
    d1 = desc + rng.normal(0, 0.15, desc.shape)
    lookalike_x = rng.uniform(-0.4, 0.4, (len(xyz), 2))  # anywhere in image 1
    lookalike_d = desc + rng.normal(0, 0.15, desc.shape)
    order = rng.permutation(2 * len(xyz))  # image 1's keypoints in random order
    x1_all = np.concatenate([x1, lookalike_x])[order]
    d1_all = np.concatenate([d1, lookalike_d])[order]
    truth = np.argsort(order)[: len(xyz)]  # keypoint of image 1 of each point
    return x0, d0, x1_all, d1_all, truth


@pytest.mark.parametrize(
    "pose1",
    [
        Pose(_rotation(10.0), np.array([-1.0, 0.0, 0.2])),  # epipole far outside the image
        Pose(np.eye(3), np.array([-1.0, 0.0, 0.0])),  # sideways: parallel epipolar lines
        Pose(_rotation(3.0), np.array([0.0, 0.1, -1.5])),  # forward: the epipole inside the image
    ],
    ids=["general", "sideways", "forward"],
)
def test_epipolar_matches_are_the_true_ones_despite_look_alikes(pose1):
    x0, d0, x1, d1, truth = _scene(pose1)
    essential = essential_matrix(Pose(np.eye(3), np.zeros(3)), pose1)
    found = epipolar_matches(
        x0, x1, d0, d1, essential, (F, F), max_error=2.0, max_ratio=0.8, max_distance=0.7
    )
    correct = truth[found[:, 0]] == found[:, 1]
    assert len(found) >= 0.8 * len(x0)  # look-alikes off the epipolar line do not spoil the ratio test
    assert correct.mean() >= 0.995
    assert len(np.unique(found[:, 0])) == len(found) == len(np.unique(found[:, 1]))  # mutual: one-to-one
    # the same matches as comparing every keypoint with every other: the sweep only skips far ones
    small = epipolar_matches(x0, x1, d0, d1, essential, (F, F), 2.0, 0.8, 0.7, chunk=97)
    np.testing.assert_array_equal(small, found)
    np.testing.assert_array_equal(found, _dense(x0, x1, d0, d1, essential, 2.0 / F, 0.8, 0.7))


def _dense(x0, x1, d0, d1, essential, tol, ratio, max_angle):
    """The definition, on all N0 x N1 distances: gated by both epipolar distances, ratio test, mutual."""
    h0, h1 = np.c_[x0, np.ones(len(x0))], np.c_[x1, np.ones(len(x1))]
    l1, l0 = h0 @ essential.T, h1 @ essential
    dist1 = np.abs(l1 @ h1.T) / np.linalg.norm(l1[:, :2], axis=1, keepdims=True)
    dist0 = np.abs(h0 @ l0.T) / np.linalg.norm(l0[:, :2], axis=1)[None]
    u0 = d0 / np.linalg.norm(d0, axis=1, keepdims=True)
    u1 = d1 / np.linalg.norm(d1, axis=1, keepdims=True)
    angle = np.where((dist1 <= tol) & (dist0 <= tol), np.arccos(np.clip(u0 @ u1.T, -1, 1)), np.inf)
    best = angle.argmin(axis=1)
    two = np.sort(angle, axis=1)[:, :2]
    ok = (two[:, 0] <= max_angle) & (two[:, 0] < ratio * two[:, 1])
    ok &= angle.argmin(axis=0)[best] == np.arange(len(x0))
    return np.stack([np.flatnonzero(ok), best[ok]], axis=1)


def test_epipolar_matches_without_the_epipolar_constraint_would_be_ambiguous():
    """The control: plain mutual nearest neighbours with the ratio test keep few of the true matches."""
    pose1 = Pose(_rotation(10.0), np.array([-1.0, 0.0, 0.2]))
    x0, d0, x1, d1, truth = _scene(pose1)
    u0 = d0 / np.linalg.norm(d0, axis=1, keepdims=True)
    u1 = d1 / np.linalg.norm(d1, axis=1, keepdims=True)
    angle = np.arccos(np.clip(u0 @ u1.T, -1, 1))
    two = np.sort(angle, axis=1)[:, :2]
    passes = two[:, 0] < 0.8 * two[:, 1]
    assert passes.mean() < 0.3  # every point has a look-alike: the ratio test rejects most
    essential = essential_matrix(Pose(np.eye(3), np.zeros(3)), pose1)
    found = epipolar_matches(x0, x1, d0, d1, essential, (F, F), 2.0, 0.8, 0.7)
    assert len(found) > 3 * passes.sum()


def test_epipolar_matches_of_empty_images():
    e = essential_matrix(Pose(np.eye(3), np.zeros(3)), Pose(np.eye(3), np.array([1.0, 0, 0])))
    empty = np.zeros((0, 2))
    assert epipolar_matches(
        empty, np.ones((3, 2)), np.zeros((0, 4)), np.ones((3, 4)), e, (F, F), 2, 0.8, 0.7
    ).shape == (0, 2)


def test_epipolar_errors_are_the_pixel_distances_to_both_lines():
    pose1 = Pose(_rotation(10.0), np.array([-1.0, 0.0, 0.2]))
    x0, _, x1, _, truth = _scene(pose1, n=200)
    essential = essential_matrix(Pose(np.eye(3), np.zeros(3)), pose1)
    right = epipolar_errors(x0, x1[truth], essential, (F, F))
    assert np.median(right) < 0.5 and right.max() < 3.0  # keypoint noise 0.3 px
    moved = x1[truth] + [[0.0, 10.0 / F]]  # 10 px across a nearly horizontal line
    assert np.median(epipolar_errors(x0, moved, essential, (F, F))) > 8.0


def test_ransac_verification_of_posed_pairs_is_checked_with_their_poses(tmp_path):
    """Two posed images: RANSAC's inliers (some true matches and look-alikes it fitted) are checked with
    the poses: exactly its true ones remain, as a calibrated geometry; the true matches RANSAC left out
    stay out. A pair all of whose inliers contradict the poses is no longer verified."""
    pose1 = Pose(_rotation(10.0), np.array([-1.0, 0.0, 0.2]))
    x0, _, x1, _, truth = _scene(pose1, n=300)
    db = pycolmap.Database.open(tmp_path / "db.db")
    camera = pycolmap.Camera(model="PINHOLE", width=1000, height=1000, params=[F, F, 500.0, 500.0])
    camera_id = db.write_camera(camera)
    ids = [db.write_image(pycolmap.Image(name=f"{k}.png", camera_id=camera_id)) for k in range(3)]
    for image_id, x in zip(ids, (x0, x1, x1), strict=True):
        db.write_keypoints(image_id, (x * F + 500.0).astype(np.float32))  # COLMAP pixels
    right = np.c_[np.arange(len(x0)), truth]
    wrong = np.c_[np.arange(len(x0)), np.roll(truth, 7)][:60]  # look-alikes: other points' keypoints
    for other, inliers in ((ids[1], np.concatenate([right[:100], wrong])), (ids[2], wrong)):
        db.write_matches(ids[0], other, np.concatenate([right, wrong]).astype(np.uint32))
        ransac = pycolmap.TwoViewGeometry()
        ransac.config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
        ransac.inlier_matches = inliers.astype(np.uint32)
        db.write_two_view_geometry(ids[0], other, ransac)
    db.close()
    poses = {ids[0]: Pose(np.eye(3), np.zeros(3)), ids[1]: pose1, ids[2]: pose1}
    pairs = [(ids[0], ids[1]), (ids[0], ids[2])]
    for _ in range(2):  # a rerun checks again, with the same result
        features._verify_with_poses(tmp_path / "db.db", pairs, poses, MatchingConfig())
        db = pycolmap.Database.open(tmp_path / "db.db")
        checked, contradicted = (db.read_two_view_geometry(*pair) for pair in pairs)
        db.close()
        assert checked.config == pycolmap.TwoViewGeometryConfiguration.CALIBRATED
        kept = {tuple(m) for m in np.asarray(checked.inlier_matches).tolist()}
        assert {tuple(m) for m in right[:100].tolist()} <= kept
        assert len(kept) <= 102  # a look-alike near its line, by chance
        assert len(np.asarray(contradicted.inlier_matches)) == 0
