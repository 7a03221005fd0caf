"""Registration checks (xseason.sfm.checks): an image's pose against its verified matches, a
sequence's trajectory for breaks, sequences against their position priors."""

from __future__ import annotations

import numpy as np

from xseason.core.geometry import Pose
from xseason.sfm.checks import continuity, pose_agreement, prior_offsets

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


def _trajectory(n: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A vehicle's camera at 1 Hz, one frame missing: 1 m/s, speeding up to 2 m/s, then a 90-degree left
    turn (smooth, up to 20 degrees a step); 1 cm / 0.1 degree noise."""
    rng = np.random.default_rng(seed)
    times = np.delete(np.arange(n + 1, dtype=float), 4)  # frame 4 was not registered
    speed = np.interp(times, [0, 6, 9, n], [1.0, 1.0, 2.0, 2.0])

    def heading(t: np.ndarray) -> np.ndarray:
        return 90.0 * (1 - np.cos(np.pi * np.clip((t - 10) / 8, 0, 1))) / 2

    step = np.diff(times, prepend=times[0])
    travel = np.radians(heading(times - step / 2))  # each step's chord: the heading half-way
    direction = np.c_[np.sin(travel), np.zeros(len(times)), np.cos(travel)]
    centres = np.cumsum(direction * (speed * step)[:, None], axis=0) + rng.normal(0, 0.01, (len(times), 3))
    rotations = np.array([_yaw(h + rng.normal(0, 0.1)) for h in heading(times)])
    return times, rotations, centres


def test_a_smooth_trajectory_has_no_break_and_an_injected_jump_is_found_where_it_is():
    times, rotations, centres = _trajectory()
    smooth = continuity(times, rotations, centres, max_ratio=3.0, min_turn=6.0, min_jump=0.05)
    assert not smooth.breaks.any()
    assert np.nanmax(smooth.turn_deg) < 5 and smooth.speed_ratio.max() < 2.1  # 90-degree turn, speed-up
    jumped = centres.copy()
    jumped[8:] += [0.0, 0.0, 4.0]  # from frame 8 on, 4 m ahead along the route (2 steps)
    found = continuity(times, rotations, jumped, 3.0, 6.0, 0.05)
    assert np.flatnonzero(found.breaks).tolist() == [7]
    assert [p.tolist() for p in found.parts()] == [list(range(8)), list(range(8, len(times)))]
    moved = centres.copy()
    moved[12:] += [1.0, 0.0, 0.0]  # from frame 12 on (in the turn), 1 m sideways: half a step
    found = continuity(times, rotations, moved, 3.0, 6.0, 0.05)
    assert np.flatnonzero(found.breaks).tolist() == [10, 11, 12]  # the step, and one on either side
    tilted = rotations.copy()
    tilted[14:] = _yaw(8.0) @ rotations[14:]  # from frame 14 on, turned 8 degrees more than the route
    found = continuity(times, tilted, centres, 3.0, 6.0, 0.05)
    assert np.flatnonzero(found.breaks).tolist() == [13, 14]
    assert max(map(len, found.parts())) == 14


def test_a_standing_camera_has_no_break():
    times, rotations, _ = _trajectory()
    jitter = np.random.default_rng(1).normal(0, 0.01, (len(times), 3))
    assert not continuity(times, rotations, jitter, 3.0, 6.0, min_jump=0.05).breaks.any()


def _routes(shift: float, seed: int) -> tuple[dict, dict]:
    """Four sequences of 10 cameras on a 40 m x 30 m block, their priors (0.5 m noise per axis) and
    their centres in a world frame (scale 0.1, rotated, moved); the last sequence `shift` m off."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 30, 10)
    true = {
        "a": np.c_[s, np.zeros(10), np.zeros(10)],
        "b": np.c_[s + 5, np.zeros(10), np.full(10, 30.0)],
        "c": np.c_[np.zeros(10), np.zeros(10), s],
        "d": np.c_[np.full(10, 40.0), np.zeros(10), s],
    }
    priors = {k: v + rng.normal(0, 0.5, v.shape) for k, v in true.items()}
    placed = {k: v + ([0.0, 0.0, shift] if k == "d" else 0.0) for k, v in true.items()}
    to_world = _yaw(40.0)
    return {k: 0.1 * v @ to_world.T + [3.0, 1.0, -2.0] for k, v in placed.items()}, priors


def test_a_sequence_off_its_priors_is_caught_and_right_ones_are_not():
    for seed in range(5):
        right = prior_offsets(*_routes(0.0, seed), max_z=5.0, min_share=0.05)
        assert all(r.consistent and r.z < 4 for r in right.values()), (seed, right)
        wrong = prior_offsets(*_routes(4.0, seed), max_z=5.0, min_share=0.05)  # 4 m: 10 % of the extent
        assert not wrong["d"].consistent and wrong["d"].z > 8, (seed, wrong)
        assert 0.07 < wrong["d"].share < 0.13
        assert all(wrong[k].consistent for k in "abc"), (seed, wrong)
        posed = prior_offsets(*_routes(4.0, seed), 5.0, 0.05, fixed=frozenset("d"))
        assert posed["d"].consistent  # poses given by the manifest are not rejected


def test_priors_need_two_sequences_one_of_three_cameras():
    centres, priors = _routes(4.0, 0)
    assert prior_offsets({"d": centres["d"]}, {"d": priors["d"]}, 5.0, 0.05) == {}
    corner = {"ac": np.r_[centres["a"], centres["c"]], "d": centres["d"][:2]}  # d: 2 cameras, 4 m off
    found = prior_offsets(corner, {"ac": np.r_[priors["a"], priors["c"]], "d": priors["d"][:2]}, 5.0, 0.05)
    assert list(found) == ["d"] and not found["d"].consistent  # ac alone is not tested
    short = {"a": centres["a"][:2], "d": centres["d"][:2]}
    assert prior_offsets(short, {"a": priors["a"][:2], "d": priors["d"][:2]}, 5.0, 0.05) == {}
