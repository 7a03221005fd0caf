"""Dataset layouts -> image manifests (docs/FORMAT.md §2).

One module per input layout; each has a function `<layout>_rows(...)` that returns manifest
rows (dicts accepted by `xseason.inputs.manifest.write_manifest`) with `image` paths relative
to an image root it also returns. Shared here: reading line-oriented text files with line
numbers in errors, condition tables, seasons of months, natural sorting, pose conversions, and
`write_layout_manifest` (rows -> a validated manifest written atomically). `registry` names
the layouts of `xseason manifest` and pipelines/ with their options (`LAYOUTS`,
`add_layout_arguments`, `manifest_from_layout`).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xseason.core.errors import ManifestError
from xseason.core.files import atomic_path
from xseason.core.geometry import Pose, qvec_to_rotmat
from xseason.inputs.manifest import Manifest, read_manifest, write_manifest

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class LayoutError(ManifestError):
    """A dataset's files do not follow the layout they were read as (names the file and line)."""


@dataclass(frozen=True)
class Condition:
    """Condition label and optional tags of one sequence."""

    condition: str
    season: str | None = None
    daytime: str | None = None
    weather: str | None = None

    def row(self) -> dict[str, str | None]:
        return {
            "condition": self.condition,
            "season": self.season,
            "daytime": self.daytime,
            "weather": self.weather,
        }


@dataclass(frozen=True)
class LayoutRows:
    """What a layout reader returns: manifest rows whose `image` is relative to `image_root`."""

    rows: list[dict[str, object]]
    image_root: Path


def natural_key(text: str) -> list[object]:
    """Sort key that orders 'img2' before 'img10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def text_lines(path: Path, sep: str | None = ",") -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, stripped fields) of a text table, skipping blank and '#' lines.

    `sep=None` splits on whitespace, `sep="any"` on commas and whitespace alike.
    Missing or unreadable files raise LayoutError.
    """
    if not path.is_file():
        raise LayoutError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                if sep == "any":
                    fields = re.split(r"[\s,]+", text)
                else:
                    fields = [part.strip() for part in (text.split(sep) if sep else text.split())]
                yield number, fields
    except UnicodeDecodeError:
        raise LayoutError(f"{path}: not a UTF-8 text file") from None


def floats(path: Path, line: int, values: Sequence[str], what: str) -> np.ndarray:
    """Parse finite floats, or raise LayoutError naming file, line and what was expected."""
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        raise LayoutError(f"{path}:{line}: expected {what}, got {' '.join(values)!r}") from None
    if not np.isfinite(out).all():
        raise LayoutError(f"{path}:{line}: {what} is not finite: {' '.join(values)!r}")
    return out


def _rotation(path: Path, line: int, q: np.ndarray, tolerance: float) -> np.ndarray:
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > tolerance:
        raise LayoutError(f"{path}:{line}: quaternion has norm {norm:.6g}, not 1")
    return qvec_to_rotmat(q)


def pose_from_qt(path: Path, line: int, q: np.ndarray, t: np.ndarray, tolerance: float = 1e-3) -> Pose:
    """World-to-camera pose from a unit quaternion (w, x, y, z) and the translation t."""
    return Pose(_rotation(path, line, q, tolerance), np.asarray(t, dtype=np.float64))


def pose_from_q_center(
    path: Path, line: int, q: np.ndarray, center: np.ndarray, tolerance: float = 1e-3
) -> Pose:
    """World-to-camera pose from its unit quaternion (w, x, y, z) and the camera centre C (t = -R C)."""
    R = _rotation(path, line, q, tolerance)
    return Pose(R, -R @ np.asarray(center, dtype=np.float64))


def pose_from_cam_to_world_qt(
    path: Path, line: int, q: np.ndarray, t: np.ndarray, tolerance: float = 1e-3
) -> Pose:
    """World-to-camera pose from a camera-to-world quaternion (w, x, y, z) and translation (TUM style)."""
    return Pose(_rotation(path, line, q, tolerance), np.asarray(t, dtype=np.float64)).inverse()


