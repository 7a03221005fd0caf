"""Registration checks (xseason.sfm.checks): an image's pose against its verified matches."""

from __future__ import annotations

import numpy as np

from xseason.core.geometry import Pose
from xseason.sfm.checks import pose_agreement

F = 400.0


def _yaw(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0.0, -np.sin(a)], [0.0, 1.0, 0.0], [np.sin(a), 0.0, np.cos(a)]])


def _views(seed: int = 0):
    """Three cameras along a street looking at the same points; every pair's matches are the true
    correspondences (0.3 px noise), plus 10 % random ones, as a two-view RANSAC would leave."""
    rng = np.random.default_rng(seed)
    xyz = np.c_[rng.uniform(-5, 5, (400, 2)), rng.uniform(8, 20, 400)]
    poses = {k: Pose(_yaw(3.0 * k), np.array([-1.0 * k, 0.0, 0.0])) for k in range(3)}
    keypoints = {}
    for k, pose in poses.items():
        cam = xyz @ pose.R.T + pose.t
        keypoints[k] = cam[:, :2] / cam[:, 2:] + rng.normal(0, 0.3 / F, (len(xyz), 2))
    matches = {}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        true = np.stack([np.arange(len(xyz))] * 2, axis=1)
        outliers = rng.integers(0, len(xyz), (40, 2))
        matches[(a, b)] = np.concatenate([true, outliers])
    return poses, keypoints, matches


def test_right_poses_fit_their_matches_and_a_wrong_one_does_not():
    """(An error along the epipolar lines -- here a yaw with a sideways baseline -- is invisible to
    this check; an error across them is what it sees.)"""
    poses, keypoints, matches = _views()
    focal = dict.fromkeys(poses, F)
    right = pose_agreement(poses, keypoints, focal, matches, max_error=2.0)
    assert all(a.matches == 880 for a in right.values())  # 2 pairs x (400 true + 40 random)
    assert all(0.88 <= a.share <= 0.92 for a in right.values())  # the true ones, and a few random ones
    wrong = dict(poses)
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.05), -np.sin(0.05)], [0.0, np.sin(0.05), np.cos(0.05)]])
    wrong[2] = Pose(pitch @ poses[2].R, poses[2].t)  # tilted 3 degrees: across its epipolar lines
    found = pose_agreement(wrong, keypoints, focal, matches, max_error=2.0)
    assert found[2].share < 0.1
    assert 0.4 < found[0].share < 0.6 and 0.4 < found[1].share < 0.6  # their pair with 2 disagrees


def test_images_without_matches_among_the_posed_have_no_share():
    poses, keypoints, matches = _views()
    found = pose_agreement(
        {0: poses[0], 5: poses[1]}, keypoints | {5: keypoints[1]}, {0: F, 5: F}, matches, 2.0
    )
    assert found[0].matches == 0 and np.isnan(found[0].share) and np.isnan(found[5].share)
