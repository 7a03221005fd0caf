"""Ray casting against triangle soups (open3d `RaycastingScene`), shared by the visibility models.

open3d casts in float32: coordinates are taken relative to the vertices' mean, so that a world
frame far from its origin (UTM, ECEF) loses no precision. Casting uses `OMP_NUM_THREADS` threads
when set (Ray sets it to a task's CPUs: one worker then takes one core), else every core.
"""

from __future__ import annotations

import numpy as np

from xseason.core.executor import task_threads

NO_HIT = -2  # owner of a ray that hits nothing


class RayScene:
    """One open3d ray-casting scene and an owner id for each of its triangles."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, owner: np.ndarray):
        import open3d as o3d

        self.owner = owner
        self.shift = vertices.mean(axis=0) if len(vertices) else np.zeros(3)
        self.scene = o3d.t.geometry.RaycastingScene()
        if len(triangles):
            self.scene.add_triangles(
                o3d.core.Tensor((vertices - self.shift).astype(np.float32)),
                o3d.core.Tensor(triangles.astype(np.uint32)),
            )

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance along each unit ray (origins: (3,) or one per ray) to its first hit (inf: none)
        and the owner of the triangle hit (NO_HIT: none)."""
        import open3d as o3d

        if len(self.owner) == 0 or len(directions) == 0:
            return np.full(len(directions), np.inf), np.full(len(directions), NO_HIT, np.int64)
        rays = np.concatenate([np.broadcast_to(origins - self.shift, directions.shape), directions], axis=1)
        rays = o3d.core.Tensor(np.ascontiguousarray(rays, np.float32))
        ans = self.scene.cast_rays(rays, nthreads=task_threads())
        t = ans["t_hit"].numpy().astype(np.float64)
        prim = ans["primitive_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t)
        what = np.full(len(t), NO_HIT, np.int64)
        what[hit] = self.owner[prim[hit]]
        return t, what


__all__ = ["NO_HIT", "RayScene"]
