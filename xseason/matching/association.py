"""Per-condition point clouds in the common world frame, and their association across conditions.

The stage (`associate_clouds`): the registered models' points (`point_table_from_reconstructions`)
-> cleaned per-condition clouds (`clean_points`) -> for each reference condition, its points'
partners in every other condition (`associate`), handed on as `AssociatedPoints`.

Data layout (everything is flat numpy arrays, nothing is a Python object per point):

- `PointTable`: every 3D point of every sequence (`xyz`, global `point_id`, `sequence`,
  `condition` indices) and every observation, sorted by image with CSR pointers
  (`image_ptr`), so that the points and keypoints of image k are
  ``obs_point[image_ptr[k]:image_ptr[k + 1]]`` / ``obs_xy[...]``. Per-point quality
  (reprojection error, track length, triangulation angle, depth, local spacing) and
  per-observation projections/errors and per-point normals are computed once, vectorised.
- `Associations`: for one reference condition, per other condition, the mutual-nearest-
  neighbour partner of each reference point and its distance.

Global point ids: ``point_id = sequence_index * 2**40 + colmap_point3D_id`` where
`sequence_index` is the position of the sequence in ``sorted(sequence names)``
(`encode_point_id` / `decode_point_id`).

Association rule: a reference point a and a point b of condition c are the same place when
they are mutual nearest neighbours and ``|a - b| <= max(r(a), r(b))`` with the adaptive radius
``r(p) = clip(max(radius_factor * spacing(p), radius_depth * depth(p)), radius_min, radius_max)``
(spacing = distance to the k-th neighbour in the point's own condition cloud, depth =
mean distance to the cameras that observe it). A track shared by images of both conditions
is its own association at distance 0 (no search).

Where a condition has no partner for a reference point (night, rain), densification does not
need one: it uses the reference condition's surfaces (surfaces.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

from xseason.core.colmap import point_observations
from xseason.core.errors import XSeasonError
from xseason.matching.views import ImageView

if TYPE_CHECKING:
    import pycolmap

SEQUENCE_SHIFT = 40  # point_id = sequence_index << 40 | colmap point3D id


class AssociationError(XSeasonError):
    """The inputs of the association stage are inconsistent (unknown condition, no points...)."""


@dataclass
class AssociationConfig:
    """Cleaning of the per-condition clouds and cross-condition association."""

    min_track_length: int = 2  # points seen in fewer images are dropped
    max_point_error: float = 2.0  # px, mean reprojection error of a point over its observations
    min_tri_angle: float = 1.5  # degrees, angle between the rays of the first and last observation
    outlier_neighbors: int = 12  # open3d statistical outlier removal: neighbours (0 = off)
    outlier_std_ratio: float = 3.0  # ... and the std ratio
    voxel_size: float = 0.0  # world units; > 0 keeps the lowest-error point per voxel and condition
    spacing_k: int = 4  # spacing(p) = distance to the k-th nearest neighbour in its condition cloud
    radius_factor: float = 2.0  # r(p) >= radius_factor * spacing(p)
    radius_depth: float = 0.005  # r(p) >= radius_depth * depth(p)
    radius_min: float = 0.0  # world units
    radius_max: float = 0.5  # world units

    def validate(self) -> None:
        if self.min_track_length < 2:
            raise ValueError("min_track_length must be at least 2")
        if self.spacing_k < 1:
            raise ValueError("spacing_k must be at least 1")
        if not 0 <= self.radius_min <= self.radius_max:
            raise ValueError("need 0 <= radius_min <= radius_max")
        if self.voxel_size < 0 or self.radius_factor < 0 or self.radius_depth < 0:
            raise ValueError("voxel_size, radius_factor and radius_depth must be >= 0")


def encode_point_id(sequence_index: np.ndarray, local_id: np.ndarray) -> np.ndarray:
    """Global int64 point id from the sequence index and the COLMAP point3D id."""
    return (np.asarray(sequence_index, np.int64) << SEQUENCE_SHIFT) | np.asarray(local_id, np.int64)


def decode_point_id(point_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `encode_point_id`: (sequence_index, COLMAP point3D id)."""
    point_id = np.asarray(point_id, np.int64)
    return point_id >> SEQUENCE_SHIFT, point_id & ((1 << SEQUENCE_SHIFT) - 1)


