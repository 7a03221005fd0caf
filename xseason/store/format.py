"""The correspondence dataset on disk (docs/FORMAT.md §3): names, version, schemas, and the writer.

Layout of a dataset folder::

    dataset.json        format, version, build config, manifest checksum, counts, image root,
                        files (size, SHA-256 and row count of every data file below)
    images.parquet      one row per image
    pairs.parquet       one row per image pair
    matches/            part-00000.parquet, ...: rows sorted by pair_id
    points3d.parquet    optional

`write_dataset` checks every table against its schema, then writes the folder atomically; the
checksums in `files` let a reader check what it opens (`reader.open_dataset(verify=...)`).
Matches are written sorted by pair_id, and within a pair by point3d_id (nulls last), in row
groups that hold whole pairs (a pair never straddles two row groups), zstd-compressed, their
floats rounded and their columns encoded as `xseason.store.encoding` says. Reading:
`xseason.store.reader`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xseason import __version__
from xseason.core.config import to_dict
from xseason.core.errors import DatasetFormatError
from xseason.core.executor import Executor, LocalExecutor
from xseason.core.files import atomic_path, check_replaceable, sha256_file, write_json
from xseason.store.encoding import (
    ENCODING_SAMPLE_GROUPS,
    FLOAT_MATCH_COLUMNS,
    StoreConfig,
    choose_encodings,
    parquet_options,
    round_for_storage,
    stored_precision,
)

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
# Optional extra image columns: the manifest's label PNG, relative to the image root (for training/eval);
# the image's split (train / val / test; null: in no split), which all its pairs share.
OPTIONAL_IMAGE_FIELDS = {
    "label": pa.field("label", pa.string()),
    "split": pa.field("split", pa.string()),
    "registration_confidence": pa.field("registration_confidence", pa.float32()),
}

_RESERVED_META = {
    "format",
    "version",
    "created",
    "tool_version",
    "config",
    "manifest_sha256",
    "image_root",
    "image_root_relative",
    "counts",
    "storage",
    "files",
}

_LOCAL = LocalExecutor()
DATASET_OUTPUT = f"an xseason dataset (a folder whose dataset.json has format '{FORMAT_NAME}')"


def is_dataset(path: str | os.PathLike) -> bool:
    """True when `path` is a folder whose dataset.json names this format (the one sign of a dataset)."""
    try:
        meta = json.loads((Path(path) / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT_NAME


def data_files(root: str | os.PathLike) -> list[str]:
    """The data files of the dataset at `root`, as POSIX paths relative to it: images.parquet,
    pairs.parquet, points3d.parquet when present, then every matches/*.parquet in order."""
    root = Path(root)
    tables = ["images.parquet", "pairs.parquet"]
    if (root / "points3d.parquet").is_file():
        tables.append("points3d.parquet")
    return tables + [f"matches/{p.name}" for p in sorted((root / "matches").glob("*.parquet"))]


def file_record(path: str | os.PathLike) -> dict[str, int | str]:
    """What dataset.json's `files` holds for one data file: its size in bytes, SHA-256 and row count."""
    return {
        "bytes": os.path.getsize(path),
        "sha256": sha256_file(path),
        "rows": pq.read_metadata(path).num_rows,
    }


def check_dataset_output(out_dir: str | os.PathLike) -> None:
    """Raise `OutputError` unless a dataset may be written at `out_dir`: a new path, an empty folder
    or an existing dataset (which is replaced), never anything else (`core.files.check_replaceable`).
    Writers call it before any work; `write_dataset` checks again when it writes."""
    check_replaceable(out_dir, "folder", replace_only_if=is_dataset, what=DATASET_OUTPUT)


def write_dataset(
    out_dir: str | os.PathLike,
    images: pd.DataFrame,
    pairs: pd.DataFrame,
    matches: pa.Table
    | pd.DataFrame
    | Mapping[str, np.ndarray]
    | Iterable[pa.Table | pd.DataFrame | Mapping]
    | None = None,
    *,
    config: dict,
    manifest_checksum: str | None,
    image_root: str | os.PathLike,
    points3d: pd.DataFrame | None = None,
    extra_meta: dict | None = None,
    store_config: StoreConfig | None = None,
    parts: Sequence[Callable[[], pa.Table | pd.DataFrame]] | None = None,
    executor: Executor | None = None,
) -> Path:
    """Validate the tables and write a complete dataset folder at `out_dir` (atomically; what is
    there must be nothing, an empty folder or a dataset: `check_dataset_output`).

    The matches come one of two ways. `matches`: one table (sorted by pair_id here if it is not)
    or an iterable of chunks in increasing pair_id order (a pair may not continue into the next
    chunk), written here chunk by chunk without holding the whole match set, in files of about
    `file_rows` rows. `parts`: picklable callables, each returning the matches of one file
    `part-NNNNN.parquet` (pairs in increasing pair_id order, every pair in one part, the parts in
    increasing pair_id order), written by tasks of `executor` (default: this process) with the
    encodings chosen here on the first part, each one checked and rounded as above; the counts
    they return are checked here before anything is committed. `config` is the full build config
    (stored in dataset.json), `points3d` a free-form table written as is. Returns the folder.
    """
    cfg = store_config or StoreConfig()
    cfg.validate()
    images_t = _null_unregistered_poses(_to_table(images, IMAGES_SCHEMA, "images", OPTIONAL_IMAGE_FIELDS))
    pairs_t = _to_table(pairs, PAIRS_SCHEMA, "pairs")
    _check_images_pairs(images_t, pairs_t)
    pairs_t = pairs_t.take(np.argsort(pairs_t.column("pair_id").to_numpy(), kind="stable"))
    pair_ids = pairs_t.column("pair_id").to_numpy()
    limits = coordinate_limits(images_t, pairs_t)
    if (matches is None) == (parts is None):
        raise ValueError("write_dataset: give either matches or parts")

    out_dir = Path(out_dir)
    with atomic_path(out_dir, "folder", replace_only_if=is_dataset, what=DATASET_OUTPUT) as tmp:
        (tmp / "matches").mkdir(parents=True)
        if parts is None:
            counts, encodings = _write_matches(tmp / "matches", _match_chunks(matches), pair_ids, limits, cfg)
        else:
            counts, encodings = _write_parts(tmp / "matches", parts, pair_ids, limits, cfg, executor)
        n_points = _commit(tmp, images_t, pairs_t, counts, cfg, points3d)
        image_root = Path(image_root).resolve()
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "created": {
                "utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "host": platform.node(),
                "python": platform.python_version(),
            },
            "tool_version": __version__,
            "config": config,
            "manifest_sha256": manifest_checksum,
            "image_root": str(image_root),
            "image_root_relative": os.path.relpath(image_root, out_dir.resolve()),
            "counts": {
                "images": images_t.num_rows,
                "pairs": pairs_t.num_rows,
                "matches": int(counts.sum()),
                "points3d": n_points,
            },
            "storage": {
                **to_dict(cfg),
                **stored_precision(cfg),
                "densified_column": "densified" in encodings,
                "encodings": encodings,
            },
            "files": {name: file_record(tmp / name) for name in data_files(tmp)},
        }
        for key, value in (extra_meta or {}).items():
            if key in _RESERVED_META:
                raise DatasetFormatError(f"extra_meta: '{key}' is a reserved dataset.json key")
            meta[key] = value
        write_json(tmp / "dataset.json", meta)
    return out_dir


def _write_parts(
    folder: Path,
    parts: Sequence[Callable[[], pa.Table | pd.DataFrame]],
    pair_ids: np.ndarray,
    limits: np.ndarray,
    cfg: StoreConfig,
    executor: Executor | None,
) -> tuple[np.ndarray, dict[str, str]]:
    """Every part into its own file by `executor`'s tasks (`_part_task`), with the encodings chosen
    on the first rows of the first part that has any; per-pair counts and the encodings."""
    encodings: dict[str, str] = {}
    for part in parts:
        sample = _match_table(part()).slice(0, ENCODING_SAMPLE_GROUPS * cfg.row_group_rows)
        if sample.num_rows:
            encodings = choose_encodings(round_for_storage(_sort_within_pairs(sample), cfg), cfg)
            break
    counts = np.zeros(pair_ids.size, np.int64)
    if not encodings:  # no match at all: one empty file, as `_write_matches` writes
        pq.write_table(MATCHES_SCHEMA.empty_table(), folder / "part-00000.parquet")
        return counts, encodings
    items = [(part, folder / f"part-{k:05d}.parquet") for k, part in enumerate(parts)]
    last = -1
    for name, (positions, n) in zip(
        (path.name for _, path in items),
        (executor or _LOCAL).map(_part_task, items, (pair_ids, limits, encodings, cfg)),
    ):
        if len(positions) and positions[0] <= last:
            raise DatasetFormatError(
                f"matches: {name} starts at or before the pair_id where the part before ends"
            )
        last = positions[-1] if len(positions) else last
        counts[positions] += n
    return counts, encodings


def _part_task(item: tuple[Callable[[], Any], Path], shared: tuple) -> tuple[np.ndarray, np.ndarray]:
    """One part file (a task of `_write_parts`): its matches checked, rounded and written with the
    dataset's encodings; the positions of its pairs (in pair_id order) and their row counts."""
    part, path = item
    pair_ids, limits, encodings, cfg = shared
    counts, _ = _write_matches(
        path.parent, iter([_match_table(part())]), pair_ids, limits, cfg, encodings, path.name
    )
    positions = np.flatnonzero(counts)
    return positions, counts[positions]


def _commit(
    tmp: Path,
    images: pa.Table,
    pairs: pa.Table,
    counts: np.ndarray,
    cfg: StoreConfig,
    points3d: pd.DataFrame | None,
) -> int | None:
    """The driver's share once the matches are written: the counts checked against the pairs, then
    images.parquet, pairs.parquet and points3d.parquet (its rows returned; None without it)."""
    expected = pairs.column("num_matches").to_numpy()
    bad = np.flatnonzero(counts != expected)
    if bad.size:
        i = bad[0]
        raise DatasetFormatError(
            f"pairs: num_matches of pair_id {pairs.column('pair_id')[i]} is {expected[i]} but the matches "
            f"hold {counts[i]} rows ({bad.size} pair(s) disagree)"
        )
    _write_parquet(images, tmp / "images.parquet", cfg)
    _write_parquet(pairs, tmp / "pairs.parquet", cfg)
    if points3d is None:
        return None
    points = pa.Table.from_pandas(points3d, preserve_index=False)
    _write_parquet(points, tmp / "points3d.parquet", cfg)
    return points.num_rows


POSE_COLUMNS = ("qw", "qx", "qy", "qz", "tx", "ty", "tz")


def _null_unregistered_poses(images: pa.Table) -> pa.Table:
    """An unregistered image has no pose: its pose columns are null (writers may pass NaN)."""
    unregistered = pc.invert(images.column("registered"))
    for name in POSE_COLUMNS:
        i = images.schema.get_field_index(name)
        column = images.column(i)
        images = images.set_column(
            i, images.schema.field(i), pc.if_else(unregistered, pa.scalar(None, column.type), column)
        )
    return images


def _to_table(
    df: pd.DataFrame | pa.Table, schema: pa.Schema, name: str, optional: Mapping[str, pa.Field] | None = None
) -> pa.Table:
    """Cast `df` to exactly `schema` plus the `optional` fields it has (column by column: errors name it)."""
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
            arr = (
                col.cast(field.type)
                if isinstance(col, pa.ChunkedArray)
                else pa.array(col, type=field.type, from_pandas=not pa.types.is_floating(field.type))
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise DatasetFormatError(
                f"{name}: column '{field.name}' cannot be stored as {field.type}: {exc}"
            ) from None
        if not field.nullable and arr.null_count:
            raise DatasetFormatError(
                f"{name}: column '{field.name}' has {arr.null_count} null value(s); nulls not allowed"
            )
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
            raise DatasetFormatError(
                f"pairs: column '{col}' refers to unknown image_id {missing[0]} ({missing.size} unknown)"
            )
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


def _write_matches(
    folder: Path,
    chunks: Iterator[pa.Table],
    pair_ids: np.ndarray,
    limits: np.ndarray,
    cfg: StoreConfig,
    encodings: dict[str, str] | None = None,
    name: str | None = None,
) -> tuple[np.ndarray, dict[str, str]]:
    """Stream match chunks into row groups of whole pairs, each checked against the value rules
    (`value_problem`; `limits`: `coordinate_limits` of the pairs, in `pair_ids` order), in files
    `part-NNNNN.parquet` of about `file_rows` rows, or all in the one file `name` (nothing when
    there is no row). `encodings`: those to use (default: chosen on the first rows).

    Returns per-pair counts (in `pair_ids` order) and the encoding of every column (empty: no match).
    """
    counts = np.zeros(pair_ids.size, dtype=np.int64)
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    encodings = encodings or {}
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
            starts = pair_starts(ids)
            cols = {name: chunk.column(name).to_numpy() for name in ("weight", *_COORDINATES)}
            problem = value_problem(cols, starts, limits[pos[starts]])
            if problem:
                raise DatasetFormatError(f"matches: pair_id {ids[problem[0]]}: {problem[1]}")
            counts += np.bincount(pos, minlength=pair_ids.size)
            chunk = round_for_storage(_sort_within_pairs(chunk), cfg)
            sample_rows = ENCODING_SAMPLE_GROUPS * cfg.row_group_rows
            encodings = encodings or choose_encodings(chunk.slice(0, sample_rows), cfg)
            for start, stop in _row_groups(ids, cfg.row_group_rows):
                if writer is None or (name is None and file_rows >= cfg.file_rows):
                    if writer is not None:
                        writer.close()
                    writer = pq.ParquetWriter(
                        folder / (name or f"part-{n_files:05d}.parquet"),
                        schema,
                        **parquet_options(encodings, cfg),
                    )
                    n_files += 1
                    file_rows = 0
                writer.write_table(chunk.slice(start, stop - start), row_group_size=stop - start)
                file_rows += stop - start
    finally:
        if writer is not None:
            writer.close()
    if (
        writer is None and name is None
    ):  # no match at all: still one valid (empty) file, so readers see the schema
        pq.write_table(MATCHES_SCHEMA.empty_table(), folder / "part-00000.parquet")
    return counts, encodings


def _sort_within_pairs(chunk: pa.Table) -> pa.Table:
    """Order each pair's rows by point3d_id (nulls last): the ids then delta-encode compactly."""
    keys = [("pair_id", "ascending"), ("point3d_id", "ascending")]
    return chunk.take(pc.sort_indices(chunk, sort_keys=keys))


def _check_match_values(chunk: pa.Table, ids: np.ndarray, last_pair: int | None) -> None:
    if (np.diff(ids) < 0).any() or (last_pair is not None and ids[0] < last_pair):
        raise DatasetFormatError("matches: chunks must be sorted by pair_id (a chunk went backwards)")
    if last_pair is not None and ids[0] == last_pair:
        raise DatasetFormatError(
            f"matches: pair_id {last_pair} continues into the next chunk; keep each pair in one chunk"
        )
    for name in FLOAT_MATCH_COLUMNS:
        values = chunk.column(name).to_numpy()
        if not np.isfinite(values).all() and name not in ("err0", "err1", "dist3d"):
            raise DatasetFormatError(f"matches: column '{name}' has non-finite values")


COORD_TOLERANCE_PX = 1.0  # how far outside its image (§1: x in [-0.5, width - 0.5]) a match may lie
_COORDINATES = ("x0", "y0", "x1", "y1")


def value_problem(
    cols: Mapping[str, np.ndarray], starts: np.ndarray, limits: np.ndarray
) -> tuple[int, str] | None:
    """The first row of `cols` whose values break the rules, and how; None when none does.

    `weight` must be in (0, 1], `x0 y0 x1 y1` within [-0.5 - COORD_TOLERANCE_PX, limit] (so
    finite). The rows come in runs of one pair starting at rows `starts`; `limits` holds every
    run's upper limits of x0 y0 x1 y1 (shape (runs, 4); the largest float where the image size
    is unknown). Columns that `cols` lacks are not checked. Two passes over each column checked.
    """
    w = cols.get("weight")
    if w is not None and w.size and not (w.min() > 0 and w.max() <= 1):  # NaN fails both
        row = int(np.argmin((w > 0) & (w <= 1)))
        return row, f"'weight' is {w[row]:.7g}, not in (0, 1]"
    low = -0.5 - COORD_TOLERANCE_PX
    for k, name in enumerate(_COORDINATES):
        x = cols.get(name)
        if x is None or not x.size:
            continue
        if x.min() >= low and (np.maximum.reduceat(x, starts) <= limits[:, k]).all():  # NaN fails min
            continue
        high = np.repeat(limits[:, k], np.diff(np.r_[starts, x.size]))
        row = int(np.argmin(np.isfinite(x) & (x >= low) & (x <= high)))
        return row, (
            f"'{name}' is {x[row]:.7g}, outside image {k // 2} of the pair "
            f"(allowed: {low:g} to {high[row]:g} px, the image and {COORD_TOLERANCE_PX:g} px around it)"
        )
    return None


def coordinate_limits(images: pa.Table | pd.DataFrame, pairs: pa.Table | pd.DataFrame) -> np.ndarray:
    """Upper limits of x0 y0 x1 y1 for every pair (rows in `pairs`' order), shape (pairs, 4): its
    images' width or height - 0.5 + `COORD_TOLERANCE_PX`; the largest float where the size is
    unknown (0, or no such image). The tables: Arrow or pandas, columns read by name."""
    ids = np.asarray(images["image_id"])
    order = np.argsort(ids)
    sizes = np.stack([np.asarray(images["width"]), np.asarray(images["height"])], 1)[order]
    pair_images = np.stack([np.asarray(pairs["image_id0"]), np.asarray(pairs["image_id1"])], 1)
    pos = np.searchsorted(ids[order], pair_images).clip(0, max(ids.size - 1, 0))
    known = ids[order][pos] == pair_images
    limits = np.where(known[..., None], sizes[pos], 0).reshape(-1, 4).astype(np.float64)
    unknown = np.finfo(np.float64).max  # any finite value is within, infinity is not
    return np.where(limits > 0, limits - 0.5 + COORD_TOLERANCE_PX, unknown)


def pair_starts(ids: np.ndarray) -> np.ndarray:
    """The first row of every run of equal `ids` (pair_id values in storage order; [0] for none)."""
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])


def _row_groups(ids: np.ndarray, target: int) -> list[tuple[int, int]]:
    """Split sorted `ids` into [start, stop) ranges of about `target` rows, cutting only between pairs."""
    cuts = np.r_[pair_starts(ids), ids.size]  # pair starts + end
    bounds = [0]
    while bounds[-1] < ids.size:
        start = bounds[-1]
        stop = cuts[np.searchsorted(cuts, start + target, side="right") - 1]  # last cut within target
        if stop <= start:  # one pair larger than target: a row group of its own
            stop = cuts[np.searchsorted(cuts, start, side="right")]
        bounds.append(int(stop))
    return list(zip(bounds[:-1], bounds[1:]))


def _write_parquet(table: pa.Table, path: Path, cfg: StoreConfig) -> None:
    pq.write_table(table, path, compression="zstd", compression_level=cfg.zstd_level)
