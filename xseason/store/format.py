"""The correspondence dataset on disk (CONTRACTS.md section 3): write it, open it, read pairs fast.

Layout of a dataset folder::

    dataset.json        format, version, build config, manifest checksum, counts, image root
    images.parquet      one row per image
    pairs.parquet       one row per image pair
    matches/            part-00000.parquet, ...: rows sorted by pair_id
    points3d.parquet    optional

Matches are written sorted by pair_id, and within a pair by point3d_id (nulls last), in row
groups that hold whole pairs (a pair never straddles two row groups), zstd-compressed. Before
writing, float columns are rounded to the precision that matters (``StoreConfig``), which
makes them far more compressible:

- ``x0 y0 x1 y1``: to a multiple of ``coord_step`` pixels (default 1/64 px, error <= 1/128 px ~ 0.008 px);
- ``weight dist3d err0 err1``: to ``mantissa_bits`` bits of float32 mantissa (default 8:
  relative error <= 2**-9 ~ 0.2%).
Set ``coord_step=0`` and ``mantissa_bits=23`` for a bit-exact store. Both bounds are recorded
in dataset.json (``storage``: ``coord_max_error_px``, ``max_relative_error``).

Each column's Parquet encoding is the one of its type's candidates (``ENCODING_CANDIDATES``)
that compresses the first rows written smallest; it differs with the data: spatially random
floats pack best as BYTE_STREAM_SPLIT, while a real build's points recur across the pairs of
one image (same id, same pixel), which zstd finds in PLAIN values. The choice holds for the
whole dataset and is recorded in dataset.json (``storage.encodings``).

Random per-pair reads (the torch Dataset, DataLoader workers, random order) go through a
memory-mapped, uncompressed Arrow IPC copy of the match table built once on first use in
``<dataset>/.cache/`` (or ``~/.cache/xseason`` when the dataset folder is read-only). It is
a cache: delete it at will. ``open_dataset(path, random_access="parquet")`` reads row groups
straight from the Parquet files instead (an LRU keeps the last decoded row groups).

Nullable ``point3d_id`` values are returned as -1 by ``matches()``; plain pandas, pyarrow and
DuckDB read the folder directly and see real nulls.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xseason import __version__
from xseason.core.config import to_dict
from xseason.core.errors import DatasetFormatError
from xseason.core.files import atomic_path, write_json

FORMAT_NAME = "xseason-correspondences"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")

IMAGES_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.int32(), nullable=False),
        pa.field("image", pa.string(), nullable=False),
        pa.field("sequence", pa.string()),
        pa.field("condition", pa.string()),
        pa.field("season", pa.string()),
        pa.field("daytime", pa.string()),
        pa.field("weather", pa.string()),
        pa.field("camera_model", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("params", pa.list_(pa.float64()), nullable=False),
        pa.field("registered", pa.bool_(), nullable=False),
        *[pa.field(name, pa.float64()) for name in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")],
    ]
)
PAIRS_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.int64(), nullable=False),
        pa.field("image_id0", pa.int32(), nullable=False),
        pa.field("image_id1", pa.int32(), nullable=False),
        pa.field("num_matches", pa.int32(), nullable=False),
        pa.field("overlap", pa.float32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)
MATCHES_SCHEMA = pa.schema(
    [
        pa.field("pair_id", pa.int64(), nullable=False),
        *[pa.field(name, pa.float32(), nullable=False) for name in ("x0", "y0", "x1", "y1", "weight")],
        pa.field("point3d_id", pa.int64()),
        *[pa.field(name, pa.float32(), nullable=False) for name in ("dist3d", "err0", "err1")],
    ]
)
# Optional extra match column: True for matches added by densification (not from an SfM point).
OPTIONAL_MATCH_FIELDS = {"densified": pa.field("densified", pa.bool_(), nullable=False)}
# Optional extra image column: the manifest's label PNG, relative to the image root (for training/eval).
OPTIONAL_IMAGE_FIELDS = {"label": pa.field("label", pa.string())}

_COORDS = ("x0", "y0", "x1", "y1")
_MANTISSA_COLUMNS = ("weight", "dist3d", "err0", "err1")
_FLOAT_MATCH_COLUMNS = _COORDS + _MANTISSA_COLUMNS
# Parquet encodings tried for every match column, by Arrow type (the first wins ties): only
# those that pyarrow, DuckDB and Polars have all read for years (no BYTE_STREAM_SPLIT integers).
ENCODING_CANDIDATES = {
    pa.float32(): ("BYTE_STREAM_SPLIT", "PLAIN"),
    pa.int64(): ("DELTA_BINARY_PACKED", "PLAIN"),
    pa.bool_(): ("PLAIN",),
}
_ENCODING_SAMPLE_GROUPS = 4  # encodings are chosen on the first chunk's first row groups
_RESERVED_META = {"format", "version", "created", "tool_version", "config", "manifest_sha256",
                  "image_root", "image_root_relative", "counts", "storage"}


@dataclass
class StoreConfig:
    """How matches are laid out and rounded on disk."""

    coord_step: float = 1.0 / 64  # pixel coordinates rounded to this step (a power of two); 0 = exact
    mantissa_bits: int = 8  # float32 mantissa bits kept for weight, dist3d, err0, err1; 23 = exact
    row_group_rows: int = 16384  # whole pairs are packed into row groups of about this many rows
    file_rows: int = 8_000_000  # a new matches/part-NNNNN.parquet file after about this many rows
    zstd_level: int = 6

    def validate(self) -> None:
        if self.coord_step < 0 or (self.coord_step > 0 and not np.log2(self.coord_step).is_integer()):
            raise ValueError(f"coord_step must be 0 or a power of two, got {self.coord_step}")
        if not 1 <= self.mantissa_bits <= 23:
            raise ValueError(f"mantissa_bits must be in 1..23, got {self.mantissa_bits}")
        if self.row_group_rows < 1 or self.file_rows < self.row_group_rows:
            raise ValueError("need 1 <= row_group_rows <= file_rows")


# ----------------------------------------------------------------------------- writing


def write_dataset(
    out_dir: str | os.PathLike,
    images: pd.DataFrame,
    pairs: pd.DataFrame,
    matches: pa.Table | pd.DataFrame | Mapping[str, np.ndarray] | Iterable[pa.Table | pd.DataFrame | Mapping],
    *,
    config: dict,
    manifest_checksum: str | None,
    image_root: str | os.PathLike,
    points3d: pd.DataFrame | None = None,
    extra_meta: dict | None = None,
    store_config: StoreConfig | None = None,
) -> Path:
    """Validate the tables and write a complete dataset folder at `out_dir` (atomically).

    `matches` is one table (sorted by pair_id here if it is not) or an iterable of chunks in
    increasing pair_id order (a pair may not continue into the next chunk), which is written
    chunk by chunk without holding the whole match set. `config` is the full build config
    (stored in dataset.json), `points3d` a free-form table written as is. Returns the folder.
    """
    cfg = store_config or StoreConfig()
    cfg.validate()
    images_t = _to_table(images, IMAGES_SCHEMA, "images", OPTIONAL_IMAGE_FIELDS)
    pairs_t = _to_table(pairs, PAIRS_SCHEMA, "pairs")
    _check_images_pairs(images_t, pairs_t)
    pair_ids = pairs_t.column("pair_id").to_numpy()
    order = np.argsort(pair_ids, kind="stable")
    pairs_t = pairs_t.take(order)
    pair_ids = pair_ids[order]

    out_dir = Path(out_dir)
    image_root = Path(image_root).resolve()
    with atomic_path(out_dir) as tmp:
        (tmp / "matches").mkdir(parents=True)
        counts, encodings = _write_matches(tmp / "matches", _match_chunks(matches), pair_ids, cfg)
        expected = pairs_t.column("num_matches").to_numpy()
        bad = np.flatnonzero(counts != expected)
        if bad.size:
            i = bad[0]
            raise DatasetFormatError(
                f"pairs: num_matches of pair_id {pair_ids[i]} is {expected[i]} but the matches hold "
                f"{counts[i]} rows ({bad.size} pair(s) disagree)"
            )
        _write_parquet(images_t, tmp / "images.parquet", cfg)
        _write_parquet(pairs_t, tmp / "pairs.parquet", cfg)
        n_points = None
        if points3d is not None:
            points_t = pa.Table.from_pandas(points3d, preserve_index=False)
            _write_parquet(points_t, tmp / "points3d.parquet", cfg)
            n_points = points_t.num_rows
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": {"utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        "host": platform.node(), "python": platform.python_version()},
            "tool_version": __version__,
            "config": config,
            "manifest_sha256": manifest_checksum,
            "image_root": str(image_root),
            "image_root_relative": os.path.relpath(image_root, out_dir.resolve()),
            "counts": {"images": images_t.num_rows, "pairs": pairs_t.num_rows,
                       "matches": int(counts.sum()), "points3d": n_points},
            "storage": {**to_dict(cfg), **stored_precision(cfg), "densified_column": "densified" in encodings,
                        "encodings": encodings},
        }
        for key, value in (extra_meta or {}).items():
            if key in _RESERVED_META:
                raise DatasetFormatError(f"extra_meta: '{key}' is a reserved dataset.json key")
            meta[key] = value
        write_json(tmp / "dataset.json", meta)
    return out_dir


def _to_table(df: pd.DataFrame | pa.Table, schema: pa.Schema, name: str,
              optional: Mapping[str, pa.Field] | None = None) -> pa.Table:
    """Cast `df` to exactly `schema` plus the `optional` fields it has (column by column, so errors name the column)."""
    columns = df.column_names if isinstance(df, pa.Table) else list(df.columns)
    for field in (optional or {}).values():
        if field.name in columns:
            schema = schema.append(field)
    arrays = []
    for field in schema:
        if field.name not in columns:
            raise DatasetFormatError(f"{name}: missing column '{field.name}' (expected {field.type})")
        col = df.column(field.name) if isinstance(df, pa.Table) else df[field.name]
        try:
            # NaN stays NaN in float columns (e.g. unknown err0/err1); elsewhere pandas' NA is null
            arr = col.cast(field.type) if isinstance(col, pa.ChunkedArray) else pa.array(
                col, type=field.type, from_pandas=not pa.types.is_floating(field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise DatasetFormatError(f"{name}: column '{field.name}' cannot be stored as {field.type}: {exc}") from None
        if not field.nullable and arr.null_count:
            raise DatasetFormatError(f"{name}: column '{field.name}' has {arr.null_count} null value(s); nulls not allowed")
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=schema)


def _check_images_pairs(images: pa.Table, pairs: pa.Table) -> None:
    image_ids = images.column("image_id").to_numpy()
    if np.unique(image_ids).size != image_ids.size:
        raise DatasetFormatError("images: image_id values are not unique")
    pair_ids = pairs.column("pair_id").to_numpy()
    if np.unique(pair_ids).size != pair_ids.size:
        raise DatasetFormatError("pairs: pair_id values are not unique")
    for col in ("image_id0", "image_id1"):
        missing = np.setdiff1d(pairs.column(col).to_numpy(), image_ids)
        if missing.size:
            raise DatasetFormatError(f"pairs: column '{col}' refers to unknown image_id {missing[0]} ({missing.size} unknown)")
    bad_split = pc.invert(pc.is_in(pairs.column("split"), value_set=pa.array(SPLITS)))
    if pc.any(bad_split).as_py():
        value = pc.filter(pairs.column("split"), bad_split)[0].as_py()
        raise DatasetFormatError(f"pairs: column 'split' has '{value}'; allowed: {', '.join(SPLITS)}")
    if (pairs.column("num_matches").to_numpy() < 0).any():
        raise DatasetFormatError("pairs: column 'num_matches' has negative values")


def _match_chunks(matches: Any) -> Iterator[pa.Table]:
    """One table or an iterable of chunks -> tables (a single table is sorted by pair_id)."""
    if isinstance(matches, (pa.Table, pd.DataFrame, Mapping)):
        table = _match_table(matches)
        ids = table.column("pair_id").to_numpy()
        if ids.size > 1 and (np.diff(ids) < 0).any():
            table = table.take(np.argsort(ids, kind="stable"))
        yield table
        return
    for chunk in matches:
        yield _match_table(chunk)


def _match_table(chunk: pa.Table | pd.DataFrame | Mapping[str, np.ndarray]) -> pa.Table:
    if isinstance(chunk, Mapping):
        chunk = pa.table({k: _arrow_column(v) for k, v in chunk.items()})
    columns = chunk.column_names if isinstance(chunk, pa.Table) else list(chunk.columns)
    schema = MATCHES_SCHEMA
    if "densified" in columns:
        schema = schema.append(OPTIONAL_MATCH_FIELDS["densified"])
    return _to_table(chunk, schema, "matches")


def _arrow_column(values: Any) -> pa.Array | pa.ChunkedArray:
    """An array-like -> Arrow without copying Arrow input; NaN stays NaN in floats, pandas NA becomes null."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if not isinstance(values, pd.api.extensions.ExtensionArray):
        values = np.asarray(values)
    return pa.array(values, from_pandas=not (isinstance(values, np.ndarray) and values.dtype.kind == "f"))