def season_of_month(month: int) -> str:
    """The (northern, meteorological) season of a month 1..12: December to February is winter."""
    return ("winter", "spring", "summer", "autumn")[month % 12 // 3]


def parse_condition_args(items: Sequence[str]) -> dict[str, Condition]:
    """['SEQ=COND', ...] -> {SEQ: Condition}."""
    out: dict[str, Condition] = {}
    for item in items:
        seq, sep, cond = item.partition("=")
        if not sep or not seq.strip() or not cond.strip():
            raise LayoutError(f"--condition {item!r}: expected SEQUENCE=CONDITION, e.g. run1=winter-snow")
        out[seq.strip()] = Condition(cond.strip())
    return out


def read_conditions_csv(path: str | os.PathLike) -> dict[str, Condition]:
    """A CSV `sequence,condition[,season,daytime,weather]` (with that header) -> {sequence: Condition}."""
    path = Path(path)
    if not path.is_file():
        raise LayoutError(f"{path}: conditions file not found")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        allowed = {"sequence", "condition", "season", "daytime", "weather"}
        if "sequence" not in header or "condition" not in header or not set(header) <= allowed:
            raise LayoutError(
                f"{path}:1: expected the header sequence,condition[,season,daytime,weather], "
                f"got {','.join(header)}"
            )
        out: dict[str, Condition] = {}
        for row in reader:
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            line = reader.line_num
            if not row["sequence"] or not row["condition"]:
                raise LayoutError(f"{path}:{line}: 'sequence' and 'condition' must not be empty")
            if row["sequence"] in out:
                raise LayoutError(f"{path}:{line}: sequence {row['sequence']!r} is listed twice")
            out[row["sequence"]] = Condition(
                row["condition"],
                row.get("season") or None,
                row.get("daytime") or None,
                row.get("weather") or None,
            )
    return out


def conditions_from(
    items: Sequence[str] = (), csv_path: str | os.PathLike | None = None, default: str | None = None
) -> tuple[dict[str, Condition], Condition | None]:
    """Conditions from `SEQ=COND` items and/or a conditions CSV (items win), and an optional default."""
    given = {**(read_conditions_csv(csv_path) if csv_path else {}), **parse_condition_args(items)}
    return given, Condition(default) if default else None


def assign_conditions(
    sequences: Sequence[str],
    conditions: Mapping[str, Condition],
    default: Condition | None = None,
    source: str = "",
) -> dict[str, Condition]:
    """Condition of every sequence; unknown names in `conditions` and unassigned sequences are errors."""
    unknown = sorted(set(conditions) - set(sequences))
    if unknown:
        raise LayoutError(
            f"{source}conditions given for unknown sequence(s) {', '.join(unknown)}; "
            f"the sequences are: {', '.join(sequences)}"
        )
    missing = [s for s in sequences if s not in conditions and default is None]
    if missing:
        raise LayoutError(
            f"{source}no condition for sequence(s) {', '.join(missing)}; "
            "give --condition SEQ=COND for each, or --conditions FILE.csv"
        )
    return {s: conditions.get(s, default) for s in sequences}


def write_layout_manifest(out: str | os.PathLike, layout: LayoutRows) -> Manifest:
    """Write `layout.rows` as a manifest at `out`, validated, atomically.

    Image paths are rewritten relative to the manifest's folder, which must contain the
    image root (the contract forbids paths that leave the manifest's folder).
    """
    out = Path(out).absolute()
    root = layout.image_root.absolute()
    try:
        prefix = root.relative_to(out.parent)
    except ValueError:
        raise LayoutError(
            f"{out}: the manifest must be written in {root} or a folder above it, since image paths are "
            "relative to the manifest's folder"
        ) from None
    rows = [_prefixed(row, prefix) for row in layout.rows]
    if not rows:
        raise LayoutError(f"{root}: no images found")
    with atomic_path(out) as tmp:
        write_manifest(tmp, rows)
        try:
            manifest = read_manifest(tmp, image_root=out.parent)
        except ManifestError as exc:  # name the file the user asked for, not the temporary one
            raise ManifestError(str(exc).replace(str(tmp), str(out))) from None
    manifest.path = out
    return manifest


def _prefixed(row: Mapping[str, object], prefix: Path) -> dict[str, object]:
    if str(prefix) == ".":
        return dict(row)
    out = dict(row)
    for key in ("image", "mask", "label"):
        if out.get(key):
            out[key] = (prefix / str(out[key])).as_posix()
    return out


__all__ = [
    "Condition",
    "LayoutError",
    "LayoutRows",
    "assign_conditions",
    "conditions_from",
    "floats",
    "natural_key",
    "parse_condition_args",
    "pose_from_cam_to_world_qt",
    "pose_from_q_center",
    "pose_from_qt",
    "read_conditions_csv",
    "season_of_month",
    "text_lines",
    "write_layout_manifest",
]
