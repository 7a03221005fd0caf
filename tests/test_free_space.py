"""The free-space check (xseason.sfm.checks.free_space): a sequence placed right agrees with the world's
free space; the same sequence moved by one period of a street of identical buildings agrees on the
facades, and its unique objects (and the world's) stand where the other side sees through."""

from __future__ import annotations

import numpy as np
import pytest

from xseason.sfm.checks import SeenThrough, Views, depth_sigma, free_space, seen_through
from xseason.sfm.config import RegistrationConfig

F = 300.0  # focal length, pixels
PERIOD = 10.0  # metres: a building 8 m wide, then a 2 m alley to a back wall
PILLARS = np.array([-17.0, -4.0, 3.0, 14.0, 22.0])  # x of unique objects (kiosks, trees) before the facades


def _street(rng: np.random.Generator, n: int = 6000) -> np.ndarray:
    """Points on one sampling of the street (x along it, y down, z away from the cameras): facades at
    z = 12 with alleys to z = 20 every PERIOD, the ground at y = 1.5, and 1 m pillars at PILLARS (front
    face z = 7)."""
    x = rng.uniform(-30, 30, n)
    alley = np.mod(x, PERIOD) > 8.0
    facade = np.c_[x, rng.uniform(-4, 1.5, n), np.where(alley, 20.0, 12.0)]
    ground = np.c_[rng.uniform(-30, 30, n // 2), np.full(n // 2, 1.5), rng.uniform(3, 12, n // 2)]
    k = rng.integers(0, len(PILLARS), n // 2)
    pillars = np.c_[
        PILLARS[k] + rng.uniform(-0.5, 0.5, n // 2), rng.uniform(-1, 1.5, n // 2), np.full(n // 2, 7.0)
    ]
    return np.concatenate([facade, ground, pillars]) + rng.normal(0, 0.01, (2 * n, 3))


def _occluded(centres: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """(C, P) whether the segment camera -> point crosses a pillar (box 1 m wide, 0.5 m deep, slab test)."""
    lo = np.c_[PILLARS - 0.5, np.full(len(PILLARS), -1.0), np.full(len(PILLARS), 7.01)]
    hi = np.c_[PILLARS + 0.5, np.full(len(PILLARS), 1.5), np.full(len(PILLARS), 7.5)]
    d = xyz[None, :, None] - centres[:, None, None]  # (C, P, 1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = (lo - centres[:, None, None]) / d
        t1 = (hi - centres[:, None, None]) / d
    enter = np.nanmax(np.minimum(t0, t1), axis=-1)
    leave = np.nanmin(np.maximum(t0, t1), axis=-1)
    return np.any((enter < leave) & (leave > 0) & (enter < 0.999), axis=-1)


def _views(centres: np.ndarray, xyz: np.ndarray, first: int) -> Views:
    """Cameras at `centres` looking down +z, observing the points `xyz` (indices from `first`) in their
    70-degree field of view within 25 m that no pillar hides."""
    rel = xyz[None] - centres[:, None]
    visible = (rel[..., 2] > 0.5) & (np.abs(rel[..., 0]) < 0.7 * rel[..., 2]) & (rel[..., 2] < 25.0)
    visible &= np.abs(rel[..., 1]) < 0.5 * rel[..., 2]
    camera, point = np.nonzero(visible & ~_occluded(centres, xyz))
    eye = np.repeat(np.eye(3)[None], len(centres), axis=0)
    return Views(eye, centres, np.full(len(centres), F), camera, point + first)


def _scene(shift: float):
    """World: 21 cameras every 2 m; sequence: 11 cameras every 1 m, 0.5 m ahead, each side its own
    points; the sequence (cameras and points) then moved by `shift` metres along the street."""
    rng = np.random.default_rng(0)
    world_c = np.c_[np.arange(-20.0, 21.0, 2.0), np.zeros(21), np.zeros(21)]
    seq_c = np.c_[np.arange(-5.0, 6.0, 1.0), np.zeros(11), np.full(11, 0.5)]
    world_xyz, seq_xyz = _street(rng), _street(rng)
    world = _views(world_c, world_xyz, 0)
    seq = _views(seq_c, seq_xyz, len(world_xyz))
    move = np.array([shift, 0.0, 0.0])
    seq = Views(seq.rotations, seq.centres + move, seq.focal, seq.obs_camera, seq.obs_point)
    xyz = np.concatenate([world_xyz, seq_xyz + move])
    every = Views(
        np.concatenate([world.rotations, seq.rotations]),
        np.concatenate([world.centres, seq.centres]),
        np.concatenate([world.focal, seq.focal]),
        np.concatenate([world.obs_camera, seq.obs_camera + len(world_c)]),
        np.concatenate([world.obs_point, seq.obs_point]),
    )
    return xyz, every, seq, world


def _check(shift: float) -> tuple[SeenThrough, SeenThrough]:
    cfg = RegistrationConfig()
    xyz, every, seq, world = _scene(shift)
    sigma = depth_sigma(xyz, every, cfg.free_space_depth_noise)
    return free_space(
        xyz, sigma, seq, world, cfg.free_space_cell, cfg.free_space_margin, cfg.free_space_max_sigma
    )


def test_a_sequence_placed_right_agrees_with_the_worlds_free_space():
    """A few conflicts where an 8 px cell spans a pillar's edge (measured: 1.4 % both ways)."""
    cfg = RegistrationConfig()
    forward, backward = _check(0.0)
    assert forward.tested > 3000 and backward.tested > 3000
    assert forward.share < 0.02 and backward.share < 0.02
    assert max(forward.lower_share(cfg.free_space_z), backward.lower_share(cfg.free_space_z)) < 0.015


@pytest.mark.parametrize("shift", [PERIOD, -PERIOD, 2 * PERIOD])
def test_a_sequence_moved_onto_identical_buildings_stands_in_the_worlds_free_space(shift):
    """Facades, alleys and ground repeat: only the pillars (a quarter of each side's points, its own and
    the world's) disagree; measured 25-31 % conflicting both ways, above free_space_max_share (0.2)."""
    cfg = RegistrationConfig()
    forward, backward = _check(shift)
    assert forward.tested > 3000 and backward.tested > 3000
    assert forward.share > 0.24 and backward.share > 0.24, (forward, backward)
    assert min(forward.lower_share(cfg.free_space_z), backward.lower_share(cfg.free_space_z)) > 0.22
    assert cfg.free_space_max_share < 0.22


def test_a_point_in_front_of_a_seen_surface_conflicts_and_one_behind_or_beside_does_not():
    """One camera sees a wall at 10 m (points triangulated at 5 degrees: sigma 2 px / 300 px / 0.087 =
    7.6 %); a point at 5 m in front of it conflicts; at 9 m (within the noise and margin), at 15 m
    (hidden behind it) or off the wall's cells it does not; behind the camera it is not tested."""
    wall = np.c_[np.linspace(-2, 2, 41), np.zeros(41), np.full(41, 10.0)]
    tested = np.array(
        [[0.0, 0.0, 5.0], [0.5, 0.0, 9.0], [1.0, 0.0, 15.0], [0.0, 3.0, 10.0], [0.0, 0.0, -5.0]]
    )
    xyz = np.concatenate([wall, tested])
    views = Views(np.eye(3)[None], np.zeros((1, 3)), np.array([F]), np.zeros(41, int), np.arange(41))
    sigma = np.full(len(xyz), 2.0 / F / np.radians(5.0))
    n_tested, n_front = seen_through(xyz, sigma, np.arange(41, 46), views, cell=8.0, margin=0.05)
    assert n_tested.tolist() == [1, 1, 1, 0, 0]
    assert n_front.tolist() == [1, 0, 0, 0, 0]


def test_depth_sigma_is_the_ray_noise_over_the_triangulation_angle():
    """A point 10 m ahead of two cameras 1 m apart: 5.72 degrees; one seen once has no depth."""
    centres = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0]])
    views = Views(
        np.repeat(np.eye(3)[None], 2, 0), centres, np.full(2, F), np.array([0, 1, 0]), np.array([0, 0, 1])
    )
    sigma = depth_sigma(np.array([[0.0, 0.0, 10.0], [3.0, 0.0, 10.0]]), views, pixel_noise=2.0)
    assert sigma[0] == pytest.approx(2.0 / F / (2 * np.arctan(0.05)), rel=1e-9)  # 6.7 %
    assert np.isinf(sigma[1])


def test_the_lower_bound_of_a_share_needs_enough_points():
    """Wilson score bounds: 23 of 41 (seed 33's misplaced dusk-rain pair) is above 0.3 at 2 standard
    errors (0.41), 4 of 15 (seed 32's lone night image) is not (0.11); nothing tested is no evidence."""
    assert SeenThrough(41, 23).lower_share(2.0) == pytest.approx(0.4075, abs=1e-4)
    assert SeenThrough(15, 4).lower_share(2.0) == pytest.approx(0.1071, abs=1e-4)
    assert SeenThrough(0, 0).lower_share(2.0) == 0.0 and np.isnan(SeenThrough(0, 0).share)