@dataclass
class PointTable:
    """All points and observations of all sequences, as flat arrays (see module doc)."""

    views: list[ImageView]
    sequences: list[str]  # sorted sequence names (index = sequence index)
    conditions: list[str]  # condition names in order of first appearance in `views`
    xyz: np.ndarray  # (P, 3) float64
    point_id: np.ndarray  # (P,) int64 global id
    point_sequence: np.ndarray  # (P,) int32
    point_condition: np.ndarray  # (P,) int32
    image_ptr: np.ndarray  # (I + 1,) int64 CSR pointers into the obs_* arrays
    obs_point: np.ndarray  # (M,) int64 index into the point arrays
    obs_xy: np.ndarray  # (M, 2) float64 observed keypoints, our pixel convention
    obs_proj: np.ndarray = field(init=False)  # (M, 2) float64 projection of the point
    obs_err: np.ndarray = field(init=False)  # (M,) float32 |obs_proj - obs_xy|
    error: np.ndarray = field(init=False)  # (P,) mean reprojection error
    track_length: np.ndarray = field(init=False)  # (P,) int32
    tri_angle: np.ndarray = field(init=False)  # (P,) degrees
    depth: np.ndarray = field(init=False)  # (P,) mean distance to observing cameras
    spacing: np.ndarray = field(init=False)  # (P,) distance to the k-th neighbour in its condition
    normal: np.ndarray = field(init=False)  # (P, 3) unit surface normal from its neighbours (NaN: unknown)
    curvature: np.ndarray = field(init=False)  # (P,) curvature of its neighbourhood (`local_geometry`)

    def __post_init__(self) -> None:
        self._compute_observation_stats()
        self.spacing, self.normal = np.full(len(self.xyz), np.inf), np.full((len(self.xyz), 3), np.nan)
        self.curvature = np.ones(len(self.xyz))

    @property
    def num_points(self) -> int:
        return len(self.xyz)

    @property
    def seen(self) -> np.ndarray:
        """(P,) points observed by a registered image (finite depth)."""
        return np.isfinite(self.depth) & (self.track_length > 0)

    def scene_depth(self) -> float:
        """Median depth of the observed points (1 when there is none): the scale of the scene, which
        makes lengths relative, so that metric and arbitrarily scaled reconstructions behave alike."""
        seen = self.seen
        return float(np.median(self.depth[seen])) if seen.any() else 1.0

    @property
    def obs_image(self) -> np.ndarray:
        """(M,) image index of each observation."""
        return np.repeat(np.arange(len(self.views), dtype=np.int32), np.diff(self.image_ptr))

    def condition_index(self, condition: str) -> int:
        if condition not in self.conditions:
            raise AssociationError(f"unknown condition {condition!r}; known: {', '.join(self.conditions)}")
        return self.conditions.index(condition)

    def _compute_observation_stats(self) -> None:
        P, M = len(self.xyz), len(self.obs_point)
        self.obs_proj = np.full((M, 2), np.nan)
        centres = np.full((len(self.views), 3), np.nan)
        for k, view in enumerate(self.views):
            lo, hi = self.image_ptr[k], self.image_ptr[k + 1]
            if view.pose is None or hi == lo:
                continue
            centres[k] = view.pose.center
            cam = view.pose.transform(self.xyz[self.obs_point[lo:hi]])
            self.obs_proj[lo:hi] = view.camera.project(cam)
        err = np.linalg.norm(self.obs_proj - self.obs_xy, axis=1)
        self.obs_err = np.where(np.isfinite(err), err, np.inf).astype(np.float32)
        count = np.bincount(self.obs_point, minlength=P)
        self.track_length = count.astype(np.int32)
        with np.errstate(invalid="ignore", divide="ignore"):
            error_sum = np.bincount(self.obs_point, weights=np.minimum(self.obs_err, 1e6), minlength=P)
            self.error = error_sum / count
            rays = self.xyz[self.obs_point] - centres[self.obs_image]
            dist = np.linalg.norm(rays, axis=1)
            depth_sum = np.bincount(self.obs_point, weights=np.nan_to_num(dist, nan=0.0), minlength=P)
            self.depth = depth_sum / count
            rays /= dist[:, None]
        # Triangulation angle: rays of the first and last observation (images in sequence order).
        order = np.lexsort((self.obs_image, self.obs_point))
        starts = np.searchsorted(self.obs_point[order], np.arange(P))
        ends = np.searchsorted(self.obs_point[order], np.arange(P), side="right") - 1
        seen = count > 0
        first, last = rays[order[np.minimum(starts, M - 1)]], rays[order[np.maximum(ends, 0)]]
        cos = np.clip(np.sum(first * last, axis=1), -1.0, 1.0)
        self.tri_angle = np.where(seen & np.isfinite(cos), np.degrees(np.arccos(cos)), 0.0)
        self.error = np.where(seen, self.error, np.inf)

    def subset(self, keep: np.ndarray) -> PointTable:
        """A new table with only the points where `keep` is True (their observations follow)."""
        keep = np.asarray(keep, bool)
        new_index = np.cumsum(keep) - 1
        obs_keep = keep[self.obs_point]
        counts = np.bincount(self.obs_image[obs_keep], minlength=len(self.views))
        table = PointTable(
            views=self.views,
            sequences=self.sequences,
            conditions=self.conditions,
            xyz=self.xyz[keep],
            point_id=self.point_id[keep],
            point_sequence=self.point_sequence[keep],
            point_condition=self.point_condition[keep],
            image_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            obs_point=new_index[self.obs_point[obs_keep]],
            obs_xy=self.obs_xy[obs_keep],
        )
        table.spacing, table.normal = self.spacing[keep], self.normal[keep]
        table.curvature = self.curvature[keep]
        return table