def _write_matches(folder: Path, chunks: Iterator[pa.Table], pair_ids: np.ndarray,
                   cfg: StoreConfig) -> tuple[np.ndarray, dict[str, str]]:
    """Stream match chunks into row groups of whole pairs.

    Returns per-pair counts (in `pair_ids` order) and the encoding of every column (empty: no match).
    """
    counts = np.zeros(pair_ids.size, dtype=np.int64)
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    encodings: dict[str, str] = {}
    file_rows = 0
    n_files = 0
    last_pair = None
    try:
        for chunk in chunks:
            if chunk.num_rows == 0:
                continue
            if schema is None:
                schema = chunk.schema
            elif chunk.schema != schema:
                raise DatasetFormatError("matches: all chunks must have the same columns")
            ids = chunk.column("pair_id").to_numpy()
            _check_match_values(chunk, ids, last_pair)
            last_pair = ids[-1]
            pos = np.searchsorted(pair_ids, ids)
            pos = np.minimum(pos, pair_ids.size - 1) if pair_ids.size else pos
            unknown = pair_ids.size == 0 or (pair_ids[pos] != ids).any()
            if unknown:
                bad = ids[pair_ids[pos] != ids][0] if pair_ids.size else ids[0]
                raise DatasetFormatError(f"matches: pair_id {bad} is not in the pairs table")
            counts += np.bincount(pos, minlength=pair_ids.size)
            chunk = _round_for_storage(_sort_within_pairs(chunk), cfg)
            encodings = encodings or choose_encodings(chunk.slice(0, _ENCODING_SAMPLE_GROUPS * cfg.row_group_rows), cfg)
            for start, stop in _row_groups(ids, cfg.row_group_rows):
                if writer is None or file_rows >= cfg.file_rows:
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(folder / f"part-{n_files:05d}.parquet", schema,
                                              **_parquet_options(encodings, cfg))
                    n_files += 1
                    file_rows = 0
                writer.write_table(chunk.slice(start, stop - start), row_group_size=stop - start)
                file_rows += stop - start
    finally:
        if writer is not None:
            writer.close()
    if writer is None:  # no match at all: still one valid (empty) file, so readers see the schema
        pq.write_table(MATCHES_SCHEMA.empty_table(), folder / "part-00000.parquet")
    return counts, encodings


