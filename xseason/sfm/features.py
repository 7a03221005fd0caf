"""SIFT features and matching with pycolmap: one COLMAP database per build, resumable.

Image ids in the database follow the manifest's row order (1-based), camera ids the
order of first appearance of the manifest's `camera` ids, so that every model made from
the database carries the same ids. Features are extracted here (not by COLMAP's image
reader) so that manifest masks are applied and unreadable images are recorded with
their reason instead of being dropped silently. Keypoints stay in COLMAP's pixel
convention (ours + 0.5) inside the database and the models. Which pairs are matched is
decided in `pairs.py`; `match` matches and verifies them.

The extraction runs as tasks on an executor (`core.executor`: in this process or on Ray), one per
block of `_BLOCK` images in manifest order (`_extract_block`): a task reads its images and returns
their sizes, keypoints and descriptors, or why one is skipped; the driver alone writes them into the
database, in manifest order (SQLite: one writer), so that the database is the same whatever ran the
tasks.

Matching: in this process (no executor, or `local`), COLMAP's threaded matcher on the database itself,
which it writes. On Ray, tasks of `_MATCH_BLOCK` pairs in sorted order (a block's pairs share images;
`_match_block`): a task copies its images' rows (cameras, rigs, frames, keypoints, descriptors; the
names `_BLOCK_NAME` + id) from the database, opened read only, into a database of its own, matches and
verifies its pairs there with the same options (COLMAP on the task's CPUs, `colmap_threads`; or along the
epipolar lines), and returns their rows of the matches and two-view geometries as SQLite holds them;
the driver writes them into the database as they come, a task's pairs in one transaction. The same
pair gives the same rows with either: COLMAP matches a pair from its two images' features only, and
its RANSAC is seeded per pair. Imported matches (hloc, kapture) are verified in this process.

A sequence given its own model (`reconstruction.sfm_from`, read and checked by `imported_models`) is
still extracted with SIFT: its descriptors are what ties it to the other sequences (cross-sequence
matching, hence registration and the joint tracks), and its within-sequence matches make its final
points, as for every sequence. Each of its images gets the model's points2D as its first keypoints, in
the model's order, so that the model's point2D indices are the database's keypoint indices (the
registration reads a model's 3D points through matched keypoint indices); a point2D takes the
descriptor (scale, orientation) of the SIFT keypoint at its position (within `_SAME_KEYPOINT`, one to
one), or a zero descriptor (never matched: COLMAP's matcher and the guided one compare by angle), and
the other SIFT keypoints follow. A model made from this build's own SIFT database thus gives back the
same keypoints and descriptors, in the same order.

Database image names are the manifest's `image` strings, whatever they hold (spaces, unicode).
The one place COLMAP cannot take such a name is the pair list of its matcher (it splits a line at
spaces, trims whitespace, and skips lines starting with '#'): while it matches, an image whose name
it cannot read there is renamed in the database to an alias (`_ALIAS`) that the list names instead,
and renamed back right after (or on the next `match` / `extract` when a run was killed meanwhile).
"""

from __future__ import annotations

import json
import logging
import random
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import pycolmap
from scipy.spatial import cKDTree

from xseason.core.colmap import (
    camera_to_colmap,
    from_colmap_pixels,
    image_points2D,
    quiet_logs,
    rigid_from_pose,
    to_colmap_pixels,
)
from xseason.core.errors import XSeasonError
from xseason.core.executor import Executor, LocalExecutor, task_threads
from xseason.core.files import atomic_path, write_json
from xseason.core.geometry import Pose
from xseason.core.log import progress
from xseason.inputs.layouts.colmap import check_text_model
from xseason.inputs.manifest import ImageRecord, Manifest
from xseason.sfm.cachekeys import stage_keys
from xseason.sfm.config import FeatureConfig, MatchingConfig, ReconstructionConfig, SfMConfig
from xseason.sfm.guided import epipolar_errors, epipolar_matches, essential_matrix
from xseason.sfm.hloc import HlocFeatures, HlocMatches
from xseason.sfm.kapture import KaptureKeypoints, KaptureMatches
from xseason.sfm.paths import BuildPaths

log = logging.getLogger(__name__)

_ALIAS = "xseason-alias-{}"  # an image's database name while COLMAP's matcher reads a pair list naming it
_SAME_KEYPOINT = 0.5  # px: a SIFT keypoint this close to an imported model's point2D lends it its descriptor
_BLOCK = 8  # images per extraction task (their keypoints and descriptors come back to the driver at once)
_MATCH_BLOCK = 96  # pairs per matching task (Ray): a block's images are copied into the task's own database
_BLOCK_NAME = "image"  # + the image id: an image's name in a matching task's database
_OPEN_TRIES = 8  # tries of a call that cannot open the database as another process opens it (`when_unlocked`)
_LOCKED = re.compile("database is locked|No registered database factory succeeded")  # COLMAP's words for it

T = TypeVar("T")


class FeatureError(XSeasonError):
    """The feature database cannot be used for this manifest."""


@dataclass
class FeatureIndex:
    """What the database holds for a manifest: ids and skipped images."""

    db_path: Path
    image_ids: dict[str, int]  # manifest image -> database image id (readable images only)
    camera_ids: dict[str, int]  # manifest camera id -> database camera id
    skipped: dict[str, str] = field(default_factory=dict)  # manifest image -> reason
    masks: dict[str, Path] = field(default_factory=dict)  # manifest image -> its mask file (when it has one)

    def names(self, records: Iterable[ImageRecord]) -> list[str]:
        """Manifest image strings of `records` that have features."""
        return [r.image for r in records if r.image in self.image_ids]


