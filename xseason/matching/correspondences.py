"""Pair selection, reprojection and densification: associated 3D points -> 2D-2D matches.

For every image j of a non-reference condition c (and, with `self_pairs`, of the reference
condition itself), one vectorised pass over all its candidate pairs:

1. Candidate reference images: the (at most `max_candidates`) nearest registered images of
   the reference condition whose camera centre is within ``pair_distance * scene_depth`` of
   j's and whose optical axis is within ``pair_max_angle`` degrees of j's (scene_depth =
   median point depth of the table).
2. Point matches (`_point_matches`): reference points observed by i (valid keypoint: inside by
   `image_margin`, not masked, reprojection error <= max_reproj_error, curvature <=
   max_curvature) whose associated point of c was observed by j. The reference 3D point (not
   the keypoint) is projected into j and kept when inside, unmasked, within max_reproj_error of
   j's keypoint, within `max_predicted_error` after propagating its triangulation uncertainty
   (`predicted_error`), within max_dist3d of its partner, hidden by no surfel of the two
   conditions in either image (surfels.py), and on a surface region of the surface model and
   occluded by none of its occluders (surfaces.py; a scene too sparse for any planar region
   skips these last two checks). A point whose own track holds keypoints of both i and j (a
   track of the joint model, association.joint_point_table: features matched across the
   conditions and triangulated with the known poses) was seen by both, and its triangulation
   used j's keypoint: with `trust_observed_tracks` the surface, occluder and predicted-error
   checks are skipped for it (its reprojection errors in i and j still apply).
3. Surface matches (`_surface_matches`, with `densify`): what gives night and snow images
   matches where their own features failed. Each reference image is sampled on a jittered grid
   (one pixel per `surface_stride`^2, seeded per image). A *plane sample* is the hit of its ray
   on a planar region of the reference condition, away from region borders and occluders, that
   no surfel of the reference condition hides; where there is none, a *patch sample* is taken
   on the surfels of the reference condition (curved facades, towers, pillars, trunks:
   `SurfelModel.patch_samples`). A sample is projected into j, must land inside and unmasked,
   and is kept when (plane sample) j's own ray at that pixel, cast against the regions, the
   reference's clutter as solids and c's clutter as points, hits the same region within
   ``surface_depth_tol`` (relative) of the sample, or (patch sample) the first surfel of the
   two conditions on j's ray is at the sample and c has a point near it; and, for both, no
   surfel of either condition hides it from i or from j. With `support` (support.py) a plane
   sample also needs local evidence of each image's own observed points: in i at least
   `support_min_points` on its plane within `support_radius` px, surrounding it; in i and j no
   observed point clearly nearer close to it, and its nearest observed point not off its plane.
   Every match records its
   `SurfaceClass` (point, plane, patch; counted in dataset.json). A pair tries i's samples in a seeded
   order of them, from its own seeded start: every candidate its first `surface_probe`
   (cast for all candidates of j at once), which estimates how many of all would be kept; a
   candidate chosen as a pair then tries more, in the same order, until it has
   `max_surface_matches` (or none is left), and keeps those: a seeded uniform subsample of all
   the pair's surface matches, found without casting the rest. ``densified = True``,
   ``point3d_id`` null, ``dist3d = err0 = err1 = 0``.
4. Pairs: ``overlap`` = the larger of the point overlap (shared points / points each image
   saw) and the surface overlap (estimated surface matches / samples of i; a binomial estimate
   from `surface_probe` samples, standard error <= 0.5 / sqrt(surface_probe): 3 % at 256); the
   `max_pairs_per_image` candidates with most matches (surface ones as estimated), overlap in
   [min_overlap, max_overlap] and at least `min_matches` matches (checked again on the kept
   matches), become pairs. ``weight = exp(-dist3d / weight_scale)`` (the reference
   paper used exp(-d) with d in metres), clipped to [1e-6, 1].
5. Splits by place (splits.py): every registered image gets one split (or none: the buffer,
   `split_buffer`) from where it looks along the route, images of `test_sequences` are test; a pair
   takes its images' split, and a pair whose two images are not of one split is dropped (logged,
   counted in `CorrespondenceTables.split_counts`).

The input is the association stage's `AssociatedPoints`; the output, `CorrespondenceTables`,
holds the store's pairs, matches and points3d tables (the images table is the views':
`store.tables.images_table`). Work is done by tasks of an executor (`core.executor`: this process
or Ray): first each candidate reference image's side (its points and surface samples, steps 2-3)
is made once into a file of its own (`_run_sides`), then the target images are generated in
shards that read those files and write their matches into shard files, returning per-pair
metadata; the tables are made from the metadata, the matches read back shard by shard
(`make_correspondences`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xseason.core.executor import Executor, LocalExecutor
from xseason.core.files import atomic_path
from xseason.core.geometry import Camera, in_image
from xseason.core.log import progress as progress_bar
from xseason.matching.association import AssociatedPoints, Associations, PointTable
from xseason.matching.splits import SPLITS, RouteAxis, assign_splits, image_views, pair_splits, route_axis
from xseason.matching.support import ImagePoints, SupportRule, evidence, image_points
from xseason.matching.surfaces import SurfaceConfig, SurfaceModel, build_surfaces
from xseason.matching.surfels import SurfelConfig, SurfelModel, build_surfels
from xseason.matching.views import ImageView, unmasked
from xseason.sfm.cachekeys import code_digest

log = logging.getLogger(__name__)

PATCH = -4  # `_Side.sample_region` of a patch sample (surfels.py), not on a planar region


class SurfaceClass(IntEnum):
    """What a match lies on: a matched 3D point, a sample of a planar region, a sample of a surfel patch."""

    POINT = 0
    PLANE = 1
    PATCH = 2


@dataclass
class CorrespondenceConfig:
    """Pair selection, reprojection, densification and splits (see module doc)."""

    pair_conditions: str = "reference"  # reference: each condition with the reference(s); all: any two
    self_pairs: bool = False  # also pairs inside a reference condition, across its sequences
    same_sequence: bool = False  # with self_pairs: also pairs of one sequence
    pair_distance: float = 1.5  # candidate pairs: centre distance <= pair_distance * scene depth
    pair_max_angle: float = 60.0  # degrees between optical axes
    max_candidates: int = 60  # at most this many nearest candidate images per target image
    min_overlap: float = 0.05
    max_overlap: float = 1.0
    max_pairs_per_image: int = 40
    min_matches: int = 10
    image_margin: float = 2.0  # px
    max_reproj_error: float = 2.0  # px
    max_dist3d: float = 0.5  # world units
    max_curvature: float = 1.0  # reference points on rougher neighbourhoods (leaves, edges) are not matched
    trust_observed_tracks: bool = False  # a point seen in both images: no surface/occluder/uncertainty check
    keypoint_sigma: float = 0.5  # px, floor of a point's keypoint noise (its mean reprojection error)
    max_predicted_error: float = 1.0  # px, triangulation uncertainty propagated into the other image
    weight_scale: float = 1.0  # weight = exp(-dist3d / weight_scale)
    densify: bool = True  # also match surface samples of the reference images (surfaces.py) into the others
    surface_stride: float = 4.0  # px, one surface sample per stride x stride cell of a reference image
    surface_depth_tol: float = 0.01  # relative: the target's ray must hit the sample's region this close
    max_surface_matches: int = 500  # per pair (seeded subsample)
    surface_probe: int = 256  # surface samples tried per candidate pair to estimate its surface matches
    support: bool = False  # opt-in (costs 12-48 % of matches): local evidence of observed points (support.py)
    support_radius: float = 40.0  # px, observed points this close to a sample are its evidence
    support_neighbours: int = 16  # at most this many nearest observed points weighed per sample
    support_min_points: int = 3  # observed points on a sample's plane needed around it, reference image
    support_min_points_target: int = 0  # the same in the target image (0: only occluders and contradiction)
    support_max_gap: float = 180.0  # degrees: widest angular gap between supporters (180: sample inside them)
    support_occluder_radius: float = 12.0  # px: an observed point clearly nearer this close rejects it
    support_sigmas: float = 3.0  # on-plane / nearer tolerance in depth standard deviations of each point
    split_blocks: int = 10  # the route is cut into this many blocks, assigned whole to train / val / test
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test shares (sum to 1)
    split_seed: int = 0  # seed of the block draw
    split_buffer: float = 0.0  # 0-0.5: images whose point quantiles 0.5 -+ this see a later split get none
    test_sequences: list[str] = field(default_factory=list)  # whose images are all test, wherever they are

    def validate(self) -> None:
        if self.pair_conditions not in ("reference", "all"):
            raise ValueError(f"pair_conditions must be 'reference' or 'all', got {self.pair_conditions!r}")
        if not 0 <= self.min_overlap <= self.max_overlap:
            raise ValueError("need 0 <= min_overlap <= max_overlap")
        if self.max_pairs_per_image < 1 or self.min_matches < 1 or self.max_candidates < 1:
            raise ValueError("max_pairs_per_image, max_candidates and min_matches must be >= 1")
        if (
            self.surface_stride < 1
            or self.max_surface_matches < 0
            or self.split_blocks < 1
            or self.surface_probe < 1
        ):
            raise ValueError(
                "surface_stride must be >= 1, max_surface_matches >= 0, surface_probe >= 1, split_blocks >= 1"
            )
        if self.support_radius <= 0 or self.support_sigmas <= 0 or not 0 < self.support_max_gap <= 360:
            raise ValueError("support_radius and support_sigmas must be > 0, support_max_gap in (0, 360]")
        if min(self.support_min_points, self.support_min_points_target) < 0 or self.support_neighbours < 1:
            raise ValueError("support_min_points(_target) must be >= 0, support_neighbours >= 1")
        if self.weight_scale <= 0 or self.surface_depth_tol <= 0:
            raise ValueError("weight_scale and surface_depth_tol must be > 0")
        if any(f < 0 for f in self.split_fractions) or abs(sum(self.split_fractions) - 1) > 1e-6:
            raise ValueError("split_fractions must be three non-negative numbers summing to 1")
        if not 0 <= self.split_buffer <= 0.5:
            raise ValueError("split_buffer must be in [0, 0.5]")


@dataclass
class Matches:
    """The matches of one image pair (reference image i, target image j), one entry each: its point
    matches (`_point_matches`), then its surface matches (`_surface_matches`)."""

    x0: np.ndarray  # (N, 2) float32 pixels in i
    x1: np.ndarray  # (N, 2) float32 pixels in j
    point: np.ndarray  # (N,) int64 reference point matched (index into the table), -1: a surface sample
    xyz: np.ndarray  # (N, 3) the world point matched
    dist3d: np.ndarray  # (N,) float32 distance of the reference point to its partner (0 for a sample)
    err0: np.ndarray  # (N,) float32 reprojection error of i's keypoint (0 for a sample)
    err1: np.ndarray  # (N,) float32 reprojection error of j's keypoint (0 for a sample)
    surface: np.ndarray  # (N,) uint8 `SurfaceClass` of the match: a point, a plane sample, a patch sample

    def __len__(self) -> int:
        return len(self.point)

    @property
    def densified(self) -> np.ndarray:
        """(N,) bool: a surface sample (plane or patch), not a matched 3D point."""
        return self.surface != SurfaceClass.POINT

    def __add__(self, other: Matches) -> Matches:
        return Matches(
            *(np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self))
        )


@dataclass
class PairMatches:
    """One pair of the tables: reference image i, target image j (indices of the views)."""

    i: int
    j: int
    overlap: float
    matches: Matches


class CorrespondenceTables:
    """The stage's output: the store's pairs and points3d tables, and its matches.

    The matches stay in the generation's shard files (`_ShardPart`, in pair_id order), never all in
    memory: `match_parts` gives one picklable reader per shard (what `store.write_dataset(parts=...)`
    writes as one part file each), `iter_matches` streams them as DataFrames of whole pairs in
    pair_id order, `matches` builds the one full table (on first use; costly at scale).
    `image_split` holds each image's split (object array; None: in no split), `split_counts` the images
    and pairs per split and the pairs dropped for want of one (splits.py); both are unset (None, {})
    when no pair was sought.
    """

    def __init__(
        self,
        pairs: pd.DataFrame,
        points3d: pd.DataFrame,
        shards: list[_ShardPart] | None = None,
        surface: np.ndarray | None = None,
        image_split: np.ndarray | None = None,
        split_counts: dict | None = None,
    ):
        self.pairs, self.points3d = pairs, points3d
        self.image_split, self.split_counts = image_split, split_counts or {}
        self._shards = shards or []
        self._surface = np.zeros(len(SurfaceClass), np.int64) if surface is None else surface
        self._matches: pd.DataFrame | None = None

    @property
    def num_matches(self) -> int:
        return int(self.pairs["num_matches"].sum()) if len(self.pairs) else 0

    def surface_counts(self) -> dict[str, int]:
        """Number of matches on each class of surface (`SurfaceClass`): point, plane, patch."""
        return {c.name.lower(): int(self._surface[c]) for c in SurfaceClass}

    def match_parts(self) -> list[_ShardPart]:
        """One reader per shard holding kept matches: called, each returns its matches table
        (docs/FORMAT.md §3) of whole pairs in pair_id order, the parts in pair_id order."""
        return [part for part in self._shards if part.kept]

    def iter_matches(self, chunk_rows: int = 1 << 20) -> Iterator[pd.DataFrame]:
        """Matches tables (docs/FORMAT.md §3) of about `chunk_rows` rows, whole pairs, by pair_id: as
        many whole pairs as fit in `chunk_rows` (at least one), read shard by shard."""
        held = None
        for part in self.match_parts():
            held = part() if held is None else pd.concat([held, part()], ignore_index=True)
            while (cut := _chunk_end(held.pair_id.to_numpy(), chunk_rows)) < len(held):
                yield held.iloc[:cut].reset_index(drop=True)
                held = held.iloc[cut:].reset_index(drop=True)
        while held is not None and len(held):
            cut = _chunk_end(held.pair_id.to_numpy(), chunk_rows)
            yield held.iloc[:cut].reset_index(drop=True)
            held = held.iloc[cut:].reset_index(drop=True)

    @property
    def matches(self) -> pd.DataFrame:
        if self._matches is None:
            frames = [part() for part in self.match_parts()]
            self._matches = pd.concat(frames, ignore_index=True) if frames else _empty_frame()
        return self._matches


def _chunk_end(pair_id: np.ndarray, chunk_rows: int) -> int:
    """Rows of the first chunk of `pair_id` (sorted, not empty): its first whole pairs, as many as
    fit in `chunk_rows` rows (at least one)."""
    ends = np.r_[np.flatnonzero(pair_id[1:] != pair_id[:-1]) + 1, len(pair_id)]
    fit = ends[ends <= chunk_rows]
    return int(fit[-1] if len(fit) else ends[0])


# ----------------------------------------------------------------------------- generation


def _focal(camera: Camera) -> float:
    """Focal length in pixels (geometric mean of fx and fy)."""
    k = camera.calibration_matrix()
    return float(np.sqrt(k[0, 0] * k[1, 1]))


@dataclass
class _Context:
    """Per reference condition: everything precomputed once, shared by all target images."""

    table: PointTable
    assoc: Associations
    cfg: CorrespondenceConfig
    surfaces: SurfaceModel
    surfels: SurfelModel
    centres: np.ndarray  # (I, 3), NaN when unregistered
    axes: np.ndarray  # (I, 3) optical axes in the world
    focals: np.ndarray  # (I,) focal lengths (pixels)
    ref_pos: np.ndarray  # (P,) position in assoc.ref_points or -1
    obs_valid: np.ndarray  # (M,) observation usable on the reference side
    reach: float  # candidate distance in world units
    ref_images: np.ndarray  # registered images of the reference condition
    sides: Path | None = None  # the folder of the reference images' side files (`_run_sides`)
    observed: dict[int, ImagePoints] = field(default_factory=dict)  # image -> its observed points (support)


def _context(
    table: PointTable,
    assoc: Associations,
    cfg: CorrespondenceConfig,
    surfaces: SurfaceModel,
    surfels: SurfelModel,
) -> _Context:
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
    reach = cfg.pair_distance * table.scene_depth()
    ref_images = np.flatnonzero([v.condition == assoc.reference and v.pose is not None for v in table.views])
    focals = np.array([_focal(v.camera) for v in table.views])
    return _Context(
        table, assoc, cfg, surfaces, surfels, centres, axes, focals, ref_pos, obs_valid, reach, ref_images
    )


def _neighbours(ctx: _Context, j: int, candidates: np.ndarray) -> np.ndarray:
    """Candidate images (indices) whose pose is close to image j's (distance and axis angle)."""
    if len(candidates) == 0:
        return candidates
    d = np.linalg.norm(ctx.centres[candidates] - ctx.centres[j], axis=1)
    cos = ctx.axes[candidates] @ ctx.axes[j]
    ok = np.flatnonzero((d <= ctx.reach) & (cos >= np.cos(np.radians(ctx.cfg.pair_max_angle))))
    nearest = ok[np.argsort(d[ok], kind="stable")[: ctx.cfg.max_candidates]]
    return candidates[np.sort(nearest)]