def build_point_table(
    views: Sequence[ImageView],
    xyz: np.ndarray,
    point_sequence: Sequence[str] | np.ndarray,
    local_id: np.ndarray,
    obs_image: np.ndarray,
    obs_point: np.ndarray,
    obs_xy: np.ndarray,
    spacing_k: int = 4,
) -> PointTable:
    """Assemble a `PointTable` from flat arrays.

    `point_sequence` gives each point's sequence name, `local_id` its id inside that sequence;
    observation k is point `obs_point[k]` seen in view `obs_image[k]` at keypoint `obs_xy[k]`
    (our pixel convention). Observations are sorted by image here.
    """
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    obs_image, obs_point = np.asarray(obs_image, np.int64), np.asarray(obs_point, np.int64)
    obs_xy = np.asarray(obs_xy, np.float64).reshape(-1, 2)
    if not (len(obs_image) == len(obs_point) == len(obs_xy)):
        raise AssociationError("obs_image, obs_point and obs_xy must have the same length")
    if len(obs_point) and (obs_point.min() < 0 or obs_point.max() >= len(xyz)):
        raise AssociationError("an observation refers to a point that does not exist")
    if len(obs_image) and (obs_image.min() < 0 or obs_image.max() >= len(views)):
        raise AssociationError("an observation refers to an image that does not exist")
    sequences = sorted({v.sequence for v in views})
    seq_of_name = {s: i for i, s in enumerate(sequences)}
    conditions = list(dict.fromkeys(v.condition for v in views))
    seq_cond = {v.sequence: conditions.index(v.condition) for v in views}
    names = np.asarray(point_sequence)
    if names.dtype.kind in "iu":
        point_seq = names.astype(np.int32)
    else:
        try:
            uniq, inv = np.unique(names, return_inverse=True)
            point_seq = np.array([seq_of_name[str(s)] for s in uniq], np.int32)[inv]
        except KeyError as exc:
            raise AssociationError(f"points refer to sequence {exc} that has no image") from None
    point_cond = np.zeros(0, np.int32)
    if len(xyz):
        point_cond = np.array([seq_cond[s] for s in sequences], np.int32)[point_seq]
    order = np.argsort(obs_image, kind="stable")
    counts = np.bincount(obs_image, minlength=len(views))
    table = PointTable(
        views=list(views),
        sequences=sequences,
        conditions=conditions,
        xyz=xyz,
        point_id=encode_point_id(point_seq, local_id),
        point_sequence=point_seq,
        point_condition=point_cond,
        image_ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        obs_point=obs_point[order],
        obs_xy=obs_xy[order],
    )
    table.spacing, table.normal, table.curvature = local_geometry(table.xyz, table.point_condition, spacing_k)
    return table