@dataclass
class ImageFeatures:
    """What an extraction task found in one image: its size (None: unreadable), its keypoints (COLMAP
    pixels) and descriptors (None with imported keypoints), or why the image is skipped (`reason`)."""

    size: tuple[int, int] | None = None  # width, height
    keypoints: np.ndarray | None = None
    descriptors: np.ndarray | None = None
    descriptor_type: pycolmap.FeatureExtractorType | None = None
    reason: str | None = None


def extract(
    manifest: Manifest,
    paths: BuildPaths,
    sfm: SfMConfig,
    skip: Mapping[str, str] | None = None,
    executor: Executor | None = None,
) -> FeatureIndex:
    """Fill the build's database with cameras, images and SIFT features (skips what is there), the
    features extracted by tasks on `executor` (default: this process; module doc).

    The database is reused only when its record (`paths.features`) has the database's cache key
    (`cachekeys.stage_keys`: manifest, image files, features and matching sections, code); with
    another key it is made anew (its matches too). Unreadable images and images whose mask cannot
    be used are recorded in the returned index (and the record) with their reason, as are the
    images of `skip` (image -> reason: those that failed the pre-flight checks, never read here);
    the build goes on without them.
    """
    quiet_logs()
    cfg = sfm.features
    key = stage_keys(manifest, sfm).database
    paths.colmap.mkdir(parents=True, exist_ok=True)
    db_path = paths.database
    camera_ids = {cam: i + 1 for i, cam in enumerate(dict.fromkeys(r.camera for r in manifest.images))}
    wanted = {r.image: i + 1 for i, r in enumerate(manifest.images)}
    masks = {r.image: r.mask for r in manifest.images if r.mask is not None}
    if paths.features.exists():
        state = json.loads(paths.features.read_text())
        stale = key.reason(state.get("key"))
        if stale is None and state.get("complete"):
            log.info("features: reused from %s (same cache key)", db_path)
            return FeatureIndex(db_path, state["image_ids"], camera_ids, state["skipped"], masks)
        if stale is not None:  # the record is ours: so is the database it describes
            log.info("features: database made anew: %s", stale)
            for path in (db_path, *(db_path.with_name(db_path.name + s) for s in ("-wal", "-shm"))):
                path.unlink(missing_ok=True)
        else:
            log.info("features: resuming the extraction into %s", db_path)
    write_json(paths.features, {"key": key.to_json(), "complete": False})
    skipped: dict[str, str] = dict(skip or {})
    model_points: dict[str, np.ndarray] = {}  # image -> its imported model's points2D (module doc)
    for seq, model in imported_models(manifest, sfm.reconstruction).items():
        points = image_points2D(model)
        model_points |= {r.image: points[r.image] for r in manifest.sequences()[seq]}
    db = open_database(db_path)
    try:
        _check_existing(db, wanted, db_path)
        todo = [
            rec
            for rec in manifest.images
            if rec.image not in skipped
            and not (db.exists_image(wanted[rec.image]) and db.exists_keypoints(wanted[rec.image]))
        ]
        blocks = [
            [(rec, model_points.get(rec.image)) for rec in todo[i : i + _BLOCK]]
            for i in range(0, len(todo), _BLOCK)
        ]
        found = chain.from_iterable((executor or LocalExecutor()).map(_extract_block, blocks, cfg))
        for rec, image in progress(
            zip(todo, found, strict=True), total=len(todo), desc="features", unit="img", leave=False
        ):
            reason = _write_features(db, rec, wanted[rec.image], camera_ids[rec.camera], image, cfg)
            if reason:
                log.warning("%s: skipped: %s", rec.image, reason)
                skipped[rec.image] = reason
    finally:
        db.close()
    image_ids = {name: i for name, i in wanted.items() if name not in skipped}
    write_json(
        paths.features, {"key": key.to_json(), "complete": True, "image_ids": image_ids, "skipped": skipped}
    )
    return FeatureIndex(db_path, image_ids, camera_ids, skipped, masks)


def when_unlocked(call: Callable[[], T]) -> T:
    """`call()`, a pycolmap call that opens the build's database, tried again after a short random wait
    while it cannot open it: COLMAP writes to a database when it opens it (its schema), and SQLite
    refuses that while another process does the same ("database is locked", raised as "No registered
    database factory succeeded"), e.g. sequence tasks starting together; their reads then run side by
    side."""
    for attempt in range(_OPEN_TRIES - 1):
        try:
            return call()
        except RuntimeError as exc:
            if not _LOCKED.search(str(exc)):
                raise
        time.sleep(0.1 * 2**attempt * random.uniform(0.5, 1.0))
    return call()


def open_database(path: Path) -> pycolmap.Database:
    """The COLMAP database at `path`, opened (`when_unlocked`)."""
    return when_unlocked(lambda: pycolmap.Database.open(path))


def _check_existing(db: pycolmap.Database, wanted: dict[str, int], db_path: Path) -> None:
    _restore_names(db, {image_id: name for name, image_id in wanted.items()})
    for image in db.read_all_images():
        if wanted.get(image.name) != image.image_id:
            raise FeatureError(
                f"{db_path} was made for another manifest (image {image.name!r} has id {image.image_id}); "
                "use a fresh build folder"
            )