@dataclass
class _Side:
    """What a reference image contributes to its pairs (cached per image)."""

    points: np.ndarray  # sorted reference points it observed (valid observations)
    uv: np.ndarray  # (N, 2) their projections
    err: np.ndarray  # (N,) reprojection error of its keypoint
    on_surface: np.ndarray  # (N,) on a surface region and unoccluded in i (`_point_matches`)
    sample_uv: np.ndarray  # (S, 2) surface samples (pixels)
    sample_region: np.ndarray  # (S,) their regions (PATCH: a patch sample on the surfels)
    sample_xyz: np.ndarray  # (S, 3) their world points
    sample_order: np.ndarray  # (S,) a seeded permutation: pairs try the samples in it, from their own start
    centre: np.ndarray  # (3,) the image's camera centre
    matchable: dict[str, _Matchable] = field(default_factory=dict)  # condition -> `_matchable(...)`


@dataclass
class _Matchable:
    """Points of a reference image that can make point matches with the images of one condition."""

    point: np.ndarray  # (N,) reference points
    x0: np.ndarray  # (N, 2) float32 their projections in the reference image
    err0: np.ndarray  # (N,) reprojection error of the reference image's keypoint
    partner: np.ndarray  # (N,) their partners in the condition
    dist3d: np.ndarray  # (N,) distance to the partner


