"""Reading a correspondence dataset folder: `open_dataset` -> `CorrespondenceStore`.

`open_dataset` checks the format name and version, every table's schema and the row counts
of dataset.json before anything is read; with `verify` also every data file against the sizes,
row counts and SHA-256 that dataset.json records (`verify_files`). The store holds the `images`
and `pairs` tables and reads one pair's matches fast, checking their values as it reads them
(weights in (0, 1], coordinates finite and inside their image, `format.COORD_TOLERANCE_PX`).

Random per-pair reads (the torch Dataset, DataLoader workers, random order) go through a
memory-mapped, uncompressed Arrow IPC copy of the match table built once on first use in
``<dataset>/.cache/`` (or ``~/.cache/xseason`` when the dataset folder is read-only). It is
a cache: delete it at will; one that is truncated, damaged or does not fit the dataset is
rebuilt, and a changed matches file gets a new one. ``open_dataset(path, random_access="parquet")``
reads row groups straight from the Parquet files instead (an LRU keeps the last decoded ones).

Nullable ``point3d_id`` values are returned as -1 by ``matches()``; plain pandas, pyarrow and
DuckDB read the folder directly and see real nulls.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xseason import __version__
from xseason.core.errors import DatasetFormatError
from xseason.core.files import atomic_path, sha256_file, user_cache_dir
from xseason.core.geometry import Camera, Pose
from xseason.store import format as fmt
from xseason.store.remote import RemoteDataset, is_uri

log = logging.getLogger(__name__)

UNKNOWN_CONDITION = "(none)"  # how reports name the condition of an image that has none


Verify = Literal["size", "full"] | bool


def open_dataset(
    path: str | os.PathLike, random_access: Literal["mmap", "parquet"] = "mmap", verify: Verify = False
) -> CorrespondenceStore:
    """Open and validate a dataset folder (format, version, every table's schema, row counts).

    `path` may be a filesystem URI (``s3://bucket/ds``, ``gs://...``, any fsspec protocol): the
    dataset is then read from a checked local mirror (`remote.RemoteDataset.fetch`).

    `verify` also checks the data files against the `files` record of dataset.json before
    anything else: False (default) checks nothing more (fast); "size" their sizes, row counts
    (Parquet footers) and that none is missing or unrecorded; True or "full" also their SHA-256
    (reads every byte). A difference raises `DatasetFormatError` naming each file and what
    differs. A dataset written before xseason recorded `files` opens as before with
    verify=False; with verify requested it is an error (there is nothing to check the files
    against, and a check that silently checks nothing would promise what it cannot keep).
    """
    if is_uri(path):
        path = RemoteDataset.at(str(path), error=DatasetFormatError).fetch()
    root = Path(path)
    meta = read_meta(root)
    if verify:
        problems = verify_files(root, meta, full=_verify_level(verify) == "full")
        if problems:
            head = problems[0] if len(problems) == 1 else f"{len(problems)} problems: " + "; ".join(problems)
            raise DatasetFormatError(head)
    counts = meta.get("counts") or {}
    _check_file(
        root / "images.parquet", fmt.IMAGES_SCHEMA, counts.get("images"), optional=fmt.OPTIONAL_IMAGE_FIELDS
    )
    _check_file(root / "pairs.parquet", fmt.PAIRS_SCHEMA, counts.get("pairs"))
    files = _match_files(root)
    if not files:
        raise DatasetFormatError(f"{root / 'matches'}: no Parquet files")
    rows = sum(_check_file(f, fmt.MATCHES_SCHEMA, None, optional=fmt.OPTIONAL_MATCH_FIELDS) for f in files)
    if counts.get("matches") is not None and rows != counts["matches"]:
        raise DatasetFormatError(
            f"{root / 'matches'}: holds {rows} rows, dataset.json says {counts['matches']}"
        )
    return CorrespondenceStore(root, meta, random_access=random_access)


def read_meta(path: str | os.PathLike) -> dict:
    """The dataset.json of the dataset folder `path`, after checking its format name and version."""
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
    if not isinstance(meta, dict) or meta.get("format") != fmt.FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DatasetFormatError(f"{meta_path}: 'format' is {found!r}, expected '{fmt.FORMAT_NAME}'")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise DatasetFormatError(f"{meta_path}: invalid 'version' {version!r}")
    if version > fmt.FORMAT_VERSION:
        raise DatasetFormatError(
            f"{meta_path}: format version {version} was written by a newer xseason; "
            f"this one ({__version__}) reads up to version {fmt.FORMAT_VERSION}: "
            "upgrade xseason"
        )
    return meta


def _verify_level(verify: Verify) -> Literal["size", "full"]:
    if verify is True or verify == "full":
        return "full"
    if verify == "size":
        return "size"
    raise ValueError(f"verify must be False, 'size', True or 'full', got {verify!r}")


def verify_files(root: str | os.PathLike, meta: Mapping, full: bool = False) -> list[str]:
    """Check the data files of the dataset at `root` against `meta["files"]` (dataset.json).

    Every recorded file must exist with its recorded size and row count (and SHA-256 when
    `full`), and no data file may be unrecorded. Returns one line per problem, each naming the
    file (empty: all is well); a dataset without a `files` record is one problem.
    """
    root = Path(root)
    recorded = meta.get("files")
    if not isinstance(recorded, Mapping):
        return [
            f"{root / 'dataset.json'}: records no file sizes or checksums (written before xseason "
            "recorded them): nothing to verify the files against; rebuild the dataset to get them"
        ]
    problems = [
        f"{root / name}: not recorded in dataset.json (added after the dataset was written?)"
        for name in fmt.data_files(root)
        if name not in recorded
    ]
    for name, want in recorded.items():
        problem = _file_problem(root / name, want, full)
        if problem:
            problems.append(f"{root / name}: {problem}")
    return problems


def _file_problem(path: Path, want: Mapping, full: bool) -> str | None:
    """What differs between the data file `path` and its `files` record, or None."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size != want["bytes"]:
        return f"holds {size} bytes, dataset.json records {want['bytes']} (truncated or changed)"
    try:
        rows = pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowInvalid) as exc:
        return f"not a readable Parquet file: {exc}"
    if rows != want["rows"]:
        return f"holds {rows} rows, dataset.json records {want['rows']}"
    if full and (digest := sha256_file(path)) != want["sha256"]:
        return (
            f"SHA-256 is {digest[:16]}..., dataset.json records {want['sha256'][:16]}... (damaged or changed)"
        )
    return None


def _check_file(
    path: Path, schema: pa.Schema, rows: int | None, optional: Mapping[str, pa.Field] | None = None
) -> int:
    """Check one Parquet file's columns against `schema` (+ `optional`) and its row count; return it."""
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
            raise DatasetFormatError(
                f"{path}: column '{name}' is {actual.field(name).type}, expected {optional[name].type}"
            )
    if rows is not None and meta.num_rows != rows:
        raise DatasetFormatError(f"{path}: holds {meta.num_rows} rows, dataset.json says {rows}")
    return meta.num_rows


def pair_conditions(
    images: pd.DataFrame, pairs: pd.DataFrame, unknown: str = UNKNOWN_CONDITION
) -> pd.DataFrame:
    """`pairs` with two more columns: `reference` (condition of image 0) and `condition` (of image 1);
    an image without a condition counts as `unknown`. Same rows, order and index."""
    conditions = images.set_index("image_id")["condition"]
    return pairs.assign(
        reference=conditions.reindex(pairs["image_id0"]).fillna(unknown).to_numpy(),
        condition=conditions.reindex(pairs["image_id1"]).fillna(unknown).to_numpy(),
    )


class CorrespondenceStore:
    """An opened dataset: `images`, `pairs` (DataFrames), `meta` (dataset.json) and fast per-pair reads.

    Picklable: file handles and caches are dropped on pickling and reopened lazily, so a store
    can be handed to DataLoader workers.
    """

    def __init__(
        self,
        root: Path,
        meta: dict,
        random_access: Literal["mmap", "parquet"] = "mmap",
        lru_row_groups: int = 8,
    ) -> None:
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
        self._pair_limits: np.ndarray | None = None  # upper limits of x0 y0 x1 y1 per pair (on first read)
        self._reset_handles()

    # -- pickling: drop open files and caches
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_columns_mm", "_chunk_start", "_checked", "_files", "_lru", "_rg_start", "_rg_index"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_handles()

    def _reset_handles(self) -> None:
        self._columns_mm: dict[str, list[np.ndarray]] | None = None
        self._chunk_start: np.ndarray | None = None
        self._checked: np.ndarray | None = None  # cache batches whose values were checked
        self._cache_rebuilt = False  # for bad values (a rebuild that does not help is not repeated)
        self._files: list[pq.ParquetFile] | None = None
        self._rg_start: np.ndarray | None = None  # global first row of every row group
        self._lru: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()

    @property
    def match_columns(self) -> list[str]:
        """The match columns of this dataset: the schema's, plus `densified` when it has that column."""
        densified = self.meta.get("storage", {}).get("densified_column")
        return fmt.MATCHES_SCHEMA.names + (["densified"] if densified else [])

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        c = self.meta.get("counts", {})
        return (
            f"CorrespondenceStore({str(self.root)!r}, images={c.get('images')}, pairs={c.get('pairs')}, "
            f"matches={c.get('matches')})"
        )

    # -- images
    def _image_row(self, image_id: int) -> pd.Series:
        try:
            return self.images.iloc[self._image_rows[int(image_id)]]
        except KeyError:
            raise DatasetFormatError(f"{self.root}: no image_id {image_id}") from None

    def camera(self, image_id: int) -> Camera:
        """The image's camera (COLMAP model and parameters; xseason's pixel convention: core.geometry)."""
        row = self._image_row(image_id)
        return Camera(str(row["camera_model"]), int(row["width"]), int(row["height"]), tuple(row["params"]))

    def pose(self, image_id: int) -> Pose | None:
        """The image's world-to-camera pose, None when it is not registered."""
        row = self._image_row(image_id)
        if not row["registered"]:
            return None
        return Pose.from_qt(
            row[list(fmt.POSE_COLUMNS[:4])].to_numpy(float), row[list(fmt.POSE_COLUMNS[4:])].to_numpy(float)
        )

    def image_path(self, image_id: int) -> Path:
        """Absolute path of an image: under dataset.json's image root, or its path relative to the dataset."""
        name = self._image_row(image_id)["image"]
        absolute = Path(self.meta["image_root"])
        if not absolute.is_dir() and self.meta.get("image_root_relative") is not None:
            relative = (self.root / self.meta["image_root_relative"]).resolve()
            if relative.is_dir():
                absolute = relative
        return absolute / name

    # -- pairs
    def pair_conditions(self, unknown: str = UNKNOWN_CONDITION) -> pd.DataFrame:
        """The pairs table with the conditions of its two images (module function `pair_conditions`)."""
        return pair_conditions(self.images, self.pairs, unknown)

    # -- matches
    def _locate(self, pair_id: int) -> tuple[int, int]:
        i = np.searchsorted(self._pair_ids, pair_id)
        if i >= self._pair_ids.size or self._pair_ids[i] != pair_id:
            raise KeyError(f"pair_id {pair_id} is not in {self.root}")
        return int(self._pair_start[i]), int(self._pair_count[i])

    def matches(self, pair_id: int) -> dict[str, np.ndarray]:
        """One pair's matches as {column: array} (point3d_id null -> -1).

        Raises `DatasetFormatError` naming the file and the pair when a weight is not in (0, 1] or
        a coordinate is not finite or lies more than `format.COORD_TOLERANCE_PX` outside its image (the
        row group or cache batch holding the pair is checked once, on its first read).
        """
        start, count = self._locate(pair_id)
        if self.random_access == "mmap":
            return self._read_mmap(start, count)
        return self._read_parquet(start, count)

    def _check_rows(self, cols: Mapping[str, np.ndarray], first_row: int, cached: bool = False) -> None:
        """Raise `DatasetFormatError`, naming the file and the pair, when a row of `cols` (the
        dataset's match rows from `first_row` on: a row group, or a batch of the cache when
        `cached`) breaks the value rules of `format.value_problem`. Called once per chunk, not per pair."""
        ids = cols["pair_id"]
        if not ids.size:
            return
        if self._pair_limits is None:
            self._pair_limits = fmt.coordinate_limits(self.images, self.pairs)
        starts = fmt.pair_starts(ids)
        pair = np.searchsorted(self._pair_ids, ids[starts]).clip(0, max(self._pair_ids.size - 1, 0))
        problem = fmt.value_problem(cols, starts, self._pair_limits[pair])
        if problem:
            row, text = problem
            files = _match_files(self.root)
            ends = np.cumsum([pq.read_metadata(f).num_rows for f in files])
            file = files[min(int(np.searchsorted(ends, first_row + row, side="right")), len(files) - 1)]
            via = f" (read through the cache {self.cache_path()})" if cached else ""
            raise DatasetFormatError(f"{file}: pair_id {ids[row]}: {text}{via}")

    def iter_matches(
        self, batch_pairs: int = 256, columns: Sequence[str] | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Stream all matches in pair order, a row group at a time, in chunks of <= `batch_pairs` pairs.

        Every row group is checked as `matches()` checks a pair (the columns read, that is).
        """
        columns = list(columns or self.match_columns)
        if "pair_id" not in columns:
            columns = ["pair_id", *columns]
        first_row = 0
        for f in _match_files(self.root):
            pf = pq.ParquetFile(f)
            for g in range(pf.metadata.num_row_groups):
                group = _table_to_numpy(pf.read_row_group(g, columns=columns))
                self._check_rows(group, first_row)
                ids = group["pair_id"]
                first_row += ids.size
                starts = fmt.pair_starts(ids)
                cuts = np.r_[starts[::batch_pairs], ids.size]
                for a, b in zip(cuts[:-1], cuts[1:]):
                    yield {k: v[a:b] for k, v in group.items()}

    # Parquet path: row groups, LRU of decoded groups
    def _open_files(self) -> None:
        self._files = [pq.ParquetFile(f) for f in _match_files(self.root)]
        sizes = [
            (k, g, pf.metadata.row_group(g).num_rows)
            for k, pf in enumerate(self._files)
            for g in range(pf.metadata.num_row_groups)
        ]
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
            parts.append({k: v[local : local + take] for k, v in group.items()})
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
        self._check_rows(group, int(self._rg_start[g]))
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
        if not self._checked[c]:
            self._check_batch(c)
        local = start - int(self._chunk_start[c])
        if local + count <= self._columns_mm["pair_id"][c].size:
            return {k: _from_cache(k, v[c][local : local + count]) for k, v in self._columns_mm.items()}
        return self._read_parquet(start, count)  # a pair split across batches: only in foreign files

    def _check_batch(self, c: int) -> None:
        """Check the values of cache batch `c` (once). Bad values that the Parquet files do not
        hold mean a damaged cache: it is rebuilt (once per store) and checked again."""
        first = int(self._chunk_start[c])
        batch = {k: v[c] for k, v in self._columns_mm.items()}
        try:
            self._check_rows(batch, first, cached=True)
        except DatasetFormatError as exc:
            self._read_parquet(first, batch["pair_id"].size)  # raises, naming the file, if they are there
            if self._cache_rebuilt:
                raise
            log.warning("%s; the Parquet files hold other values: rebuilding the damaged cache", exc)
            self._cache_rebuilt = True
            self.build_cache(rebuild=True)
            self._open_mmap()
            self._check_batch(c)
        else:
            self._checked[c] = True

    def cache_path(self) -> Path:
        """Where the random-access cache of this dataset lives (built on first use).

        Its key hashes the dataset's path, `created`, `counts`, `files` and the size and
        modification time of every matches file: a changed matches file gets a new cache.
        """
        stats = [(f.name, st.st_size, st.st_mtime_ns) for f in _match_files(self.root) for st in [f.stat()]]
        identity = [
            str(self.root.resolve()),
            *(self.meta.get(k) for k in ("created", "counts", "files")),
            stats,
        ]
        key = hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:16]
        local = self.root / ".cache" / f"matches-{key}.arrow"
        if local.exists() or os.access(self.root, os.W_OK):
            return local
        return user_cache_dir() / f"matches-{key}.arrow"

    def build_cache(self, rebuild: bool = False) -> Path:
        """Write the memory-mappable match cache now (otherwise done on the first `matches()` call).

        An existing one is kept unless `rebuild`. Written atomically; in the dataset's own
        `.cache/`, the caches of earlier states of the dataset are removed.
        """
        path = self.cache_path()
        if path.exists() and not rebuild:
            return path
        columns = self.match_columns
        # no nulls and no bit-packed booleans, so that every column is a zero-copy numpy view
        schema = pa.schema(
            [
                pa.field(
                    c, pa.uint8() if c == "densified" else fmt.MATCHES_SCHEMA.field(c).type, nullable=False
                )
                for c in columns
            ]
        )
        with (
            atomic_path(path) as tmp,
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, schema) as writer,
        ):
            for f in _match_files(self.root):
                pf = pq.ParquetFile(f)
                for g in range(pf.metadata.num_row_groups):
                    t = pf.read_row_group(g, columns=columns)
                    i = t.schema.get_field_index("point3d_id")
                    t = t.set_column(i, schema.field("point3d_id"), pc.fill_null(t.column(i), -1))
                    writer.write_table(t.cast(schema).combine_chunks())
        if path.parent == self.root / ".cache":
            for stale in path.parent.glob("matches-*.arrow"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        return path

    def _open_mmap(self) -> None:
        """Map the cache; a damaged or truncated one, or one that does not fit the dataset, is rebuilt."""
        path = self.build_cache()
        try:
            self._map_cache(path)
        except (OSError, pa.ArrowException, _UnfitCache) as exc:
            log.warning("%s: unusable match cache (%s); rebuilding it", path, exc)
            path = self.build_cache(rebuild=True)
            try:
                self._map_cache(path)
            except (OSError, pa.ArrowException, _UnfitCache) as again:
                raise DatasetFormatError(
                    f"{path}: the match cache rebuilt from {self.root / 'matches'} is unusable: {again}"
                ) from None

    def _map_cache(self, path: Path) -> None:
        reader = pa.ipc.open_file(pa.memory_map(str(path), "r"))
        if reader.schema.names != self.match_columns:
            raise _UnfitCache(f"its columns are {reader.schema.names}, the dataset's {self.match_columns}")
        cols: dict[str, list[np.ndarray]] = {c: [] for c in reader.schema.names}
        sizes = []
        for b in range(reader.num_record_batches):
            batch = reader.get_batch(b)
            sizes.append(batch.num_rows)
            for c in cols:
                arr = batch.column(c)
                cols[c].append(arr.to_numpy(zero_copy_only=True))
        expected = int(self._pair_count.sum())
        if sum(sizes) != expected:
            raise _UnfitCache(f"it holds {sum(sizes)} rows, the dataset {expected}")
        self._columns_mm = cols
        self._chunk_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._checked = np.zeros(len(sizes), dtype=bool)


class _UnfitCache(Exception):
    """The match cache does not fit the dataset (columns, rows): rebuild it."""


def _match_files(root: Path) -> list[Path]:
    """The matches files of the dataset at `root`, in order."""
    return sorted((root / "matches").glob("*.parquet"))


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
    return {
        c: np.dtype(bool) if c == "densified" else fmt.MATCHES_SCHEMA.field(c).type.to_pandas_dtype()
        for c in columns
    }


__all__ = ["UNKNOWN_CONDITION", "CorrespondenceStore", "open_dataset"]