def _extract_block(
    block: list[tuple[ImageRecord, np.ndarray | None]], cfg: FeatureConfig
) -> list[ImageFeatures]:
    """An extraction task (module doc): the features of each image of `block` (its record and the points2D
    of its imported model, or None), in the block's order."""
    quiet_logs()
    if cfg.hloc_features is not None:
        extractor: pycolmap.FeatureExtractor | ImportedKeypoints = HlocFeatures(cfg.hloc_features)
    elif cfg.kapture_keypoints is not None:
        extractor = KaptureKeypoints(cfg.kapture_keypoints)
    else:
        extractor = pycolmap.FeatureExtractor.create(cfg.options(), pycolmap.Device.cpu)
    try:
        return [_image_features(extractor, rec, cfg, points) for rec, points in block]
    finally:
        if isinstance(extractor, IMPORTED_KEYPOINTS):
            extractor.close()


def _image_features(
    extractor: pycolmap.FeatureExtractor | ImportedKeypoints,
    rec: ImageRecord,
    cfg: FeatureConfig,
    model_points: np.ndarray | None = None,
) -> ImageFeatures:
    """The features of one image: SIFT, or the keypoints of an hloc features file or a kapture keypoint
    folder (all kept: their match indices refer to them), or why it is skipped. `model_points`: the
    points2D of its imported model (COLMAP pixels), its first keypoints (module doc)."""
    gray = cv2.imread(str(rec.path), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        return ImageFeatures(reason=f"unreadable image file {rec.path}")
    height, width = gray.shape
    size = (width, height)
    mask = None
    if rec.mask is not None:
        mask = cv2.imread(str(rec.mask), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != gray.shape:
            return ImageFeatures(size, reason=f"mask {rec.mask} is unreadable or not {width}x{height}")
    if isinstance(extractor, IMPORTED_KEYPOINTS):
        given = extractor.keypoints(rec.image)
        if given is None:
            return ImageFeatures(size, reason=f"no keypoints for this image in {extractor.path}")
        return ImageFeatures(size, to_colmap_pixels(given).astype(np.float32))
    sift_w, sift_h = cfg.sift_size(width, height)
    sift_gray = gray
    if (sift_w, sift_h) != (width, height):
        log.debug("%s: %dx%d downscaled to %dx%d for SIFT", rec.image, width, height, sift_w, sift_h)
        sift_gray = cv2.resize(gray, (sift_w, sift_h), interpolation=cv2.INTER_AREA)
    keypoints, descriptors = extractor.extract(pycolmap.Bitmap.from_array(np.ascontiguousarray(sift_gray)))
    kps = _to_full_resolution(pycolmap.keypoints_to_matrix(keypoints), width / sift_w, height / sift_h)
    desc = np.asarray(descriptors.data)
    if mask is not None:
        ok = ~_on_mask(mask, kps)
        kps, desc = kps[ok], desc[ok]
    if model_points is not None:
        kps, desc = _with_model_points(model_points, kps, desc)
    return ImageFeatures(size, kps, desc, descriptors.type)


def _write_features(
    db: pycolmap.Database,
    rec: ImageRecord,
    image_id: int,
    camera_id: int,
    found: ImageFeatures,
    cfg: FeatureConfig,
) -> str | None:
    """Store what a task `found` in one image (its camera made from the first image of that camera
    read); return the reason when it is skipped."""
    if found.size is None:
        return found.reason
    width, height = found.size
    if not db.exists_camera(camera_id):
        db.write_camera(_make_camera(rec, camera_id, width, height, cfg), use_camera_id=True)
        rig = pycolmap.Rig(rig_id=camera_id)
        rig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, camera_id))
        db.write_rig(rig, use_rig_id=True)
    camera = db.read_camera(camera_id)
    if (camera.width, camera.height) != (width, height):
        return f"image is {width}x{height} but camera {rec.camera!r} is {camera.width}x{camera.height}"
    if found.reason is not None:
        return found.reason
    descriptors = None
    if found.descriptors is not None:
        descriptors = pycolmap.FeatureDescriptors(
            found.descriptor_type, np.ascontiguousarray(found.descriptors)
        )
    _write_image(db, rec, image_id, camera_id, found.keypoints, descriptors)
    return None


def _write_image(
    db: pycolmap.Database,
    rec: ImageRecord,
    image_id: int,
    camera_id: int,
    keypoints: np.ndarray,
    descriptors: pycolmap.FeatureDescriptors | None,
) -> None:
    """The image (with its frame), its keypoints (COLMAP pixels) and its descriptors, if any."""
    with pycolmap.DatabaseTransaction(db):
        if not db.exists_image(image_id):
            image = pycolmap.Image(name=rec.image, camera_id=camera_id, image_id=image_id)
            db.write_image(image, use_image_id=True)
            frame = pycolmap.Frame(frame_id=image_id, rig_id=camera_id)
            frame.add_data_id(image.data_id)
            db.write_frame(frame, use_frame_id=True)
        db.write_keypoints(image_id, np.ascontiguousarray(keypoints, dtype=np.float32))
        if descriptors is not None:
            db.write_descriptors(image_id, descriptors)