def _sort_within_pairs(chunk: pa.Table) -> pa.Table:
    """Order each pair's rows by point3d_id (nulls last): the ids then delta-encode compactly."""
    return chunk.take(pc.sort_indices(chunk, sort_keys=[("pair_id", "ascending"), ("point3d_id", "ascending")]))


def _check_match_values(chunk: pa.Table, ids: np.ndarray, last_pair: int | None) -> None:
    if (np.diff(ids) < 0).any() or (last_pair is not None and ids[0] < last_pair):
        raise DatasetFormatError("matches: chunks must be sorted by pair_id (a chunk went backwards)")
    if last_pair is not None and ids[0] == last_pair:
        raise DatasetFormatError(f"matches: pair_id {last_pair} continues into the next chunk; keep each pair in one chunk")
    for name in _FLOAT_MATCH_COLUMNS:
        values = chunk.column(name).to_numpy()
        if not np.isfinite(values).all() and name not in ("err0", "err1", "dist3d"):
            raise DatasetFormatError(f"matches: column '{name}' has non-finite values")
    w = chunk.column("weight").to_numpy()
    if not ((w > 0) & (w <= 1)).all():
        raise DatasetFormatError(f"matches: column 'weight' must be in (0, 1]; found {w[~((w > 0) & (w <= 1))][0]}")