def _matchable(ctx: _Context, side: _Side, condition: str) -> _Matchable:
    """The side's points that can make a point match with an image of `condition`: on a surface,
    unoccluded in i, with a partner in `condition` within max_dist3d (cached per condition)."""
    if condition not in side.matchable:
        pos = ctx.ref_pos[side.points]
        partner, dist3d = ctx.assoc.partner[condition][pos], ctx.assoc.partner_dist[condition][pos]
        visible = side.on_surface | (ctx.cfg.trust_observed_tracks & (partner == side.points))
        k = np.flatnonzero((partner >= 0) & (dist3d <= ctx.cfg.max_dist3d) & visible)
        side.matchable[condition] = _Matchable(side.points[k], side.uv[k], side.err[k], partner[k], dist3d[k])
    return side.matchable[condition]


def _reference_side(ctx: _Context, i: int) -> _Side:
    """Reference image i's side, from its file (made once by `_run_sides`). This process keeps the
    last ones read: a target's candidates, and most of the next target's (targets go in route order)."""
    path = ctx.sides / _side_name(i)
    side = _READ.pop(path, None)
    if side is None:
        with np.load(path) as arrays:
            side = _Side(**{name: arrays[name] for name in _SIDE_ARRAYS})
    _READ[path] = side
    while len(_READ) > 2 * ctx.cfg.max_candidates:
        _READ.popitem(last=False)
    return side


_READ: OrderedDict[Path, _Side] = OrderedDict()  # side files read in this process, the last used last
_SIDE_ARRAYS = tuple(f.name for f in fields(_Side) if f.name != "matchable")  # what a side file holds


def _side_name(i: int) -> str:
    return f"side-{i:06d}.npz"


def _write_side(path: Path, side: _Side) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        np.savez(out, **{name: getattr(side, name) for name in _SIDE_ARRAYS})


