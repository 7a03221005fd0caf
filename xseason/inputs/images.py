"""Pre-flight checks of a build's images and output folders, before any SfM.

`preflight_images` decodes every image and mask of a manifest once (OpenCV, grey, as the feature
stage reads them) and names *every* bad file together in `ImageChecks.problems`: missing, empty or
undecodable files (text renamed `.jpg`, truncated PNGs and JPEGs: decoded from memory, OpenCV
refuses a truncated JPEG that `cv2.imread` would grey-fill), sides under `min_side`, more pixels
than `max_pixels`, a manifest principal point outside the image, a size other than that of the
other images of its camera, and masks that are unreadable, of another size, or exclude every pixel.

`check_writable` and `check_free_space` check where a build writes, `estimate_build_bytes` is the
rule of thumb for how much it writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from xseason.core.errors import OutputError
from xseason.inputs.manifest import ImageRecord, Manifest

log = logging.getLogger(__name__)

MIN_SIDE = 32  # px: shorter sides give SIFT next to nothing
MAX_PIXELS = 1 << 28  # 268 Mpx: the grey image alone is 268 MB (OpenCV's own decode limit is 1 << 30)

# Disk rule of thumb (`estimate_build_bytes`), measured on `xseason synth --preset tiny` (40 images of
# 320x240, default config): 25,466 keypoints (one per 121 px), work folder 5.81 MB (database 4.15 MB:
# 16 B keypoint + 128 B descriptor + matches; models 1.63 MB: two copies), dataset 0.05 MB; i.e.
# 230 bytes per keypoint in all.
PIXELS_PER_KEYPOINT = 100  # SIFT with first_octave=-1, peak_threshold=0.002; capped by max_num_features
BYTES_PER_KEYPOINT = 256  # database + models + dataset
MARGIN_BYTES = 64 << 20  # logs, pair lists, temporary files of atomic writes


@dataclass
class ImageChecks:
    """What `preflight_images` found."""

    problems: dict[str, str]  # manifest image -> why it cannot be used, in manifest order
    sizes: dict[str, tuple[int, int]]  # manifest image -> (width, height), every decodable image
    camera_sizes: dict[str, tuple[int, int]]  # camera id -> the (width, height) its good images have

    def message(self) -> str:
        """One text naming every bad image with its reason ('' when every image passes)."""
        if not self.problems:
            return ""
        lines = [f"{name}: {reason}" for name, reason in self.problems.items()]
        return f"{len(lines)} image(s) fail the pre-flight checks:\n  " + "\n  ".join(lines)


def preflight_images(
    manifest: Manifest, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE
) -> ImageChecks:
    """Check every image (and mask) of `manifest`; never stops at the first bad one."""
    start = time.perf_counter()
    problems: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for rec in manifest.images:
        size, problem = _check_image(rec, max_pixels, min_side)
        if size is not None:
            sizes[rec.image] = size
        if problem is not None:
            problems[rec.image] = problem
    camera_sizes = _camera_sizes(manifest.images, sizes, problems)
    problems = {r.image: problems[r.image] for r in manifest.images if r.image in problems}
    log.info(
        "preflight: %d images checked in %.2f s, %d bad",
        len(manifest.images),
        time.perf_counter() - start,
        len(problems),
    )
    return ImageChecks(problems, sizes, camera_sizes)


def _check_image(
    rec: ImageRecord, max_pixels: int, min_side: int
) -> tuple[tuple[int, int] | None, str | None]:
    """(width, height) when the image decodes, and its first problem (None when it has none)."""
    gray, problem = _read_gray(rec.path)
    if gray is None:
        return None, problem
    height, width = gray.shape
    if problem is None and min(width, height) < min_side:
        problem = f"image is {width}x{height}: a side under {min_side} px"
    if problem is None and width * height > max_pixels:
        problem = (
            f"image is {width}x{height} ({width * height / 1e6:.1f} Mpx): over {max_pixels / 1e6:.1f} Mpx"
        )
    if problem is None and rec.mask is not None:
        mask, mask_problem = _read_gray(rec.mask)
        if mask is None:
            problem = f"mask {rec.mask}: {mask_problem}"
        elif mask.shape != gray.shape:
            problem = f"mask {rec.mask} is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}"
        elif mask.all():
            problem = f"mask {rec.mask} excludes the whole image (no pixel is 0)"
    return (width, height), problem


def _read_gray(path: Path) -> tuple[np.ndarray | None, str | None]:
    """`path` decoded with OpenCV, grey (None when it cannot be), and what is wrong with it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    if not data:
        return None, f"empty file (0 bytes): {path}"
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None or gray.size == 0:
        what = f"{len(data)} bytes, starting {data[:8]!r}"
        return None, f"OpenCV cannot decode it: truncated, or not an image ({what}): {path}"
    return gray, None


