"""A dataset's ground-truth matches in the formats local-feature and matcher tools read.

- ``megadepth``: LoFTR-style ``scene_info.npz`` (``image_paths`` relative to the image root,
  ``depth_paths`` all None, ``intrinsics`` (N, 3, 3), ``poses`` (N, 4, 4) world-to-camera, NaN
  when unregistered, ``pair_infos``: one ``((i, j), overlap, None)`` per pair, i and j rows of
  those arrays) and ``gt_matches.npz`` (``pairs`` (P, 2) those rows, ``pair_ids``, ``offsets``
  (P + 1), ``kpts0``/``kpts1`` (M, 2), ``weight`` (M,): pair p's matches are rows
  ``offsets[p]:offsets[p + 1]``).
- ``hloc``: ``features.h5`` (a group per image name with ``keypoints`` (K, 2) float32 and
  ``image_size``), ``matches.h5`` (a group per pair, named as hloc's ``names_to_pair``: both names
  with '/' -> '-', joined by '/'; ``matches0`` (K0,) int32 index into image 1's keypoints or -1,
  ``matching_scores0`` float32 = the match weight) and ``pairs.txt`` (``name0 name1`` per line).
- ``colmap-db``: a COLMAP database: cameras, images, keypoints and every pair's matches, also
  stored as a verified (calibrated) two-view geometry, so that COLMAP's or pycolmap's
  triangulator and mapper use them as they are.
- ``kapture``: ``reconstruction/keypoints/gt/<image>.kpt`` (float32 (K, 2)) with
  ``keypoints.txt``, and ``reconstruction/matches/gt/<a>.overlapping/<b>.matches`` (float64
  (N, 3): index in a, index in b, weight; a < b by name, as kapture orders pairs).

Keypoints are the distinct match coordinates of each image over all its pairs (exactly as
stored). hloc, COLMAP and kapture hold one match list per image pair: pairs of the same two
images (e.g. from two reference conditions) are merged there (`image_pairs`).

Pixel conventions (docs/FORMAT.md §1): npz and hloc use ours (centre of the top-left pixel at
(0, 0): hloc adds 0.5 when it imports into COLMAP); the COLMAP database and kapture get
+0.5 (COLMAP's convention, which kapture's keypoint files share). Intrinsics are the pinhole part
of each camera (its K, our convention); matches are in the original, distorted image.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from xseason.core.colmap import camera_to_colmap
from xseason.core.files import atomic_path
from xseason.store.reader import CorrespondenceStore

log = logging.getLogger(__name__)

FORMATS = ("megadepth", "hloc", "colmap-db", "kapture")


@dataclass
class GroundTruthKeypoints:
    """Every image's keypoints (its distinct match coordinates) and each pair's matches as indices."""

    images: pd.DataFrame  # the store's images table, by image_id
    keypoints: dict[int, np.ndarray]  # image_id -> (K, 2) float32, our pixel convention
    pair_ids: np.ndarray  # (P,) in the pairs table's order
    pair_images: np.ndarray  # (P, 2) image_id0, image_id1
    offsets: np.ndarray  # (P + 1,) pair p's matches are rows offsets[p]:offsets[p + 1]
    index0: np.ndarray  # (M,) keypoint index in image 0 of its pair
    index1: np.ndarray  # (M,)
    weight: np.ndarray  # (M,) float32
    xy0: np.ndarray  # (M, 2) float32 the matches' pixels in image 0 (= its keypoints at index0)
    xy1: np.ndarray  # (M, 2) float32

    def matches_of(self, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pair p's keypoint indices in both images and weights."""
        a, b = self.offsets[p], self.offsets[p + 1]
        return self.index0[a:b], self.index1[a:b], self.weight[a:b]


def image_pairs(gt: GroundTruthKeypoints) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """(image a, image b, indices in a, indices in b, weights) per distinct image pair: pairs of the
    same two images (several references, or both orders) merged, duplicates dropped; a and b in the
    order of the first such pair. The formats below hold one match list per image pair."""
    ordered = np.sort(gt.pair_images, axis=1)
    _, first, group = np.unique(ordered, axis=0, return_index=True, return_inverse=True)
    members = np.argsort(group.ravel(), kind="stable")
    bounds = np.searchsorted(group.ravel()[members], np.arange(len(first) + 1))
    out = []
    for g in np.argsort(first, kind="stable"):
        a, b = (int(x) for x in gt.pair_images[first[g]])
        parts = []
        for p in members[bounds[g] : bounds[g + 1]]:
            i0, i1, w = gt.matches_of(p)
            swap = int(gt.pair_images[p, 0]) != a
            parts.append(np.c_[i1, i0, w] if swap else np.c_[i0, i1, w])
        table = np.concatenate(parts)
        _, keep = np.unique(table[:, :2], axis=0, return_index=True)
        table = table[np.sort(keep)]
        out.append(
            (a, b, table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2].astype(np.float32))
        )
    return out


