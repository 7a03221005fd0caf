"""Plain folders: `ROOT/<sequence>/<image>` -> manifest rows.

- Sequences are the sub-folders of ROOT (hidden ones skipped), in natural order.
- Images are the `.jpg/.jpeg/.png` files directly inside a sequence folder (any case) whose
  name matches `pattern` (e.g. '*.color.jpg'; default every one), in natural order ('2.png' before '10.png').
- Timestamps: the file name stems when every stem of the sequence is a number
  (e.g. '1418235223450115.jpg'), else the image index 0, 1, 2, ...
- Conditions come from the caller (per sequence); an unassigned or unknown sequence is an error.
- No intrinsics and no poses: one camera per sequence (the manifest default).
"""

from __future__ import annotations

import fnmatch
import math
import os
from collections.abc import Mapping
from pathlib import Path

from xseason.inputs.layouts import (
    IMAGE_SUFFIXES,
    Condition,
    LayoutError,
    LayoutRows,
    assign_conditions,
    natural_key,
)


def folder_sequences(root: str | os.PathLike, pattern: str = "*") -> dict[str, list[str]]:
    """Sequence name -> its image file names matching `pattern`, both in natural order."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    out: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: natural_key(e.name)):
        if entry.is_dir() and not entry.name.startswith("."):
            names = [
                n
                for n in os.listdir(entry.path)
                if n.lower().endswith(IMAGE_SUFFIXES)
                and not n.startswith(".")
                and fnmatch.fnmatch(n, pattern)
            ]
            if names:
                out[entry.name] = sorted(names, key=natural_key)
    if not out:
        raise LayoutError(
            f"{root}: no sequence folders with images ({', '.join(IMAGE_SUFFIXES)}) "
            f"matching {pattern!r} found; expected ROOT/<sequence>/<images>"
        )
    return out


def folder_rows(
    root: str | os.PathLike,
    conditions: Mapping[str, Condition],
    default: Condition | None = None,
    pattern: str = "*",
) -> LayoutRows:
    """Rows for every image (matching `pattern`) of every sequence folder of `root`."""
    root = Path(root)
    sequences = folder_sequences(root, pattern)
    assigned = assign_conditions(list(sequences), conditions, default)
    rows: list[dict[str, object]] = []
    for seq, names in sequences.items():
        for name, stamp in zip(names, _timestamps(names)):
            rows.append(
                {"image": f"{seq}/{name}", "sequence": seq, **assigned[seq].row(), "timestamp": stamp}
            )
    return LayoutRows(rows, root)


def _timestamps(names: list[str]) -> list[float]:
    stems = [os.path.splitext(n)[0] for n in names]
    try:
        values = [float(s) for s in stems]
    except ValueError:
        values = []
    return (
        values if values and all(math.isfinite(v) for v in values) else [float(i) for i in range(len(names))]
    )
