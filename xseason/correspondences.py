"""Pair selection, reprojection and densification: associated 3D points -> 2D-2D matches.

For every image j of a non-reference condition c (and, with `self_pairs`, of the reference
condition itself), one vectorised pass:

1. Candidate reference images: the (at most `max_candidates`) nearest registered images of
   the reference condition whose camera centre is within ``pair_distance * scene_depth`` of
   j's and whose optical axis is within ``pair_max_angle`` degrees of j's (scene_depth =
   median point depth of the table).
2. Candidate points: the reference points those images observe, restricted to the points
   that exist in c (associated with a point of c, or supported by c's geometry: see
   association.py). Each is projected into j and kept when it is in front of the camera,
   inside the image by `image_margin` pixels, not under j's mask, and **visible**:
   - occlusion: its depth is at most the z-buffer depth at its pixel times (1 + depth_tol),
     the z-buffer being splatted (min-depth, cells of `zbuffer_cell` px) from the candidate
     points and c's own points near j, each as a surfel: a disc of radius
     ``splat_factor * spacing(p)`` on its local tangent plane (spacing = local point
     spacing, normal from its neighbours), so oblique surfaces keep their depth;
   - free space: c's own points (splatted with `free_space_splat`) must not show a surface
     clearly *behind* it at that pixel (that would mean c sees through where the point was,
     e.g. summer leaves in a winter image, a parked car that left).
3. Reference side: for each candidate reference image i (cached per image), the reference
   points it observed (valid: inside by the margin, not masked, reprojection error <=
   max_reproj_error) and, with `densify`, the points its neighbours observed that i sees
   (same occlusion test). Pair score ``shared`` = points visible in both i and j;
   ``overlap = min(shared / n_i, shared / n_j)`` with n_i, n_j the visible points of each
   image. The ``max_pairs_per_image`` images with most shared points, overlap in
   [min_overlap, max_overlap] and at least `min_matches` shared points, become pairs.
4. Matches of a pair (i, j): the reference 3D point (not the keypoint) projected into both
   images, kept where its triangulation uncertainty, propagated into j
   (`predicted_error`), stays within `max_predicted_error` pixels. ``err0`` / ``err1`` =
   distance to the keypoint of the point (in i) / of its associated point (in j) where that
   image observed it, else 0; a match with ``err1 > max_reproj_error`` is dropped.
   ``densified = True`` unless both images observed the point (or its partner).
   ``dist3d`` = distance to the associated point (0 for a shared track or the same
   condition) or, for densified matches without a partner, to the nearest supporting
   point; matches with dist3d > max_dist3d are dropped. ``weight = exp(-dist3d / weight_scale)``
   (the reference paper used exp(-d) with d in metres), clipped to [1e-6, 1].

Splits are by place: the place of a pair is the median of its matched 3D points, projected on
the first principal axis of the reference camera centres (the route direction); that axis is
cut into `split_blocks` equal blocks and whole blocks are drawn (seeded) into train / val /
test by `split_fractions`. All pairs looking at the same stretch of route share one split.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from .association import (
    AssociationConfig,
    Associations,
    AssociationError,
    ImageView,
    PointTable,
    associate,
    clean_points,
    point_table_from_reconstructions,
)
from .errors import XSeasonError
from .geometry import Camera, Pose, in_image

MATCH_COLUMNS = ("pair_id", "x0", "y0", "x1", "y1", "weight", "point3d_id", "dist3d", "err0", "err1", "densified")


class CorrespondenceError(XSeasonError):
    """The correspondence stage cannot run on these inputs (message says why)."""


@dataclass
class CorrespondenceConfig:
    """Pair selection, reprojection, densification and splits (see module doc)."""

    self_pairs: bool = False  # also pairs inside a reference condition, across its sequences
    same_sequence: bool = False  # with self_pairs: also pairs of one sequence
    pair_distance: float = 1.5  # candidate pairs: centre distance <= pair_distance * scene depth
    pair_max_angle: float = 60.0  # degrees between optical axes
    max_candidates: int = 60  # at most this many nearest candidate images per target image
    min_overlap: float = 0.05
    max_overlap: float = 1.0
    max_pairs_per_image: int = 20
    min_matches: int = 10
    image_margin: float = 2.0  # px
    max_reproj_error: float = 2.0  # px
    max_dist3d: float = 0.5  # world units
    max_curvature: float = 1.0  # reference points on rougher neighbourhoods (leaves, edges) are not matched
    keypoint_sigma: float = 0.5  # px, floor of a point's keypoint noise (its mean reprojection error)
    max_predicted_error: float = 1.0  # px, triangulation uncertainty propagated into the other image
    weight_scale: float = 1.0  # weight = exp(-dist3d / weight_scale)
    densify: bool = True
    depth_tol: float = 0.03  # relative depth tolerance of the visibility tests
    zbuffer_cell: int = 0  # px per z-buffer cell; 0 = auto: the median splat radius, 1..16 px
    splat_factor: float = 0.8  # occluder disc radius = splat_factor * spacing (world), projected
    free_space_splat: float = 0.5  # same for the free-space test (0 = off)
    splat_max: int = 6  # cells
    split_blocks: int = 20
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0

    def validate(self) -> None:
        if not 0 <= self.min_overlap <= self.max_overlap:
            raise ValueError("need 0 <= min_overlap <= max_overlap")
        if self.max_pairs_per_image < 1 or self.min_matches < 1 or self.max_candidates < 1:
            raise ValueError("max_pairs_per_image, max_candidates and min_matches must be >= 1")
        if self.zbuffer_cell < 0 or self.splat_max < 0 or self.split_blocks < 1:
            raise ValueError("zbuffer_cell and splat_max must be >= 0, split_blocks >= 1")
        if self.weight_scale <= 0 or self.depth_tol < 0:
            raise ValueError("weight_scale must be > 0 and depth_tol >= 0")
        if any(f < 0 for f in self.split_fractions) or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError("split_fractions must be three non-negative numbers summing to 1")


class CorrespondenceTables:
    """The three tables of the store (CONTRACTS §3) plus the matched reference points.

    Matches are kept as compact per-pair arrays; `iter_matches` streams them as DataFrames of
    whole pairs in pair_id order (what `store.write_dataset` takes without holding all rows),
    `matches` builds the one full table (on first use; costly at scale).
    """

    def __init__(self, images: pd.DataFrame, pairs: pd.DataFrame, raw: list[dict], point_id: np.ndarray,
                 weight_scale: float, points3d: pd.DataFrame | None = None):
        self.images, self.pairs = images, pairs
        self.points3d = points3d if points3d is not None else pd.DataFrame()
        self._raw, self._point_id, self._weight_scale = raw, point_id, weight_scale
        self._matches: pd.DataFrame | None = None

    @property
    def num_matches(self) -> int:
        return int(self.pairs["num_matches"].sum()) if len(self.pairs) else 0

    def iter_matches(self, chunk_rows: int = 1 << 20) -> Iterator[pd.DataFrame]:
        """Match DataFrames (columns MATCH_COLUMNS) of about `chunk_rows` rows, whole pairs, by pair_id."""
        start = 0
        while start < len(self._raw):
            n, stop = 0, start
            while stop < len(self._raw) and (n == 0 or n + len(self._raw[stop]["point"]) <= chunk_rows):
                n += len(self._raw[stop]["point"])
                stop += 1
            yield self._frame(start, stop)
            start = stop

    @property
    def matches(self) -> pd.DataFrame:
        if self._matches is None:
            self._matches = self._frame(0, len(self._raw))
        return self._matches

    def _frame(self, start: int, stop: int) -> pd.DataFrame:
        raw = self._raw[start:stop]
        n = np.array([len(r["point"]) for r in raw], np.int64)
        cat = (lambda key: np.concatenate([r[key] for r in raw])) if raw else (lambda key: np.zeros(0))
        x0, x1 = cat("x0").reshape(-1, 2), cat("x1").reshape(-1, 2)
        point = cat("point").astype(np.int64)
        dist3d = cat("dist3d").astype(np.float32)
        return pd.DataFrame(
            {
                "pair_id": np.repeat(np.arange(start, stop, dtype=np.int64), n),
                "x0": x0[:, 0].astype(np.float32), "y0": x0[:, 1].astype(np.float32),
                "x1": x1[:, 0].astype(np.float32), "y1": x1[:, 1].astype(np.float32),
                "weight": np.clip(np.exp(-dist3d / self._weight_scale), 1e-6, 1.0).astype(np.float32),
                "point3d_id": self._point_id[point] if len(point) else np.zeros(0, np.int64),
                "dist3d": dist3d,
                "err0": cat("err0").astype(np.float32), "err1": cat("err1").astype(np.float32),
                "densified": cat("densified").astype(bool),
            }
        )


# ----------------------------------------------------------------------------- inputs


def views_from_manifest(manifest, recs: Mapping[str, object]) -> list[ImageView]:
    """One `ImageView` per manifest record, camera and pose from the registered reconstructions.

    Unregistered images keep pose None and the manifest's camera (or their sequence's).
    """
    registered: dict[str, tuple[Camera, Pose]] = {}
    seq_camera: dict[str, Camera] = {}
    for seq, rec in recs.items():
        for image in rec.images.values():
            if not image.has_pose:
                continue
            cam = _camera_from_pycolmap(rec.camera(image.camera_id))
            m = np.asarray(image.cam_from_world().matrix(), np.float64)
            registered[image.name] = (cam, Pose(m[:3, :3], m[:3, 3]))
            seq_camera.setdefault(str(seq), cam)
    views = []
    for r in manifest.images:
        cam, pose = registered.get(r.image, (None, None))
        if cam is None:
            cam = seq_camera.get(r.sequence) or _camera_from_record(r)
        views.append(ImageView(r.image, r.sequence, r.condition, cam, pose, r.mask, r.season, r.daytime, r.weather))
    return views


def _camera_from_pycolmap(cam) -> Camera:
    return Camera(cam.model.name, int(cam.width), int(cam.height), tuple(float(p) for p in cam.params))


def _camera_from_record(record) -> Camera:
    import cv2

    image = cv2.imread(str(record.path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CorrespondenceError(f"{record.path}: cannot read the image (needed for its size)")
    h, w = image.shape[:2]
    if record.camera_model and record.camera_params:
        return Camera(record.camera_model, w, h, tuple(record.camera_params))
    f = 1.2 * max(w, h)
    return Camera("SIMPLE_PINHOLE", w, h, (f, w / 2, h / 2))


@lru_cache(maxsize=256)
def load_mask(path: Path | None, width: int, height: int) -> np.ndarray | None:
    """Boolean (H, W) exclusion mask (non-zero = excluded) or None; cached."""
    if path is None:
        return None
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise CorrespondenceError(f"{path}: cannot read the mask")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != (height, width):
        raise CorrespondenceError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
    return mask != 0


def unmasked(view: ImageView, pixels: np.ndarray) -> np.ndarray:
    """True where a pixel is not excluded by the view's mask (pixels must be inside the image)."""
    mask = load_mask(view.mask, view.camera.width, view.camera.height)
    if mask is None:
        return np.ones(len(pixels), bool)
    ij = np.rint(pixels).astype(np.int64)
    ij[:, 0] = np.clip(ij[:, 0], 0, view.camera.width - 1)
    ij[:, 1] = np.clip(ij[:, 1], 0, view.camera.height - 1)
    return ~mask[ij[:, 1], ij[:, 0]]


