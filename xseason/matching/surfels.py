"""Surfels: every well-measured point of the reconstruction as a small oriented square, the
visibility model's picture of all the structure it knows, planar or not.

Per point (`build_surfels`; per condition cloud; lengths relative to the scene scale,
`PointTable.scene_depth`, so that metric and arbitrarily scaled reconstructions behave alike):

- plane: a point on a remaining cell of a planar region (surfaces.py) gets its surfel on that
  region's plane; a *flat* point (curvature of its `neighbours` nearest points <= `flat_curvature`,
  `neighbourhoods`) on their least-squares plane, centred at its projection (a denoised point); any
  other point's surfel faces the cameras that observed it (a leaf, the edge of a pole: a blob).
- size, clipped to [min_size, max_size]: on a region, half-width ``footprint * spacing``, spacing =
  distance to its 4th neighbour, so that the surfels of a surface overlap and leave no holes; a
  flat point or a blob spans `footprint` standard deviations of its neighbourhood along its two
  main axes, at most ``footprint * spacing``.
- trust: a blob whose point was seen in fewer than `min_blob_track` images is left out (such
  points are often phantoms triangulated from repeated texture, floating before a facade).

Two uses, both by ray casting (open3d, one scene per condition):

- occlusion (`unoccluded`): a world point is hidden from a camera when the ray to it meets a
  surfel of the given conditions clearly (`occlusion_tol`, relative) before it. Densified matches
  are tested in both images against the clouds of both conditions: poles, trunks, pillars,
  fountains, parked cars, anything with points occludes, not only the planes of surfaces.py.
- patch samples (`patch_samples`): where a reference image's ray first meets a flat surfel of the
  reference condition, and rays `edge_px` away in four directions meet the same local plane (no
  depth edge nearby), the sample is the ray's intersection with that surfel's plane. This gives
  samples on curved facades, towers, pillars and trunks. In the other image the sample must be
  the first surface its ray meets (`first_surface`), and the other image's condition must have a
  point near it (`supported`): the surface is there in that condition too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.spatial import cKDTree

from xseason.core.geometry import in_image
from xseason.matching.association import PointTable, neighbourhoods
from xseason.matching.raycast import RayScene
from xseason.matching.surfaces import SurfaceModel
from xseason.matching.views import ImageView, unmasked, world_rays


@dataclass
class SurfelConfig:
    """Surfels of the visibility model (lengths: x the scene's median point depth)."""

    neighbours: int = 10  # points of each point's least-squares plane
    flat_curvature: float = 0.02  # at most this curvature (smallest eigenvalue / sum) is a flat point
    footprint: float = 1.5  # half-width of a surfel, x the distance to its point's 4th neighbour
    min_size: float = 0.002  # smallest half-width
    max_size: float = 0.03  # largest half-width
    occlusion_tol: float = 0.02  # relative: a surfel this much nearer than a point hides it
    edge_px: float = 6.0  # neighbourhood of a patch sample that must be one continuous surface
    patch_tol: float = 0.005  # relative: how far the neighbourhood's hits may be off the sample's plane
    occlusion: bool = False  # test matches against the surfels (off: the surface model's occluders only)
    patches: bool = False  # also sample flat surfels off the planar regions (curved surfaces)
    support: float = 0.01  # a patch sample needs a point of the other image's condition this close
    min_blob_track: int = 3  # a point off any plane is an occluder only when seen in this many images

    def validate(self) -> None:
        if self.neighbours < 3 or self.min_blob_track < 2:
            raise ValueError("surfels.neighbours must be at least 3, surfels.min_blob_track at least 2")
        if not 0 < self.min_size <= self.max_size or self.footprint <= 0:
            raise ValueError("need 0 < surfels.min_size <= surfels.max_size and surfels.footprint > 0")
        if min(self.flat_curvature, self.occlusion_tol, self.edge_px, self.patch_tol, self.support) <= 0:
            raise ValueError(
                "surfels.flat_curvature, occlusion_tol, edge_px, patch_tol and support must be > 0"
            )


@dataclass
class Surfels:
    """One square per point: centre, two half-axes (the square spans centre +- u +- v), plane."""

    centre: np.ndarray  # (P, 3)
    u: np.ndarray  # (P, 3) half-axis (length = half-width)
    v: np.ndarray  # (P, 3)
    normal: np.ndarray  # (P, 3) unit normal of its plane (through `centre`)
    flat: np.ndarray  # (P,) bool: on a plane (its region's or its neighbourhood's least-squares plane)
    solid: np.ndarray  # (P,) bool: in the ray-casting scenes (flat, or a blob of a well-seen point)
    condition: np.ndarray  # (P,) condition index


class SurfelModel:
    """The surfels of every condition and their ray-casting scenes (module doc); the surfels are
    made on first use, so that a build with `occlusion` and `patches` off does no work for them."""

    def __init__(self, table: PointTable, cfg: SurfelConfig, surfaces: SurfaceModel | None = None):
        self.cfg, self.scale = cfg, table.scene_depth()
        self._table, self._surfaces = table, surfaces
        self._scenes: dict[int, RayScene] = {}
        self._trees: dict[int, cKDTree] = {}

    @cached_property
    def surfels(self) -> Surfels:
        return _make_surfels(self._table, self.cfg, self._surfaces, self.scale)

    def scene(self, condition: int) -> RayScene:
        """The ray-casting scene of one condition's surfels (owner: point index; cached)."""
        if condition not in self._scenes:
            s = self.surfels
            idx = np.flatnonzero((s.condition == condition) & s.solid)
            c, u, v = s.centre[idx], s.u[idx], s.v[idx]
            corners = np.stack([c - u - v, c + u - v, c + u + v, c - u + v], axis=1).reshape(-1, 3)
            base = 4 * np.arange(len(idx))
            tris = np.concatenate(
                [np.stack([base, base + 1, base + 2], 1), np.stack([base, base + 2, base + 3], 1)]
            )
            self._scenes[condition] = RayScene(corners, tris, np.concatenate([idx, idx]))
        return self._scenes[condition]

    def first_hit(
        self, origin: np.ndarray, directions: np.ndarray, conditions: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Distance along each unit ray to the first surfel of `conditions` (inf: none), and its point."""
        t = np.full(len(directions), np.inf)
        owner = np.full(len(directions), -1, np.int64)
        for c in sorted(set(conditions)):
            tc, oc = self.scene(c).cast(origin, directions)
            nearer = tc < t
            t[nearer], owner[nearer] = tc[nearer], oc[nearer]
        return t, owner

    def unoccluded(self, origin: np.ndarray, xyz: np.ndarray, conditions: tuple[int, ...]) -> np.ndarray:
        """Whether no surfel of `conditions` hides each point from `origin` (`_first_met`); all True
        with `occlusion` off."""
        if not self.cfg.occlusion:
            return np.ones(len(xyz), bool)
        t, dist, near = self._first_met(origin, xyz, conditions)
        return (t >= dist * (1 - self.cfg.occlusion_tol)) | near

    def first_surface(self, origin: np.ndarray, xyz: np.ndarray, conditions: tuple[int, ...]) -> np.ndarray:
        """Whether each point is the first surface of `conditions` on the ray from `origin`: the
        first surfel met is at it (`_first_met`), neither clearly before nor missing."""
        t, dist, near = self._first_met(origin, xyz, conditions)
        return (np.abs(t - dist) <= dist * self.cfg.occlusion_tol) | near

    def _first_met(
        self, origin: np.ndarray, xyz: np.ndarray, conditions: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first surfel on the ray from `origin` to each point: its distance, the point's, and
        whether the point lies within twice that surfel's half-width of its centre (the surface of
        the point itself, as far as the surfels can tell: not an occluder)."""
        ray = xyz - origin
        dist = np.linalg.norm(ray, axis=1)
        t, owner = self.first_hit(origin, ray / np.maximum(dist, 1e-300)[:, None], conditions)
        s, k = self.surfels, np.maximum(owner, 0)
        reach = 2 * np.maximum(np.linalg.norm(s.u[k], axis=1), np.linalg.norm(s.v[k], axis=1))
        near = (owner >= 0) & (np.linalg.norm(xyz - s.centre[k], axis=1) <= reach)
        return t, dist, near

    def supported(self, xyz: np.ndarray, condition: int) -> np.ndarray:
        """Whether a point of `condition` lies within `support` of each point: the surface exists
        there in that condition too (a hedge or a board present in one season only does not)."""
        if condition not in self._trees:
            self._trees[condition] = cKDTree(self.surfels.centre[self.surfels.condition == condition])
        if self._trees[condition].n == 0 or len(xyz) == 0:
            return np.zeros(len(xyz), bool)
        dist, _ = self._trees[condition].query(xyz, distance_upper_bound=self.cfg.support * self.scale)
        return np.isfinite(dist)

    def patch_samples(
        self, view: ImageView, pixels: np.ndarray, condition: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Patch samples (module doc) at `pixels` of `view` on the surfels of `condition`: whether
        each pixel has one, and its world point."""
        centre = view.pose.center
        rays = world_rays(view, pixels)
        t, owner = self.first_hit(centre, rays, (condition,))
        ok = (owner >= 0) & in_image(view.camera, pixels, 1.0)
        ok[ok] = self.surfels.flat[owner[ok]]
        ok[ok] = unmasked(view, pixels[ok])
        normal = self.surfels.normal[np.maximum(owner, 0)]
        on_plane = self.surfels.centre[np.maximum(owner, 0)]
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.einsum("ij,ij->i", on_plane - centre, normal) / np.einsum("ij,ij->i", rays, normal)
        ok &= np.isfinite(depth) & (depth > 0)
        xyz = centre + rays * np.where(ok, depth, 0.0)[:, None]
        r = self.cfg.edge_px
        for offset in ((r, 0.0), (-r, 0.0), (0.0, r), (0.0, -r)):
            k = np.flatnonzero(ok)
            d2 = world_rays(view, pixels[k] + np.array(offset))
            t2, _ = self.first_hit(centre, d2, (condition,))
            hit = centre + d2 * np.where(np.isfinite(t2), t2, 0.0)[:, None]
            off_plane = np.abs(np.einsum("ij,ij->i", hit - on_plane[k], normal[k]))
            ok[k] = np.isfinite(t2) & (off_plane <= self.cfg.patch_tol * depth[k])
        return ok, xyz


def build_surfels(
    table: PointTable, cfg: SurfelConfig | None = None, surfaces: SurfaceModel | None = None
) -> SurfelModel:
    """The surfel model of every point of `table` (module doc), per condition cloud; points on a
    remaining cell of a planar region of `surfaces` get their surfel on that region's plane."""
    return SurfelModel(table, cfg or SurfelConfig(), surfaces)


def _make_surfels(
    table: PointTable, cfg: SurfelConfig, surfaces: SurfaceModel | None, scale: float
) -> Surfels:
    """The surfels of `build_surfels` (module doc)."""
    nb = neighbourhoods(table.xyz, table.point_condition, 4, cfg.neighbours)
    lo, hi = cfg.min_size * scale, cfg.max_size * scale
    spread = cfg.footprint * np.sqrt(np.maximum(np.nan_to_num(nb.eigenvalues), 0.0))  # (P, 3) ascending
    # blobs: a billboard along the neighbourhood's main axis, facing the cameras that saw the point
    facing = _towards_cameras(table)
    main = np.nan_to_num(nb.eigenvectors[:, :, 2], nan=0.0)
    u = main - np.einsum("ij,ij->i", main, facing)[:, None] * facing
    length = np.linalg.norm(u, axis=1)
    u = np.where(length[:, None] > 1e-6, u / np.maximum(length, 1e-300)[:, None], _any_perpendicular(facing))
    blob = np.minimum(spread, cfg.footprint * nb.spacing[:, None])  # no larger than its point's spacing
    normal, u_len, v_len = facing, blob[:, 2], blob[:, 1]
    # flat points: on their neighbourhood's least-squares plane
    flat = np.isfinite(nb.eigenvalues).all(axis=1) & (nb.curvature <= cfg.flat_curvature)
    normal = np.where(flat[:, None], nb.normal, normal)
    u = np.where(flat[:, None], nb.eigenvectors[:, :, 2], u)
    centre = table.xyz.copy()
    centre[flat] -= (
        np.einsum("ij,ij->i", table.xyz[flat] - nb.centroid[flat], nb.normal[flat])[:, None] * nb.normal[flat]
    )
    # points of a planar region: on its plane
    region = surfaces.region_at(table.xyz) if surfaces is not None else np.full(table.num_points, -1)
    for r in np.unique(region[region >= 0]):
        k = np.flatnonzero(region == r)
        plane = surfaces.regions[r]
        centre[k] -= plane.residuals(table.xyz[k])[:, None] * plane.normal
        normal[k], u[k] = plane.normal, plane.axes[0]
        u_len[k] = v_len[k] = cfg.footprint * nb.spacing[k]
    flat |= region >= 0
    u_len, v_len = (
        np.clip(np.nan_to_num(u_len, posinf=hi), lo, hi),
        np.clip(np.nan_to_num(v_len, posinf=hi), lo, hi),
    )
    v = np.cross(normal, u)
    solid = flat | (table.track_length >= cfg.min_blob_track)
    return Surfels(
        centre,
        u * u_len[:, None],
        v * v_len[:, None],
        normal,
        flat,
        solid,
        table.point_condition.astype(np.int64),
    )


def _any_perpendicular(d: np.ndarray) -> np.ndarray:
    """(N, 3) a unit vector perpendicular to each unit vector of `d`."""
    u = np.cross(d, np.where(np.abs(d[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]]))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def _towards_cameras(table: PointTable) -> np.ndarray:
    """(P, 3) unit direction from each point towards the mean centre of the cameras observing it
    (+z for a point without a registered observer)."""
    centres = np.array([v.pose.center if v.pose is not None else [np.nan] * 3 for v in table.views]).reshape(
        -1, 3
    )
    obs_centre = centres[table.obs_image]
    registered = np.isfinite(obs_centre).all(axis=1)
    total = np.zeros((table.num_points, 3))
    np.add.at(total, table.obs_point[registered], obs_centre[registered])
    count = np.bincount(table.obs_point[registered], minlength=table.num_points)
    d = total / np.maximum(count, 1)[:, None] - table.xyz
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    return np.where((count[:, None] > 0) & (norm > 0), d / np.maximum(norm, 1e-300), [[0.0, 0.0, 1.0]])


__all__ = ["SurfelConfig", "SurfelModel", "Surfels", "build_surfels"]
