"""SIFT features and matching with pycolmap: one COLMAP database per build, resumable.

Image ids in the database follow the manifest's row order (1-based), camera ids the
order of first appearance of the manifest's `camera` ids, so that every model made from
the database carries the same ids. Features are extracted here (not by COLMAP's image
reader) so that manifest masks are applied and unreadable images are recorded with
their reason instead of being dropped silently. Keypoints stay in COLMAP's pixel
convention (ours + 0.5) inside the database and the models.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pycolmap
from tqdm import tqdm

from xseason.core.errors import XSeasonError
from xseason.core.files import atomic_path, write_json
from xseason.inputs.manifest import ImageRecord, Manifest

pycolmap.logging.minloglevel = 2


class FeatureError(XSeasonError):
    """The feature database cannot be used for this manifest."""


@dataclass
class FeatureConfig:
    """SIFT extraction (pycolmap)."""

    max_num_features: int = 8192  # per image, strongest kept
    peak_threshold: float = 0.002  # COLMAP's 0.0067 finds ~4x fewer correct night-day matches on `demo`
    edge_threshold: float = 10.0  # SIFT edge-response rejection
    first_octave: int = -1  # -1 upsamples the image once: more, finer features
    domain_size_pooling: bool = False  # DSP-SIFT descriptors (slower, more robust to appearance change)
    darkness_adaptivity: bool = True  # adapt the peak threshold to dark images (night)
    default_focal_factor: float = 1.2  # unknown intrinsics: SIMPLE_RADIAL, f = factor * max(w, h)

    def validate(self) -> None:
        if self.max_num_features < 1:
            raise ValueError("max_num_features must be >= 1")
        if self.default_focal_factor <= 0:
            raise ValueError("default_focal_factor must be > 0")

    def options(self) -> pycolmap.FeatureExtractionOptions:
        opts = pycolmap.FeatureExtractionOptions()
        opts.num_threads = 1
        sift = opts.sift
        sift.max_num_features = self.max_num_features
        sift.peak_threshold = self.peak_threshold
        sift.edge_threshold = self.edge_threshold
        sift.first_octave = self.first_octave
        sift.domain_size_pooling = self.domain_size_pooling
        sift.darkness_adaptivity = self.darkness_adaptivity
        return opts


@dataclass
class MatchingConfig:
    """Which image pairs are matched, and the matcher / verification settings."""

    exhaustive_max_images: int = 40  # a sequence up to this size is matched exhaustively
    sequential_overlap: int = 10  # else: each image with its next `overlap` images
    cross_neighbors: int = 5  # with known poses/priors: nearest images of the other sequence
    cross_max_angle: float = 45.0  # degrees between viewing directions (posed images only)
    cross_max_pairs: int = 600  # without positions: exhaustive, subsampled to this many pairs
    localize_max_pairs: int = 40  # pairs per image registered one by one (absolute pose)
    max_ratio: float = 0.8  # Lowe's ratio test
    max_distance: float = 0.7  # max descriptor distance (normalised)
    cross_check: bool = True  # keep mutual nearest neighbours only
    min_num_inliers: int = 15  # per verified pair
    max_error: float = 4.0  # pixels, two-view RANSAC
    num_threads: int = -1  # -1 = all cores

    def validate(self) -> None:
        if self.sequential_overlap < 1 or self.cross_neighbors < 1:
            raise ValueError("sequential_overlap and cross_neighbors must be >= 1")
        if not 0 < self.cross_max_angle <= 180:
            raise ValueError("cross_max_angle must be in (0, 180]")


@dataclass
class FeatureIndex:
    """What the database holds for a manifest: ids and skipped images."""

    db_path: Path
    image_ids: dict[str, int]  # manifest image -> database image id (readable images only)
    camera_ids: dict[str, int]  # manifest camera id -> database camera id
    skipped: dict[str, str] = field(default_factory=dict)  # manifest image -> reason

    def names(self, records: Iterable[ImageRecord]) -> list[str]:
        """Manifest image strings of `records` that have features."""
        return [r.image for r in records if r.image in self.image_ids]


def image_root(manifest: Manifest) -> Path:
    """Folder that, joined with a manifest `image` string, gives the image file."""
    return Path(manifest.root)


def extract(manifest: Manifest, work_dir: Path, cfg: FeatureConfig) -> FeatureIndex:
    """Fill `work_dir/database.db` with cameras, images and SIFT features (skips what is there).

    Unreadable images and images whose mask cannot be used are recorded in the returned
    index (and `work_dir/features.json`) with their reason; the build goes on without them.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    db_path, done_path = work_dir / "database.db", work_dir / "features.json"
    camera_ids = {cam: i + 1 for i, cam in enumerate(dict.fromkeys(r.camera for r in manifest.images))}
    wanted = {r.image: i + 1 for i, r in enumerate(manifest.images)}
    if done_path.exists():
        state = json.loads(done_path.read_text())
        if state.get("manifest") == manifest.checksum:
            return FeatureIndex(db_path, state["image_ids"], camera_ids, state["skipped"])
    skipped: dict[str, str] = {}
    extractor = pycolmap.FeatureExtractor.create(cfg.options(), pycolmap.Device.cpu)
    db = pycolmap.Database.open(db_path)
    try:
        _check_existing(db, wanted, db_path)
        for rec in tqdm(manifest.images, desc="features", unit="img", leave=False):
            image_id = wanted[rec.image]
            if db.exists_image(image_id) and db.exists_keypoints(image_id):
                continue
            reason = _extract_one(db, extractor, rec, image_id, camera_ids[rec.camera], cfg)
            if reason:
                skipped[rec.image] = reason
    finally:
        db.close()
    image_ids = {name: i for name, i in wanted.items() if name not in skipped}
    write_json(done_path, {"manifest": manifest.checksum, "image_ids": image_ids, "skipped": skipped})
    return FeatureIndex(db_path, image_ids, camera_ids, skipped)


