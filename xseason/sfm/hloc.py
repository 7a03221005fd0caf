"""hloc's feature and match files as the SfM's feature back-end (instead of SIFT and its matcher).

`features.hloc_features` (a ``features.h5``: a group per image name with ``keypoints`` (N, 2),
hloc's pixels = ours, centre of the top-left pixel at (0, 0)) gives each image's keypoints;
`matching.hloc_matches` (a ``matches.h5``: a group per pair with ``matches0``, index into the
second image's keypoints or -1 per keypoint of the first) gives the matches of every pair the
build asks for, found under either order of the two names and under hloc's current pair key
(``name0/name1`` with '/' in names replaced by '-') or its older one (``name0_name1`` likewise).
The build still verifies every pair geometrically (COLMAP's two-view RANSAC, `matching.max_error`,
`min_num_inliers`), triangulates and registers as with SIFT; matches on masked pixels are dropped.
So SuperPoint / DISK / ALIKED features with LightGlue matches (made by hloc, nothing of theirs
runs here) can tie images that SIFT cannot, e.g. night to day.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xseason.core.errors import XSeasonError


class HlocError(XSeasonError):
    """An hloc file is missing, unreadable or lacks what the build needs."""


def _open(path: str | os.PathLike, what: str):
    import h5py

    path = Path(path)
    if not path.is_file():
        raise HlocError(f"{path}: no such hloc {what} file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise HlocError(f"{path}: cannot read the hloc {what} file: {exc}") from None


class HlocFeatures:
    """Keypoints of images from an hloc features.h5 (module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = _open(path, "features")

    def keypoints(self, name: str) -> np.ndarray | None:
        """(N, 2) float32 keypoints of image `name` in our pixel convention, None when it has none."""
        group = self._file.get(name)
        if group is None or "keypoints" not in group:
            return None
        kp = np.asarray(group["keypoints"][()], dtype=np.float32)
        if kp.ndim != 2 or kp.shape[1] < 2:
            raise HlocError(f"{self.path}: {name}/keypoints has shape {kp.shape}, expected (N, 2)")
        return kp[:, :2]

    def close(self) -> None:
        self._file.close()


def _pair_keys(name0: str, name1: str) -> list[str]:
    a, b = name0.replace("/", "-"), name1.replace("/", "-")
    return [f"{a}/{b}", f"{a}_{b}"]


class HlocMatches:
    """Matches of image pairs from an hloc matches.h5 (module doc)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = _open(path, "matches")

    def matches(self, name0: str, name1: str) -> np.ndarray | None:
        """(M, 2) keypoint indices (in name0, in name1) of the pair, None when the file lacks it."""
        for first, second, swap in ((name0, name1, False), (name1, name0, True)):
            for key in _pair_keys(first, second):
                group = self._file.get(key)
                if group is not None and "matches0" in group:
                    m0 = np.asarray(group["matches0"][()]).reshape(-1)
                    idx = np.flatnonzero(m0 >= 0)
                    pairs = np.stack([idx, m0[idx]], 1).astype(np.int64)
                    return pairs[:, ::-1] if swap else pairs
        return None

    def close(self) -> None:
        self._file.close()


__all__ = ["HlocError", "HlocFeatures", "HlocMatches"]
