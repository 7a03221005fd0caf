"""Exact ground truth of a generated scene (`xseason synth`): depth, labels, moving masks, poses,
true correspondences and true overlap between any two images.

A scene folder holds `truth.json` (see `xseason/synth/writer.py`): per image its camera, its
world-to-camera pose and the paths of a float32 z-depth map (0 = sky), a uint8 label map and
a moving-object mask, all at pixel centres (contract convention: top-left centre = (0, 0)).

Sub-pixel depth: for a pinhole camera the inverse depth of a plane is an affine function of
the pixel coordinates, so bilinear interpolation of INVERSE depth is exact on a plane. A
sub-pixel query is answered only where its neighbourhood is one plane: the 2 x 2 neighbours
have one label, positive depth and a vanishing bilinear twist, and (away from the border)
the surrounding 4 x 4 block has vanishing second differences along both axes, which rejects
creases, edges and leaves. Queries at integer pixels use that pixel's depth directly.
Elsewhere the depth is invalid (NaN) and the point counts as not visible.

Fallback (``fallback=True``, for checks that must judge every match, such as the share of
matches off by more than 5 px): where the exact depth is undefined, the depth of the nearest
pixel (the pixel the query falls in, on the surface it shows) is used along the query's own
ray, and the visibility test in the other image accepts any depth of the 2 x 2 pixels around
the projection. Its error is a fraction of a pixel of surface: good to well under 5 px, not
to the 0.01 px of the exact answer.

Failure classes (`classify_matches`): a match (p0 in a, p1 in b) is wrong when p0's true position
in b (fallback depth) is more than `off_px` from p1 or not visible there. Each wrong match gets
the first class of FAILURE_CLASSES that holds in either direction (p0 into b, p1 into a): `sky`
(no surface at the pixel), `behind` (behind the other camera), `outside` (projects outside the
other image), `hidden_moving` (on a moving object, or the other image sees one there, not behind
the point), `changed_vegetation` (on vegetation, or the other image sees vegetation in front of
it, and the foliage differs between the two conditions), `hidden_static` (the other image sees
a surface clearly in front of it), else `misplaced` (visible but off, or no cause found: a few
depth edges where the visibility test is undecided).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from xseason.core.errors import DatasetFormatError
from xseason.core.geometry import Camera, Pose, in_image, project_points
from xseason.synth.conditions import CONDITIONS
from xseason.synth.world import CLASS_NAMES, MOVING_CLASSES, VEGETATION

__all__ = [
    "CLASS_NAMES",
    "MOVING_CLASSES",
    "ImageTruth",
    "SceneTruth",
    "load_truth",
    "sample_depth",
    "world_points",
    "true_matches",
    "true_overlap",
    "exact_depth_known",
    "FAILURE_CLASSES",
    "MATCH_CLASSES",
    "classify_matches",
    "vegetation_changed",
]

TRUTH_FILE = "truth.json"
_PLANE_TOL = 1e-4  # relative tolerance of the planarity tests on inverse depth
FAILURE_CLASSES: tuple[str, ...] = (
    "sky",
    "behind",
    "outside",
    "hidden_moving",
    "changed_vegetation",
    "hidden_static",
    "misplaced",
)
MATCH_CLASSES: tuple[str, ...] = ("correct", *FAILURE_CLASSES)  # the codes of classify_matches index this


@dataclass(frozen=True)
class ImageTruth:
    name: str
    sequence: str
    condition: str
    camera: Camera
    pose: Pose


class SceneTruth:
    """Ground truth of one generated scene; per-image maps are loaded on demand (LRU cache)."""

    def __init__(
        self, root: Path, images: dict[str, ImageTruth], files: dict[str, dict[str, str]], cache: int = 32
    ):
        self.root = root
        self.images = images
        self._files = files
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size = cache
        self._by_length = sorted(images, key=len, reverse=True)

    def resolve(self, name: str) -> str:
        """The scene's name of image `name`, which may carry a path prefix (as the names of a
        manifest written beside the scene folder do, e.g. `data/demo/images/...`)."""
        if name in self.images:
            return name
        hit = next((k for k in self._by_length if name.endswith("/" + k)), None)
        if hit is None:
            raise DatasetFormatError(f"{name!r} is not an image of the scene at {self.root}")
        return hit

    def image(self, name: str) -> ImageTruth:
        """Camera, pose, sequence and condition of image `name` (see `resolve`)."""
        return self.images[self.resolve(name)]

    def _load(self, name: str, what: str) -> np.ndarray:
        name = self.resolve(name)
        key = (name, what)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.root / self._files[name][what]
        if not path.is_file():
            raise DatasetFormatError(f"{path}: missing ground-truth file ({what} of {name})")
        arr = np.load(path) if what == "depth" else cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        self._cache[key] = arr
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return arr

    def depth(self, name: str) -> np.ndarray:
        """float32 (H, W) z-depth in metres at pixel centres; 0 where sky / no hit."""
        return self._load(name, "depth")

    def labels(self, name: str) -> np.ndarray:
        """uint8 (H, W) class ids (CLASS_NAMES)."""
        return self._load(name, "label")

    def moving(self, name: str) -> np.ndarray:
        """bool (H, W): pixels on moving objects (MOVING_CLASSES)."""
        return self._load(name, "mask") > 0


def load_truth(scene_dir: str | Path) -> SceneTruth:
    """Open the ground truth of a scene folder written by `xseason synth`."""
    root = Path(scene_dir)
    path = root / TRUTH_FILE
    if not path.is_file():
        raise DatasetFormatError(f"{path}: not found; is {root} a scene written by 'xseason synth'?")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != "xseason-synth-truth" or data.get("version") != 1:
            raise DatasetFormatError(
                f"{path}: unsupported format {data.get('format')!r} version {data.get('version')!r}"
            )
        images, files = {}, {}
        for name, rec in data["images"].items():
            cam = rec["camera"]
            images[name] = ImageTruth(
                name,
                rec["sequence"],
                rec["condition"],
                Camera(
                    cam["model"],
                    int(cam["width"]),
                    int(cam["height"]),
                    tuple(float(p) for p in cam["params"]),
                ),
                Pose.from_qt(rec["qvec"], rec["tvec"]),
            )
            files[name] = {k: rec[k] for k in ("depth", "label", "mask")}
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetFormatError(f"{path}: malformed ground truth ({type(exc).__name__}: {exc})") from None
    return SceneTruth(root, images, files)


def sample_depth(
    depth: np.ndarray, labels: np.ndarray, pixels: np.ndarray, fallback: bool = False
) -> np.ndarray:
    """z-depth at (N, 2) sub-pixel positions: exact on planar neighbourhoods, NaN elsewhere;
    with `fallback`, the nearest pixel's depth where the exact one is undefined (module doc)."""
    out = _exact_depth(depth, labels, pixels)
    if fallback:
        miss = np.flatnonzero(np.isnan(out))
        near = _nearest_depth(depth, np.asarray(pixels, np.float64)[miss])
        out[miss] = np.where(near > 0, near, np.nan)
    return out