def _computed_side(ctx: _Context, i: int) -> _Side:
    """Reference image i's observed reference points and its surface samples (module doc)."""
    t, cfg, view = ctx.table, ctx.cfg, ctx.table.views[i]
    own = np.arange(t.image_ptr[i], t.image_ptr[i + 1])
    own = own[ctx.obs_valid[own]]
    own = own[(ctx.ref_pos[t.obs_point[own]] >= 0) & (t.curvature[t.obs_point[own]] <= cfg.max_curvature)]
    own = own[np.argsort(t.obs_point[own], kind="stable")]
    points, first = np.unique(t.obs_point[own], return_index=True)
    own = own[first]
    ref = t.condition_index(ctx.assoc.reference)
    on_surface = ctx.surfels.unoccluded(view.pose.center, t.xyz[points], (ref,))
    if ctx.surfaces.regions:  # a scene too sparse for any plane has no regions to check points against
        on_surface &= ctx.surfaces.on_surfaces(t.xyz[points]) & _unoccluded(ctx, i, t.xyz[points])
    if cfg.densify:
        samples = _plane_and_patch_samples(
            ctx, i, sample_grid(view.camera, cfg.surface_stride, (cfg.split_seed, i))
        )
    else:
        samples = np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros((0, 3))
    order = np.random.default_rng((cfg.split_seed, i)).permutation(len(samples[0]))
    return _Side(
        points,
        t.obs_proj[own].astype(np.float32),
        t.obs_err[own],
        on_surface,
        *samples,
        order,
        view.pose.center,
    )


def _plane_and_patch_samples(
    ctx: _Context, i: int, uv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference image i's samples at `uv`: where its ray hits a planar region (surfaces.py) that
    no surfel of the reference condition hides, a plane sample; elsewhere, a patch sample on the
    surfels (surfels.py) where there is one. Returns the pixels, regions (PATCH) and world points."""
    view, ref = ctx.table.views[i], ctx.table.condition_index(ctx.assoc.reference)
    region, xyz = ctx.surfaces.samples(view, uv, True, *_looking(ctx, i))
    ok = region >= 0
    ok[ok] = ctx.surfels.unoccluded(view.pose.center, xyz[ok], (ref,))
    ok[ok] = _supported(ctx, i, uv[ok], xyz[ok], region[ok], ctx.cfg.support_min_points)
    if ctx.surfels.cfg.patches:
        rest = np.flatnonzero(~ok)
        patch, patch_xyz = ctx.surfels.patch_samples(view, uv[rest], ref)
        rest = rest[patch]
        region[rest], xyz[rest], ok[rest] = PATCH, patch_xyz[patch], True
    return uv[ok], region[ok], xyz[ok]


def _supported(
    ctx: _Context, k: int, uv: np.ndarray, xyz: np.ndarray, region: np.ndarray, min_points: int
) -> np.ndarray:
    """Whether image k's own observed points support plane samples at `uv` (world points `xyz` on
    `region`): enough on the plane around each, none clearly in front of it (support.py); all True
    with `support` off."""
    cfg = ctx.cfg
    if not cfg.support or len(uv) == 0:
        return np.ones(len(uv), bool)
    if k not in ctx.observed:
        ctx.observed[k] = image_points(ctx.table, k, ctx.obs_valid, ctx.focals[k], cfg.keypoint_sigma)
    rule = SupportRule(
        cfg.support_radius,
        cfg.support_neighbours,
        min_points,
        cfg.support_max_gap,
        cfg.support_occluder_radius,
        cfg.support_sigmas,
    )
    normal = np.array([r.normal for r in ctx.surfaces.regions]).reshape(-1, 3)[region]
    return evidence(ctx.observed[k], uv, xyz, normal, rule).accepted(rule)


def sample_grid(camera: Camera, stride: float, seed) -> np.ndarray:
    """A jittered grid of pixels, one per `stride` x `stride` cell (seeded: the same for the same image)."""
    gx, gy = np.meshgrid(np.arange(0, camera.width, stride), np.arange(0, camera.height, stride))
    cells = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
    jitter = np.random.default_rng(seed).uniform(0, stride, cells.shape)
    uv = cells + jitter - 0.5
    return uv[in_image(camera, uv)]


def _target_matches(ctx: _Context, j: int, cand_i: np.ndarray, condition: str) -> list[PairMatches]:
    """Pairs and matches of target image j against its candidate reference images (`_neighbours`)."""
    t, cfg = ctx.table, ctx.cfg
    if len(cand_i) == 0:
        return []
    sides = [_reference_side(ctx, i) for i in cand_i]
    point_sets = _point_matches(ctx, j, cand_i, sides, condition)
    starts = [
        np.random.default_rng((cfg.split_seed, j, int(i))).integers(max(len(side.sample_order), 1))
        for i, side in zip(cand_i, sides, strict=True)
    ]  # each pair's seeded start in i's sample order
    scans = [_SurfaceScan(int(start)) for start in starts]
    _try_samples(ctx, j, [(side, scan, cfg.surface_probe) for side, scan in zip(sides, scans, strict=True)])
    own = t.point_condition[t.obs_point[t.image_ptr[j] : t.image_ptr[j + 1]]] == t.condition_index(condition)
    n_j = max(int(np.count_nonzero(own)), 1)  # points j saw (a joint model's point is one per condition)
    shared = np.array(
        [len(p) + s.estimate(side) for p, s, side in zip(point_sets, scans, sides, strict=True)]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        point_overlap = np.array(
            [
                min(len(p) / max(len(side.points), 1), len(p) / n_j)
                for p, side in zip(point_sets, sides, strict=True)
            ]
        )
        surface_overlap = np.array(
            [s.estimate(side) / max(len(side.sample_uv), 1) for s, side in zip(scans, sides, strict=True)]
        )
    overlap = np.maximum(point_overlap, surface_overlap)
    good = (shared >= cfg.min_matches) & (overlap >= cfg.min_overlap) & (overlap <= cfg.max_overlap)
    chosen = np.flatnonzero(good)
    chosen = chosen[np.argsort(-shared[chosen], kind="stable")][: cfg.max_pairs_per_image]
    out = []
    for c in chosen:
        matches = point_sets[c] + _surface_matches(ctx, j, sides[c], scans[c])
        if len(matches) < cfg.min_matches:  # the estimate promised more than there are
            continue
        out.append(PairMatches(int(cand_i[c]), int(j), float(overlap[c]), matches))
    return out


def _point_matches(
    ctx: _Context, j: int, cand_i: np.ndarray, sides: list[_Side], condition: str
) -> list[Matches]:
    """Matches from associated points, for each candidate i of j (all candidates in one pass): a
    reference point i observed whose partner in `condition` j observed, kept only on a surface
    region and occluded in neither image (measured on `demo`: points off the surfaces, phantoms
    from repeated texture floating before facades or in the sky, were 2.6 % of these matches off
    by > 5 px)."""
    t, cfg = ctx.table, ctx.cfg
    ready = [_matchable(ctx, side, condition) for side in sides]
    owner = np.repeat(np.arange(len(sides)), [len(m.point) for m in ready])  # candidate of each entry
    pts, uv0, err0, partner, dist3d = (
        np.concatenate([getattr(m, key) for m in ready])
        for key in ("point", "x0", "err0", "partner", "dist3d")
    )
    j_points, first = np.unique(t.obs_point[t.image_ptr[j] : t.image_ptr[j + 1]], return_index=True)
    obs_in_j = np.full(t.num_points, -1, np.int64)  # point -> j's first observation of it
    obs_in_j[j_points] = t.image_ptr[j] + first
    at = obs_in_j[partner]
    keep = np.flatnonzero(at >= 0)
    observed = cfg.trust_observed_tracks & (partner == pts)  # i's point itself seen in j (module doc)
    view_j = t.views[j]
    uv1, inside = _projected_inside(view_j, t.xyz[pts[keep]], cfg.image_margin)
    inside[inside] = unmasked(view_j, uv1[inside])
    err1 = np.linalg.norm(uv1 - t.obs_xy[at[keep]], axis=1)
    fine = inside & (err1 <= cfg.max_reproj_error)
    i = cand_i[owner[keep[fine]]]
    fine[fine] = observed[keep[fine]] | (
        predicted_error(t, pts[keep[fine]], ctx.centres[i], ctx.focals[i], view_j, uv1[fine], cfg)
        <= cfg.max_predicted_error
    )
    keep, uv1, err1 = keep[fine], uv1[fine], err1[fine]
    # (i's side of the check is `_Side.on_surface`; one cast per point here)
    points, inverse = np.unique(pts[keep], return_inverse=True)
    looking = (t.condition_index(ctx.assoc.reference), t.condition_index(view_j.condition))
    fine = ctx.surfels.unoccluded(view_j.pose.center, t.xyz[points], looking)
    if ctx.surfaces.regions:
        fine &= _unoccluded(ctx, j, t.xyz[points])
    fine = fine[inverse] | observed[keep]
    keep, uv1, err1 = keep[fine], uv1[fine], err1[fine]
    ends = np.searchsorted(owner[keep], np.arange(1, len(sides)))
    return [
        Matches(
            x0=uv0[k],
            x1=u1.astype(np.float32),
            point=pts[k],
            xyz=t.xyz[pts[k]],
            dist3d=dist3d[k].astype(np.float32),
            err0=err0[k].astype(np.float32),
            err1=e1.astype(np.float32),
            surface=np.full(len(k), SurfaceClass.POINT, np.uint8),
        )
        for k, u1, e1 in zip(np.split(keep, ends), np.split(uv1, ends), np.split(err1, ends), strict=True)
    ]


def _projected_inside(view: ImageView, xyz: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of world points in `view` and whether each lands in front of it, inside by `margin`."""
    uv = view.camera.project(view.pose.transform(xyz))
    inside = np.isfinite(uv).all(axis=1)
    inside[inside] = in_image(view.camera, uv[inside], margin)
    return uv, inside


