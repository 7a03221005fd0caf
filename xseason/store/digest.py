"""Content digests of a correspondence dataset: equal digests mean equal tables.

Each table is read whole, its rows put in a canonical order (images by `image_id`, pairs by
`pair_id`, matches by `pair_id` and then every other column) and hashed column by column
(SHA-256 over the Arrow buffers' values, nulls included), so the digest does not depend on
file layout, row groups, encodings or compression: two builds with the same content have
the same digests whatever wrote them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

_ORDER = {"images": ["image_id"], "pairs": ["pair_id"]}


def _column_bytes(column: pa.ChunkedArray) -> bytes:
    array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    mask = np.asarray(array.is_null()).tobytes()
    if pa.types.is_boolean(array.type):
        values = np.asarray(array.fill_null(False)).tobytes()
    elif pa.types.is_floating(array.type) or pa.types.is_integer(array.type):
        values = np.asarray(array.fill_null(0)).tobytes()
    else:
        values = "\x1f".join("\x00" if v is None else repr(v) for v in array.to_pylist()).encode()
    return mask + values


def table_digest(table: pa.Table, order: list[str] | None = None) -> str:
    """SHA-256 of `table`'s content: columns by name, rows sorted by `order` (default: all columns)."""
    table = table.select(sorted(table.column_names))
    keys = order or [c for c in table.column_names if not pa.types.is_list(table.schema.field(c).type)]
    if table.num_rows:
        table = table.take(pa.compute.sort_indices(table, [(k, "ascending") for k in keys]))
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode() + b"\x00" + str(table.schema.field(name).type).encode() + b"\x00")
        h.update(hashlib.sha256(_column_bytes(table.column(name))).digest())
    return h.hexdigest()


def content_digests(path: str | os.PathLike) -> dict[str, str]:
    """Digest of each table of the dataset at `path`: images, pairs, matches (and points3d when present)."""
    root = Path(path)
    out = {}
    for name in ("images", "pairs", "points3d"):
        file = root / f"{name}.parquet"
        if file.is_file():
            out[name] = table_digest(pq.read_table(file), _ORDER.get(name))
    parts = sorted((root / "matches").glob("*.parquet"))
    matches = pa.concat_tables([pq.read_table(p) for p in parts]) if parts else pa.table({})
    order = ["pair_id"] + [c for c in sorted(matches.column_names) if c != "pair_id"]
    out["matches"] = table_digest(matches, order)
    return out
