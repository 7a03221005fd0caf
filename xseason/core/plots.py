"""Small PNG charts drawn with OpenCV (matplotlib is not a dependency): line and grouped-bar
charts for training curves and evaluation reports, histograms for the build report."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from xseason.core.files import atomic_path

_COLOURS = [
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
]  # BGR
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _canvas(title: str, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(img, title, (60, 24), _FONT, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    box = (60, 40, w - 20, h - 50)  # left, top, right, bottom of the plot area
    cv2.rectangle(img, box[:2], box[2:], (0, 0, 0), 1)
    return img, box


def save_png(img: np.ndarray, path: str | Path) -> None:
    """Encode `img` (BGR) as PNG and write it atomically."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _y_axis(img: np.ndarray, box, lo: float, hi: float) -> None:
    for frac in (0.0, 0.5, 1.0):
        y = int(box[3] - frac * (box[3] - box[1]))
        cv2.line(img, (box[0] - 4, y), (box[0], y), (0, 0, 0), 1)
        cv2.putText(img, f"{lo + frac * (hi - lo):.3g}", (2, y + 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)


def _legend(img: np.ndarray, box, names: list[str]) -> None:
    for i, name in enumerate(names):
        y = box[1] + 14 + 16 * i
        cv2.rectangle(img, (box[2] - 150, y - 8), (box[2] - 140, y), _COLOURS[i % len(_COLOURS)], -1)
        cv2.putText(img, name[:22], (box[2] - 135, y), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)


def draw_line_chart(
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str = "",
    xlabel: str = "",
    size: tuple[int, int] = (640, 400),
) -> None:
    """Lines y(x), one per series, to a PNG (written atomically)."""
    img, box = _canvas(title, size)
    finite = [np.asarray(y, float)[np.isfinite(np.asarray(y, float))] for _, y in series.values()]
    ys = np.concatenate(finite) if finite else np.zeros(1)
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()]) if series else np.zeros(1)
    lo, hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = float(xs.min()), float(xs.max()) if xs.max() > xs.min() else float(xs.min()) + 1.0
    for i, (x, y) in enumerate(series.values()):
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(y)
        px = box[0] + (x[ok] - x0) / (x1 - x0) * (box[2] - box[0])
        py = box[3] - (y[ok] - lo) / (hi - lo) * (box[3] - box[1])
        pts = np.stack([px, py], 1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, _COLOURS[i % len(_COLOURS)], 2, cv2.LINE_AA)
    _y_axis(img, box, lo, hi)
    cv2.putText(
        img, f"{xlabel} {x0:.0f} .. {x1:.0f}", (box[0], size[1] - 20), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA
    )
    _legend(img, box, list(series))
    save_png(img, path)


def draw_bar_chart(
    groups: list[str],
    series: dict[str, list[float]],
    path: str | Path,
    title: str = "",
    size: tuple[int, int] = (720, 400),
) -> None:
    """Grouped bars (one group per entry of `groups`, one bar per series), y from 0, to a PNG."""
    img, box = _canvas(title, size)
    values = np.array([v for v in series.values()], float).reshape(len(series), len(groups))
    hi = float(np.nanmax(values)) if np.isfinite(values).any() and np.nanmax(values) > 0 else 1.0
    gw = (box[2] - box[0]) / max(len(groups), 1)
    bw = gw * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        for s in range(len(series)):
            v = values[s, g]
            if not np.isfinite(v):
                continue
            left = int(box[0] + g * gw + gw * 0.1 + s * bw)
            top = int(box[3] - v / hi * (box[3] - box[1]))
            cv2.rectangle(img, (left, top), (int(left + bw) - 1, box[3]), _COLOURS[s % len(_COLOURS)], -1)
        cv2.putText(
            img,
            group[: int(gw / 7)],
            (int(box[0] + g * gw + 4), box[3] + 16),
            _FONT,
            0.4,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    _y_axis(img, box, 0.0, hi)
    _legend(img, box, list(series))
    save_png(img, path)


def draw_histogram(
    values: np.ndarray,
    title: str,
    xlabel: str,
    bins: int = 40,
    value_range: tuple[float, float] | None = None,
    size: tuple[int, int] = (480, 280),
) -> np.ndarray:
    """A bar histogram with axes, tick labels and a title, as a BGR image (values outside the range
    are counted in the first/last bin; non-finite values are ignored)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    lo, hi = (
        value_range
        if value_range is not None
        else ((float(values.min()), float(values.max())) if values.size else (0.0, 1.0))
    )
    hi = hi if hi > lo else lo + 1.0
    counts, edges = np.histogram(np.clip(values, lo, hi), bins=bins, range=(lo, hi))
    w, h = size
    left, right, top, bottom = 56, 14, 28, 44
    img = np.full((h, w, 3), 255, np.uint8)
    font, ink = cv2.FONT_HERSHEY_SIMPLEX, (40, 40, 40)
    pw, ph = w - left - right, h - top - bottom
    peak = max(int(counts.max()), 1)
    x = left + np.round(np.arange(bins + 1) * pw / bins).astype(int)
    y = top + ph - np.round(counts * ph / peak).astype(int)
    for i in range(bins):  # one rectangle per bin
        cv2.rectangle(img, (int(x[i]), int(y[i])), (int(x[i + 1]) - 1, top + ph), (178, 114, 0), -1)
    cv2.line(img, (left, top + ph), (left + pw, top + ph), ink, 1)
    cv2.line(img, (left, top), (left, top + ph), ink, 1)
    for frac in (0.0, 0.5, 1.0):
        px = left + int(frac * pw)
        cv2.line(img, (px, top + ph), (px, top + ph + 4), ink, 1)
        text = short_number(lo + frac * (hi - lo))
        tw = cv2.getTextSize(text, font, 0.4, 1)[0][0]
        cv2.putText(
            img, text, (min(max(px - tw // 2, 0), w - tw), top + ph + 17), font, 0.4, ink, 1, cv2.LINE_AA
        )
    for frac in (0.0, 1.0):
        py = top + ph - int(frac * ph)
        text = f"{round(frac * peak):,}"
        tw = cv2.getTextSize(text, font, 0.4, 1)[0][0]
        cv2.putText(img, text, (left - 6 - tw, py + 4), font, 0.4, ink, 1, cv2.LINE_AA)
    tw = cv2.getTextSize(xlabel, font, 0.45, 1)[0][0]
    cv2.putText(img, xlabel, ((w - tw) // 2, h - 8), font, 0.45, ink, 1, cv2.LINE_AA)
    cv2.putText(img, f"{title} (n={values.size})", (left, 18), font, 0.5, ink, 1, cv2.LINE_AA)
    return img


def short_number(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"
