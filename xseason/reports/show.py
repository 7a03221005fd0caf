"""One image pair of a dataset drawn with a sample of its matches (`xseason show`, the report)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from xseason.core.errors import DatasetFormatError, XSeasonError
from xseason.core.files import atomic_path
from xseason.store import CorrespondenceStore, open_dataset


def draw_pair(
    store: CorrespondenceStore | str | os.PathLike,
    pair_id: int,
    out: str | os.PathLike,
    *,
    max_matches: int = 200,
    color: Literal["weight", "error"] = "weight",
    truth_dir: str | os.PathLike | None = None,
    max_error: float = 5.0,
    seed: int = 0,
) -> Path:
    """Draw the pair's two images side by side with a random sample of matches as lines.

    color='weight': colour by match weight (blue = 0 ... red = 1). color='error' needs the
    synthetic scene's ground truth (`truth_dir`): colour by the distance of (x1, y1) to the
    true position of (x0, y0) in image 1 (green = 0 px ... red >= `max_error` px; grey = not visible).
    """
    import cv2

    store = store if isinstance(store, CorrespondenceStore) else open_dataset(store)
    row = store.pairs.loc[store.pairs["pair_id"] == int(pair_id)]
    if row.empty:
        raise DatasetFormatError(f"{store.root}: no pair_id {pair_id}")
    id0, id1 = int(row["image_id0"].iloc[0]), int(row["image_id1"].iloc[0])
    images = [_read_color(store.image_path(i)) for i in (id0, id1)]
    m = store.matches(int(pair_id))
    keep = np.random.default_rng(seed).permutation(len(m["x0"]))[:max_matches]
    p0 = np.stack([m["x0"], m["y0"]], 1)[keep]
    p1 = np.stack([m["x1"], m["y1"]], 1)[keep]
    if color == "error":
        if truth_dir is None:
            raise XSeasonError("color='error' needs the scene's ground truth folder (--truth SCENE_DIR)")
        names = store.images.set_index("image_id")["image"]
        value = match_errors(truth_dir, names[id0], names[id1], p0, p1)
        t = np.clip(np.nan_to_num(value / max_error), 0, 1)[:, None]
        colours = np.round(t * [0, 0, 255] + (1 - t) * [0, 255, 0]).astype(np.int32)  # BGR green -> red
        colours[~np.isfinite(value)] = 128
    elif color == "weight":
        colours = _colormap(m["weight"][keep], cv2.COLORMAP_JET)
    else:
        raise XSeasonError(f"unknown colouring '{color}': use 'weight' or 'error'")
    canvas = _side_by_side(*images)
    shift = np.array([images[0].shape[1], 0])
    a = np.round(p0).astype(np.int32)
    b = np.round(p1 + shift).astype(np.int32)
    for (ax, ay), (bx, by), c in zip(a, b, colours.tolist()):  # one line per drawn match (<= max_matches)
        cv2.line(canvas, (int(ax), int(ay)), (int(bx), int(by)), c, 1, cv2.LINE_AA)
        cv2.circle(canvas, (int(ax), int(ay)), 2, c, -1, cv2.LINE_AA)
        cv2.circle(canvas, (int(bx), int(by)), 2, c, -1, cv2.LINE_AA)
    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise XSeasonError(f"{out}: use a .png or .jpg file name")
    with atomic_path(out) as tmp:
        if not cv2.imwrite(str(tmp), canvas):
            raise XSeasonError(f"{out}: could not write the image")
    return out


def match_errors(
    truth_dir: str | os.PathLike, name0: str, name1: str, p0: np.ndarray, p1: np.ndarray
) -> np.ndarray:
    """Pixel distance of every match's (x1, y1) to the true position of (x0, y0) in image 1 (NaN: hidden)."""
    try:
        from xseason.synth.groundtruth import load_truth, true_matches
    except ImportError as exc:
        raise XSeasonError(f"ground truth is not available in this build: {exc}") from None
    true1, visible = true_matches(load_truth(truth_dir), name0, name1, p0)
    err = np.linalg.norm(np.asarray(true1, dtype=np.float64) - p1, axis=1)
    return np.where(visible, err, np.nan)


def _read_color(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        raise XSeasonError(f"{path}: image missing or unreadable (is dataset.json's image root right?)")
    return image


def _side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    h = max(a.shape[0], b.shape[0])
    canvas = np.zeros((h, a.shape[1] + b.shape[1], 3), dtype=np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1] :] = b
    return canvas


def _colormap(values: np.ndarray, cmap: int) -> np.ndarray:
    """Values in [0, 1] -> (N, 3) BGR uint8 colours of an OpenCV colormap."""
    import cv2

    idx = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)) * 255, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(idx.reshape(-1, 1), cmap).reshape(-1, 3).astype(np.int32)


__all__ = ["draw_pair", "match_errors"]