def imported_models(manifest: Manifest, cfg: ReconstructionConfig) -> dict[str, pycolmap.Reconstruction]:
    """The models of `cfg.sfm_from` (sequence -> COLMAP model folder), read; each must name a sequence of
    `manifest` and pose every image of it (found by name; its other images are not used)."""
    sequences = manifest.sequences()
    unknown = sorted(set(cfg.sfm_from) - set(sequences))
    if unknown:
        raise FeatureError(
            f"reconstruction.sfm_from names {unknown}, not sequences of {manifest.path} "
            f"(its sequences: {', '.join(sequences)})"
        )
    out = {}
    for seq, folder in cfg.sfm_from.items():
        folder = Path(folder)
        if not (folder / "images.bin").is_file():
            check_text_model(folder)  # pycolmap's own errors name neither file nor line
        try:
            model = pycolmap.Reconstruction(folder)
        except Exception as exc:  # pycolmap raises plain RuntimeError/ValueError on bad files
            raise FeatureError(f"reconstruction.sfm_from.{seq}: cannot read {folder}: {exc}") from None
        posed = {image.name for image in model.images.values() if image.has_pose}
        missing = [r.image for r in sequences[seq] if r.image not in posed]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FeatureError(
                f"reconstruction.sfm_from.{seq}: {folder} has no posed image named {', '.join(missing[:5])}"
                f"{more} ({len(missing)} of the sequence's {len(sequences[seq])} images; the model's "
                "image names must be the manifest's)"
            )
        out[seq] = model
    return out