def _looking(ctx: _Context, k: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Occluders in image k (`SurfaceModel.scene`): the reference condition's clutter as solid
    hulls, k's own condition's as single points (often too sparse to be trusted as solids)."""
    t = ctx.table
    return (t.condition_index(ctx.assoc.reference),), (t.condition_index(t.views[k].condition),)


def _unoccluded(ctx: _Context, k: int, xyz: np.ndarray) -> np.ndarray:
    """Whether the ray from image k's camera to each point meets nothing of image k's occluders
    (`_looking`) clearly before it (an observed point behind a wall or a crown is a wrong track or a
    wrong association)."""
    view = ctx.table.views[k]
    ray = xyz - view.pose.center
    dist = np.linalg.norm(ray, axis=1)
    t, _ = ctx.surfaces.scene(*_looking(ctx, k)).cast(view.pose.center, ray / dist[:, None])
    return t >= dist * (1 - ctx.cfg.surface_depth_tol)


@dataclass
class _SurfaceScan:
    """Reference image i's surface samples tried in target image j, in a seeded order (module doc)."""

    start: int  # position in `_Side.sample_order` of the first sample tried
    tried: int = 0  # how many of the side's `sample_order` were tried (projected into j; cast when inside)
    hits: list = field(default_factory=list)  # (sample indices, their pixels in j) of each batch's matches

    def next(self, side: _Side, n: int) -> np.ndarray:
        """The next `n` samples to try (at most all of them, once each), counted as tried."""
        size = len(side.sample_order)
        k = side.sample_order[(self.start + np.arange(self.tried, min(self.tried + n, size))) % size]
        self.tried += len(k)
        return k

    def num_hits(self) -> int:
        return sum(len(k) for k, _ in self.hits)

    def estimate(self, side: _Side) -> float:
        """Surface matches of the pair if every sample were tried (exact once all are)."""
        return self.num_hits() / self.tried * len(side.sample_order) if self.tried else 0.0


def _try_samples(ctx: _Context, j: int, batch: list[tuple[_Side, _SurfaceScan, int]]) -> None:
    """Try the next `n` samples of each (side, scan, n) in one cast: projected inside j and unmasked;
    a plane sample must be what j's own ray at that pixel hits in the surface model (its region,
    within ``surface_depth_tol``), a patch sample the first surfel of the two conditions j's ray
    meets; and no surfel of either condition may hide the sample from i or from j."""
    t = ctx.table
    view = t.views[j]
    conditions = (t.condition_index(ctx.assoc.reference), t.condition_index(view.condition))
    tried = []
    for side, scan, n in batch:
        k = scan.next(side, n)
        uv, inside = _projected_inside(view, side.sample_xyz[k], ctx.cfg.image_margin)
        inside[inside] = unmasked(view, uv[inside])
        tried.append((k[inside], uv[inside]))
    uv = np.concatenate([u for _, u in tried] + [np.zeros((0, 2))])
    if len(uv) == 0:
        return
    expected, target = (
        np.concatenate([getattr(side, key)[k] for (side, _, _), (k, _) in zip(batch, tried, strict=True)])
        for key in ("sample_region", "sample_xyz")
    )
    origin = np.concatenate(
        [np.broadcast_to(side.centre, (len(k), 3)) for (side, _, _), (k, _) in zip(batch, tried, strict=True)]
    )
    hit = np.zeros(len(uv), bool)
    plane = np.flatnonzero(expected >= 0)
    region, xyz = ctx.surfaces.samples(view, uv[plane], False, *_looking(ctx, j), expected=expected[plane])
    hit[plane] = (region == expected[plane]) & (
        np.linalg.norm(xyz - target[plane], axis=1)
        <= ctx.cfg.surface_depth_tol * np.linalg.norm(target[plane] - view.pose.center, axis=1)
    )
    hit[plane[hit[plane]]] = ctx.surfels.unoccluded(view.pose.center, target[plane[hit[plane]]], conditions)
    k = plane[hit[plane]]
    hit[k] = _supported(ctx, j, uv[k], target[k], expected[k], ctx.cfg.support_min_points_target)
    patch = np.flatnonzero(expected == PATCH)
    hit[patch] = ctx.surfels.first_surface(view.pose.center, target[patch], conditions)
    hit[patch[hit[patch]]] = ctx.surfels.supported(target[patch[hit[patch]]], conditions[1])
    k = np.flatnonzero(hit)
    hit[k] = ctx.surfels.unoccluded(origin[k], target[k], conditions[1:])
    ends = np.cumsum([len(k) for k, _ in tried])
    for (_, scan, _), (k, u), h in zip(batch, tried, np.split(hit, ends[:-1]), strict=True):
        scan.hits.append((k[h], u[h]))


def _surface_matches(ctx: _Context, j: int, side: _Side, scan: _SurfaceScan) -> Matches:
    """The pair's surface matches: the first `max_surface_matches` hits of its scan, trying more
    samples (in batches sized by the hit rate so far) until it has them or none is left."""
    limit = ctx.cfg.max_surface_matches
    while (found := scan.num_hits()) < limit and scan.tried < len(side.sample_order):
        rate = max(found / scan.tried if scan.tried else 0.0, 0.05)
        _try_samples(ctx, j, [(side, scan, max(int(1.2 * (limit - found) / rate), 256))])
    keep = np.concatenate([k for k, _ in scan.hits] + [np.zeros(0, np.int64)])[:limit]
    uv1 = np.concatenate([uv for _, uv in scan.hits] + [np.zeros((0, 2))])[:limit]
    by_sample = np.argsort(keep, kind="stable")
    keep, uv1 = keep[by_sample], uv1[by_sample]
    n = len(keep)
    return Matches(
        x0=side.sample_uv[keep].astype(np.float32),
        x1=uv1.astype(np.float32),
        point=np.full(n, -1, np.int64),
        xyz=side.sample_xyz[keep],
        dist3d=np.zeros(n, np.float32),
        err0=np.zeros(n, np.float32),
        err1=np.zeros(n, np.float32),
        surface=np.where(side.sample_region[keep] == PATCH, SurfaceClass.PATCH, SurfaceClass.PLANE).astype(
            np.uint8
        ),
    )


def predicted_error(
    table: PointTable,
    points: np.ndarray,
    centre_i: np.ndarray,
    focal_i: np.ndarray | float,
    view_j: ImageView,
    uv_j: np.ndarray,
    cfg: CorrespondenceConfig,
) -> np.ndarray:
    """Pixel shift in image j of each point moved by its depth uncertainty along the ray from the
    camera centre of image i (`centre_i`, (3,) or one per point; focal length `focal_i` likewise).

    Depth uncertainty of a triangulated point: ``depth * sigma / (f_i * sin(tri_angle))`` with
    sigma = max(its mean reprojection error, keypoint_sigma) pixels; a point seen from i at a
    small triangulation angle lands far off in j when j looks at it from another side.
    """
    X = table.xyz[points]
    ray = X - centre_i
    depth = np.linalg.norm(ray, axis=1)
    sigma = np.maximum(table.error[points], cfg.keypoint_sigma)
    sin = np.sin(np.radians(np.clip(table.tri_angle[points], 1e-3, 90.0)))
    shift = depth * sigma / (focal_i * sin)
    moved = X + ray / depth[:, None] * shift[:, None]
    uv = view_j.camera.project(view_j.pose.transform(moved))
    return np.where(np.isfinite(uv).all(axis=1), np.linalg.norm(uv - uv_j, axis=1), np.inf)


SHARD_TARGETS = 8  # default target images per generation shard (`make_correspondences`)


def make_correspondences(
    associated: AssociatedPoints,
    cfg: CorrespondenceConfig | None = None,
    surface_cfg: SurfaceConfig | None = None,
    surfel_cfg: SurfelConfig | None = None,
    progress: bool = True,
    executor: Executor | None = None,
    shard_root: Path | None = None,
    shard_targets: int = SHARD_TARGETS,
) -> CorrespondenceTables:
    """The correspondence stage: pairs and matches for every reference condition's associations
    (module doc); the surfaces of densification come from `associated.surface_points`.

    The target images are cut, in the tables' order, into shards of `shard_targets` consecutive
    ones, each a task of `executor` (default: this process) that writes its pairs' matches into a
    shard file and returns their metadata (`_run_shard`): the result is the same whatever runs the
    shards. The files live in ``shard_root/<key>`` (default: a temporary folder, removed with the
    tables), the key digesting the inputs, the configs, `shard_targets` and the code
    (`_shard_key`): a shard found there complete (an interrupted run's) is reused, not made again.
    """
    cfg = cfg or CorrespondenceConfig()
    table = associated.points
    folder = _shard_folder(shard_root, _shard_key(associated, cfg, surface_cfg, surfel_cfg, shard_targets))
    cond_of = np.array([v.condition for v in table.views], dtype=object)
    registered = np.array([v.pose is not None for v in table.views], bool)
    seq_of = np.array([v.sequence for v in table.views], dtype=object)
    done_refs: list[str] = []
    infos: list[_ShardInfo] = []
    route = route_axis(table.views)
    for assoc in associated.associations:
        targets = [
            c for c in table.conditions if (c != assoc.reference or cfg.self_pairs) and c not in done_refs
        ]
        done_refs.append(assoc.reference)
        if not targets:  # the last of `pair_conditions: all`: every pair of it is made already
            continue
        surfaces = build_surfaces(associated.surface_points, assoc.reference, surface_cfg)
        surfels = build_surfels(associated.surface_points, surfel_cfg, surfaces)
        ctx = _context(table, assoc, cfg, surfaces, surfels)
        for solid in {_looking(ctx, int(i))[0] for i in ctx.ref_images}:
            surfaces.hull(solid, executor)  # made once, here: it travels with the tasks' shared input
        # (condition, target image, its candidates) in the tables' order: by condition, then image
        jobs = []
        for cond in targets:
            for j in np.flatnonzero((cond_of == cond) & registered):
                cands = ctx.ref_images
                if cond == assoc.reference:
                    cands = cands[cands < j]
                    if not cfg.same_sequence:
                        cands = cands[seq_of[cands] != seq_of[j]]
                jobs.append((cond, int(j), _neighbours(ctx, j, cands)))
        ctx.sides = folder
        needed = np.unique(np.concatenate([cands for _, _, cands in jobs] + [np.zeros(0, np.int64)]))
        blocks = [needed[k : k + shard_targets] for k in range(0, len(needed), shard_targets)]
        _run_sides(ctx, blocks, executor)
        tasks = [
            _ShardTask(folder / f"shard-{len(infos) + k:05d}.parquet", jobs[start : start + shard_targets])
            for k, start in enumerate(range(0, len(jobs), shard_targets))
        ]
        infos += _run_shards(ctx, tasks, executor or LocalExecutor(), progress, assoc.reference)
    _READ.clear()  # what the shards run in this process read
    out = _tables(table, infos, route, cfg)
    if shard_root is None:
        weakref.finalize(out, shutil.rmtree, folder, True)
    counts = out.surface_counts()
    if cfg.densify and out.num_matches and counts["plane"] + counts["patch"] == 0:
        log.warning(
            "no surface could be sampled (no planar region, no flat surfel seen in both conditions): "
            "the dataset holds point matches only"
        )
    log.info("matches by surface: %s", ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    return out


@dataclass
class _ShardTask:
    """One generation shard: consecutive (condition, target image, candidates) jobs, and its file."""

    path: Path
    jobs: list[tuple[str, int, np.ndarray]]

    @property
    def targets(self) -> list[int]:
        return [j for _, j, _ in self.jobs]


@dataclass
class _ShardInfo:
    """What a shard returns (and its file's footer holds): per pair found, in the tables' order, its
    images, overlap, rows in the file and rows per `SurfaceClass`."""

    path: Path
    i: np.ndarray  # (N,) int64 reference image
    j: np.ndarray  # (N,) int64 target image
    overlap: np.ndarray  # (N,) float64
    rows: np.ndarray  # (N,) int64 its matches, consecutive rows of the file
    surface: np.ndarray  # (N, len(SurfaceClass)) int64

    def to_json(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("i", "j", "overlap", "rows", "surface")}

    @classmethod
    def from_json(cls, path: Path, record: dict) -> _ShardInfo:
        surface = np.array(record["surface"], np.int64).reshape(-1, len(SurfaceClass))
        ints = [np.array(record[k], np.int64) for k in ("i", "j")]
        return cls(
            path, *ints, np.array(record["overlap"], np.float64), np.array(record["rows"], np.int64), surface
        )


_SHARD_META = b"xseason.shard"  # the footer key of a shard file's `_ShardInfo` and targets


def _run_shards(
    ctx: _Context, tasks: list[_ShardTask], executor: Executor, progress: bool, reference: str
) -> list[_ShardInfo]:
    """Every shard's metadata, in order: read from its file when an earlier run finished it, else
    made by `executor` (`_run_shard`, with the context as the tasks' shared input)."""
    infos = [_finished_shard(task) for task in tasks]
    todo = [task for task, info in zip(tasks, infos, strict=True) if info is None]
    if len(todo) < len(tasks):
        log.info(
            "matches %s: %d of %d shard(s) reused from an earlier run in %s",
            reference,
            len(tasks) - len(todo),
            len(tasks),
            tasks[0].path.parent,
        )
    made = executor.map(_run_shard, todo, ctx)
    made = iter(list(progress_bar(made, total=len(todo), desc=f"matches {reference}", enabled=progress)))
    return [info if info is not None else next(made) for info in infos]


def _run_sides(ctx: _Context, blocks: list[np.ndarray], executor: Executor | None) -> None:
    """The side file of every reference image of `blocks` (one task of `executor` each, `_make_sides`),
    but those an earlier run left complete: each reference image's side is made once, whatever
    number of target images and shards use it."""
    todo = [b for b in blocks if not all((ctx.sides / _side_name(i)).is_file() for i in b)]
    for _ in (executor or LocalExecutor()).map(_make_sides, todo, ctx):
        pass


def _make_sides(images: np.ndarray, shared: _Context) -> None:
    """The side files of reference `images` (a task); the context's caches are the task's own."""
    ctx = _own_caches(shared)
    for i in images:
        if not (ctx.sides / _side_name(i)).is_file():
            _write_side(ctx.sides / _side_name(i), _computed_side(ctx, int(i)))


def _own_caches(shared: _Context) -> _Context:
    """`shared` with empty caches (its dict fields) of its own."""
    return replace(shared, **{f.name: {} for f in fields(shared) if f.default_factory is dict})


def _run_shard(task: _ShardTask, shared: _Context) -> _ShardInfo:
    """One shard (a task): its jobs' pairs and matches (`_target_matches`), the matches written to its
    file (atomically, `_shard_table`), their metadata returned. The reference images' sides are read
    from their files; every cache of the context (its dict fields) is the shard's."""
    ctx = _own_caches(shared)
    found: list[PairMatches] = []
    for cond, j, cands in task.jobs:
        found += _target_matches(ctx, j, cands, cond)
    info = _ShardInfo(
        task.path,
        np.array([p.i for p in found], np.int64),
        np.array([p.j for p in found], np.int64),
        np.array([p.overlap for p in found], np.float64),
        np.array([len(p.matches) for p in found], np.int64),
        np.array(
            [np.bincount(p.matches.surface, minlength=len(SurfaceClass)) for p in found], np.int64
        ).reshape(-1, len(SurfaceClass)),
    )
    shard = _shard_table([p.matches for p in found], ctx.table.point_id, ctx.cfg.weight_scale)
    meta = {"info": info.to_json(), "targets": task.targets}
    with atomic_path(task.path) as tmp:
        pq.write_table(shard.replace_schema_metadata({_SHARD_META: json.dumps(meta)}), tmp)
    return info


def _finished_shard(task: _ShardTask) -> _ShardInfo | None:
    """The metadata of the shard's file when a run finished it for the same targets; else None."""
    try:
        meta = json.loads(pq.read_schema(task.path).metadata[_SHARD_META])
        if meta["targets"] == task.targets:
            return _ShardInfo.from_json(task.path, meta["info"])
    except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
        pass
    return None


def _shard_table(found: list[Matches], point_id: np.ndarray, weight_scale: float) -> pa.Table:
    """The matches of a shard's pairs, one after the other: the store's match columns (but pair_id),
    and `point`, the reference point matched (index into the table; -1: a surface sample)."""

    def cat(key: str) -> np.ndarray:
        return np.concatenate([getattr(m, key) for m in found]) if found else np.zeros(0)

    x0, x1 = cat("x0").reshape(-1, 2), cat("x1").reshape(-1, 2)
    point = cat("point").astype(np.int64)
    dist3d = cat("dist3d").astype(np.float32)
    return pa.table(
        {
            "point": point,
            "x0": x0[:, 0].astype(np.float32),
            "y0": x0[:, 1].astype(np.float32),
            "x1": x1[:, 0].astype(np.float32),
            "y1": x1[:, 1].astype(np.float32),
            "weight": np.clip(np.exp(-dist3d / weight_scale), 1e-6, 1.0).astype(np.float32),
            "point3d_id": pa.array(point_id[np.maximum(point, 0)] if len(point) else point, mask=point < 0),
            "dist3d": dist3d,
            "err0": cat("err0").astype(np.float32),
            "err1": cat("err1").astype(np.float32),
            "densified": cat("densified").astype(bool),
        }
    )


@dataclass(frozen=True)
class _ShardPart:
    """A shard file's kept matches as the store's matches table (picklable: a part writer's task)."""

    path: Path
    pair_id: np.ndarray  # (N,) the pair_id of each pair of the shard, -1: dropped (`_tables`)
    rows: np.ndarray  # (N,) its rows in the file

    @property
    def kept(self) -> int:
        return int(self.rows[self.pair_id >= 0].sum())

    def __call__(self) -> pd.DataFrame:
        ids = np.repeat(self.pair_id, self.rows)
        return _match_frame(ids[ids >= 0], pq.read_table(self.path).filter(pa.array(ids >= 0)))


def _match_frame(pair_id: np.ndarray, shard: pa.Table) -> pd.DataFrame:
    """The store's matches table (docs/FORMAT.md §3; point3d_id as pandas' Int64) of shard rows."""
    columns = {name: shard.column(name).to_numpy() for name in shard.column_names if name != "point"}
    columns["point3d_id"] = shard.column("point3d_id").to_pandas(
        types_mapper={pa.int64(): pd.Int64Dtype()}.get
    )
    return pd.DataFrame({"pair_id": pair_id.astype(np.int64), **columns})


def _empty_frame() -> pd.DataFrame:
    return _match_frame(np.zeros(0, np.int64), _shard_table([], np.zeros(0, np.int64), 1.0))


def _shard_key(
    associated: AssociatedPoints,
    cfg: CorrespondenceConfig,
    surface_cfg: SurfaceConfig | None,
    surfel_cfg: SurfelConfig | None,
    shard_targets: int,
) -> str:
    """What the shard files depend on: the association's content, the configs, `shard_targets` and
    the matching code (`digest`: a remade SfM stage that came out otherwise gets another key)."""
    configs = [asdict(c) for c in (cfg, surface_cfg or SurfaceConfig(), surfel_cfg or SurfelConfig())]
    code = code_digest(sorted(Path(__file__).parent.glob("*.py")))
    return _digest([associated, json.dumps(configs, sort_keys=True, default=str), shard_targets, code])[:16]


def _shard_folder(root: Path | None, key: str) -> Path:
    """The folder of the shard files: ``root/key`` (other keys' folders there, stale, are removed),
    or a new temporary one."""
    if root is None:
        return Path(tempfile.mkdtemp(prefix="xseason-shards-"))
    root = Path(root)
    for stale in root.glob("*"):
        if stale.name != key:
            log.info(
                "removing stale correspondence shards %s (made from other inputs, config or code)", stale
            )
            shutil.rmtree(stale, ignore_errors=True)
    (root / key).mkdir(parents=True, exist_ok=True)
    return root / key


def _tables(
    table: PointTable, infos: list[_ShardInfo], route: RouteAxis, cfg: CorrespondenceConfig
) -> CorrespondenceTables:
    """The pairs (of one split each: splits.py) and points3d tables of the pairs found, in pair_id
    order, from the shards' metadata; the points3d from the shards' `point` column."""
    views = image_views(table, route, cfg.max_reproj_error, cfg.split_buffer)
    sequences = [v.sequence for v in table.views]
    image_split = assign_splits(
        views, sequences, cfg.split_blocks, cfg.split_fractions, cfg.split_seed, cfg.test_sequences
    )
    i, j, overlap, rows = (
        np.concatenate([getattr(s, key) for s in infos] + [np.zeros(0, dtype)])
        for key, dtype in (("i", np.int64), ("j", np.int64), ("overlap", np.float64), ("rows", np.int64))
    )
    split = pair_splits(image_split, i, j)
    keep = pd.notna(split)
    no_split = pd.isna(image_split[i]) | pd.isna(image_split[j])
    dropped = (int((no_split & ~keep).sum()), int((~no_split & ~keep).sum()))
    counts = _split_counts(image_split, split[keep], *dropped, cfg)
    pair_id = np.full(len(i), -1, np.int64)
    pair_id[keep] = np.arange(int(keep.sum()))
    pairs = pd.DataFrame(
        {
            "pair_id": pair_id[keep],
            "image_id0": i[keep].astype(np.int32),
            "image_id1": j[keep].astype(np.int32),
            "num_matches": rows[keep].astype(np.int32),
            "overlap": overlap[keep].astype(np.float32),
            "split": split[keep].astype(object),
        }
    )
    ends = np.cumsum([len(s.i) for s in infos], dtype=np.int64)
    parts = [
        _ShardPart(s.path, ids, s.rows) for s, ids in zip(infos, np.split(pair_id, ends)[:-1], strict=True)
    ]
    used = np.zeros(0, np.int64)
    for part in parts:
        if part.kept:
            point = pq.read_table(part.path, columns=["point"]).column("point").to_numpy()
            used = np.union1d(used, point[(np.repeat(part.pair_id, part.rows) >= 0) & (point >= 0)])
    points3d = pd.DataFrame(
        {
            "point3d_id": table.point_id[used],
            "x": table.xyz[used, 0],
            "y": table.xyz[used, 1],
            "z": table.xyz[used, 2],
            "condition": np.array(table.conditions, dtype=object)[table.point_condition[used]].astype(str)
            if len(used)
            else np.zeros(0, str),
        }
    )
    surface = np.concatenate([s.surface for s in infos] + [np.zeros((0, len(SurfaceClass)), np.int64)])
    return CorrespondenceTables(pairs, points3d, parts, surface[keep].sum(axis=0), image_split, counts)


def _digest(value: Any) -> str:
    """SHA-256 of a value's content: arrays by dtype, shape and bytes, dataclasses field by field,
    lists, tuples and dicts item by item, anything else by its repr."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, np.ndarray):
            h.update(f"{x.dtype}{x.shape}".encode())
            h.update(repr(x.tolist()).encode() if x.dtype == object else np.ascontiguousarray(x).data)
        elif is_dataclass(x) and not isinstance(x, type):
            for f in fields(x):
                h.update(f.name.encode())
                feed(getattr(x, f.name))
        elif isinstance(x, (list, tuple)):
            h.update(f"[{len(x)}".encode())
            for item in x:
                feed(item)
        elif isinstance(x, dict):
            h.update(f"{{{len(x)}".encode())
            for k, item in x.items():
                feed(k)
                feed(item)
        else:
            h.update(repr(x).encode() + b"\0")

    feed(value)
    return h.hexdigest()


def _split_counts(
    image_split: np.ndarray, pair_split: np.ndarray, no_split: int, two_splits: int, cfg: CorrespondenceConfig
) -> dict:
    """Images and pairs per split and the pairs dropped, logged; a warning for an empty split that has
    a share of the route."""
    images = {s: int((image_split == s).sum()) for s in SPLITS} | {"none": int(pd.isna(image_split).sum())}
    pairs = {s: int((pair_split == s).sum()) for s in SPLITS}
    log.info(
        "splits: images %s; pairs %s; dropped %d pair(s) with an image in no split (split_buffer) and "
        "%d whose images are of two splits",
        " / ".join(f"{k} {v}" for k, v in images.items()),
        " / ".join(f"{k} {v}" for k, v in pairs.items()),
        no_split,
        two_splits,
    )
    empty = [s for s, f in zip(SPLITS, cfg.split_fractions, strict=True) if f > 0 and pairs[s] == 0]
    if empty and len(pair_split):
        log.warning(
            "no %s pair: no pair has both images in its blocks of route (correspondences.split_blocks, "
            "split_fractions, split_seed, split_buffer)",
            " or ".join(empty),
        )
    return {
        "images": images,
        "pairs": pairs,
        "dropped_pairs": {"no_split": no_split, "two_splits": two_splits},
    }


__all__ = [
    "CorrespondenceConfig",
    "CorrespondenceTables",
    "Matches",
    "PairMatches",
    "SurfaceClass",
    "make_correspondences",
    "predicted_error",
    "sample_grid",
]