def _row_groups(ids: np.ndarray, target: int) -> list[tuple[int, int]]:
    """Split sorted `ids` into [start, stop) ranges of about `target` rows, cutting only between pairs."""
    cuts = np.r_[np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]), ids.size]  # pair starts + end
    bounds = [0]
    while bounds[-1] < ids.size:
        start = bounds[-1]
        stop = cuts[np.searchsorted(cuts, start + target, side="right") - 1]  # last cut within target
        if stop <= start:  # one pair larger than target: a row group of its own
            stop = cuts[np.searchsorted(cuts, start, side="right")]
        bounds.append(int(stop))
    return list(zip(bounds[:-1], bounds[1:]))


def _round_for_storage(chunk: pa.Table, cfg: StoreConfig) -> pa.Table:
    """Round coordinates to `coord_step` and other floats to `mantissa_bits` (see module docstring)."""
    for name in _FLOAT_MATCH_COLUMNS:
        values = chunk.column(name).to_numpy()
        if name in _COORDS:
            if cfg.coord_step > 0:
                values = (np.round(values / np.float32(cfg.coord_step)) * np.float32(cfg.coord_step)).astype(np.float32)
        else:
            values = round_mantissa(values, cfg.mantissa_bits)
            if name == "weight":
                values = np.clip(values, np.finfo(np.float32).tiny, 1.0)
        chunk = chunk.set_column(chunk.schema.get_field_index(name), chunk.schema.field(name), pa.array(values))
    return chunk