def _nearest_depth(depth: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Depth of the pixel each (N, 2) position falls in; 0 outside the image or for NaN positions."""
    return _pixel_values(depth, pixels, 0).astype(np.float64)


def _pixel_values(image: np.ndarray, pixels: np.ndarray, fill) -> np.ndarray:
    """Value of the pixel each (N, 2) position falls in; `fill` outside the image or for NaN positions."""
    h, w = image.shape
    pixels = np.asarray(pixels, np.float64)
    ok = np.all(np.isfinite(pixels), axis=1)
    ij = np.rint(np.where(ok[:, None], pixels, -10.0)).astype(np.int64)
    ok &= (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
    out = np.full(len(pixels), fill, dtype=image.dtype)
    out[ok] = image[ij[ok, 1], ij[ok, 0]]
    return out


def _depth_range(depth: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max positive depth of the 2 x 2 pixels around each (N, 2) position (NaN if none)."""
    h, w = depth.shape
    x0, y0 = np.floor(pixels[:, 0]).astype(np.int64), np.floor(pixels[:, 1]).astype(np.int64)
    xs = np.clip(np.stack([x0, x0 + 1, x0, x0 + 1], 1), 0, w - 1)
    ys = np.clip(np.stack([y0, y0, y0 + 1, y0 + 1], 1), 0, h - 1)
    d = depth[ys, xs].astype(np.float64)
    d = np.where(d > 0, d, np.nan)
    return np.fmin.reduce(d, axis=1), np.fmax.reduce(d, axis=1)


def exact_depth_known(truth: SceneTruth, name: str, pixels: np.ndarray) -> np.ndarray:
    """(N,) bool: whether the exact sub-pixel depth is defined at these pixels of image `name`."""
    return np.isfinite(_exact_depth(truth.depth(name), truth.labels(name), pixels))


def _exact_depth(depth: np.ndarray, labels: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    px = np.asarray(pixels, dtype=np.float64)
    out = np.full(len(px), np.nan)
    finite = np.all(np.isfinite(px), axis=1)
    x, y = np.where(finite, px[:, 0], -10.0), np.where(finite, px[:, 1], -10.0)
    # Integer queries: the pixel's own depth.
    xi, yi = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    exact = (
        finite
        & (np.abs(x - xi) < 1e-9)
        & (np.abs(y - yi) < 1e-9)
        & (xi >= 0)
        & (xi < w)
        & (yi >= 0)
        & (yi < h)
    )
    d = depth[yi[exact], xi[exact]].astype(np.float64)
    out[np.flatnonzero(exact)[d > 0]] = d[d > 0]
    # Sub-pixel queries: bilinear inverse depth on one plane.
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    sub = finite & ~exact & (x0 >= 0) & (x0 < w - 1) & (y0 >= 0) & (y0 < h - 1)
    idx = np.flatnonzero(sub)
    if len(idx) == 0:
        return out
    x0, y0, fx, fy = x0[idx], y0[idx], (x - np.floor(x))[idx], (y - np.floor(y))[idx]
    d4 = np.stack([depth[y0, x0], depth[y0, x0 + 1], depth[y0 + 1, x0], depth[y0 + 1, x0 + 1]], 1).astype(
        np.float64
    )
    l4 = np.stack([labels[y0, x0], labels[y0, x0 + 1], labels[y0 + 1, x0], labels[y0 + 1, x0 + 1]], 1)
    ok = np.all(d4 > 0, axis=1) & np.all(l4 == l4[:, :1], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iv = 1.0 / d4
        scale = iv.mean(axis=1)
        ok &= np.abs(iv[:, 0] + iv[:, 3] - iv[:, 1] - iv[:, 2]) <= _PLANE_TOL * scale
        ok &= _block_is_planar(depth, labels, x0, y0, scale)
        ivq = (iv[:, 0] * (1 - fx) + iv[:, 1] * fx) * (1 - fy) + (iv[:, 2] * (1 - fx) + iv[:, 3] * fx) * fy
    out[idx[ok]] = 1.0 / ivq[ok]
    return out


def _block_is_planar(
    depth: np.ndarray, labels: np.ndarray, x0: np.ndarray, y0: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """True where the 4 x 4 block around the 2 x 2 cell is one plane (True near the border:
    2 x 2 test only)."""
    h, w = depth.shape
    inner = (x0 >= 1) & (x0 < w - 2) & (y0 >= 1) & (y0 < h - 2)
    ok = np.ones(len(x0), bool)
    if not inner.any():
        return ok
    xs = x0[inner, None, None] + np.arange(-1, 3)[None, None, :]
    ys = y0[inner, None, None] + np.arange(-1, 3)[None, :, None]
    d = depth[ys, xs].astype(np.float64)  # (M, 4, 4)
    lab = labels[ys, xs]
    good = np.all(d > 0, axis=(1, 2)) & np.all(lab == lab[:, 1:2, 1:2], axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        iv = 1.0 / d
        dxx = np.abs(iv[:, :, 2:] - 2 * iv[:, :, 1:-1] + iv[:, :, :-2]).max(axis=(1, 2))
        dyy = np.abs(iv[:, 2:, :] - 2 * iv[:, 1:-1, :] + iv[:, :-2, :]).max(axis=(1, 2))
    ok[inner] = good & (np.maximum(dxx, dyy) <= _PLANE_TOL * scale[inner])
    return ok


def world_points(truth: SceneTruth, name: str, pixels: np.ndarray, fallback: bool = False) -> np.ndarray:
    """(N, 3) world points seen at (N, 2) pixels of image `name`; NaN where the depth is unknown
    (with `fallback`: only off the image or on sky)."""
    img = truth.image(name)
    z = sample_depth(truth.depth(name), truth.labels(name), pixels, fallback)
    cam_pts = img.camera.unproject(np.nan_to_num(np.asarray(pixels, float))) * z[:, None]
    return img.pose.inverse().transform(cam_pts)


def true_matches(
    truth: SceneTruth,
    name_a: str,
    name_b: str,
    pixels_a: np.ndarray,
    occlusion_tol: float = 0.01,
    fallback: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """True positions in image b of (N, 2) pixels of image a, and whether each is visible in b.

    Visible = known depth in a, projects in front of b inside its frame, and agrees with b's
    depth there within `occlusion_tol` (relative): occluded points and points on geometry that
    differs between the two images (cars, leaves) come out not visible. Between different
    sequences, points on moving objects (in a, or where they land in b) are never visible:
    they are different objects even where their surfaces happen to coincide. Pixels without
    a known depth in a get NaN positions. With `fallback`, undefined exact depths are replaced
    as the module doc says, so that only sky and off-image pixels stay unknown.
    """
    pb, _, _, visible = _transfer(truth, name_a, name_b, pixels_a, occlusion_tol, fallback)
    return pb, visible


def _transfer(
    truth: SceneTruth, name_a: str, name_b: str, pixels_a: np.ndarray, occlusion_tol: float, fallback: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`true_matches`, plus the points' z-depth in b (NaN: no surface in a) and whether they land in b."""
    pts = world_points(truth, name_a, pixels_a, fallback)
    img_b = truth.image(name_b)
    pb, zb = project_points(img_b.camera, img_b.pose, pts)
    inside = np.all(np.isfinite(pb), axis=1) & (zb > 0) & in_image(img_b.camera, np.nan_to_num(pb, nan=-1e9))
    db = np.full(len(pb), np.nan)
    db[inside] = sample_depth(truth.depth(name_b), truth.labels(name_b), pb[inside])
    with np.errstate(invalid="ignore"):
        visible = inside & (np.abs(zb - db) <= occlusion_tol * db)
        if fallback:
            idx = np.flatnonzero(inside & np.isnan(db))
            lo, hi = _depth_range(truth.depth(name_b), pb[idx])
            visible[idx] = (zb[idx] >= lo * (1 - occlusion_tol)) & (zb[idx] <= hi * (1 + occlusion_tol))
    if truth.image(name_a).sequence != img_b.sequence:
        visible &= ~_pixel_values(truth.moving(name_a), pixels_a, False)
        idx = np.flatnonzero(visible)
        visible[idx[_pixel_values(truth.moving(name_b), pb[idx], False)]] = False
    return pb, zb, inside, visible


def vegetation_changed(truth: SceneTruth, name_a: str, name_b: str) -> bool:
    """Whether the foliage differs between the conditions of images a and b (`Condition.leaves`;
    conditions unknown to this version: whenever their names differ)."""
    ca, cb = truth.image(name_a).condition, truth.image(name_b).condition
    if ca in CONDITIONS and cb in CONDITIONS:
        return CONDITIONS[ca].leaves != CONDITIONS[cb].leaves
    return ca != cb


def classify_matches(
    truth: SceneTruth,
    name_a: str,
    name_b: str,
    p0: np.ndarray,
    p1: np.ndarray,
    off_px: float = 5.0,
    occlusion_tol: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Error (px) and class of each match p0 (image a) <-> p1 (image b), (N, 2) each (module doc).

    The error is the distance from p1 to p0's true position in b (fallback depth), inf where
    that is not visible. Codes index MATCH_CLASSES: 0 = correct (error <= off_px), else the
    first failure class that holds in either direction.
    """
    pb, _, _, visible = _transfer(truth, name_a, name_b, p0, occlusion_tol, fallback=True)
    err = np.where(visible, np.linalg.norm(np.nan_to_num(pb, nan=np.inf) - p1, axis=1), np.inf)
    wrong = np.flatnonzero(~(err <= off_px))
    code = np.zeros(len(err), np.int64)
    if len(wrong):
        code[wrong] = np.minimum(
            _failure_codes(truth, name_a, name_b, p0[wrong], occlusion_tol),
            _failure_codes(truth, name_b, name_a, p1[wrong], occlusion_tol),
        )
    return err, code


def _failure_codes(truth: SceneTruth, src: str, dst: str, pixels: np.ndarray, tol: float) -> np.ndarray:
    """Per (N, 2) pixel of image `src`: the MATCH_CLASSES code of why its point is not seen in `dst`
    ('misplaced' where it is seen, or where no cause is found)."""
    pd, zd, inside, visible = _transfer(truth, src, dst, pixels, tol, fallback=True)
    pd = np.where(inside[:, None], pd, np.nan)
    dn = _nearest_depth(truth.depth(dst), pd)
    dn[dn == 0] = np.inf  # sky in dst: nothing in front
    with np.errstate(invalid="ignore"):
        not_behind = dn < zd * (1 + tol)  # dst sees a surface at or in front of the point
        in_front = dn < zd * (1 - tol)
    moving_dst = _pixel_values(truth.moving(dst), pd, False)
    labels_dst = _pixel_values(truth.labels(dst), pd, 255)
    causes = [
        np.isnan(zd),
        zd <= 0,
        ~inside,
        _pixel_values(truth.moving(src), pixels, False) | (moving_dst & not_behind),
        vegetation_changed(truth, src, dst)
        & (
            (_pixel_values(truth.labels(src), pixels, 255) == VEGETATION)
            | ((labels_dst == VEGETATION) & not_behind)
        ),
        in_front,
    ]
    misplaced = MATCH_CLASSES.index("misplaced")
    code = np.select(causes, np.arange(1, misplaced), default=misplaced)
    code[visible] = misplaced
    return code


def true_overlap(truth: SceneTruth, name_a: str, name_b: str, stride: int = 4) -> float:
    """Share of a's pixels with known depth (on a grid of `stride`) that are visible in b."""
    cam = truth.image(name_a).camera
    v, u = np.mgrid[0 : cam.height : stride, 0 : cam.width : stride]
    px = np.stack([u.ravel(), v.ravel()], 1).astype(np.float64)
    valid = truth.depth(name_a)[v.ravel(), u.ravel()] > 0
    if not valid.any():
        return 0.0
    return float(true_matches(truth, name_a, name_b, px[valid])[1].mean())