def _camera_sizes(
    records: Sequence[ImageRecord], sizes: dict[str, tuple[int, int]], problems: dict[str, str]
) -> dict[str, tuple[int, int]]:
    """Each camera's size, and its images of another size added to `problems` (first reasons kept).

    A camera's size is the most common size of its decodable images among those that put the
    manifest's principal point (when given) inside the image; ties go to the earliest image."""
    recs = [r for r in records if r.image in sizes]
    if not recs:
        return {}
    table = pd.DataFrame(
        [(r.camera, *sizes[r.image]) for r in recs], columns=["camera", "width", "height"]
    ).astype({"width": np.int64, "height": np.int64})
    centre = {}  # camera id -> principal point (OpenCV convention) from the manifest's intrinsics
    for r in recs:
        if r.camera not in centre and r.camera_params is not None:
            centre[r.camera] = r.camera_for(*sizes[r.image]).calibration_matrix()[:2, 2]
    pp = np.array([centre.get(r.camera, (np.nan, np.nan)) for r in recs], dtype=np.float64).reshape(-1, 2)
    extent = table[["width", "height"]].to_numpy() - 0.5  # the last pixel's centre
    inside = np.isnan(pp[:, 0]) | ((pp >= -0.5) & (pp <= extent)).all(axis=1)
    votes = table[inside].groupby(["camera", "width", "height"], sort=False).size().reset_index(name="n")
    chosen = votes.sort_values("n", ascending=False, kind="stable").drop_duplicates("camera")
    camera_sizes = {
        cam: (int(w), int(h)) for cam, w, h in chosen[["camera", "width", "height"]].itertuples(False)
    }
    count = dict(zip(chosen["camera"], chosen["n"]))
    other = np.array([camera_sizes.get(r.camera) != sizes[r.image] for r in recs])
    for k in np.flatnonzero(~inside | other):
        rec, (w, h) = recs[k], sizes[recs[k].image]
        if not inside[k]:
            cx, cy = pp[k] + 0.5
            reason = (
                f"camera {rec.camera!r}'s principal point ({cx:g}, {cy:g}) lies outside this {w}x{h} image: "
                "the manifest's intrinsics are for another image size"
            )
        else:
            cw, ch = camera_sizes[rec.camera]
            n = count[rec.camera]
            reason = f"image is {w}x{h}, while {n} other image(s) of camera {rec.camera!r} are {cw}x{ch}"
        problems.setdefault(rec.image, reason)
    return camera_sizes


def _existing_folder(folder: str | os.PathLike) -> Path:
    """`folder`, or its nearest existing parent (an output folder is made later); it must be a folder."""
    folder = Path(folder).absolute()
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise OutputError(f"{folder}: {candidate} is not a folder")
            return candidate
    raise OutputError(f"{folder}: no part of this path exists")  # pragma: no cover - '/' exists


def check_writable(folder: str | os.PathLike) -> None:
    """Raise `OutputError` unless a file can be written in `folder` (or, while it does not exist, in
    its nearest existing parent, where it will be made): a temporary file is made and removed."""
    base = _existing_folder(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".xseason-write-check-", dir=base)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write in {base}: {exc.strerror}") from None


def check_free_space(folder: str | os.PathLike, need_bytes: int) -> None:
    """Raise `OutputError` when the disk of `folder` (or of its nearest existing parent) has less than
    `need_bytes` free."""
    base = _existing_folder(folder)
    free = shutil.disk_usage(base).free
    if free < need_bytes:
        raise OutputError(
            f"{folder}: needs about {need_bytes / 2**30:.2f} GiB, but the disk of {base} has "
            f"{free / 2**30:.2f} GiB free"
        )


def estimate_build_bytes(pixels: Sequence[int] | np.ndarray, max_num_features: int) -> int:
    """Rough bytes a build writes (work folder + dataset) for images of `pixels` pixels each.

    Rule of thumb (module constants): one keypoint per `PIXELS_PER_KEYPOINT` pixels, at most
    `max_num_features` per image, `BYTES_PER_KEYPOINT` each, plus `MARGIN_BYTES`. Its keypoint term
    is 7.9 MB for the tiny build measured at 5.9 MB; that build had no densified matches."""
    keypoints = np.minimum(np.asarray(pixels, dtype=np.float64) / PIXELS_PER_KEYPOINT, max_num_features)
    return int(keypoints.sum() * BYTES_PER_KEYPOINT) + MARGIN_BYTES