def round_mantissa(values: np.ndarray, bits: int) -> np.ndarray:
    """Round float32 values to `bits` mantissa bits (round half up on the magnitude); NaN/inf kept."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    drop = 23 - bits
    if drop <= 0:
        return values
    u = values.view(np.uint32)
    rounded = ((u + np.uint32(1 << (drop - 1))) & np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)).view(np.float32)
    return np.where(np.isfinite(values) & np.isfinite(rounded), rounded, values)


def stored_precision(cfg: StoreConfig) -> dict[str, float]:
    """Worst-case rounding error of stored values beyond float32's: coordinates in px, other floats relative."""
    return {"coord_max_error_px": cfg.coord_step / 2,
            "max_relative_error": 0.0 if cfg.mantissa_bits == 23 else 2.0 ** -(cfg.mantissa_bits + 1)}


def choose_encodings(sample: pa.Table, cfg: StoreConfig) -> dict[str, str]:
    """For every column of `sample`, the candidate encoding under which it compresses smallest."""
    return {field.name: min(ENCODING_CANDIDATES[field.type],
                            key=lambda encoding: _compressed_size(sample.select([field.name]), encoding, cfg))
            for field in sample.schema}


def _compressed_size(column: pa.Table, encoding: str, cfg: StoreConfig) -> int:
    """Bytes of a one-column table written as Parquet with `encoding`, in row groups and with zstd as `cfg` says."""
    sink = pa.BufferOutputStream()
    options = {**_parquet_options({column.column_names[0]: encoding}, cfg), "write_statistics": False}
    pq.write_table(column, sink, row_group_size=cfg.row_group_rows, **options)
    return sink.getvalue().size


def _parquet_options(encodings: dict[str, str], cfg: StoreConfig) -> dict[str, Any]:
    return {
        "compression": "zstd",
        "compression_level": cfg.zstd_level,
        "use_dictionary": False,
        "column_encoding": encodings,
        "write_statistics": ["pair_id"],
    }


def _write_parquet(table: pa.Table, path: Path, cfg: StoreConfig) -> None:
    pq.write_table(table, path, compression="zstd", compression_level=cfg.zstd_level)


# ----------------------------------------------------------------------------- reading