def _check_existing(db: pycolmap.Database, wanted: dict[str, int], db_path: Path) -> None:
    for image in db.read_all_images():
        if wanted.get(image.name) != image.image_id:
            raise FeatureError(
                f"{db_path} was made for another manifest (image {image.name!r} has id {image.image_id}); "
                "use a fresh build folder"
            )


def _extract_one(db, extractor, rec: ImageRecord, image_id: int, camera_id: int, cfg: FeatureConfig) -> str | None:
    """Extract and store the features of one image; return a reason when it is skipped."""
    gray = cv2.imread(str(rec.path), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        return f"unreadable image file {rec.path}"
    height, width = gray.shape
    if not db.exists_camera(camera_id):
        db.write_camera(_make_camera(rec, camera_id, width, height, cfg), use_camera_id=True)
        rig = pycolmap.Rig(rig_id=camera_id)
        rig.add_ref_sensor(pycolmap.sensor_t(pycolmap.SensorType.CAMERA, camera_id))
        db.write_rig(rig, use_rig_id=True)
    camera = db.read_camera(camera_id)
    if (camera.width, camera.height) != (width, height):
        return f"image is {width}x{height} but camera {rec.camera!r} is {camera.width}x{camera.height}"
    keep = None
    if rec.mask is not None:
        mask = cv2.imread(str(rec.mask), cv2.IMREAD_GRAYSCALE)
        if mask is None or mask.shape != gray.shape:
            return f"mask {rec.mask} is unreadable or not {width}x{height}"
        keep = mask == 0
    keypoints, descriptors = extractor.extract(pycolmap.Bitmap.from_array(np.ascontiguousarray(gray)))
    kps = pycolmap.keypoints_to_matrix(keypoints)
    desc = np.asarray(descriptors.data)
    if keep is not None:
        ij = np.clip(np.rint(kps[:, [1, 0]] - 0.5).astype(int), 0, [height - 1, width - 1])
        ok = keep[ij[:, 0], ij[:, 1]]
        kps, desc = kps[ok], desc[ok]
    with pycolmap.DatabaseTransaction(db):
        if not db.exists_image(image_id):
            image = pycolmap.Image(name=rec.image, camera_id=camera_id, image_id=image_id)
            db.write_image(image, use_image_id=True)
            frame = pycolmap.Frame(frame_id=image_id, rig_id=camera_id)
            frame.add_data_id(image.data_id)
            db.write_frame(frame, use_frame_id=True)
        db.write_keypoints(image_id, np.ascontiguousarray(kps, dtype=np.float32))
        db.write_descriptors(image_id, pycolmap.FeatureDescriptors(descriptors.type, np.ascontiguousarray(desc)))
    return None


def _make_camera(rec: ImageRecord, camera_id: int, width: int, height: int, cfg: FeatureConfig) -> pycolmap.Camera:
    if rec.camera_model is not None and rec.camera_params is not None:
        camera = pycolmap.Camera(model=rec.camera_model, width=width, height=height, params=list(rec.camera_params))
        # Known intrinsics: calibrated two-view verification, and COLMAP's mapper does not re-estimate the focal.
        camera.has_prior_focal_length = True
    else:
        focal = cfg.default_focal_factor * max(width, height)
        camera = pycolmap.Camera.create_from_model_name(camera_id, "SIMPLE_RADIAL", focal, width, height)
    camera.camera_id = camera_id
    return camera


def sequence_pairs(names: Sequence[str], cfg: MatchingConfig) -> list[tuple[str, str]]:
    """Pairs within one sequence (names in capture order): exhaustive when small, else sequential."""
    n = len(names)
    window = n if n <= cfg.exhaustive_max_images else cfg.sequential_overlap
    i, j = np.triu_indices(n, k=1)
    keep = j - i <= window
    return [(names[a], names[b]) for a, b in zip(i[keep], j[keep])]


def spatial_pairs(
    names0: Sequence[str], centers0: np.ndarray, dirs0: np.ndarray | None,
    names1: Sequence[str], centers1: np.ndarray, dirs1: np.ndarray | None, cfg: MatchingConfig,
) -> list[tuple[str, str]]:
    """Each image of set 0 with its nearest images of set 1 that look the same way (when known)."""
    if not len(names0) or not len(names1):
        return []
    dist = np.linalg.norm(centers0[:, None] - centers1[None], axis=-1)
    if dirs0 is not None and dirs1 is not None:
        dist[dirs0 @ dirs1.T < np.cos(np.radians(cfg.cross_max_angle))] = np.inf
    k = min(cfg.cross_neighbors, len(names1))
    nearest = np.argsort(dist, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(names0)), k)
    cols = nearest.ravel()
    ok = np.isfinite(dist[rows, cols])
    return [(names0[a], names1[b]) for a, b in zip(rows[ok], cols[ok])]