def point_table_from_reconstructions(
    models: Mapping[str, pycolmap.Reconstruction],
    views: Sequence[ImageView],
    spacing_k: int = 4,
    joint: pycolmap.Reconstruction | None = None,
) -> PointTable:
    """Flatten the registered models (sequence -> model, one world frame) into a table.

    Points follow the models' order, each model's sorted by point3D id; images are matched to
    `views` by name, keypoints in xseason's pixel convention (`core.colmap.point_observations`).
    With a `joint` model (all sequences triangulated together), its points are used instead
    (`joint_point_table`).
    """
    index = {v.name: k for k, v in enumerate(views)}
    if joint is not None and joint.num_points3D():
        return joint_point_table(joint, views, spacing_k)
    xyz, sequence, local, obs_image, obs_point, obs_xy = [], [], [], [], [], []
    offset = 0
    for name, model in models.items():
        seen = point_observations(model, index)
        view_of = np.array([index[image] for image in seen.image_names], np.int64)
        xyz.append(seen.xyz)
        sequence.append(np.full(len(seen.point_ids), str(name), dtype=object))
        local.append(seen.point_ids)
        obs_image.append(view_of[seen.obs_image])
        obs_point.append(seen.obs_point + offset)
        obs_xy.append(seen.obs_xy)
        offset += len(seen.point_ids)
    if offset == 0 or sum(len(o) for o in obs_point) == 0:
        raise AssociationError(
            "the reconstructions hold no 3D points observed in a registered image of the "
            "views (do the image names of the models and the manifest agree?)"
        )
    cat = np.concatenate
    return build_point_table(
        views, cat(xyz), cat(sequence), cat(local), cat(obs_image), cat(obs_point), cat(obs_xy), spacing_k
    )


def joint_point_table(
    joint: pycolmap.Reconstruction, views: Sequence[ImageView], spacing_k: int = 4
) -> PointTable:
    """The points of a model of every sequence as a table: each point once per condition that
    observes it (in the first of its sequences of that condition that does), with all its
    observations, so that a track spanning conditions is a point of each and, in the reference
    condition, its own association (`_shared_track_partners`: distance 0, point matches from the
    keypoints themselves). Each condition's cloud is then what its images saw, as with one model
    per sequence; an image observes a point once per condition holding it."""
    index = {v.name: k for k, v in enumerate(views)}
    seen = point_observations(joint, index)
    view_of = np.array([index[image] for image in seen.image_names], np.int64)[seen.obs_image]
    sequences = sorted({v.sequence for v in views})
    conditions = list(dict.fromkeys(v.condition for v in views))
    view_seq = np.array([sequences.index(v.sequence) for v in views], np.int64)
    view_cond = np.array([conditions.index(v.condition) for v in views], np.int64)
    # one copy per (point, condition) observed; its sequence: the condition's first observing it
    key = seen.obs_point * len(conditions) + view_cond[view_of]
    copies, copy_of_obs = np.unique(key, return_inverse=True)
    copy_point = copies // len(conditions)
    copy_seq = np.full(len(copies), len(sequences), np.int64)
    np.minimum.at(copy_seq, copy_of_obs, view_seq[view_of])
    # every copy takes all of its point's observations (observations grouped by point: CSR)
    by_point = np.argsort(seen.obs_point, kind="stable")
    count = np.bincount(seen.obs_point, minlength=len(seen.point_ids))
    start = np.concatenate([[0], np.cumsum(count)])[copy_point]
    n = count[copy_point]
    obs_copy = np.repeat(np.arange(len(copies)), n)
    obs = by_point[np.repeat(start - np.cumsum(n) + n, n) + np.arange(n.sum())]
    return build_point_table(
        views,
        seen.xyz[copy_point],
        copy_seq,
        seen.point_ids[copy_point],
        view_of[obs],
        obs_copy,
        seen.obs_xy[obs],
        spacing_k,
    )


@dataclass
class Neighbourhoods:
    """Per point, the principal axes of its nearest neighbours in its group (`neighbourhoods`)."""

    spacing: np.ndarray  # (P,) distance to the k-th nearest neighbour (inf if too few points)
    centroid: np.ndarray  # (P, 3) mean of the neighbourhood (NaN if too few points)
    eigenvalues: np.ndarray  # (P, 3) of its scatter matrix, ascending (NaN if too few points)
    eigenvectors: np.ndarray  # (P, 3, 3) unit axes (columns), in the same order

    @property
    def normal(self) -> np.ndarray:
        """(P, 3) the axis of least spread: the normal of the least-squares plane (centroid, normal)."""
        return self.eigenvectors[:, :, 0]

    @property
    def curvature(self) -> np.ndarray:
        """(P,) smallest eigenvalue / sum: 0 = a plane, 1/3 = isotropic (1 if unknown)."""
        with np.errstate(invalid="ignore"):
            c = self.eigenvalues[:, 0] / np.maximum(self.eigenvalues.sum(axis=1), 1e-300)
        return np.where(np.isfinite(c), c, 1.0)