def open_dataset(path: str | os.PathLike, random_access: Literal["mmap", "parquet"] = "mmap") -> CorrespondenceStore:
    """Open and validate a dataset folder (format, version, every table's schema, row counts)."""
    root = Path(path)
    meta_path = root / "dataset.json"
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: not a dataset folder")
    if not meta_path.is_file():
        raise DatasetFormatError(f"{meta_path}: missing; {root} is not a complete xseason dataset")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{meta_path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise DatasetFormatError(f"{meta_path}: 'format' is {meta.get('format') if isinstance(meta, dict) else None!r}, "
                                 f"expected '{FORMAT_NAME}'")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise DatasetFormatError(f"{meta_path}: invalid 'version' {version!r}")
    if version > FORMAT_VERSION:
        raise DatasetFormatError(f"{meta_path}: format version {version} was written by a newer xseason; this one "
                                 f"({__version__}) reads up to version {FORMAT_VERSION}: upgrade xseason")
    counts = meta.get("counts") or {}
    _check_file(root / "images.parquet", IMAGES_SCHEMA, counts.get("images"), optional=OPTIONAL_IMAGE_FIELDS)
    _check_file(root / "pairs.parquet", PAIRS_SCHEMA, counts.get("pairs"))
    files = sorted((root / "matches").glob("*.parquet"))
    if not files:
        raise DatasetFormatError(f"{root / 'matches'}: no Parquet files")
    rows = sum(_check_file(f, MATCHES_SCHEMA, None, optional=OPTIONAL_MATCH_FIELDS) for f in files)
    if counts.get("matches") is not None and rows != counts["matches"]:
        raise DatasetFormatError(f"{root / 'matches'}: holds {rows} rows, dataset.json says {counts['matches']}")
    return CorrespondenceStore(root, meta, random_access=random_access)


def _check_file(path: Path, schema: pa.Schema, rows: int | None, optional: Mapping[str, pa.Field] | None = None) -> int:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: missing")
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DatasetFormatError(f"{path}: not a readable Parquet file: {exc}") from None
    actual = meta.schema.to_arrow_schema()
    for field in schema:
        if field.name not in actual.names:
            raise DatasetFormatError(f"{path}: missing column '{field.name}' ({field.type})")
        got = actual.field(field.name).type
        if got != field.type:
            raise DatasetFormatError(f"{path}: column '{field.name}' is {got}, expected {field.type}")
    for name in actual.names:
        if name not in schema.names and name not in (optional or {}):
            raise DatasetFormatError(f"{path}: unexpected column '{name}'")
        if name in (optional or {}) and actual.field(name).type != optional[name].type:
            raise DatasetFormatError(f"{path}: column '{name}' is {actual.field(name).type}, expected {optional[name].type}")
    if rows is not None and meta.num_rows != rows:
        raise DatasetFormatError(f"{path}: holds {meta.num_rows} rows, dataset.json says {rows}")
    return meta.num_rows


class CorrespondenceStore:
    """An opened dataset: `images`, `pairs` (DataFrames), `meta` (dataset.json) and fast per-pair reads.

    Picklable: file handles and caches are dropped on pickling and reopened lazily, so a store
    can be handed to DataLoader workers.
    """

    def __init__(self, root: Path, meta: dict, random_access: Literal["mmap", "parquet"] = "mmap",
                 lru_row_groups: int = 8) -> None:
        if random_access not in ("mmap", "parquet"):
            raise ValueError(f"random_access must be 'mmap' or 'parquet', got {random_access!r}")
        self.root = Path(root)
        self.meta = meta
        self.random_access = random_access
        self.lru_row_groups = lru_row_groups
        self.images = pd.read_parquet(self.root / "images.parquet")
        self.pairs = pd.read_parquet(self.root / "pairs.parquet")
        ids = self.pairs["pair_id"].to_numpy()
        if ids.size > 1 and (np.diff(ids) <= 0).any():
            raise DatasetFormatError(f"{self.root / 'pairs.parquet'}: pair_id must be strictly increasing")
        n = self.pairs["num_matches"].to_numpy().astype(np.int64)
        self._pair_ids = ids
        self._pair_start = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
        self._pair_count = n
        self._image_rows = pd.Series(np.arange(len(self.images)), index=self.images["image_id"].to_numpy())
        self._reset_handles()

    # -- pickling: drop open files and caches
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_columns_mm", "_chunk_start", "_files", "_lru", "_rg_start", "_rg_index"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_handles()

    def _reset_handles(self) -> None:
        self._columns_mm: dict[str, list[np.ndarray]] | None = None
        self._chunk_start: np.ndarray | None = None
        self._files: list[pq.ParquetFile] | None = None
        self._rg_start: np.ndarray | None = None  # global first row of every row group
        self._lru: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    @property
    def match_columns(self) -> list[str]:
        return MATCHES_SCHEMA.names + (["densified"] if self.meta.get("storage", {}).get("densified_column") else [])

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        c = self.meta.get("counts", {})
        return f"CorrespondenceStore({str(self.root)!r}, images={c.get('images')}, pairs={c.get('pairs')}, matches={c.get('matches')})"

    # -- images
    def image_path(self, image_id: int) -> Path:
        """Absolute path of an image: under dataset.json's image root, or its path relative to the dataset."""
        try:
            row = self._image_rows[int(image_id)]
        except KeyError:
            raise DatasetFormatError(f"{self.root}: no image_id {image_id}") from None
        name = self.images["image"].iloc[row]
        absolute = Path(self.meta["image_root"])
        if not absolute.is_dir() and self.meta.get("image_root_relative") is not None:
            relative = (self.root / self.meta["image_root_relative"]).resolve()
            if relative.is_dir():
                absolute = relative
        return absolute / name

    # -- matches
    def _locate(self, pair_id: int) -> tuple[int, int]:
        i = np.searchsorted(self._pair_ids, pair_id)
        if i >= self._pair_ids.size or self._pair_ids[i] != pair_id:
            raise KeyError(f"pair_id {pair_id} is not in {self.root}")
        return int(self._pair_start[i]), int(self._pair_count[i])

    def matches(self, pair_id: int) -> dict[str, np.ndarray]:
        """One pair's matches as {column: array} (point3d_id null -> -1)."""
        start, count = self._locate(pair_id)
        if self.random_access == "mmap":
            return self._read_mmap(start, count)
        return self._read_parquet(start, count)

    def matches_many(self, pair_ids: Iterable[int]) -> dict[int, dict[str, np.ndarray]]:
        """Several pairs at once: {pair_id: matches}."""
        return {int(p): self.matches(int(p)) for p in pair_ids}

    def iter_matches(self, batch_pairs: int = 256, columns: Sequence[str] | None = None
                     ) -> Iterator[dict[str, np.ndarray]]:
        """Stream all matches in pair order, one row group at a time, in chunks of at most `batch_pairs` whole pairs."""
        columns = list(columns or self.match_columns)
        if "pair_id" not in columns:
            columns = ["pair_id", *columns]
        for f in sorted((self.root / "matches").glob("*.parquet")):
            pf = pq.ParquetFile(f)
            for g in range(pf.metadata.num_row_groups):
                group = _table_to_numpy(pf.read_row_group(g, columns=columns))
                ids = group["pair_id"]
                starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
                cuts = np.r_[starts[::batch_pairs], ids.size]
                for a, b in zip(cuts[:-1], cuts[1:]):
                    yield {k: v[a:b] for k, v in group.items()}

    # Parquet path: row groups, LRU of decoded groups
    def _open_files(self) -> None:
        self._files = [pq.ParquetFile(f) for f in sorted((self.root / "matches").glob("*.parquet"))]
        sizes = [(k, g, pf.metadata.row_group(g).num_rows) for k, pf in enumerate(self._files)
                 for g in range(pf.metadata.num_row_groups)]
        self._rg_index = [(k, g) for k, g, _ in sizes]
        self._rg_start = np.concatenate([[0], np.cumsum([n for _, _, n in sizes])]).astype(np.int64)

    def _read_parquet(self, start: int, count: int) -> dict[str, np.ndarray]:
        if self._files is None:
            self._open_files()
        g = int(np.searchsorted(self._rg_start, start, side="right") - 1)
        parts = []
        while count > 0:  # a pair lies in one row group when we wrote it; tolerate others' files
            group = self._row_group(g)
            local = start - int(self._rg_start[g])
            take = min(count, int(self._rg_start[g + 1]) - start)
            parts.append({k: v[local:local + take] for k, v in group.items()})
            start, count, g = start + take, count - take, g + 1
        if len(parts) == 1:
            return {k: v.copy() for k, v in parts[0].items()}
        if not parts:
            return {k: np.empty(0, dtype=v) for k, v in _empty_dtypes(self.match_columns).items()}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _row_group(self, g: int) -> dict[str, np.ndarray]:
        if g in self._lru:
            self._lru.move_to_end(g)
            return self._lru[g]
        k, local = self._rg_index[g]
        group = _table_to_numpy(self._files[k].read_row_group(local, columns=self.match_columns))
        self._lru[g] = group
        while len(self._lru) > self.lru_row_groups:
            self._lru.popitem(last=False)
        return group

    # mmap path: uncompressed Arrow IPC cache, numpy views
    def _read_mmap(self, start: int, count: int) -> dict[str, np.ndarray]:
        if self._columns_mm is None:
            self._open_mmap()
        if count == 0:
            return {k: np.empty(0, dtype=v) for k, v in _empty_dtypes(self.match_columns).items()}
        c = int(np.searchsorted(self._chunk_start, start, side="right") - 1)
        local = start - int(self._chunk_start[c])
        if local + count <= self._columns_mm["pair_id"][c].size:
            return {k: _from_cache(k, v[c][local:local + count]) for k, v in self._columns_mm.items()}
        return self._read_parquet(start, count)  # a pair split across batches: only in foreign files

    def cache_path(self) -> Path:
        """Where the random-access cache of this dataset lives (built on first use)."""
        key = hashlib.sha256(f"{self.root.resolve()}|{self.meta.get('created')}|{self.meta.get('counts')}".encode()
                             ).hexdigest()[:16]
        local = self.root / ".cache" / f"matches-{key}.arrow"
        if local.exists() or os.access(self.root, os.W_OK):
            return local
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xseason" / f"matches-{key}.arrow"

    def build_cache(self) -> Path:
        """Write the memory-mappable match cache now (otherwise done on the first `matches()` call)."""
        path = self.cache_path()
        if path.exists():
            return path
        columns = self.match_columns
        # no nulls and no bit-packed booleans, so that every column is a zero-copy numpy view
        schema = pa.schema([pa.field(c, pa.uint8() if c == "densified" else MATCHES_SCHEMA.field(c).type,
                                     nullable=False) for c in columns])
        with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for f in sorted((self.root / "matches").glob("*.parquet")):
                pf = pq.ParquetFile(f)
                for g in range(pf.metadata.num_row_groups):
                    t = pf.read_row_group(g, columns=columns)
                    i = t.schema.get_field_index("point3d_id")
                    t = t.set_column(i, schema.field("point3d_id"), pc.fill_null(t.column(i), -1))
                    writer.write_table(t.cast(schema).combine_chunks())
        return path

    def _open_mmap(self) -> None:
        reader = pa.ipc.open_file(pa.memory_map(str(self.build_cache()), "r"))
        cols: dict[str, list[np.ndarray]] = {c: [] for c in reader.schema.names}
        sizes = []
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            sizes.append(batch.num_rows)
            for c in cols:
                arr = batch.column(c)
                cols[c].append(arr.to_numpy(zero_copy_only=True))
        self._columns_mm = cols
        self._chunk_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def _from_cache(name: str, values: np.ndarray) -> np.ndarray:
    """A private copy of a slice of the memory-mapped cache (densified is stored as uint8 there)."""
    return values.view(bool).copy() if name == "densified" else values.copy()


def _table_to_numpy(table: pa.Table) -> dict[str, np.ndarray]:
    out = {}
    for name in table.column_names:
        col = table.column(name)
        if name == "point3d_id":
            col = pc.fill_null(col, -1)
        out[name] = col.to_numpy()
    return out


def _empty_dtypes(columns: Sequence[str]) -> dict[str, np.dtype]:
    return {c: (np.dtype(bool) if c == "densified" else MATCHES_SCHEMA.field(c).type.to_pandas_dtype()) for c in columns}


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "IMAGES_SCHEMA", "PAIRS_SCHEMA", "MATCHES_SCHEMA", "OPTIONAL_MATCH_FIELDS",
    "StoreConfig", "ENCODING_CANDIDATES", "write_dataset", "open_dataset", "CorrespondenceStore", "round_mantissa",
    "choose_encodings", "stored_precision",
]
