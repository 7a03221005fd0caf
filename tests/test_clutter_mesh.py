"""The solid clutter hulls of the surface model: the bitwise closing (`surfaces._closed_and_grown`)
gives exactly the voxels of scipy's iterated closing it replaced, on whole grids and at their
borders, and `_clutter_mesh` (blocks cropped to their points) exactly the mesh of the formulation it
replaced, in one grid and block by block; the hull is made once per set of solid conditions and
travels with a pickled model."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import ndimage

import xseason.matching.surfaces as surfaces


def _reference(occupied: np.ndarray, steps: int) -> np.ndarray:
    """The formulation `_closed_and_grown` replaced: `steps` dilations then erosions by the 6-neighbour
    cross, and a dilation."""
    return ndimage.binary_dilation(ndimage.binary_closing(occupied, iterations=steps))


@pytest.mark.parametrize("steps", [1, 2, 5, 15])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 40, 7), (33, 20, 26), (9, 5, 16)])
def test_closing_is_scipys_iterated_closing(shape, steps):
    """Random grids, sparse to dense, with voxels on the grid's faces, edges and corners (where scipy
    erodes against the empty outside)."""
    rng = np.random.default_rng(steps * 100 + sum(shape))
    for density in (0.002, 0.02, 0.2, 0.7):
        occupied = rng.random(shape) < density
        for axis in range(3):  # more voxels on every face
            for end in (0, -1):
                face = np.moveaxis(occupied, axis, 0)[end]  # a view
                face |= rng.random(face.shape) < 0.3
        want = _reference(occupied, steps)
        np.testing.assert_array_equal(surfaces._closed_and_grown(occupied, steps), want)
    full = np.ones(shape, bool)
    np.testing.assert_array_equal(surfaces._closed_and_grown(full, steps), _reference(full, steps))


def _reference_mesh(
    points: np.ndarray, radius: float, join: float, clearance: float, cameras: np.ndarray, first_vertex: int
) -> tuple[np.ndarray, np.ndarray]:
    """The formulation `_clutter_mesh` replaced (its grid path): every block's whole grid, scipy's
    closing."""
    steps = max(int(round(join / radius / 2)), 0)
    margin, reach = 2 * steps + 2, int(np.ceil(clearance / radius))
    voxel = np.floor(points / radius).astype(np.int64)
    camera_voxel = np.floor(cameras / radius).astype(np.int64)
    cells = [np.zeros((0, 3), np.int64)]
    for start, shape, crop in surfaces._tiles(voxel, margin):
        local = voxel - start
        inside = np.all((local >= 0) & (local < shape), axis=1)
        if not inside.any():
            continue
        occupied = np.zeros(shape, bool)
        occupied[tuple(local[inside].T)] = True
        occupied = _reference(occupied, steps)
        local_cams = camera_voxel - start
        for c in local_cams[np.all((local_cams >= -reach) & (local_cams < shape + reach), axis=1)]:
            lo, hi = np.maximum(c - reach, 0), np.minimum(c + reach + 1, shape)
            occupied[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = False
        core = occupied[crop : shape[0] - crop, crop : shape[1] - crop, crop : shape[2] - crop]
        cells.append(np.argwhere(core) + start + crop)
    return surfaces._voxel_faces(np.concatenate(cells), radius, first_vertex)


def _clumps(rng: np.random.Generator, n: int, extent: float, spread: float) -> np.ndarray:
    """Clutter-like points: clumps (crowns) of scattered points and thin vertical shafts (poles)."""
    centres = rng.uniform(0, extent, (n, 3))
    crowns = centres[:, None] + rng.normal(0, spread, (n, 40, 3))
    shafts = centres[:, None] + np.outer(np.linspace(0, 5 * spread, 12), [0, 0, 1])[None]
    return np.concatenate([crowns.reshape(-1, 3), shafts.reshape(-1, 3)])


@pytest.mark.parametrize("block", [None, 12, 40])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clutter_mesh_is_unchanged(monkeypatch, block, seed):
    """`_clutter_mesh` and the formulation it replaced: the same vertices and triangles, in one grid
    and in blocks (`_tiles`, a small `_BLOCK` so that hulls cross the blocks' borders; a large one so
    that a block's points fill only part of it)."""
    rng = np.random.default_rng(seed)
    points = _clumps(rng, 12, extent=4.0, spread=0.15) - 7.3  # off the origin, negative voxels too
    cameras = rng.uniform(-7.3, -3.3, (6, 3))
    args = points, 0.05, 0.05 * 8, 0.3, cameras, 17
    if block:
        monkeypatch.setattr(surfaces, "_BLOCK", block)
        assert len(surfaces._tiles(np.floor(points / 0.05).astype(np.int64), 10)) > 8
    verts, tris = surfaces._clutter_mesh(*args)
    want_verts, want_tris = _reference_mesh(*args)
    assert len(tris) > 1000 and tris.min() == 17
    np.testing.assert_array_equal(verts, want_verts)
    np.testing.assert_array_equal(tris, want_tris)


def test_hull_once_per_solid_conditions_and_pickled_with_the_model(monkeypatch):
    """One `_clutter_mesh` per set of solid conditions, whatever the sparse ones; a pickled model
    (an executor's shared input) holds the hulls made, not the open3d scenes, and needs no hull."""
    rng = np.random.default_rng(3)
    verts = rng.uniform(0, 1, (4, 3))
    clutter = {0: _clumps(rng, 4, 2.0, 0.1), 1: rng.uniform(0, 2, (50, 3)), 2: rng.uniform(0, 2, (30, 3))}
    model = surfaces.SurfaceModel(
        [], [], np.zeros(0, bool), verts, np.array([[0, 1, 2], [0, 2, 3]]), np.zeros(2, np.int64),
        clutter, rng.uniform(0, 2, (3, 3)), 1.0, surfaces.SurfaceConfig(clutter_radius=0.05, clutter_join=8),
    )  # fmt: skip
    calls = []
    real = surfaces._clutter_mesh
    monkeypatch.setattr(surfaces, "_clutter_mesh", lambda *a: calls.append(1) or real(*a))
    hull = model.hull((0,))
    scenes = [model.scene((0,), (k,)) for k in (1, 2, 0)] + [model.scene((0,), (1,))]
    assert len(calls) == 1 and scenes[0] is scenes[3] and len(hull[1]) > 100
    copy = pickle.loads(pickle.dumps(model))
    assert copy._scenes == {} and copy.hull((0,))[1].tobytes() == hull[1].tobytes()
    origin, rays = np.array([1.0, 1.0, 1.0]), rng.normal(size=(200, 3))
    rays /= np.linalg.norm(rays, axis=1)[:, None]
    t, what = copy.scene((0,), (1,)).cast(origin, rays)
    want_t, want_what = scenes[0].cast(origin, rays)
    assert len(calls) == 1 and (what == surfaces.CLUTTER).sum() > 20
    np.testing.assert_array_equal(t, want_t)
    np.testing.assert_array_equal(what, want_what)