def neighbourhoods(xyz: np.ndarray, group: np.ndarray, k: int, k_normal: int = 10) -> Neighbourhoods:
    """Per point, within its group: the distance to its k-th nearest neighbour and the principal
    axes (PCA) of its `k_normal` nearest neighbours (itself included)."""
    n = len(xyz)
    out = Neighbourhoods(
        np.full(n, np.inf), np.full((n, 3), np.nan), np.full((n, 3), np.nan), np.full((n, 3, 3), np.nan)
    )
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        kk = min(max(k, k_normal), len(idx) - 1)
        if kk < 3:
            continue
        d, nn = cKDTree(xyz[idx]).query(xyz[idx], k=kk + 1)
        if len(idx) > k:
            out.spacing[idx] = d[:, k]
        nb = xyz[idx][nn[:, : min(k_normal, kk) + 1]]
        out.centroid[idx] = nb.mean(axis=1)
        nb = nb - out.centroid[idx][:, None, :]
        out.eigenvalues[idx], out.eigenvectors[idx] = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
    return out


def local_geometry(
    xyz: np.ndarray, group: np.ndarray, k: int, k_normal: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point, within its group: distance to the k-th nearest neighbour (inf if too few
    points), the unit normal of its `k_normal` nearest neighbours (PCA; NaN if too few) and
    their curvature (`Neighbourhoods.curvature`)."""
    nb = neighbourhoods(xyz, group, k, k_normal)
    return nb.spacing, nb.normal, nb.curvature


def well_measured(table: PointTable, cfg: AssociationConfig) -> np.ndarray:
    """(P,) points with enough observations, a small reprojection error and a wide enough
    triangulation angle."""
    return (
        (table.track_length >= cfg.min_track_length)
        & (table.error <= cfg.max_point_error)
        & (table.tri_angle >= cfg.min_tri_angle)
    )


def clean_points(table: PointTable, cfg: AssociationConfig) -> PointTable:
    """Drop weak points (`well_measured`), outliers (open3d SOR) and, with `voxel_size`, all but the
    lowest-error point of each voxel, per condition cloud."""
    keep = well_measured(table, cfg)
    for c in range(len(table.conditions)):
        idx = np.flatnonzero(keep & (table.point_condition == c))
        if cfg.outlier_neighbors > 0 and len(idx) > cfg.outlier_neighbors:
            keep[idx] = False
            inliers = _statistical_inliers(table.xyz[idx], cfg.outlier_neighbors, cfg.outlier_std_ratio)
            keep[idx[inliers]] = True
            idx = np.flatnonzero(keep & (table.point_condition == c))
        if cfg.voxel_size > 0 and len(idx):
            keys = np.floor(table.xyz[idx] / cfg.voxel_size).astype(np.int64)
            order = np.lexsort((table.error[idx], *keys.T[::-1]))
            _, first = np.unique(keys[order], axis=0, return_index=True)
            keep[idx] = False
            keep[idx[order[first]]] = True
    out = table.subset(keep)
    out.spacing, out.normal, out.curvature = local_geometry(out.xyz, out.point_condition, cfg.spacing_k)
    return out


def _statistical_inliers(xyz: np.ndarray, neighbors: int, std_ratio: float) -> np.ndarray:
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.ascontiguousarray(xyz)))
    _, ind = pcd.remove_statistical_outlier(nb_neighbors=neighbors, std_ratio=std_ratio)
    return np.asarray(ind, dtype=np.int64)


def adaptive_radius(table: PointTable, cfg: AssociationConfig) -> np.ndarray:
    """(P,) association radius r(p) (see module doc)."""
    spacing = np.where(np.isfinite(table.spacing), table.spacing, cfg.radius_max)
    r = np.maximum(cfg.radius_factor * spacing, cfg.radius_depth * np.nan_to_num(table.depth))
    return np.clip(r, cfg.radius_min, cfg.radius_max)


def mutual_nearest_neighbours(
    a: np.ndarray, b: np.ndarray, radius_a: np.ndarray, radius_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, distance) where a[i] and b[j] are each other's nearest neighbour and
    ``distance <= max(radius_a[i], radius_b[j])``."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    if len(a) == 0 or len(b) == 0:
        return empty
    bound = float(max(np.max(radius_a), np.max(radius_b))) * (1 + 1e-9) + 1e-12
    d_ab, j = cKDTree(b).query(a, k=1, distance_upper_bound=bound)
    _, i_back = cKDTree(a).query(b, k=1, distance_upper_bound=bound)
    i = np.flatnonzero(np.isfinite(d_ab))
    j = j[i]
    mutual = i_back[j] == i
    i, j, d = i[mutual], j[mutual], d_ab[i][mutual]
    ok = d <= np.maximum(radius_a[i], radius_b[j])
    return i[ok], j[ok], d[ok]


@dataclass
class Associations:
    """Cross-condition links of the points of one reference condition.

    Arrays are indexed like `ref_points` (indices into the `PointTable`).
    `partner[c]`: index of the associated point of condition c, -1 when none;
    `partner_dist[c]`: its 3D distance (0 for a shared track; inf when none).
    """

    reference: str
    ref_points: np.ndarray
    partner: dict[str, np.ndarray]
    partner_dist: dict[str, np.ndarray]


def associate(table: PointTable, reference: str, cfg: AssociationConfig) -> Associations:
    """Associate the points of `reference` with those of every other condition (module doc)."""
    r_c = table.condition_index(reference)
    radius = adaptive_radius(table, cfg)
    ref = np.flatnonzero(table.point_condition == r_c)
    if len(ref) == 0:
        raise AssociationError(f"the reference condition {reference!r} has no 3D points")

    shared = _shared_track_partners(table, ref)
    partner, partner_dist = {}, {}
    for c_idx, cond in enumerate(table.conditions):
        if cond == reference:
            partner[cond], partner_dist[cond] = ref.copy(), np.zeros(len(ref))
            continue
        other = np.flatnonzero(table.point_condition == c_idx)
        i, j, d = mutual_nearest_neighbours(table.xyz[ref], table.xyz[other], radius[ref], radius[other])
        part = np.full(len(ref), -1, np.int64)
        dist = np.full(len(ref), np.inf)
        part[i], dist[i] = other[j], d
        if cond in shared:  # a track seen in both conditions is its own association
            has = shared[cond] >= 0
            part[has], dist[has] = shared[cond][has], 0.0
        partner[cond], partner_dist[cond] = part, dist
    return Associations(reference, ref, partner, partner_dist)


def _shared_track_partners(table: PointTable, ref: np.ndarray) -> dict[str, np.ndarray]:
    """Reference points whose own track has images of another condition: partner = itself."""
    obs_cond = np.array([table.conditions.index(v.condition) for v in table.views], np.int32)[table.obs_image]
    pos = np.full(table.num_points, -1, np.int64)
    pos[ref] = np.arange(len(ref))
    r_c = table.point_condition[ref[0]]
    cross = (pos[table.obs_point] >= 0) & (obs_cond != r_c)
    out: dict[str, np.ndarray] = {}
    for c in np.unique(obs_cond[cross]):
        part = np.full(len(ref), -1, np.int64)
        hit = table.obs_point[cross & (obs_cond == c)]
        part[pos[hit]] = hit
        out[table.conditions[c]] = part
    return out


@dataclass
class AssociatedPoints:
    """What the association stage hands to the correspondence stage."""

    points: PointTable  # the cleaned clouds of every condition (`clean_points`)
    associations: list[Associations]  # one per reference condition, in the order asked for
    surface_points: PointTable  # every well-measured point (`well_measured`): the surface model's input


def associate_clouds(
    table: PointTable, references: Sequence[str], cfg: AssociationConfig
) -> AssociatedPoints:
    """The association stage: clean the clouds of `table`, then associate each reference
    condition's points with those of every other condition (module doc)."""
    if not references:
        raise AssociationError("at least one reference condition is needed")
    points = clean_points(table, cfg)
    associations = [associate(points, reference, cfg) for reference in references]
    # Surfaces from every well-measured point: outlier removal thins exactly the sparse near points
    # that pin a plane down best (measured on `demo`: median plane-sample error 0.25 -> 0.12 px).
    return AssociatedPoints(points, associations, table.subset(well_measured(table, cfg)))


__all__ = [
    "AssociatedPoints",
    "AssociationConfig",
    "AssociationError",
    "Associations",
    "PointTable",
    "adaptive_radius",
    "associate",
    "associate_clouds",
    "build_point_table",
    "clean_points",
    "decode_point_id",
    "encode_point_id",
    "joint_point_table",
    "local_geometry",
    "neighbourhoods",
    "Neighbourhoods",
    "mutual_nearest_neighbours",
    "point_table_from_reconstructions",
    "well_measured",
]