# ----------------------------------------------------------------------------- z-buffer


@lru_cache(maxsize=16)
def _cell_rays(camera: Camera, cell: int) -> np.ndarray:
    """(H_cells, W_cells, 3) camera-frame rays (z = 1) through the z-buffer cell centres."""
    hc, wc = -(-camera.height // cell), -(-camera.width // cell)
    gx, gy = np.meshgrid((np.arange(wc) + 0.5) * cell - 0.5, (np.arange(hc) + 0.5) * cell - 0.5)
    return camera.unproject(np.stack([gx.ravel(), gy.ravel()], 1)).reshape(hc, wc, 3)


@lru_cache(maxsize=8)
def _disc_offsets(max_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets of a disc of radius max_cells sorted by distance, and area[r] = offsets in radius r."""
    g = np.arange(-max_cells, max_cells + 1)
    off = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    d2 = (off**2).sum(axis=1)
    radius = np.arange(max_cells + 1)
    keep = d2 <= max_cells**2 + max_cells
    order = np.argsort(d2[keep], kind="stable")
    off, d2 = off[keep][order], d2[keep][order]
    return off, np.searchsorted(d2, radius**2 + radius, side="right")


def splat_depth(
    points_cam: np.ndarray, normals_cam: np.ndarray, radius: np.ndarray, camera: Camera, cell: int, max_cells: int
) -> np.ndarray:
    """Min-depth buffer (cells of `cell` px) of camera-frame points splatted as surfels.

    Each point is a disc of world radius `radius` on its tangent plane (normal NaN: facing the
    camera): every cell whose ray meets the disc gets the plane's depth there, so oblique
    surfaces (a road seen at a grazing angle) keep their true depth across the splat.
    Returns an (H_cells, W_cells) float array, inf where nothing was splatted.
    """
    rays = _cell_rays(camera, cell)
    hc, wc = rays.shape[:2]
    buf = np.full(hc * wc, np.inf)
    z = points_cam[:, 2]
    uv = camera.project(points_cam)
    reach = cell * (max_cells + 1)
    ok = np.isfinite(uv).all(axis=1) & (z > 0)
    ok[ok] = in_image(camera, uv[ok], -reach)
    pts, nrm, rad, z, uv = points_cam[ok], normals_cam[ok], radius[ok], z[ok], uv[ok]
    cx = np.floor((uv[:, 0] + 0.5) / cell).astype(np.int64)
    cy = np.floor((uv[:, 1] + 0.5) / cell).astype(np.int64)
    rpx = np.nan_to_num(_focal(camera) * rad / z / cell, posinf=0.0)
    r = np.clip(np.ceil(rpx - 0.5), 0, max_cells).astype(np.int64)
    flat = ~np.isfinite(nrm).all(axis=1)
    nrm = np.where(flat[:, None], np.array([0.0, 0.0, 1.0]), nrm)
    # Every (point, cell offset) of every disc at once: offsets sorted by distance, so a disc of
    # radius r uses the first area[r] of them.
    offsets, area = _disc_offsets(max_cells)
    count = area[r]
    p = np.repeat(np.arange(len(z)), count)
    o = offsets[np.arange(len(p)) - np.repeat(np.cumsum(count) - count, count)]
    x, y = cx[p] + o[:, 0], cy[p] + o[:, 1]
    inside = (x >= 0) & (x < wc) & (y >= 0) & (y < hc)
    p, x, y, centre = p[inside], x[inside], y[inside], (o[inside] == 0).all(axis=1)
    ray = rays[y, x]
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.einsum("ij,ij->i", nrm[p], pts[p]) / np.einsum("ij,ij->i", nrm[p], ray)
        off = ray * d[:, None] - pts[p]
        on_disc = np.isfinite(d) & (d > 0) & (np.einsum("ij,ij->i", off, off) <= rad[p] ** 2)
    d = np.where(centre & ~on_disc, z[p], d)  # the point's own cell always holds it
    on_disc |= centre
    np.minimum.at(buf, y[on_disc] * wc + x[on_disc], d[on_disc])
    return buf.reshape(hc, wc)


def buffer_lookup(buf: np.ndarray, pixels: np.ndarray, cell: int) -> np.ndarray:
    """Buffer value at each pixel (pixels inside the image)."""
    cx = np.clip(np.floor((pixels[:, 0] + 0.5) / cell).astype(np.int64), 0, buf.shape[1] - 1)
    cy = np.clip(np.floor((pixels[:, 1] + 0.5) / cell).astype(np.int64), 0, buf.shape[0] - 1)
    return buf[cy, cx]


def _focal(camera: Camera) -> float:
    k = camera.calibration_matrix()
    return float(np.sqrt(k[0, 0] * k[1, 1]))


def visible_in_view(
    view: ImageView,
    xyz: np.ndarray,
    occluders: tuple[np.ndarray, np.ndarray, np.ndarray],
    own: tuple[np.ndarray, np.ndarray, np.ndarray],
    cfg: CorrespondenceConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project points into `view` and test them: (pixels (N, 2), in-view mask, visible mask).

    in-view: in front, inside the image by the margin, not masked. visible additionally passes
    the occlusion test against `occluders` and the free-space test against `own` (the view's
    own condition's points); both are (xyz, normals, spacing) triples, splatted as surfels.
    """
    cam_pts = view.pose.transform(xyz)
    uv, z = view.camera.project(cam_pts), cam_pts[:, 2]
    inview = (z > 0) & in_image(view.camera, uv, cfg.image_margin)
    inview[inview] = unmasked(view, uv[inview])
    visible = inview.copy()
    if not inview.any():
        return uv, inview, visible
    zi = z[inview]
    cell = cfg.zbuffer_cell or _auto_cell(view, occluders, cfg.splat_factor)
    zbuf = _surfel_buffer(view, occluders, cfg.splat_factor, cell, cfg.splat_max)
    visible[inview] = zi <= buffer_lookup(zbuf, uv[inview], cell) * (1 + cfg.depth_tol)
    if cfg.free_space_splat > 0 and len(own[0]):
        sbuf = _surfel_buffer(view, own, cfg.free_space_splat, cell, cfg.splat_max)
        behind = buffer_lookup(sbuf, uv[inview], cell)
        visible[inview] &= ~(np.isfinite(behind) & (behind > zi * (1 + cfg.depth_tol)))
    return uv, inview, visible


def _auto_cell(view: ImageView, points: tuple[np.ndarray, np.ndarray, np.ndarray], factor: float) -> int:
    """Z-buffer cell size (px): the median projected splat radius, within 1..16."""
    z = view.pose.transform(points[0])[:, 2]
    r = factor * _focal(view.camera) * points[2] / z
    r = r[np.isfinite(r) & (z > 0)]
    return int(np.clip(np.round(np.median(r)), 1, 16)) if len(r) else 1


def _surfel_buffer(
    view: ImageView, points: tuple[np.ndarray, np.ndarray, np.ndarray], factor: float, cell: int, max_cells: int
) -> np.ndarray:
    xyz, normal, spacing = points
    cam_pts = view.pose.transform(xyz)
    radius = factor * np.nan_to_num(spacing, posinf=0.0)
    return splat_depth(cam_pts, normal @ view.pose.R.T, radius, view.camera, cell, max_cells)


# ----------------------------------------------------------------------------- generation


@dataclass
class _Context:
    """Per reference condition: everything precomputed once, shared by all target images."""

    table: PointTable
    assoc: Associations
    cfg: CorrespondenceConfig
    centres: np.ndarray  # (I, 3), NaN when unregistered
    axes: np.ndarray  # (I, 3) optical axes in the world
    ref_pos: np.ndarray  # (P,) position in assoc.ref_points or -1
    obs_valid: np.ndarray  # (M,) observation usable on the reference side
    n_valid: np.ndarray  # (I,) valid observations per image
    reach: float  # candidate distance in world units
    ref_images: np.ndarray  # registered images of the reference condition
    ref_cache: OrderedDict = field(default_factory=OrderedDict)  # image -> _reference_side(...), LRU


def _context(table: PointTable, assoc: Associations, cfg: CorrespondenceConfig) -> _Context:
    n = len(table.views)
    centres, axes = np.full((n, 3), np.nan), np.full((n, 3), np.nan)
    obs_valid = table.obs_err <= cfg.max_reproj_error
    for k, v in enumerate(table.views):
        lo, hi = table.image_ptr[k], table.image_ptr[k + 1]
        if v.pose is None:
            obs_valid[lo:hi] = False
            continue
        centres[k], axes[k] = v.pose.center, v.pose.R[2]
        ok = obs_valid[lo:hi] & in_image(v.camera, table.obs_proj[lo:hi], cfg.image_margin)
        ok[ok] = unmasked(v, table.obs_proj[lo:hi][ok])
        obs_valid[lo:hi] = ok
    ref_pos = np.full(table.num_points, -1, np.int64)
    ref_pos[assoc.ref_points] = np.arange(len(assoc.ref_points))
    obs_img = table.obs_image
    n_valid = np.bincount(obs_img[obs_valid], minlength=n)
    depth = table.depth[np.isfinite(table.depth) & (table.track_length > 0)]
    reach = cfg.pair_distance * (float(np.median(depth)) if len(depth) else 1.0)
    ref_images = np.flatnonzero([v.condition == assoc.reference and v.pose is not None for v in table.views])
    return _Context(table, assoc, cfg, centres, axes, ref_pos, obs_valid, n_valid, reach, ref_images)


def _neighbours(ctx: _Context, j: int, candidates: np.ndarray) -> np.ndarray:
    """Candidate images (indices) whose pose is close to image j's (distance and axis angle)."""
    if len(candidates) == 0:
        return candidates
    d = np.linalg.norm(ctx.centres[candidates] - ctx.centres[j], axis=1)
    cos = ctx.axes[candidates] @ ctx.axes[j]
    ok = np.flatnonzero((d <= ctx.reach) & (cos >= np.cos(np.radians(ctx.cfg.pair_max_angle))))
    nearest = ok[np.argsort(d[ok], kind="stable")[: ctx.cfg.max_candidates]]
    return candidates[np.sort(nearest)]


def _gather(table: PointTable, images: np.ndarray) -> np.ndarray:
    """Observation indices of the given images, image by image."""
    if len(images) == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(table.image_ptr[k], table.image_ptr[k + 1]) for k in images])


