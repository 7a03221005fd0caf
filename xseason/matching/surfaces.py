"""The visibility model of densification: piecewise-planar surfaces of the reference condition
and conservative occluders for everything else, ray cast with open3d.

Man-made scenes are mostly planes (facades, road, sidewalks, signs), and a plane fitted to
hundreds of triangulated points is far more accurate than any one of them. `build_surfaces`
takes a table of well-measured points (all conditions, one world frame):

1. Planes: RANSAC (seeded, vectorised, preemptive: every hypothesis scored on 500 of the points,
   the 64 best of them on all; inlier distance `plane_distance`) on the points of
   the reference condition, repeated until no plane has `min_points` inliers; each plane's
   inliers are split into connected regions (DBSCAN in plane coordinates, eps 3 cells);
   regions that are nearly coplanar (`merge_angle`, `merge_distance`), touch, and fit one plane
   about as well as each alone (`merge_rms_ratio`) are merged; every region is refitted.
   *Noise-aware* (`plane_sigmas` > 0, off by default): a point's distance to a plane is compared
   with `plane_sigmas` standard deviations of its own triangulation noise along the plane's
   normal (lateral: distance x max(mean reprojection error, `keypoint_sigma`) / focal across its
   mean viewing ray; along it, that / sin(triangulation angle)), kept between `plane_distance`
   and `plane_distance_max`; hypotheses are scored by MSAC (residuals in tolerances, truncated)
   and refitted weighted by 1 / tolerance^2, so a plane follows its precise points. The same
   tolerance (x 2 for lying on / flat on a cell, floor `clutter_radius`; x 3 for carving) is used
   below. Plain, sparsely textured scenes (the random family: ~480 keypoints per image, depth noise
   ~1.6 % of the distance) get planes this way that the fixed distance misses. Left off because
   it costs accuracy on some scenes (issue 14, posed, `plane_sigmas` 3: random seed 7 coverage
   15.9 -> 77.3 %, wrong 0.16 -> 1.08 %; seed 101 37.8 -> 75.6 %, 0 -> 0.087 %; seed 102
   1.8 -> 42.3 %, 4.9 -> 13.1 %, its extra samples on planes fitted across several surfaces).
2. Extent: square cells of `cell_size` on each region's plane where it has points, holes of up
   to `closing` cells filled. A cell crossed by an observation ray (of any condition) whose
   point lies clearly behind it is removed, repeatedly: some camera saw through it (a parked
   car, summer foliage, a plane that overshoots a building's corner). So is a cell over a
   remaining cell of a larger parallel region nearer than carving can tell (3 x plane_distance):
   a second layer of one surface, from points triangulated a little off.
3. Clutter: every point not on a remaining cell (trees, poles, signs, surfaces too small for a
   plane, removed cells) is an occluder, except points lying flat (within 2 x plane_distance) on
   a removed cell of a region that keeps at least half of its cells (the reference's own: not on
   the region's border cells, where an object in front of it ends). The reference condition's
   clutter is voxelised (voxels of `clutter_radius`), gaps of up to `clutter_join` closed and
   grown by a voxel: solid crowns and shafts out of sparse leaf and pole points, kept
   `camera_clearance` away from the cameras. The looking image's own condition adds its clutter
   as single octahedra.
4. Ray casting (open3d `RaycastingScene`, re-centred: it casts in float32): for any pixel, the
   first region or clutter hit.

A *surface sample* of an image is the hit of a pixel's ray on a region whose neighbourhood
(`edge_px` away in four directions) hits the same region (`strict`, used where the sample is
taken) or nothing nearer (used where it is checked): samples at region borders and next to
occluders are dropped. All lengths are relative to the scene's median point depth, so the
configuration holds for metric and arbitrarily scaled reconstructions alike.

Measured on the built-in `demo` scene, poses given (benchmarks/bench_accuracy.py): this model
took the share of matches off by more than 5 px from 7.5 % (splatted z-buffer of the points)
to 0.02 %, and the cross-condition pairs of true overlap >= 0.3 with 100 matches or more from
35 % (night 18 %) to 93 % (every condition 87 % or more). Measured again 2026-12-02 (fresh
environment): 0.28 % off by more than 5 px, most of them road samples on a second layer 5 cm
above the road; 0.03 % once such layers are dropped, coverage 93 % (every condition 90 % or more).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from xseason.core.executor import Executor, LocalExecutor, task_threads
from xseason.core.geometry import in_image
from xseason.matching.association import PointTable
from xseason.matching.raycast import NO_HIT, RayScene
from xseason.matching.views import ImageView, unmasked, world_rays

CLUTTER, DROPPED = -1, -3

_OCTAHEDRON_VERTICES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
_OCTAHEDRON_FACES = np.array(
    [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
)


@dataclass
class SurfaceConfig:
    """Planar surfaces and occluders of densification (lengths: x the scene's median point depth)."""

    plane_distance: float = 0.002  # RANSAC inlier distance (the least, with plane_sigmas)
    plane_sigmas: float = 0.0  # > 0: a point is on a plane within this many of its noise sigmas (module doc)
    plane_distance_max: float = 0.02  # with plane_sigmas: the most a point may be off its plane
    keypoint_sigma: float = 0.5  # px, floor of a point's keypoint noise (its mean reprojection error)
    min_points: int = 50  # points a plane region needs
    ransac_iterations: int = 2000  # per plane
    merge_angle: float = 3.0  # degrees between the normals of regions that may merge
    merge_distance: float = 0.0033  # median distance of each region's points to the other's plane
    merge_rms_ratio: float = 2.0  # merged fit RMS at most this times the worse of the two
    cell_size: float = 0.033  # extent cells on the planes
    closing: int = 3  # holes of up to this many cells are filled
    free_space_margin: float = 0.03  # a ray removes a cell crossed this share of its length before its point
    clutter_radius: float = 0.02  # occluders grow this far around the other points
    clutter_join: float = 30.0  # gaps up to this x clutter_radius in reference clutter are closed (one solid)
    camera_clearance: float = 0.1  # no solid clutter this close to a camera
    edge_px: float = 6.0  # neighbourhood checked around every sample
    edge_tolerance: float = 0.05  # relative depth: a neighbour hit nearer than this is an occluder edge
    seed: int = 0  # RANSAC seed

    def validate(self) -> None:
        positive = (
            "plane_distance",
            "merge_distance",
            "cell_size",
            "clutter_radius",
            "edge_px",
            "edge_tolerance",
        )
        if any(getattr(self, k) <= 0 for k in positive) or self.clutter_join < 0 or self.camera_clearance < 0:
            raise ValueError(f"{', '.join(positive)} must be > 0, clutter_join and camera_clearance >= 0")
        if self.min_points < 3 or self.closing < 0 or self.ransac_iterations < 1:
            raise ValueError("min_points must be >= 3, closing >= 0, ransac_iterations >= 1")
        if self.plane_sigmas < 0 or self.plane_distance_max <= 0 or self.keypoint_sigma <= 0:
            raise ValueError("need plane_sigmas >= 0, plane_distance_max > 0, keypoint_sigma > 0")
        if not 0 <= self.free_space_margin < 1 or not 0 < self.merge_angle < 90 or self.merge_rms_ratio < 1:
            raise ValueError("need 0 <= free_space_margin < 1, 0 < merge_angle < 90, merge_rms_ratio >= 1")


@dataclass
class Region:
    """One planar region: unit normal, a point on it, in-plane axes, and its supporting points."""

    normal: np.ndarray
    origin: np.ndarray
    axes: np.ndarray  # (2, 3)
    points: np.ndarray  # indices into the PointTable

    @classmethod
    def fit(cls, xyz: np.ndarray, points: np.ndarray, weights: np.ndarray | None = None) -> Region:
        """Least-squares plane of `xyz[points]` (weighted: `weights` per point, e.g. 1 / its variance)."""
        sub = xyz[points]
        w = np.ones(len(sub)) if weights is None else weights / weights.sum() * len(sub)
        origin = (sub * w[:, None]).mean(axis=0)
        _, _, vt = np.linalg.svd((sub - origin) * np.sqrt(w)[:, None], full_matrices=False)
        return cls(vt[2], origin, vt[:2], np.asarray(points, np.int64))

    def residuals(self, xyz: np.ndarray) -> np.ndarray:
        return (xyz - self.origin) @ self.normal

    def plane_coords(self, xyz: np.ndarray) -> np.ndarray:
        return (xyz - self.origin) @ self.axes.T

    def rms(self, xyz: np.ndarray) -> float:
        return float(np.sqrt(np.mean(self.residuals(xyz[self.points]) ** 2)))


@dataclass
class _Tolerance:
    """How far each point may lie off a plane: `floor`, or with `sigmas` > 0 that many standard
    deviations of its triangulation noise along the plane's normal, between `floor` and `cap`
    (module doc). The noise of a point: `lateral` across its mean viewing `ray` (its keypoints'
    error at its distance), `depth` along it (lateral / sin of its triangulation angle)."""

    floor: float
    cap: float
    sigmas: float
    lateral: np.ndarray  # (P,)
    depth: np.ndarray  # (P,)
    ray: np.ndarray  # (P, 3) unit

    @classmethod
    def of(cls, table: PointTable, floor: float, cfg: SurfaceConfig, scale: float) -> _Tolerance:
        """The tolerance of every point of `table` (noise from its observations)."""
        n = table.num_points
        if cfg.plane_sigmas <= 0:
            return cls(floor, floor, 0.0, np.zeros(n), np.zeros(n), np.zeros((n, 3)))
        centres = np.array([v.pose.center if v.pose is not None else [np.nan] * 3 for v in table.views])
        focal = np.array([np.sqrt(np.prod(np.diag(v.camera.calibration_matrix())[:2])) for v in table.views])
        obs = np.flatnonzero(np.isfinite(centres[table.obs_image, 0]))
        image, point = table.obs_image[obs], table.obs_point[obs]
        ray = table.xyz[point] - centres[image]
        dist = np.linalg.norm(ray, axis=1)
        mean_ray = np.stack([np.bincount(point, ray[:, c] / dist, n) for c in range(3)], 1)
        mean_ray /= np.maximum(np.linalg.norm(mean_ray, axis=1, keepdims=True), 1e-12)
        count = np.maximum(np.bincount(point, minlength=n), 1)
        px = np.maximum(np.nan_to_num(table.error, posinf=0.0), cfg.keypoint_sigma)  # (seen nowhere: 0)
        lateral = np.bincount(point, dist / focal[image], n) / count * px
        depth = lateral / np.sin(np.radians(np.clip(table.tri_angle, 1e-3, 90.0)))
        cap = max(cfg.plane_distance_max * scale, floor)
        return cls(floor, cap, cfg.plane_sigmas, lateral, depth, mean_ray)

    def __call__(self, points: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Tolerances of `points` (N,) against a plane of unit `normal` (3,) -> (N,), or against
        several (H, 3) -> (N, H)."""
        if self.sigmas <= 0:
            return np.full((len(points), *normal.shape[:-1]), self.floor)
        cos = self.ray[points] @ normal.T
        shape = (-1, *[1] * (cos.ndim - 1))
        return self._clip(self.lateral[points].reshape(shape), self.depth[points].reshape(shape), cos)

    def each(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """(N,) tolerance of each of `points` against the plane of its own row of `normals` (N, 3)."""
        if self.sigmas <= 0:
            return np.full(len(points), self.floor)
        cos = np.einsum("ij,ij->i", self.ray[points], normals)
        return self._clip(self.lateral[points], self.depth[points], cos)

    def _clip(self, lateral: np.ndarray, depth: np.ndarray, cos: np.ndarray) -> np.ndarray:
        sigma = np.sqrt(lateral**2 + (depth**2 - lateral**2) * cos**2)
        return np.clip(self.sigmas * sigma, self.floor, self.cap)

    def weights(self, points: np.ndarray, normal: np.ndarray) -> np.ndarray | None:
        """Least-squares weights of `points` on a plane of `normal`: 1 / tolerance^2 (None: all equal)."""
        return None if self.sigmas <= 0 else 1.0 / self(points, normal) ** 2

    def scaled(self, factor: float) -> _Tolerance:
        """The same with floor and cap times `factor` (the noise term unchanged)."""
        return replace(self, floor=self.floor * factor, cap=self.cap * factor)


class SurfaceModel:
    """The regions of one reference condition and the clutter of every condition (module doc).

    Occluders depend on who looks: `samples(view, ..., conditions)` casts against the regions and
    the clutter of `conditions` only (a reference image: its own condition; a target image: the
    reference's and its own; other traversals' cars and foliage are not in either).
    """

    def __init__(
        self,
        regions: list[Region],
        grids: list[_Grid],
        alive: np.ndarray,
        vertices: np.ndarray,
        triangles: np.ndarray,
        triangle_region: np.ndarray,
        clutter: dict[int, np.ndarray],
        cameras: np.ndarray,
        scale: float,
        cfg: SurfaceConfig,
    ):
        self.regions, self.scale, self.cfg = regions, scale, cfg
        self._grids, self._alive = grids, alive  # extent cells of each region, and which remain
        self._cameras = cameras  # (C, 3) registered camera centres
        self._mesh = vertices, triangles, triangle_region
        self._clutter = clutter  # condition index -> (N, 3) clutter points
        self._hulls: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}  # `hull`, by solid conditions
        self._scenes: dict[tuple[tuple[int, ...], ...], RayScene] = {}  # `scene`, by (solid, sparse)

    def __getstate__(self) -> dict:
        """Pickled with its hulls but without its ray-casting scenes (open3d's, not picklable): a
        copy (an executor's task) rebuilds a scene from the hull it receives."""
        return {**self.__dict__, "_scenes": {}}

    def areas(self) -> np.ndarray:
        """(R,) remaining surface of each region (world units squared)."""
        cells = np.bincount(self._mesh[2], minlength=len(self.regions)) / 2
        return cells * (self.cfg.cell_size * self.scale) ** 2

    def scene(self, solid: tuple[int, ...], sparse: tuple[int, ...] = ()) -> RayScene:
        """The regions, the static clutter and the clutter of the `solid` conditions as solid
        hulls (`_clutter_mesh`), and that of the `sparse` ones as single octahedra (cached)."""
        solid = tuple(sorted(set(solid)))
        sparse = tuple(sorted(set(sparse) - set(solid)))
        key = solid, sparse
        if key not in self._scenes:
            verts, tris, owner = self._mesh
            hv, ht = self.hull(solid)
            radius = self.cfg.clutter_radius * self.scale
            ov, ot = _octahedra(self._points(sparse), radius, first_vertex=len(verts) + len(hv))
            clutter = np.full(len(ht) + len(ot), CLUTTER, np.int64)
            self._scenes[key] = RayScene(
                np.concatenate([verts, hv, ov]),
                np.concatenate([tris, ht, ot]),
                np.concatenate([owner, clutter]),
            )
        return self._scenes[key]

    def hull(self, solid: tuple[int, ...], executor: Executor | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Vertices and triangles (numbered after the regions' vertices) of the solid hulls of the
        `solid` conditions' clutter (`_clutter_mesh`, its blocks tasks of `executor`; cached, and
        pickled with the model)."""
        solid = tuple(sorted(set(solid)))
        if solid not in self._hulls:
            radius = self.cfg.clutter_radius * self.scale
            self._hulls[solid] = _clutter_mesh(
                self._points(solid),
                radius,
                self.cfg.clutter_join * radius,
                self.cfg.camera_clearance * self.scale,
                self._cameras,
                len(self._mesh[0]),
                executor,
            )
        return self._hulls[solid]

    def on_surfaces(self, xyz: np.ndarray) -> np.ndarray:
        """(P,) whether each point lies on a remaining cell of a region (within clutter_radius, at
        least 2 x plane_distance, of its plane): the surface itself, not clutter."""
        return self.region_at(xyz) >= 0

    def region_at(self, xyz: np.ndarray) -> np.ndarray:
        """(P,) the region on whose remaining cell each point lies (as `on_surfaces`; the first
        region found), -1 where none."""
        return _on_surfaces(self.regions, self._grids, self._alive, xyz, _surface_tol(self.cfg) * self.scale)

    def _points(self, conditions: tuple[int, ...]) -> np.ndarray:
        clouds = [self._clutter.get(c, np.zeros((0, 3))) for c in conditions]
        return np.concatenate(clouds or [np.zeros((0, 3))])

    def samples(
        self,
        view: ImageView,
        pixels: np.ndarray,
        strict: bool,
        solid: tuple[int, ...],
        sparse: tuple[int, ...] = (),
        expected: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Surface samples at `pixels` of `view` (module doc) in `scene(solid, sparse)`: region
        index per pixel (DROPPED when no valid sample, or not the `expected` region) and the world
        point hit. Neighbourhoods are cast only for the pixels still valid."""
        scene = self.scene(solid, sparse)
        centre = view.pose.center
        rays = world_rays(view, pixels)
        t, what = scene.cast(centre, rays)
        keep = (what >= 0) & in_image(view.camera, pixels, 1.0)
        if expected is not None:
            keep &= what == expected
        keep[keep] = unmasked(view, pixels[keep])
        r = self.cfg.edge_px
        for offset in ((r, 0.0), (-r, 0.0), (0.0, r), (0.0, -r)):
            k = np.flatnonzero(keep)
            t2, what2 = scene.cast(centre, world_rays(view, pixels[k] + np.array(offset)))
            same = what2 == what[k]
            keep[k] = same if strict else same | (t2 >= t[k] * (1 - self.cfg.edge_tolerance))
        xyz = centre + rays * np.where(np.isfinite(t), t, 0.0)[:, None]
        return np.where(keep, what, DROPPED), xyz


def build_surfaces(table: PointTable, reference: str, cfg: SurfaceConfig | None = None) -> SurfaceModel:
    """The surface model of condition `reference` (module doc) from a table of well-measured points."""
    cfg = cfg or SurfaceConfig()
    seen, scale = table.seen, table.scene_depth()
    ref = np.flatnonzero(seen & (table.point_condition == table.condition_index(reference)))
    tol = _Tolerance.of(table, cfg.plane_distance * scale, cfg, scale)
    regions = _merge(_extract_planes(table.xyz, ref, tol, cfg, scale), table.xyz, cfg, scale)
    verts, tris, owner, cell, grids = _region_cells(regions, table.xyz, cfg, scale)
    keep = _cells_in_free_space(table, regions, verts, tris, owner, cell, tol.scaled(3), cfg)
    alive = np.zeros(int(cell.max()) + 1 if len(cell) else 0, bool)
    alive[cell[keep]] = True
    alive &= ~_stacked(regions, grids, alive, cfg, scale)
    keep &= alive[cell]
    surface = _surface_tol(cfg) * scale  # (a point's own noise may stretch it to 2 x plane_distance_max)
    on_tol = replace(tol.scaled(2), floor=surface, cap=max(2 * tol.cap, surface))
    on = _on_surfaces(regions, grids, alive, table.xyz, on_tol) >= 0
    # Points flat on a removed cell of a region that mostly remains are that surface (a road cell a
    # noisy point carved), not obstacles: at a grazing view even a small one hides a lot. A region
    # removed for the most part (a board, a car side that left) stays clutter, and so do the
    # reference's points on removed cells at a region's border: that is where an object in front of
    # the region ends (a pole's edge), and its points there must stay solid.
    region_of_cell = np.zeros(len(alive), np.int64)
    region_of_cell[cell] = owner
    remains = np.bincount(region_of_cell, alive, len(regions)) >= 0.5 * np.bincount(
        region_of_cell, minlength=len(regions)
    )
    flat_tol = tol.scaled(2)
    flat = _on_surfaces(regions, grids, remains[region_of_cell], table.xyz, flat_tol) >= 0
    inner = (
        _on_surfaces(
            regions, grids, remains[region_of_cell] & _interior_cells(grids, len(alive)), table.xyz, flat_tol
        )
        >= 0
    )
    other = table.point_condition != table.condition_index(reference)
    clutter = seen & ~(on | (flat & other) | inner)
    by_condition = {
        c: table.xyz[clutter & (table.point_condition == c)] for c in range(len(table.conditions))
    }
    cameras = np.array([v.pose.center for v in table.views if v.pose is not None]).reshape(-1, 3)
    return SurfaceModel(
        regions, grids, alive, verts, tris[keep], owner[keep], by_condition, cameras, scale, cfg
    )


def _interior_cells(grids: list[_Grid], n_cells: int) -> np.ndarray:
    """(n_cells,) whether each cell's eight neighbours are cells of its region too."""
    out = np.zeros(n_cells, bool)
    for grid in grids:
        occupied = grid.cell_id >= 0
        out[grid.cell_id[ndimage.binary_erosion(occupied, np.ones((3, 3), bool))]] = True
    return out


def _surface_tol(cfg: SurfaceConfig) -> float:
    return max(2 * cfg.plane_distance, cfg.clutter_radius)


def _extract_planes(
    xyz: np.ndarray, points: np.ndarray, tol: _Tolerance, cfg: SurfaceConfig, scale: float
) -> list[Region]:
    """Repeated RANSAC planes (inliers within `tol`), each split into connected regions of at least
    `min_points` points."""
    rng, subsets = np.random.default_rng(cfg.seed), np.random.default_rng([cfg.seed, 1])
    regions: list[Region] = []
    remaining = np.asarray(points, np.int64)
    with ThreadPoolExecutor(task_threads()) as threads:
        while len(remaining) >= cfg.min_points:
            plane = _ransac_plane(xyz, remaining, tol, cfg.ransac_iterations, rng, subsets, threads)
            inliers = remaining[plane]
            if len(inliers) < cfg.min_points:
                break
            plane = Region.fit(xyz, inliers)
            weights = tol.weights(inliers, plane.normal)
            labels = _connected_parts(plane.plane_coords(xyz[inliers]), 3 * cfg.cell_size * scale)
            for label in np.unique(labels[labels >= 0]):
                part = labels == label
                if np.count_nonzero(part) >= cfg.min_points:
                    regions.append(Region.fit(xyz, inliers[part], None if weights is None else weights[part]))
            remaining = np.setdiff1d(remaining, inliers)
    return regions


_RANSAC_SCORED = 20_000  # a hypothesis is scored on at most this many points (a seeded subset)
_RANSAC_BATCH = 64  # hypotheses scored at once
_RANSAC_PRESCORED = 500  # every hypothesis is first scored on this many of them ...
_RANSAC_FINALISTS = 64  # ... and only this many best of those on all
_RANSAC_BLOCK = 4096  # points scored at once
_RANSAC_REFITS = 3  # least-squares refits of the best plane, each taking the inliers of the last


def _ransac_plane(
    xyz: np.ndarray,
    points: np.ndarray,
    tol: _Tolerance,
    iterations: int,
    rng: np.random.Generator,
    subsets: np.random.Generator,
    threads: ThreadPoolExecutor,
) -> np.ndarray:
    """Positions in `points` of the inliers (within `tol`) of the best of `iterations` seeded
    three-point planes (`_best_plane`; `subsets` draws its first points), refitted. Deterministic
    for the seeds, whatever the number of threads (open3d's threaded `segment_plane` is not)."""
    n = len(points)
    scored = np.arange(n) if n <= _RANSAC_SCORED else np.sort(rng.choice(n, _RANSAC_SCORED, replace=False))
    scored_xyz, xyz = xyz[points[scored]].T.copy(), xyz[points]
    a, b, c = (xyz[k] for k in rng.integers(0, n, (3, iterations)))
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1)
    valid = length > 0
    normal = normal[valid] / length[valid, None]
    offset = np.einsum("ij,ij->i", normal, a[valid])
    if len(normal) == 0:
        return np.zeros(0, np.int64)
    best = _best_plane(scored_xyz, points[scored], normal, offset, tol, subsets, threads)
    current = normal[best]
    inliers = np.flatnonzero(np.abs(xyz @ current - offset[best]) <= tol(points, current))
    for _ in range(_RANSAC_REFITS):  # local optimisation: a three-point plane is tilted by their noise
        fit = Region.fit(xyz, inliers, tol.weights(points[inliers], current))
        current = fit.normal
        refit = np.flatnonzero(np.abs(fit.residuals(xyz)) <= tol(points, current))
        if len(refit) < len(inliers):
            break
        inliers = refit
    return inliers


def _best_plane(
    xyz_t: np.ndarray,
    points: np.ndarray,
    normal: np.ndarray,
    offset: np.ndarray,
    tol: _Tolerance,
    subsets: np.random.Generator,
    threads: ThreadPoolExecutor,
) -> int:
    """Index of the best-scoring plane (`_plane_scores` on `points` at `xyz_t` (3, N)), by preemptive
    scoring: every plane on a random `_RANSAC_PRESCORED` of the points, the `_RANSAC_FINALISTS` best
    of those on all (a plane that wins on all points is among the best on a sample of them). In
    batches on `threads`; ties go to the first."""
    n = xyz_t.shape[1]
    finalists = np.arange(len(normal))
    if n > 2 * _RANSAC_PRESCORED and len(normal) > _RANSAC_FINALISTS:
        first = np.sort(subsets.choice(n, _RANSAC_PRESCORED, replace=False))
        pre = _scores(xyz_t[:, first], points[first], normal, offset, tol, threads, _RANSAC_BATCH)
        finalists = np.sort(np.argsort(-pre, kind="stable")[:_RANSAC_FINALISTS])
    batch = max(1, -(-len(finalists) // task_threads()))
    full = _scores(
        xyz_t, points, normal[finalists], offset[finalists], tol, threads, min(batch, _RANSAC_BATCH)
    )
    return int(finalists[np.argmax(full)])


def _scores(
    xyz_t: np.ndarray,
    points: np.ndarray,
    normal: np.ndarray,
    offset: np.ndarray,
    tol: _Tolerance,
    threads: ThreadPoolExecutor,
    batch: int,
) -> np.ndarray:
    """`_plane_scores` of the planes, in batches of `batch` on `threads`."""
    batches = [slice(start, start + batch) for start in range(0, len(normal), batch)]
    return np.concatenate(
        list(threads.map(lambda b: _plane_scores(xyz_t, points, normal[b], offset[b], tol), batches))
    )


def _plane_scores(
    xyz_t: np.ndarray, points: np.ndarray, normal: np.ndarray, offset: np.ndarray, tol: _Tolerance
) -> np.ndarray:
    """(H,) score of each plane (`normal` (H, 3), `offset` (H,)) on `points` at `xyz_t` (3, N): its
    inliers within `tol`, or with `tol.sigmas` > 0 (MSAC) minus the sum of its squared residuals in
    tolerances, truncated at 1 (fits the precise points best). In blocks of points that stay in the
    cache, with elementwise products and sums: the same result on any machine (no BLAS kernel)."""
    score = np.zeros(len(normal), np.int64 if tol.sigmas <= 0 else np.float64)
    for start in range(0, xyz_t.shape[1], _RANSAC_BLOCK):
        block = xyz_t[:, start : start + _RANSAC_BLOCK]
        residual = np.multiply.outer(normal[:, 0], block[0])  # (H, block), in place from here
        residual += np.multiply.outer(normal[:, 1], block[1])
        residual += np.multiply.outer(normal[:, 2], block[2])
        residual -= offset[:, None]
        np.abs(residual, out=residual)
        if tol.sigmas > 0:
            residual /= tol(points[start : start + _RANSAC_BLOCK], normal).T
            np.square(residual, out=residual)
            score -= np.minimum(residual, 1.0, out=residual).sum(axis=1)
        else:
            score += np.count_nonzero(residual <= tol.floor, axis=1)
    return score


def _connected_parts(uv: np.ndarray, eps: float, min_points: int = 5) -> np.ndarray:
    """(N,) DBSCAN labels of 2D points (-1: noise): core points have `min_points` within `eps`
    (themselves included), linked cores form a part, other points join their nearest core within
    `eps`. Exact and deterministic."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    kth, _ = cKDTree(uv).query(uv, k=min_points)  # distances to the nearest min_points, itself included
    core = np.flatnonzero(kth.reshape(len(uv), -1)[:, -1] <= eps)
    labels = np.full(len(uv), -1, np.int64)
    if len(core) == 0:
        return labels
    links = _links_within(uv[core], eps)
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(len(core), len(core)))
    _, core_label = connected_components(graph, directed=False)
    # <= eps, as the counts
    dist, nearest = cKDTree(uv[core]).query(uv, distance_upper_bound=np.nextafter(eps, np.inf))
    near = np.isfinite(dist)
    labels[near] = core_label[nearest[near]]
    return labels


def _links_within(uv: np.ndarray, eps: float) -> np.ndarray:
    """(L, 2) pairs of 2D points within `eps` that connect every component of the graph linking
    all such pairs (the same components, far fewer pairs than all of them on dense points): the
    Delaunay edges no longer than `eps` (every minimum spanning tree is one of them), plus each
    point the triangulation left out (a duplicate) to its nearest vertex."""
    from scipy.spatial import Delaunay, QhullError

    try:
        tri = Delaunay(uv)
    except (QhullError, ValueError):  # fewer than 3 points, or all on a line: few enough for all pairs
        return cKDTree(uv).query_pairs(eps, output_type="ndarray")
    s = tri.simplices  # (an edge of two triangles comes twice: harmless for connectivity)
    edges = np.concatenate([s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]], tri.coplanar[:, [0, 2]]])
    return edges[np.linalg.norm(uv[edges[:, 0]] - uv[edges[:, 1]], axis=1) <= eps]


def _merge(regions: list[Region], xyz: np.ndarray, cfg: SurfaceConfig, scale: float) -> list[Region]:
    """Merge touching, nearly coplanar regions that one plane fits about as well (largest first)."""
    regions = sorted(regions, key=lambda r: -len(r.points))
    merged = True
    while merged:
        merged = False
        for a in range(len(regions)):
            for b in range(a + 1, len(regions)):
                joint = _merged(regions[a], regions[b], xyz, cfg, scale)
                if joint is not None:
                    regions[a] = joint
                    del regions[b]
                    merged = True
                    break
            if merged:
                break
    return regions


def _merged(a: Region, b: Region, xyz: np.ndarray, cfg: SurfaceConfig, scale: float) -> Region | None:
    if abs(float(a.normal @ b.normal)) < np.cos(np.radians(cfg.merge_angle)):
        return None
    far = max(np.median(np.abs(a.residuals(xyz[b.points]))), np.median(np.abs(b.residuals(xyz[a.points]))))
    if far > cfg.merge_distance * scale:
        return None
    ua, ub = a.plane_coords(xyz[a.points]), a.plane_coords(xyz[b.points])
    gap = np.maximum(0.0, np.maximum(ua.min(axis=0) - ub.max(axis=0), ub.min(axis=0) - ua.max(axis=0)))
    if np.any(gap > 2 * cfg.cell_size * scale):
        return None
    joint = Region.fit(xyz, np.union1d(a.points, b.points))
    if joint.rms(xyz) > cfg.merge_rms_ratio * max(a.rms(xyz), b.rms(xyz)):
        return None
    return joint


@dataclass
class _Grid:
    """The extent cells of one region: plane coordinates -> global cell id (-1: no cell)."""

    low: np.ndarray  # (2,) plane coordinates of the grid's corner
    size: float
    cell_id: np.ndarray  # (nu, nv) int64

    def cell_at(self, uv: np.ndarray) -> np.ndarray:
        ij = np.floor((uv - self.low) / self.size).astype(np.int64)
        inside = np.all((ij >= 0) & (ij < self.cell_id.shape), axis=1)
        out = np.full(len(uv), -1, np.int64)
        out[inside] = self.cell_id[ij[inside, 0], ij[inside, 1]]
        return out


def _region_cells(
    regions: list[Region], xyz: np.ndarray, cfg: SurfaceConfig, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[_Grid]]:
    """Vertices, triangles (two per occupied cell), per triangle its region and its cell, and the
    grid of each region."""
    size = cfg.cell_size * scale
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])
    verts, tris, owner, count = [np.zeros((0, 3))], [np.zeros((0, 3), np.int64)], [np.zeros(0, np.int64)], 0
    cell_ids, grids, n_cells = [np.zeros(0, np.int64)], [], 0
    for index, region in enumerate(regions):
        uv = region.plane_coords(xyz[region.points])
        pad = cfg.closing + 1
        low = uv.min(axis=0) - pad * size
        ij = np.floor((uv - low) / size).astype(np.int64)
        occupied = np.zeros(ij.max(axis=0) + pad + 1, bool)
        occupied[ij[:, 0], ij[:, 1]] = True
        if cfg.closing:
            occupied |= ndimage.binary_closing(occupied, iterations=cfg.closing)
        cells = np.argwhere(occupied)
        grid = np.full(occupied.shape, -1, np.int64)
        grid[cells[:, 0], cells[:, 1]] = np.arange(n_cells, n_cells + len(cells))
        grids.append(_Grid(low, size, grid))
        quad = (cells[:, None, :] + corners[None]) * size + low  # (n, 4, 2) plane coordinates
        v = region.origin + quad[..., :1] * region.axes[0] + quad[..., 1:] * region.axes[1]
        base = count + 4 * np.arange(len(cells))
        verts.append(v.reshape(-1, 3))
        tris.append(_quad_triangles(base))
        owner.append(np.full(2 * len(cells), index, np.int64))
        cell_ids.append(np.tile(np.arange(n_cells, n_cells + len(cells)), 2))
        count, n_cells = count + 4 * len(cells), n_cells + len(cells)
    return np.concatenate(verts), np.concatenate(tris), np.concatenate(owner), np.concatenate(cell_ids), grids


def _cells_in_free_space(
    table: PointTable,
    regions: list[Region],
    verts: np.ndarray,
    tris: np.ndarray,
    owner: np.ndarray,
    cell: np.ndarray,
    behind_tol: _Tolerance,
    cfg: SurfaceConfig,
) -> np.ndarray:
    """Per triangle: False where its cell is crossed by an observation ray whose point lies clearly
    behind that cell's plane (more than `behind_tol`, and `free_space_margin` of the ray's length
    beyond the crossing): a camera saw through the cell."""
    keep = np.ones(len(tris), bool)
    if len(tris) == 0:
        return keep
    centres = np.array([v.pose.center if v.pose is not None else [np.nan] * 3 for v in table.views])
    obs = np.flatnonzero(np.isfinite(centres[table.obs_image, 0]))
    point = table.obs_point[obs]
    origin, target = centres[table.obs_image[obs]], table.xyz[point]
    length = np.linalg.norm(target - origin, axis=1)
    direction = (target - origin) / length[:, None]
    normals = np.array([r.normal for r in regions]).reshape(-1, 3)
    offsets = np.array([r.normal @ r.origin for r in regions])
    for _ in range(16):  # a ray meets the first remaining cell only: repeat until none is crossed
        alive = np.flatnonzero(keep)
        t, hit = RayScene(verts, tris[alive], alive).cast(origin, direction)
        crossed = np.flatnonzero(np.isfinite(t) & (t < length * (1 - cfg.free_space_margin)))
        region = owner[hit[crossed]]
        behind = np.abs(np.einsum("ij,ij->i", target[crossed], normals[region]) - offsets[region])
        crossed = crossed[behind > behind_tol.each(point[crossed], normals[region])]
        if len(crossed) == 0:
            break
        keep[np.isin(cell, np.unique(cell[hit[crossed]]))] = False
    return keep


def _stacked(
    regions: list[Region], grids: list[_Grid], alive: np.ndarray, cfg: SurfaceConfig, scale: float
) -> np.ndarray:
    """Per cell: whether it lies over an `alive` cell of a larger region that is parallel
    (`merge_angle`) and nearer than 3 x plane_distance: a second layer of the same surface (on
    `demo`, near-camera road points triangulated 5 cm high made a plane over the road), which
    carving cannot remove because rays reach that surface's points within that distance."""
    stacked = np.zeros(len(alive), bool)
    near = 3 * cfg.plane_distance * scale
    for upper, grid in zip(regions, grids, strict=True):
        ij = np.argwhere(grid.cell_id >= 0)
        centre = (ij + 0.5) * grid.size + grid.low
        xyz = upper.origin + centre[:, :1] * upper.axes[0] + centre[:, 1:] * upper.axes[1]
        for a, lower in enumerate(regions):
            if len(lower.points) <= len(upper.points) or abs(float(lower.normal @ upper.normal)) < np.cos(
                np.radians(cfg.merge_angle)
            ):
                continue
            under = grids[a].cell_at(lower.plane_coords(xyz))
            over = (under >= 0) & (np.abs(lower.residuals(xyz)) <= near)
            over[over] = alive[under[over]]
            stacked[grid.cell_id[ij[over, 0], ij[over, 1]]] = True
    return stacked


def _on_surfaces(
    regions: list[Region], grids: list[_Grid], cells: np.ndarray, xyz: np.ndarray, tol: float | _Tolerance
) -> np.ndarray:
    """(P,) the first region within `tol` (a distance, or per point: `xyz` are then its table's
    points) of whose plane each point lies on one of its `cells` (per cell: True/False), -1 where none."""
    out = np.full(len(xyz), -1, np.int64)
    every = np.arange(len(xyz))
    for r, (region, grid) in enumerate(zip(regions, grids, strict=True)):
        limit = tol(every, region.normal) if isinstance(tol, _Tolerance) else tol
        near = np.flatnonzero((out < 0) & (np.abs(region.residuals(xyz)) <= limit))
        cell = grid.cell_at(region.plane_coords(xyz[near]))
        on = cell >= 0
        on[on] = cells[cell[on]]
        out[near[on]] = r
    return out


_BLOCK = 128  # voxels per side of the blocks the clutter grid is processed in (bounded memory)
_TILES_PER_TASK = 8  # blocks per task of `_clutter_mesh`
_NEIGHBOURS = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)


def _clutter_mesh(
    points: np.ndarray,
    radius: float,
    join: float,
    clearance: float,
    cameras: np.ndarray,
    first_vertex: int,
    executor: Executor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Solid occluders: voxels of size `radius` holding clutter points, gaps of up to `join` closed
    (a tree's scattered leaf points become its crown, a pole's few points its shaft), grown by one
    voxel; voxels within `clearance` of a camera are left empty (a camera is in free space).

    A large scene's grid is processed in blocks (`_tiles`) with a margin wide enough for the
    closing, so memory does not grow with the extent of the scene; of each, only the box of its
    points and that margin around them (nothing further can be reached). The blocks are tasks of
    `executor` (default: this process), `_TILES_PER_TASK` each.
    """
    if len(points) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    steps = max(int(round(join / radius / 2)), 0)
    margin = 2 * steps + 2
    reach = int(np.ceil(clearance / radius))
    voxel = np.floor(points / radius).astype(np.int64)
    camera_voxel = np.floor(cameras / radius).astype(np.int64)
    if steps == 0:  # no closing: the voxels of the points grown by one, without a grid
        grown = np.unique((np.unique(voxel, axis=0)[:, None, :] + _NEIGHBOURS[None]).reshape(-1, 3), axis=0)
        clear = np.zeros(len(grown), bool)
        for c in camera_voxel:
            clear |= np.all(np.abs(grown - c) <= reach, axis=1)
        return _voxel_faces(grown[~clear], radius, first_vertex)
    tiles = _tiles(voxel, margin)
    groups = [tiles[k : k + _TILES_PER_TASK] for k in range(0, len(tiles), _TILES_PER_TASK)]
    found = (executor or LocalExecutor()).map(_tile_cells, groups, _Voxels(voxel, camera_voxel, steps, reach))
    cells = [np.zeros((0, 3), np.int64), *chain.from_iterable(found)]
    return _voxel_faces(np.concatenate(cells), radius, first_vertex)


@dataclass(frozen=True)
class _Voxels:
    """What every tile of a clutter hull reads (`_tile_cells`): the points' and cameras' voxels."""

    points: np.ndarray  # (N, 3) int64
    cameras: np.ndarray  # (C, 3) int64
    steps: int  # closing steps
    reach: int  # voxels kept empty around a camera


def _tile_cells(tiles: list[tuple[np.ndarray, np.ndarray, int]], voxels: _Voxels) -> list[np.ndarray]:
    """The solid voxels (integer coordinates) of each of `tiles` (`_tiles`) that is its own (a task)."""
    margin, out = 2 * voxels.steps + 2, []
    for start, shape, crop in tiles:
        local = voxels.points - start
        local = local[np.all((local >= 0) & (local < shape), axis=1)]
        if len(local) == 0:
            continue
        low = np.maximum(local.min(axis=0) - margin, 0)
        size = np.minimum(local.max(axis=0) + 1 + margin, shape) - low
        occupied = np.zeros(size, bool)
        occupied[tuple((local - low).T)] = True
        occupied = _closed_and_grown(occupied, voxels.steps)
        local_cams = voxels.cameras - start - low
        reach = voxels.reach
        for c in local_cams[np.all((local_cams >= -reach) & (local_cams < size + reach), axis=1)]:
            lo, hi = np.maximum(c - reach, 0), np.minimum(c + reach + 1, size)
            occupied[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = False
        lo, hi = np.maximum(crop - low, 0), np.minimum(shape - crop - low, size)  # the block's own part
        out.append(np.argwhere(occupied[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]) + start + low + lo)
    return out


def _closed_and_grown(occupied: np.ndarray, steps: int) -> np.ndarray:
    """``ndimage.binary_dilation(ndimage.binary_closing(occupied, iterations=steps))`` (the 6-neighbour
    cross, nothing outside the grid): `steps` dilations, `steps` erosions and a dilation, each an OR
    (AND) of the grid and its six shifted copies, on the grid's voxels as one string of bits (8 per
    byte). Every row of the last axis is followed by an empty voxel, every plane of the first two by
    an empty row, and the grid has an empty plane on either side: a shift by one voxel along an axis
    is a shift of the string by 1 bit, a row's or a plane's bytes, and what comes in from outside the
    grid is an empty voxel (cleared again after every step)."""
    n0, n1, n2 = occupied.shape
    row = -(-(n2 + 1) // 8) * 8
    grid = np.zeros((n0 + 2, n1 + 1, row), bool)
    grid[1:-1, :-1, :n2] = occupied
    inside = np.zeros_like(grid)
    inside[1:-1, :-1, :n2] = True
    bits, inside = np.packbits(grid), np.packbits(inside)
    one, seven = np.uint8(1), np.uint8(7)
    for grow in [True] * steps + [False] * steps + [True]:
        op = np.bitwise_or if grow else np.bitwise_and
        out = bits.copy()
        for k in ((n1 + 1) * row // 8, row // 8):  # the next and the previous plane, row
            op(out[k:], bits[:-k], out=out[k:])
            op(out[:-k], bits[k:], out=out[:-k])
        before = bits >> one  # the previous voxel of the row (the high bit is the first voxel)
        before[1:] |= bits[:-1] << seven
        after = bits << one
        after[:-1] |= bits[1:] >> seven
        op(out, before, out=out)
        op(out, after, out=out)
        bits = out & inside
    return np.unpackbits(bits).reshape(grid.shape).view(bool)[1:-1, :-1, :n2]


def _tiles(voxel: np.ndarray, margin: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(start, shape, crop) of the grids covering the voxels, each responsible for its part without
    the `crop` voxels on every side: one grid with `margin` free voxels around all points when the
    extent is small (crop 0), else blocks of `_BLOCK` voxels plus a margin of context (crop = margin)."""
    low, high = voxel.min(axis=0), voxel.max(axis=0) + 1
    if np.prod((high - low + 2 * margin).astype(float)) <= _BLOCK**3 * 8:
        return [(low - margin, high - low + 2 * margin, 0)]
    blocks = np.unique(voxel // _BLOCK, axis=0)
    keys = np.unique((blocks[:, None, :] + _NEIGHBOURS[None]).reshape(-1, 3), axis=0)
    return [(key * _BLOCK - margin, np.full(3, _BLOCK + 2 * margin), margin) for key in keys]


def _voxel_faces(cells: np.ndarray, size: float, first_vertex: int) -> tuple[np.ndarray, np.ndarray]:
    """The exposed faces of a set of voxels (integer coordinates, voxel k spans [k, k+1) x size)
    as triangles, two per face."""
    verts, faces, count = [np.zeros((0, 3))], [np.zeros((0, 3), np.int64)], first_vertex
    if len(cells) == 0:
        return verts[0], faces[0]
    low = cells.min(axis=0) - 1
    span = cells.max(axis=0) - low + 2
    code = lambda c: np.ravel_multi_index(tuple((c - low).T), span)  # noqa: E731
    present = np.sort(code(cells))
    for axis in range(3):
        for side in (0, 1):
            step = np.zeros(3, np.int64)
            step[axis] = 1 if side else -1
            nb = code(cells + step)
            at = np.minimum(np.searchsorted(present, nb), len(present) - 1)
            exposed = cells[present[at] != nb]
            if len(exposed) == 0:
                continue
            u, v = (axis + 1) % 3, (axis + 2) % 3
            corner = exposed.astype(np.float64)
            corner[:, axis] += side
            quad = np.repeat(corner[:, None, :], 4, axis=1)
            quad[:, 1, u] += 1
            quad[:, 2, u] += 1
            quad[:, 2, v] += 1
            quad[:, 3, v] += 1
            base = count + 4 * np.arange(len(exposed))
            verts.append((quad * size).reshape(-1, 3))
            faces.append(_quad_triangles(base))
            count += 4 * len(exposed)
    return np.concatenate(verts), np.concatenate(faces).astype(np.int64)


def _octahedra(centres: np.ndarray, radius: float, first_vertex: int) -> tuple[np.ndarray, np.ndarray]:
    verts = (centres[:, None, :] + radius * _OCTAHEDRON_VERTICES[None]).reshape(-1, 3)
    faces = (_OCTAHEDRON_FACES[None] + 6 * np.arange(len(centres))[:, None, None]).reshape(-1, 3)
    return verts, (faces + first_vertex).astype(np.int64)


def _quad_triangles(base: np.ndarray) -> np.ndarray:
    """Two triangles (a, b, c), (a, c, d) of each quad whose 4 corners are the vertices base + 0..3."""
    return np.concatenate([np.stack([base, base + 1, base + 2], 1), np.stack([base, base + 2, base + 3], 1)])


__all__ = ["SurfaceConfig", "SurfaceModel", "Region", "build_surfaces", "NO_HIT", "CLUTTER", "DROPPED"]
