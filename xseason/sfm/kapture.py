"""kapture's keypoint and match files as the SfM's feature back-end (instead of SIFT and its matcher).

kapture (format 1.1) keeps, per keypoint type, ``reconstruction/keypoints/<type>/keypoints.txt``
(one line ``<type>, <dtype>, <dsize>``) and per image a raw binary ``<image name>.kpt`` of
(K, dsize) values whose first two are x, y in COLMAP's pixels (the top-left pixel's corner at
(0, 0): ours + 0.5); and ``reconstruction/matches/<type>/<name0>.overlapping/<name1>.matches``,
raw float64 (M, 3) rows (index in name0, index in name1, score) with name0 < name1. `features.
kapture_keypoints` names the keypoint folder, `matching.kapture_matches` the match folder; image
names are the manifest's (kapture's names relative to ``sensors/records_data``). Like hloc's files
(sfm/hloc.py): every keypoint is kept, every pair is verified by COLMAP's two-view RANSAC here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xseason.core.errors import XSeasonError


class KaptureError(XSeasonError):
    """A kapture keypoint or match file is missing, unreadable or of the wrong shape."""


def _folder(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise KaptureError(f"{path}: no such kapture {what} folder")
    return path


def _read_type(folder: Path) -> tuple[np.dtype, int]:
    """The dtype and values per keypoint of `folder`'s keypoints.txt."""
    description = folder / "keypoints.txt"
    try:
        lines = [line.strip() for line in description.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise KaptureError(f"{description}: cannot read the keypoint type: {exc}") from None
    fields = next((line.split(",") for line in lines if line and not line.startswith("#")), None)
    try:
        dtype, dsize = np.dtype(fields[1].strip()), int(fields[2])
    except (TypeError, IndexError, ValueError) as exc:
        raise KaptureError(f"{description}: expected a line '<type>, <dtype>, <dsize>' ({exc})") from None
    if dsize < 2:
        raise KaptureError(f"{description}: dsize {dsize}: keypoints need at least x, y")
    return dtype, dsize


class KaptureKeypoints:
    """Keypoints of images from a kapture ``reconstruction/keypoints/<type>`` folder (module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.path = _folder(path, "keypoints")
        self._dtype, self._dsize = _read_type(self.path)

    def keypoints(self, name: str) -> np.ndarray | None:
        """(N, 2) float32 keypoints of image `name` in our pixel convention, None when it has none."""
        file = self.path / f"{name}.kpt"
        if not file.is_file():
            return None
        raw = np.fromfile(file, dtype=self._dtype)
        if raw.size % self._dsize:
            raise KaptureError(f"{file}: {raw.size} values are not whole keypoints of {self._dsize}")
        return (raw.reshape(-1, self._dsize)[:, :2].astype(np.float64) - 0.5).astype(np.float32)

    def close(self) -> None:
        """Nothing to release (files are read whole); the same interface as `HlocFeatures`."""


class KaptureMatches:
    """Matches of image pairs from a kapture ``reconstruction/matches/<type>`` folder (module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.path = _folder(path, "matches")

    def matches(self, name0: str, name1: str) -> np.ndarray | None:
        """(M, 2) keypoint indices (in name0, in name1) of the pair, None when the folder lacks it."""
        first, second = sorted((name0, name1))
        file = self.path / f"{first}.overlapping" / f"{second}.matches"
        if not file.is_file():
            return None
        raw = np.fromfile(file, dtype=np.float64)
        if raw.size % 3:
            raise KaptureError(f"{file}: {raw.size} values are not rows of (index0, index1, score)")
        pairs = raw.reshape(-1, 3)[:, :2].astype(np.int64)
        return pairs if first == name0 else pairs[:, ::-1]

    def close(self) -> None:
        """Nothing to release; the same interface as `HlocMatches`."""


__all__ = ["KaptureError", "KaptureKeypoints", "KaptureMatches"]