def capped_pairs(names0: Sequence[str], names1: Sequence[str], max_pairs: int) -> list[tuple[str, str]]:
    """All pairs between two sets, both evenly subsampled so that at most `max_pairs` remain."""
    n0, n1 = len(names0), len(names1)
    if not n0 or not n1:
        return []
    ratio = min(1.0, np.sqrt(max_pairs / (n0 * n1)))
    k0, k1 = max(1, int(n0 * ratio)), max(1, int(n1 * ratio))
    k0 = min(n0, max(k0, max_pairs // k1))
    pick0 = np.unique(np.linspace(0, n0 - 1, k0).round().astype(int))
    pick1 = np.unique(np.linspace(0, n1 - 1, k1).round().astype(int))
    return [(names0[a], names1[b]) for a in pick0 for b in pick1]


def match(index: FeatureIndex, pairs: Iterable[tuple[str, str]], work_dir: Path, cfg: MatchingConfig, tag: str) -> int:
    """Match and verify `pairs` (pairs already in the database are skipped); return the number of new pairs."""
    seen: set[tuple[str, str]] = set()
    todo = []
    db = pycolmap.Database.open(index.db_path)
    try:
        for a, b in pairs:
            key = (a, b) if a < b else (b, a)
            if a == b or key in seen or a not in index.image_ids or b not in index.image_ids:
                continue
            seen.add(key)
            if not db.exists_matches(index.image_ids[a], index.image_ids[b]):
                todo.append(key)
    finally:
        db.close()
    if not todo:
        return 0
    with atomic_path(work_dir / f"pairs-{tag}.txt") as tmp:
        tmp.write_text("".join(f"{a} {b}\n" for a, b in todo))
    pairing = pycolmap.ImportedPairingOptions()
    pairing.match_list_path = str(work_dir / f"pairs-{tag}.txt")
    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = cfg.num_threads
    opts.sift.max_ratio, opts.sift.max_distance, opts.sift.cross_check = cfg.max_ratio, cfg.max_distance, cfg.cross_check
    verify = pycolmap.TwoViewGeometryOptions()
    verify.min_num_inliers = cfg.min_num_inliers
    verify.ransac.max_error = cfg.max_error
    verify.ransac.random_seed = 0
    pycolmap.match_image_pairs(index.db_path, opts, pairing, verify, pycolmap.Device.cpu)
    return len(todo)


def verified_matches(index: FeatureIndex) -> dict[tuple[int, int], np.ndarray]:
    """(image_id0, image_id1) -> (M, 2) inlier keypoint indices, for every verified pair."""
    db = pycolmap.Database.open(index.db_path)
    try:
        pair_ids, geoms = db.read_two_view_geometries()
    finally:
        db.close()
    out = {}
    for pair_id, geom in zip(pair_ids, geoms):
        inliers = np.asarray(geom.inlier_matches)
        if len(inliers):
            out[tuple(int(i) for i in pycolmap.pair_id_to_image_pair(pair_id))] = inliers.reshape(-1, 2)
    return out


def read_keypoints(index: FeatureIndex, image_id: int) -> np.ndarray:
    """(N, 2) keypoints of one image, COLMAP pixel convention."""
    db = pycolmap.Database.open(index.db_path)
    try:
        return np.asarray(db.read_keypoints(image_id))[:, :2].astype(np.float64)
    finally:
        db.close()


def read_camera(index: FeatureIndex, camera_id: int) -> pycolmap.Camera:
    """The database's camera (given or estimated intrinsics)."""
    db = pycolmap.Database.open(index.db_path)
    try:
        return db.read_camera(camera_id)
    finally:
        db.close()