def ground_truth_keypoints(store: CorrespondenceStore) -> GroundTruthKeypoints:
    """The keypoints and indexed matches of every pair of `store` (module doc), vectorised."""
    pairs = store.pairs
    pair_ids = pairs["pair_id"].to_numpy()
    columns = ("pair_id", "x0", "y0", "x1", "y1", "weight")
    chunks = list(store.iter_matches(columns=columns))
    cols = {k: np.concatenate([c[k] for c in chunks]) if chunks else np.zeros(0) for k in columns}
    order = np.argsort(pair_ids, kind="stable")
    pos = order[np.searchsorted(pair_ids[order], cols["pair_id"])]  # row of each match in pairs
    by_pair = np.argsort(pos, kind="stable")
    pos = pos[by_pair]
    xy0 = np.stack([cols["x0"], cols["y0"]], 1)[by_pair].astype(np.float32)
    xy1 = np.stack([cols["x1"], cols["y1"]], 1)[by_pair].astype(np.float32)
    pair_images = pairs[["image_id0", "image_id1"]].to_numpy().astype(np.int64)
    image = np.concatenate([pair_images[pos, 0], pair_images[pos, 1]])
    xy = np.concatenate([xy0, xy1])
    # distinct (image, x, y) rows, sorted by image: keypoint k of an image = its rank in its block
    key = np.rec.fromarrays([image, xy[:, 0], xy[:, 1]])
    unique, inverse = np.unique(key, return_inverse=True)
    first = np.searchsorted(unique["f0"], unique["f0"], side="left")
    local = (np.arange(len(unique)) - first)[inverse]
    m = len(xy0)
    starts = np.searchsorted(unique["f0"], np.unique(unique["f0"]))
    keypoints = {
        int(img): np.stack([u["f1"], u["f2"]], 1).astype(np.float32)
        for img, u in zip(np.unique(unique["f0"]), np.split(unique, starts[1:]), strict=True)
    }
    images = store.images.set_index("image_id", drop=False)
    for img in images.index:
        keypoints.setdefault(int(img), np.zeros((0, 2), np.float32))
    offsets = np.searchsorted(pos, np.arange(len(pairs) + 1))
    return GroundTruthKeypoints(
        images,
        keypoints,
        pair_ids,
        pair_images,
        offsets,
        local[:m],
        local[m:],
        cols["weight"][by_pair].astype(np.float32),
        xy0,
        xy1,
    )


def _pose_matrix(store: CorrespondenceStore, image_id: int) -> np.ndarray:
    """The 4x4 world-to-camera matrix of an image, NaN when it is not registered."""
    pose = store.pose(image_id)
    return np.full((4, 4), np.nan) if pose is None else pose.matrix()


def export_megadepth(store: CorrespondenceStore, out: str | os.PathLike) -> Path:
    """``scene_info.npz`` and ``gt_matches.npz`` in the folder `out` (module doc)."""
    gt = ground_truth_keypoints(store)
    images = gt.images
    row_of = {int(img): k for k, img in enumerate(images.index)}
    rows = np.array([[row_of[int(a)], row_of[int(b)]] for a, b in gt.pair_images], np.int64).reshape(-1, 2)
    overlap = store.pairs["overlap"].to_numpy()
    pair_infos = np.empty(len(rows), dtype=object)
    pair_infos[:] = [((int(i), int(j)), float(o), None) for (i, j), o in zip(rows, overlap, strict=True)]
    with atomic_path(out, "folder", replace_only_if=_is_export(("scene_info.npz", "gt_matches.npz"))) as tmp:
        tmp.mkdir()
        np.savez(
            tmp / "scene_info.npz",
            image_paths=np.array(images["image"].tolist(), dtype=object),
            depth_paths=np.array([None] * len(images), dtype=object),
            intrinsics=np.array([store.camera(i).calibration_matrix() for i in images.index]).reshape(
                -1, 3, 3
            ),
            poses=np.array([_pose_matrix(store, i) for i in images.index]).reshape(-1, 4, 4),
            pair_infos=pair_infos,
        )
        np.savez(
            tmp / "gt_matches.npz",
            pairs=rows,
            pair_ids=gt.pair_ids,
            offsets=gt.offsets,
            kpts0=gt.xy0,
            kpts1=gt.xy1,
            weight=gt.weight,
        )
    return Path(out)


def names_to_pair(name0: str, name1: str) -> str:
    """hloc's key of a pair in matches.h5."""
    return "/".join((name0.replace("/", "-"), name1.replace("/", "-")))