def _with_model_points(
    points: np.ndarray, kps: np.ndarray, desc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """An imported model's points2D (N, 2) followed by the SIFT keypoints `kps` (M, 4: x y scale
    orientation) that are none of them, and their descriptors (module doc)."""
    rows = np.zeros((len(points), 4), np.float32)
    rows[:, :2], rows[:, 2] = points, 1.0
    own = np.zeros((len(points), desc.shape[1]), desc.dtype)
    mine, theirs = _same_keypoints(points, kps[:, :2])
    rows[mine, 2:] = kps[theirs, 2:4]
    own[mine] = desc[theirs]
    rest = np.setdiff1d(np.arange(len(kps)), theirs)
    return np.concatenate([rows, kps[rest, :4]]), np.concatenate([own, desc[rest]])


def _same_keypoints(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (into a, into b) of mutually nearest positions within `_SAME_KEYPOINT` px; points at
    one position (SIFT's orientations) pair up in order, the k-th of `a` there with the k-th of `b`."""
    if not len(a) or not len(b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    step = 4 * _SAME_KEYPOINT  # the k-th duplicates are this far apart from the others, along a 3rd axis
    ta, tb = (cKDTree(np.c_[xy, step * _duplicate_rank(xy)]) for xy in (a, b))
    dist, near_b = tb.query(ta.data, distance_upper_bound=_SAME_KEYPOINT)
    _, near_a = ta.query(tb.data, distance_upper_bound=_SAME_KEYPOINT)
    found = np.flatnonzero(np.isfinite(dist))
    mutual = near_a[near_b[found]] == found
    return found[mutual], near_b[found[mutual]]


def _duplicate_rank(xy: np.ndarray) -> np.ndarray:
    """Per row, how many earlier rows have exactly the same position."""
    _, inverse = np.unique(xy, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    group = inverse.ravel()[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    rank = np.empty(len(xy), np.int64)
    rank[order] = np.arange(len(xy)) - np.repeat(starts, np.diff(np.r_[starts, len(xy)]))
    return rank


def _to_full_resolution(kps: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """SIFT keypoints [x, y, scale, orientation] (COLMAP pixels) of an image resized by 1/sx, 1/sy ->
    those of the full image. In COLMAP's convention an image spans [0, w] x [0, h], so a resize is a
    pure scaling (no half-pixel offset); the orientation follows the (tiny) anisotropy of the rounding."""
    if sx == sy == 1:
        return kps
    out = np.array(kps, dtype=np.float32)
    out[:, :3] *= np.array([sx, sy, np.sqrt(sx * sy)], dtype=np.float32)
    out[:, 3] = np.arctan2(sy * np.sin(kps[:, 3]), sx * np.cos(kps[:, 3]))
    return out


def _make_camera(
    rec: ImageRecord, camera_id: int, width: int, height: int, cfg: FeatureConfig
) -> pycolmap.Camera:
    """The database camera of `rec`'s camera id (`ImageRecord.camera_for` at the image's size)."""
    camera = camera_to_colmap(rec.camera_for(width, height, cfg.default_focal_factor), camera_id)
    if rec.camera_model is not None and rec.camera_params is not None:
        # Known intrinsics: calibrated two-view verification, and the mapper does not re-estimate the focal.
        camera.has_prior_focal_length = True
    return camera


def match(
    index: FeatureIndex,
    pairs: Iterable[tuple[str, str]],
    pair_list: Path,
    cfg: MatchingConfig,
    poses: Mapping[str, Pose] | None = None,
    sequence_of: Mapping[str, str] | None = None,
    executor: Executor | None = None,
) -> int:
    """Match and verify `pairs` (those already in the database are skipped); return the number of new pairs.

    Pairs of two images with known `poses` (manifest image -> world-to-camera pose) of different
    sequences (`sequence_of`) are matched along their epipolar lines (`epipolar_guided`, guided.py),
    or by COLMAP's matcher and two-view RANSAC checked against the geometry their poses give
    (`_verify_with_poses`);
    the others by COLMAP's matcher and two-view RANSAC. On a Ray `executor`, by tasks of `_MATCH_BLOCK`
    pairs (`_match_block`, module doc); else (None, local) in this process, COLMAP's matcher threaded on
    the database itself, with the pairs listed in `pair_list`, by their aliases where COLMAP cannot read
    a name. Imported matches (hloc, kapture) are always written and verified in this process."""
    names = {image_id: name for name, image_id in index.image_ids.items()}
    ids = index.image_ids
    seen: set[tuple[str, str]] = set()
    todo = []
    importing = cfg.hloc_matches is not None or cfg.kapture_matches is not None
    in_tasks = executor is not None and executor.kind == "ray" and not importing
    db = open_database(index.db_path)
    try:
        _restore_names(db, names)  # left aliased by a run killed while matching
        for a, b in pairs:
            key = (a, b) if a < b else (b, a)
            if a == b or key in seen or a not in ids or b not in ids:
                continue
            seen.add(key)
            if not db.exists_matches(ids[a], ids[b]):
                todo.append(key)
        sequence_of, poses = sequence_of or {}, poses or {}
        cross = sorted(
            (a, b) for a, b in seen if a in poses and b in poses and sequence_of.get(a) != sequence_of.get(b)
        )
        guided_mode = cfg.epipolar_guided and not importing
        guided = sorted(set(cross).intersection(todo)) if guided_mode else []
        matched_here = set(guided)  # along the epipolar lines, not by COLMAP's matcher
        todo = [pair for pair in todo if pair not in matched_here]
        # matched by descriptors, RANSAC's verification then checked with the poses: every time (the same
        # result again), so that a run killed in between leaves no pair on its RANSAC geometry alone
        known = [] if guided_mode else [(ids[a], ids[b]) for a, b in cross]
        by_id = {ids[name]: poses[name] for pair in cross for name in pair}
        listed: dict[str, str] = {}
        if not in_tasks:
            if guided:
                _match_along_epipolar_lines(db, [(ids[a], ids[b]) for a, b in guided], by_id, cfg)
            listed = _alias_unlistable(db, index, {name for pair in todo for name in pair})
    finally:
        db.close()
    if in_tasks:
        blocks = [_MatchBlock([(ids[a], ids[b]) for a, b in part]) for part in _cut(sorted(todo))]
        blocks += [
            _MatchBlock([(ids[a], ids[b]) for a, b in part], {ids[n]: poses[n] for p in part for n in p})
            for part in _cut(guided)
        ]
        found = executor.map(_match_block, blocks, _MatchJob(index.db_path, cfg))
        _write_pair_rows(index.db_path, found, len(blocks))
    elif todo:
        try:
            with atomic_path(pair_list) as tmp:
                tmp.write_text(
                    "".join(f"{listed.get(a, a)} {listed.get(b, b)}\n" for a, b in todo), encoding="utf-8"
                )
            if importing:
                _import_matches(index, todo, _imported_matches(cfg))
                pycolmap.verify_matches(index.db_path, pair_list, _verification_options(cfg))
            else:
                _colmap_match(index.db_path, pair_list, cfg, cfg.num_threads)
        finally:
            if listed:
                db = open_database(index.db_path)
                try:
                    _restore_names(db, names)
                finally:
                    db.close()
    if known:
        _verify_with_poses(index.db_path, known, by_id, cfg)
    return len(todo) + len(guided)


def _verification_options(cfg: MatchingConfig) -> pycolmap.TwoViewGeometryOptions:
    """COLMAP's two-view verification options (RANSAC seeded: a pair's result is the same in any run)."""
    verify = pycolmap.TwoViewGeometryOptions()
    verify.min_num_inliers = cfg.min_num_inliers
    verify.ransac.max_error = cfg.max_error
    verify.ransac.random_seed = 0
    return verify


def _colmap_match(db_path: Path, pair_list: Path, cfg: MatchingConfig, num_threads: int) -> None:
    """COLMAP's matcher and verification on the pairs of `pair_list` (image names of the database)."""
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(pair_list)
    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = num_threads
    opts.sift.max_ratio, opts.sift.max_distance = cfg.max_ratio, cfg.max_distance
    opts.sift.cross_check = cfg.cross_check
    pycolmap.match_image_pairs(db_path, opts, pairing, _verification_options(cfg), pycolmap.Device.cpu)


def colmap_threads(num_threads: int) -> int:
    """COLMAP's `num_threads` in a Ray task: -1 (all cores) is the CPUs Ray gave the task
    (`core.executor.task_threads`), so that tasks side by side do not oversubscribe a node."""
    return task_threads() if num_threads == -1 else num_threads


@dataclass(frozen=True)
class _MatchJob:
    """What every matching task reads: the build's database (read only) and the matching config."""

    db_path: Path
    cfg: MatchingConfig


@dataclass(frozen=True)
class _MatchBlock:
    """A matching task's pairs (database image ids, in pair-list order) and, for pairs matched along their
    epipolar lines, their images' world-to-camera poses by image id (None: COLMAP's matcher)."""

    pairs: list[tuple[int, int]]
    poses: dict[int, Pose] | None = None


# A task's database rows, as SQLite holds them: (matches, two_view_geometries) of its pairs.
_PairRows = tuple[list[tuple], list[tuple]]


def _cut(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """`pairs` in blocks of `_MATCH_BLOCK` (sorted pairs: a block's pairs share images)."""
    return [pairs[i : i + _MATCH_BLOCK] for i in range(0, len(pairs), _MATCH_BLOCK)]


def _match_block(block: _MatchBlock, job: _MatchJob) -> _PairRows:
    """A matching task (module doc): its images copied into a private database, its pairs matched and
    verified there as in the build's database, their rows returned."""
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="xseason-match-") as tmp:
        db_path = Path(tmp) / "block.db"
        _copy_images(job.db_path, db_path, sorted({i for pair in block.pairs for i in pair}))
        if block.poses is None:
            pair_list = Path(tmp) / "pairs.txt"
            pair_list.write_text("".join(f"{_BLOCK_NAME}{a} {_BLOCK_NAME}{b}\n" for a, b in block.pairs))
            _colmap_match(db_path, pair_list, job.cfg, colmap_threads(job.cfg.num_threads))
        else:
            db = pycolmap.Database.open(db_path)
            try:
                _match_along_epipolar_lines(db, block.pairs, block.poses, job.cfg)
            finally:
                db.close()
        with closing(sqlite3.connect(db_path)) as con:
            return (
                con.execute("SELECT * FROM matches").fetchall(),
                con.execute("SELECT * FROM two_view_geometries").fetchall(),
            )


def _copy_images(source: Path, target: Path, image_ids: list[int]) -> None:
    """A new COLMAP database at `target` holding images `image_ids` of the database `source`, read only (a
    reader never waits for the driver's writes): their rows of the cameras, rigs, frames, keypoints and
    descriptors as they are there, their names `_BLOCK_NAME` (any pair list can hold them)."""
    pycolmap.Database.open(target).close()  # COLMAP's tables
    with closing(sqlite3.connect(target)) as con:
        try:
            con.execute("ATTACH DATABASE ? AS src", (source.resolve().as_uri() + "?mode=ro",))
        except sqlite3.OperationalError as exc:
            raise FeatureError(
                f"a matching task cannot read the build's database {source} ({exc}): on a Ray cluster the "
                "work folder must be on a filesystem every node sees, at the same path"
            ) from None
        with con:
            con.execute("CREATE TEMP TABLE wanted (image_id INTEGER PRIMARY KEY)")
            con.executemany("INSERT INTO wanted VALUES (?)", [(i,) for i in image_ids])
            con.execute(
                f"INSERT INTO images SELECT image_id, '{_BLOCK_NAME}' || image_id, camera_id FROM src.images "
                "WHERE image_id IN wanted"
            )
            for table, rows in (  # each selected by the rows copied before it
                ("cameras", "camera_id IN (SELECT camera_id FROM images)"),
                ("frame_data", f"data_id IN wanted AND sensor_type = {int(pycolmap.SensorType.CAMERA)}"),
                ("frames", "frame_id IN (SELECT frame_id FROM frame_data)"),
                ("rigs", "rig_id IN (SELECT rig_id FROM frames)"),
                ("rig_sensors", "rig_id IN (SELECT rig_id FROM rigs)"),
                ("keypoints", "image_id IN wanted"),
                ("descriptors", "image_id IN wanted"),
            ):
                con.execute(f"INSERT INTO {table} SELECT * FROM src.{table} WHERE {rows}")
            missing = con.execute(
                "SELECT image_id FROM wanted WHERE image_id NOT IN (SELECT image_id FROM keypoints)"
            ).fetchall()
        if missing:
            raise FeatureError(
                f"{source} has no image or keypoints with id {', '.join(str(i) for (i,) in missing)}, asked "
                "for by a matching task: the database changed since the pairs were chosen (another build "
                "in the same work folder?)"
            )


def _write_pair_rows(db_path: Path, found: Iterable[_PairRows], blocks: int) -> None:
    """Write the tasks' rows into the database as they come, each task's pairs in one transaction (the
    pairs of a run killed meanwhile are matched again by the next one, the others kept)."""
    with closing(sqlite3.connect(db_path, timeout=60)) as con:
        for tables in progress(found, total=blocks, desc="matching", unit="block", leave=False):
            with con:
                for table, rows in zip(("matches", "two_view_geometries"), tables, strict=True):
                    if rows:
                        marks = ", ".join("?" * len(rows[0]))
                        con.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)


def _match_along_epipolar_lines(
    db: pycolmap.Database,
    pairs: list[tuple[int, int]],
    poses: Mapping[int, Pose],
    cfg: MatchingConfig,
) -> None:
    """Match each pair of posed images (database image ids; `poses` by image id) along its epipolar lines
    and write the matches as a calibrated two-view geometry (the relative pose the poses give), when
    there are `min_num_inliers`."""
    features = _ImageFeatures(db)
    with pycolmap.DatabaseTransaction(db):
        for id0, id1 in progress(pairs, desc="epipolar matching", unit="pair", leave=False):
            (x0, f0), (x1, f1) = features.points(id0), features.points(id1)
            essential = essential_matrix(poses[id0], poses[id1])
            found = epipolar_matches(
                x0,
                x1,
                features.descriptors(id0),
                features.descriptors(id1),
                essential,
                (f0, f1),
                cfg.epipolar_max_error,
                cfg.max_ratio,
                cfg.max_distance,
            ).astype(np.uint32)
            db.write_matches(id0, id1, found)
            if len(found) >= cfg.min_num_inliers:
                geometry = _posed_geometry(found, essential, poses[id0], poses[id1])
                db.write_two_view_geometry(id0, id1, geometry)


def _verify_with_poses(
    db_path: Path, pairs: list[tuple[int, int]], poses: Mapping[int, Pose], cfg: MatchingConfig
) -> None:
    """Check the two-view RANSAC verification of each pair of posed images (database image ids; `poses`
    by image id) against the geometry their poses give: of its inliers, those within `max_error`
    pixels of both epipolar lines remain, written as a calibrated two-view geometry when there are
    `min_num_inliers` (else the pair is not verified). RANSAC settles on a wrong model where
    look-alikes outnumber the true matches (maupertuis' day / overcast pairs: 37-45 inliers, none
    right). Matches that RANSAC rejected stay rejected: taking every match near the epipolar lines
    instead also takes look-alikes near them (measured: more wrong matches on random seeds 121-124)."""
    db = open_database(db_path)
    try:
        features = _ImageFeatures(db)
        with pycolmap.DatabaseTransaction(db):
            for id0, id1 in progress(pairs, desc="checking with poses", unit="pair", leave=False):
                if not db.exists_two_view_geometry(id0, id1):
                    continue
                inliers = np.asarray(db.read_two_view_geometry(id0, id1).inlier_matches, np.uint32)
                if not inliers.size:
                    continue
                inliers = inliers.reshape(-1, 2)
                (x0, f0), (x1, f1) = features.points(id0), features.points(id1)
                essential = essential_matrix(poses[id0], poses[id1])
                error = epipolar_errors(x0[inliers[:, 0]], x1[inliers[:, 1]], essential, (f0, f1))
                inliers = inliers[error <= cfg.max_error]
                db.delete_two_view_geometry(id0, id1)
                geometry = pycolmap.TwoViewGeometry()  # none: not verified
                if len(inliers) >= cfg.min_num_inliers:
                    geometry = _posed_geometry(inliers, essential, poses[id0], poses[id1])
                db.write_two_view_geometry(id0, id1, geometry)
    finally:
        db.close()


def _posed_geometry(
    inliers: np.ndarray, essential: np.ndarray, pose0: Pose, pose1: Pose
) -> pycolmap.TwoViewGeometry:
    """The calibrated two-view geometry of two posed images (`essential`: theirs) with these inliers."""
    geometry = pycolmap.TwoViewGeometry()
    geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
    geometry.inlier_matches = inliers
    geometry.E = essential
    geometry.cam2_from_cam1 = rigid_from_pose(pose1 @ pose0.inverse())
    return geometry


class _ImageFeatures:
    """A database's images' normalised keypoints with their focal length, and descriptors, read once
    (the last 64 images of each kept)."""

    def __init__(self, db: pycolmap.Database):
        self.db = db
        self.cameras = {int(c.camera_id): c for c in db.read_all_cameras()}
        self.camera_of = {int(im.image_id): int(im.camera_id) for im in db.read_all_images()}
        self._points: dict[int, tuple[np.ndarray, float]] = {}
        self._descriptors: dict[int, np.ndarray] = {}

    def points(self, image_id: int) -> tuple[np.ndarray, float]:
        """(N, 2) undistorted normalised coordinates of the image's keypoints, its mean focal length."""
        if image_id not in self._points:
            camera = self.cameras[self.camera_of[image_id]]
            xy = image_plane(camera, np.asarray(self.db.read_keypoints(image_id)))
            _keep_last(self._points, image_id, (xy, camera.mean_focal_length()))
        return self._points[image_id]

    def descriptors(self, image_id: int) -> np.ndarray:
        if image_id not in self._descriptors:
            _keep_last(self._descriptors, image_id, np.asarray(self.db.read_descriptors(image_id).data))
        return self._descriptors[image_id]


def _keep_last(cache: dict, key: int, value: object, size: int = 64) -> None:
    if len(cache) >= size:
        cache.pop(next(iter(cache)))
    cache[key] = value


def image_plane(camera: pycolmap.Camera, keypoints: np.ndarray) -> np.ndarray:
    """(N, 2) undistorted normalised image coordinates of COLMAP keypoints (x y first)."""
    if not len(keypoints):
        return np.zeros((0, 2))
    return camera.cam_from_img(np.asarray(keypoints)[:, :2].astype(np.float64))


ImportedKeypoints = HlocFeatures | KaptureKeypoints
IMPORTED_KEYPOINTS = (HlocFeatures, KaptureKeypoints)


def _imported_matches(cfg: MatchingConfig) -> HlocMatches | KaptureMatches | None:
    """The match files the config names instead of COLMAP's matcher (hloc or kapture), opened."""
    if cfg.hloc_matches is not None:
        return HlocMatches(cfg.hloc_matches)
    if cfg.kapture_matches is not None:
        return KaptureMatches(cfg.kapture_matches)
    return None


def _import_matches(
    index: FeatureIndex, pairs: list[tuple[str, str]], source: HlocMatches | KaptureMatches
) -> None:
    """Write the raw matches of `pairs` from imported match files into the database (those on masked
    pixels dropped; pairs the files lack are left unmatched), for COLMAP to verify."""
    path = source.path
    db = open_database(index.db_path)
    masked: dict[str, np.ndarray] = {}
    missing = 0
    try:
        with pycolmap.DatabaseTransaction(db):
            for a, b in pairs:
                found = source.matches(a, b)
                if found is None:
                    missing += 1
                    continue
                flags = [_masked_keypoints(db, index, name, masked) for name in (a, b)]
                if len(found) and (found.min() < 0 or (found.max(axis=0) >= [len(f) for f in flags]).any()):
                    raise FeatureError(
                        f"{path}: pair {a} / {b} has keypoint indices beyond the images' imported keypoints "
                        "(features.hloc_features / kapture_keypoints): the files do not belong together"
                    )
                keep = ~flags[0][found[:, 0]] & ~flags[1][found[:, 1]]
                db.write_matches(index.image_ids[a], index.image_ids[b], found[keep].astype(np.uint32))
    finally:
        db.close()
        source.close()
    if missing:
        log.info("%d of %d pairs asked for are not in %s: left unmatched", missing, len(pairs), path)


def _masked_keypoints(db: pycolmap.Database, index: FeatureIndex, name: str, cache: dict) -> np.ndarray:
    """Whether each keypoint of image `name` lies on an excluded pixel of its mask (cached)."""
    if name not in cache:
        keypoints = np.asarray(db.read_keypoints(index.image_ids[name]))
        mask = cv2.imread(str(index.masks[name]), cv2.IMREAD_GRAYSCALE) if name in index.masks else None
        cache[name] = _on_mask(mask, keypoints) if mask is not None else np.zeros(len(keypoints), bool)
    return cache[name]


def _on_mask(mask: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """Whether each keypoint (COLMAP pixels, x y first) lies on an excluded (non-zero) pixel of `mask`."""
    ij = np.rint(from_colmap_pixels(keypoints[:, [1, 0]])).astype(int)
    ij = np.clip(ij, 0, np.array(mask.shape) - 1)
    return mask[ij[:, 0], ij[:, 1]] != 0


def _listable(name: str) -> bool:
    """Whether COLMAP's pair-list reader reads `name` as it is: no whitespace, no leading '#'."""
    return not name.startswith("#") and not any(c.isspace() for c in name)


def _alias_pattern(image_id: int) -> re.Pattern[str]:
    """The aliases `_alias_unlistable` gives image `image_id` (underscores added against name clashes)."""
    return re.compile(re.escape(_ALIAS.format(image_id)) + "_*")


def _alias_unlistable(db: pycolmap.Database, index: FeatureIndex, names: set[str]) -> dict[str, str]:
    """Rename in the database each of `names` that COLMAP's pair list cannot hold to a unique alias;
    return manifest name -> alias (empty, and nothing renamed, when every name can be listed)."""
    unlistable = sorted(name for name in names if not _listable(name))
    if not unlistable:
        return {}
    taken = {image.name for image in db.read_all_images()}
    aliases = {}
    with pycolmap.DatabaseTransaction(db):
        for name in unlistable:
            image_id = index.image_ids[name]
            alias = _ALIAS.format(image_id)
            while alias in taken:
                alias += "_"
            taken.add(alias)
            image = db.read_image(image_id)
            image.name = aliases[name] = alias
            db.update_image(image)
    return aliases


def _restore_names(db: pycolmap.Database, names: dict[int, str]) -> None:
    """Give every image still named by its alias its name in `names` (database image id -> name)."""
    stale = [
        image
        for image in db.read_all_images()
        if image.image_id in names
        and image.name != names[image.image_id]
        and _alias_pattern(image.image_id).fullmatch(image.name)
    ]
    if not stale:
        return
    with pycolmap.DatabaseTransaction(db):
        for image in stale:
            image.name = names[image.image_id]
            db.update_image(image)


def verified_matches(index: FeatureIndex) -> dict[tuple[int, int], np.ndarray]:
    """(image_id0, image_id1) -> (M, 2) inlier keypoint indices, for every verified pair."""
    db = open_database(index.db_path)
    try:
        pair_ids, geoms = db.read_two_view_geometries()
    finally:
        db.close()
    out = {}
    for pair_id, geom in zip(pair_ids, geoms, strict=True):
        inliers = np.asarray(geom.inlier_matches)
        if len(inliers):
            out[tuple(int(i) for i in pycolmap.pair_id_to_image_pair(pair_id))] = inliers.reshape(-1, 2)
    return out


def read_keypoints(index: FeatureIndex, image_id: int) -> np.ndarray:
    """(N, 2) keypoints of one image, COLMAP pixel convention."""
    db = open_database(index.db_path)
    try:
        return np.asarray(db.read_keypoints(image_id))[:, :2].astype(np.float64)
    finally:
        db.close()


def read_camera(index: FeatureIndex, camera_id: int) -> pycolmap.Camera:
    """The database's camera (given or estimated intrinsics)."""
    db = open_database(index.db_path)
    try:
        return db.read_camera(camera_id)
    finally:
        db.close()


def image_camera_ids(index: FeatureIndex) -> dict[int, int]:
    """Database image id -> database camera id."""
    db = open_database(index.db_path)
    try:
        return {im.image_id: im.camera_id for im in db.read_all_images()}
    finally:
        db.close()