def _geometry(table: PointTable, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return table.xyz[idx], table.normal[idx], table.spacing[idx]


def _reference_side(ctx: _Context, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reference points visible in reference image i (cached): sorted point indices, pixels,
    err0 (0 where i did not observe the point) and whether i observed it.

    Candidates are the points observed by i and its neighbours of the same condition; with
    `densify`, those that i did not observe but sees (occlusion test) are kept too.
    """
    if i in ctx.ref_cache:
        ctx.ref_cache.move_to_end(i)
        return ctx.ref_cache[i]
    t, cfg = ctx.table, ctx.cfg
    nb = np.union1d(_neighbours(ctx, i, ctx.ref_images), [i])
    pts = np.unique(t.obs_point[_gather(t, nb)])
    pts = pts[(ctx.ref_pos[pts] >= 0) & (t.curvature[pts] <= cfg.max_curvature)]
    none = (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0))
    uv, _, visible = visible_in_view(t.views[i], t.xyz[pts], _geometry(t, pts), none, cfg)
    own = np.arange(t.image_ptr[i], t.image_ptr[i + 1])
    own = own[ctx.obs_valid[own]]
    at = np.searchsorted(pts, t.obs_point[own])
    at, own = at[at < len(pts)], own[at < len(pts)]
    hit = pts[at] == t.obs_point[own]
    observed = np.zeros(len(pts), bool)
    observed[at[hit]] = True
    err0 = np.zeros(len(pts), np.float32)
    err0[at[hit]] = t.obs_err[own[hit]]
    keep = observed | (visible & cfg.densify)
    out = (pts[keep], uv[keep].astype(np.float32), err0[keep], observed[keep])
    ctx.ref_cache[i] = out
    if len(ctx.ref_cache) > 4 * cfg.max_candidates:  # targets come in route order: nearby images stay cached
        ctx.ref_cache.popitem(last=False)
    return out


def _target_matches(ctx: _Context, j: int, ref_images: np.ndarray, own_images: np.ndarray, condition: str):
    """Pairs and matches of target image j against its candidate reference images."""
    t, cfg, assoc = ctx.table, ctx.cfg, ctx.assoc
    cand_i = _neighbours(ctx, j, ref_images)
    if len(cand_i) == 0:
        return []
    sides = [_reference_side(ctx, i) for i in cand_i]
    pts = np.unique(np.concatenate([side[0] for side in sides]))
    pos = ctx.ref_pos[pts]
    support = assoc.support_dist[condition][pos]
    partner = assoc.partner[condition][pos]
    dist3d = np.where(partner >= 0, assoc.partner_dist[condition][pos], support)
    keep = np.isfinite(support) & (dist3d <= cfg.max_dist3d)
    pts, partner, dist3d = pts[keep], partner[keep], dist3d[keep]
    if len(pts) == 0:
        return []
    # Keypoints of j, to recognise partners that j itself observed.
    j_obs = np.arange(t.image_ptr[j], t.image_ptr[j + 1])
    order = np.argsort(t.obs_point[j_obs])
    j_pts, j_obs = t.obs_point[j_obs][order], j_obs[order]
    observed = np.zeros(len(pts), bool)
    at = np.zeros(len(pts), np.int64)
    if len(j_pts):
        at = np.minimum(np.searchsorted(j_pts, partner), len(j_pts) - 1)
        observed = (partner >= 0) & (j_pts[at] == partner)
    # Visibility in j against the candidates and c's own points near j.
    own = np.unique(t.obs_point[_gather(t, _neighbours(ctx, j, own_images))])
    own = own[ctx.ref_pos[own] < 0] if condition != assoc.reference else np.zeros(0, np.int64)
    uv, _, visible = visible_in_view(t.views[j], t.xyz[pts], _geometry(t, np.concatenate([pts, own])), _geometry(t, own), cfg)
    err1 = np.zeros(len(pts), np.float32)
    err1[observed] = np.linalg.norm(uv[observed] - t.obs_xy[j_obs[at[observed]]], axis=1)
    ok = visible & ~(observed & (err1 > cfg.max_reproj_error))
    if not cfg.densify:
        ok &= observed
    n_j = int(ok.sum())
    if n_j == 0:
        return []
    # Pair scores: points visible in both images.
    found = []
    for i, (p_i, uv_i, e0, obs_i) in zip(cand_i, sides):
        a = np.searchsorted(pts, p_i)
        a, sel = np.minimum(a, len(pts) - 1), np.arange(len(p_i))
        hit = (pts[a] == p_i) & ok[a]
        found.append((i, a[hit], sel[hit], len(p_i)))
    shared = np.array([len(f[1]) for f in found])
    n_i = np.array([f[3] for f in found])
    with np.errstate(divide="ignore", invalid="ignore"):
        overlap = np.minimum(shared / n_i, shared / n_j)
    good = (shared >= cfg.min_matches) & (overlap >= cfg.min_overlap) & (overlap <= cfg.max_overlap)
    chosen = np.flatnonzero(good)
    chosen = chosen[np.argsort(-shared[chosen], kind="stable")][: cfg.max_pairs_per_image]
    out = []
    for c in chosen:
        i, s, r, _ = found[c]
        p_i, uv_i, e0, obs_i = sides[c]
        fine = predicted_error(t, pts[s], t.views[i], t.views[j], uv[s], cfg) <= cfg.max_predicted_error
        fine &= assoc.confirmed[ctx.ref_pos[pts[s]]]
        s, r = s[fine], r[fine]
        if len(s) < cfg.min_matches:
            continue
        out.append(
            dict(
                i=int(i), j=int(j), overlap=float(overlap[c]),
                x0=uv_i[r].astype(np.float32), x1=uv[s].astype(np.float32),
                point=pts[s], dist3d=dist3d[s].astype(np.float32),
                err0=e0[r], err1=err1[s], densified=~(observed[s] & obs_i[r]),
            )
        )
    return out


def predicted_error(
    table: PointTable, points: np.ndarray, view_i: ImageView, view_j: ImageView, uv_j: np.ndarray,
    cfg: CorrespondenceConfig,
) -> np.ndarray:
    """Pixel shift in image j of each point moved by its depth uncertainty along i's ray.

    Depth uncertainty of a triangulated point: ``depth * sigma / (f_i * sin(tri_angle))`` with
    sigma = max(its mean reprojection error, keypoint_sigma) pixels; a point seen from i at a
    small triangulation angle lands far off in j when j looks at it from another side.
    """
    X = table.xyz[points]
    ray = X - view_i.pose.center
    depth = np.linalg.norm(ray, axis=1)
    sigma = np.maximum(table.error[points], cfg.keypoint_sigma)
    sin = np.sin(np.radians(np.clip(table.tri_angle[points], 1e-3, 90.0)))
    shift = depth * sigma / (_focal(view_i.camera) * sin)
    moved = X + ray / depth[:, None] * shift[:, None]
    uv = view_j.camera.project(view_j.pose.transform(moved))
    return np.where(np.isfinite(uv).all(axis=1), np.linalg.norm(uv - uv_j, axis=1), np.inf)


def make_correspondences(
    table: PointTable,
    associations: Sequence[Associations],
    cfg: CorrespondenceConfig | None = None,
    progress: bool = True,
) -> CorrespondenceTables:
    """Pairs and matches for every reference condition's `Associations` (see module doc)."""
    cfg = cfg or CorrespondenceConfig()
    cond_of = np.array([v.condition for v in table.views], dtype=object)
    registered = np.array([v.pose is not None for v in table.views], bool)
    seq_of = np.array([v.sequence for v in table.views], dtype=object)
    done_refs: list[str] = []
    raw = []
    for assoc in associations:
        ctx = _context(table, assoc, cfg)
        ref_images = np.flatnonzero((cond_of == assoc.reference) & registered)
        targets = [c for c in table.conditions if c not in done_refs and (c != assoc.reference or cfg.self_pairs)]
        for cond in targets:
            own_images = np.flatnonzero((cond_of == cond) & registered)
            label = f"matches {assoc.reference} -> {cond}"
            for j in tqdm(own_images, desc=label, disable=not progress, leave=False):
                cands = ref_images
                if cond == assoc.reference:
                    cands = cands[cands < j]
                    if not cfg.same_sequence:
                        cands = cands[seq_of[cands] != seq_of[j]]
                raw.extend(_target_matches(ctx, j, cands, own_images, cond))
        done_refs.append(assoc.reference)
    return _tables(table, raw, cfg)


def _tables(table: PointTable, raw: list[dict], cfg: CorrespondenceConfig) -> CorrespondenceTables:
    images = images_table(table.views)
    n = np.array([len(r["point"]) for r in raw], np.int64)
    place = np.array([np.median(table.xyz[r["point"]], axis=0) for r in raw]).reshape(-1, 3)
    pairs = pd.DataFrame(
        {
            "pair_id": np.arange(len(raw), dtype=np.int64),
            "image_id0": np.array([r["i"] for r in raw], np.int32),
            "image_id1": np.array([r["j"] for r in raw], np.int32),
            "num_matches": n.astype(np.int32),
            "overlap": np.array([r["overlap"] for r in raw], np.float32),
            "split": assign_splits(place, _route_axis(table), cfg),
        }
    )
    used = np.unique(np.concatenate([r["point"] for r in raw])) if raw else np.zeros(0, np.int64)
    points3d = pd.DataFrame(
        {
            "point3d_id": table.point_id[used],
            "x": table.xyz[used, 0], "y": table.xyz[used, 1], "z": table.xyz[used, 2],
            "condition": np.array(table.conditions, dtype=object)[table.point_condition[used]].astype(str)
            if len(used) else np.zeros(0, str),
        }
    )
    return CorrespondenceTables(images, pairs, raw, table.point_id, cfg.weight_scale, points3d)


def _route_axis(table: PointTable) -> tuple[np.ndarray, np.ndarray]:
    """(origin, unit direction) of the first principal axis of the registered camera centres."""
    c = np.array([v.pose.center for v in table.views if v.pose is not None]).reshape(-1, 3)
    if len(c) < 2:
        return np.zeros(3), np.array([1.0, 0.0, 0.0])
    mean = c.mean(axis=0)
    _, _, vt = np.linalg.svd(c - mean, full_matrices=False)
    return mean, vt[0]


def assign_splits(place: np.ndarray, axis: tuple[np.ndarray, np.ndarray], cfg: CorrespondenceConfig) -> np.ndarray:
    """train/val/test per pair from its place (see module doc): whole blocks of route per split."""
    if len(place) == 0:
        return np.zeros(0, dtype=object)
    s = (place - axis[0]) @ axis[1]
    lo, hi = float(s.min()), float(s.max())
    nb = cfg.split_blocks
    block = np.clip(((s - lo) / max(hi - lo, 1e-9) * nb).astype(np.int64), 0, nb - 1)
    counts = np.floor(np.asarray(cfg.split_fractions) * nb).astype(int)
    for k in (1, 2):  # at least one block for each non-empty split when possible
        if cfg.split_fractions[k] > 0 and counts[k] == 0 and nb >= 3:
            counts[k] = 1
    counts[0] = nb - counts[1] - counts[2]
    names = np.repeat(np.array(["train", "val", "test"], dtype=object), counts)
    perm = np.random.default_rng(cfg.split_seed).permutation(nb)
    return names[perm][block]


def images_table(views: Sequence[ImageView]) -> pd.DataFrame:
    """The images table of the store (CONTRACTS §3), image_id = position in `views`."""
    poses = [v.pose for v in views]
    q = np.array([p.qvec if p is not None else [np.nan] * 4 for p in poses]).reshape(-1, 4)
    tv = np.array([p.t if p is not None else [np.nan] * 3 for p in poses]).reshape(-1, 3)
    df = pd.DataFrame(
        {
            "image_id": np.arange(len(views), dtype=np.int32),
            "image": [v.name for v in views],
            "sequence": [v.sequence for v in views],
            "condition": [v.condition for v in views],
            "season": [v.season for v in views],
            "daytime": [v.daytime for v in views],
            "weather": [v.weather for v in views],
            "camera_model": [v.camera.model for v in views],
            "width": np.array([v.camera.width for v in views], np.int32),
            "height": np.array([v.camera.height for v in views], np.int32),
            "params": [list(map(float, v.camera.params)) for v in views],
            "registered": np.array([p is not None for p in poses], bool),
        }
    )
    for k, name in enumerate(("qw", "qx", "qy", "qz")):
        df[name] = q[:, k]
    for k, name in enumerate(("tx", "ty", "tz")):
        df[name] = tv[:, k]
    return df


def build_correspondences(
    recs: Mapping[str, object],
    views: Sequence[ImageView],
    references: Sequence[str],
    assoc_cfg: AssociationConfig | None = None,
    corr_cfg: CorrespondenceConfig | None = None,
    progress: bool = True,
) -> CorrespondenceTables:
    """The whole stage: registered reconstructions -> cleaned clouds -> associations -> tables."""
    assoc_cfg = assoc_cfg or AssociationConfig()
    if not references:
        raise CorrespondenceError("at least one reference condition is needed")
    table = point_table_from_reconstructions(recs, views, assoc_cfg.spacing_k)
    table = clean_points(table, assoc_cfg)
    try:
        assocs = [associate(table, ref, assoc_cfg) for ref in references]
    except AssociationError as exc:
        raise CorrespondenceError(str(exc)) from None
    return make_correspondences(table, assocs, corr_cfg, progress)


__all__ = [
    "CorrespondenceConfig",
    "CorrespondenceError",
    "CorrespondenceTables",
    "MATCH_COLUMNS",
    "assign_splits",
    "build_correspondences",
    "buffer_lookup",
    "images_table",
    "load_mask",
    "make_correspondences",
    "predicted_error",
    "splat_depth",
    "unmasked",
    "views_from_manifest",
    "visible_in_view",
]