def export_hloc(store: CorrespondenceStore, out: str | os.PathLike) -> Path:
    """``features.h5``, ``matches.h5`` and ``pairs.txt`` in the folder `out` (module doc)."""
    import h5py

    gt = ground_truth_keypoints(store)
    pairs = image_pairs(gt)
    names = gt.images["image"].to_dict()
    with atomic_path(
        out, "folder", replace_only_if=_is_export(("features.h5", "matches.h5", "pairs.txt"))
    ) as tmp:
        tmp.mkdir()
        with h5py.File(tmp / "features.h5", "w") as f:
            for img, kp in gt.keypoints.items():
                group = f.create_group(names[img])
                group.create_dataset("keypoints", data=kp)
                row = gt.images.loc[img]
                group.create_dataset("image_size", data=np.array([row["width"], row["height"]], np.int64))
        duplicates = 0
        with h5py.File(tmp / "matches.h5", "w") as f:
            for a, b, i0, i1, w in pairs:
                matches0 = np.full(len(gt.keypoints[a]), -1, np.int32)
                scores0 = np.zeros(len(matches0), np.float32)
                duplicates += len(i0) - len(np.unique(i0))
                matches0[i0], scores0[i0] = i1, w
                group = f.create_group(names_to_pair(names[a], names[b]))
                group.create_dataset("matches0", data=matches0)
                group.create_dataset("matching_scores0", data=scores0)
        if duplicates:
            log.warning(
                "hloc: %d matches share a keypoint of image 0 with another of their pair: one kept",
                duplicates,
            )
        (tmp / "pairs.txt").write_text("".join(f"{names[a]} {names[b]}\n" for a, b, *_ in pairs))
    return Path(out)


def export_colmap_database(store: CorrespondenceStore, out: str | os.PathLike) -> Path:
    """A COLMAP database at `out` (a new file) with the ground-truth keypoints and matches (module doc).
    Database image and camera ids are the dataset's image_id + 1."""
    import pycolmap

    gt = ground_truth_keypoints(store)
    with atomic_path(out, "file") as tmp:
        db = pycolmap.Database.open(tmp)
        try:
            with pycolmap.DatabaseTransaction(db):
                for img, row in gt.images.iterrows():
                    colmap_id = int(img) + 1
                    db.write_camera(camera_to_colmap(store.camera(img), colmap_id), use_camera_id=True)
                    rig = pycolmap.Rig(rig_id=colmap_id)
                    rig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, colmap_id))
                    db.write_rig(rig, use_rig_id=True)
                    image = pycolmap.Image(name=str(row["image"]), camera_id=colmap_id, image_id=colmap_id)
                    db.write_image(image, use_image_id=True)
                    frame = pycolmap.Frame(frame_id=colmap_id, rig_id=colmap_id)
                    frame.add_data_id(image.data_id)
                    db.write_frame(frame, use_frame_id=True)
                    db.write_keypoints(colmap_id, np.ascontiguousarray(gt.keypoints[int(img)] + 0.5))
                for a, b, i0, i1, _ in image_pairs(gt):
                    pairs = np.ascontiguousarray(np.stack([i0, i1], 1).astype(np.uint32))
                    db.write_matches(a + 1, b + 1, pairs)
                    geometry = pycolmap.TwoViewGeometry()
                    geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
                    geometry.inlier_matches = pairs
                    db.write_two_view_geometry(a + 1, b + 1, geometry)
        finally:
            db.close()
    return Path(out)


def export_kapture(store: CorrespondenceStore, out: str | os.PathLike) -> Path:
    """kapture ``reconstruction/keypoints/gt`` and ``reconstruction/matches/gt`` under `out` (module doc)."""
    gt = ground_truth_keypoints(store)
    names = gt.images["image"].to_dict()
    with atomic_path(out, "folder", replace_only_if=_is_export(("reconstruction",))) as tmp:
        kp_dir, match_dir = (
            tmp / "reconstruction" / "keypoints" / "gt",
            tmp / "reconstruction" / "matches" / "gt",
        )
        kp_dir.mkdir(parents=True)
        (kp_dir / "keypoints.txt").write_text("# kapture format: 1.1\n# name, dtype, dsize\ngt, float32, 2\n")
        for img, kp in gt.keypoints.items():
            path = kp_dir / f"{names[img]}.kpt"
            path.parent.mkdir(parents=True, exist_ok=True)
            (kp + 0.5).astype(np.float32).tofile(path)
        for a, b, i0, i1, w in image_pairs(gt):
            table = np.stack([i0, i1, w], 1).astype(np.float64)
            first, second = names[a], names[b]
            if second < first:
                first, second, table = second, first, table[:, [1, 0, 2]]
            path = match_dir / f"{first}.overlapping" / f"{second}.matches"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.tofile(path)
    return Path(out)


def _is_export(names: tuple[str, ...]):
    """`atomic_path`'s replace_only_if: a folder that holds these files and nothing else."""

    def check(path: Path) -> bool:
        return path.is_dir() and {p.name for p in path.iterdir()} == set(names)

    return check


EXPORTERS = {
    "megadepth": export_megadepth,
    "hloc": export_hloc,
    "colmap-db": export_colmap_database,
    "kapture": export_kapture,
}

__all__ = [
    "EXPORTERS",
    "FORMATS",
    "GroundTruthKeypoints",
    "export_colmap_database",
    "export_hloc",
    "export_kapture",
    "export_megadepth",
    "ground_truth_keypoints",
    "image_pairs",
    "names_to_pair",
]
