"""How matches are rounded and encoded on disk: `StoreConfig`, stored precision, Parquet options.

Before writing, float columns are rounded to the precision that matters (``StoreConfig``),
which makes them far more compressible:

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COORD_COLUMNS = ("x0", "y0", "x1", "y1")  # rounded to StoreConfig.coord_step
MANTISSA_COLUMNS = ("weight", "dist3d", "err0", "err1")  # rounded to StoreConfig.mantissa_bits
FLOAT_MATCH_COLUMNS = COORD_COLUMNS + MANTISSA_COLUMNS
# Parquet encodings tried for every match column, by Arrow type (the first wins ties): only
# those that pyarrow, DuckDB and Polars have all read for years (no BYTE_STREAM_SPLIT integers).
ENCODING_CANDIDATES = {
    pa.float32(): ("BYTE_STREAM_SPLIT", "PLAIN"),
    pa.int64(): ("DELTA_BINARY_PACKED", "PLAIN"),
    pa.bool_(): ("PLAIN",),
}
ENCODING_SAMPLE_GROUPS = 4  # encodings are chosen on the first chunk's first row groups


@dataclass
class StoreConfig:
    """How matches are laid out and rounded on disk."""

    coord_step: float = 1.0 / 64  # pixel coordinates rounded to this step (a power of two); 0 = exact
    mantissa_bits: int = 8  # float32 mantissa bits kept for weight, dist3d, err0, err1; 23 = exact
    row_group_rows: int = 16384  # whole pairs are packed into row groups of about this many rows
    file_rows: int = 8_000_000  # a new matches/part-NNNNN.parquet file after about this many rows
    zstd_level: int = 6

    def validate(self) -> None:
        """Raise ValueError on a setting the writer cannot honour."""
        if self.coord_step < 0 or (self.coord_step > 0 and not np.log2(self.coord_step).is_integer()):
            raise ValueError(f"coord_step must be 0 or a power of two, got {self.coord_step}")
        if not 1 <= self.mantissa_bits <= 23:
            raise ValueError(f"mantissa_bits must be in 1..23, got {self.mantissa_bits}")
        if self.row_group_rows < 1 or self.file_rows < self.row_group_rows:
            raise ValueError("need 1 <= row_group_rows <= file_rows")


def round_for_storage(chunk: pa.Table, cfg: StoreConfig) -> pa.Table:
    """Round coordinates to `coord_step` and other floats to `mantissa_bits` (see the module docstring)."""
    for name in FLOAT_MATCH_COLUMNS:
        values = chunk.column(name).to_numpy()
        if name in COORD_COLUMNS:
            if cfg.coord_step > 0:
                step = np.float32(cfg.coord_step)
                values = (np.round(values / step) * step).astype(np.float32)
        else:
            values = round_mantissa(values, cfg.mantissa_bits)
            if name == "weight":
                values = np.clip(values, np.finfo(np.float32).tiny, 1.0)
        index = chunk.schema.get_field_index(name)
        chunk = chunk.set_column(index, chunk.schema.field(name), pa.array(values))
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
    """Worst-case rounding error of stored values beyond float32's: coordinates in px, others relative."""
    return {
        "coord_max_error_px": cfg.coord_step / 2,
        "max_relative_error": 0.0 if cfg.mantissa_bits == 23 else 2.0 ** -(cfg.mantissa_bits + 1),
    }


def choose_encodings(sample: pa.Table, cfg: StoreConfig) -> dict[str, str]:
    """For every column of `sample`, the candidate encoding under which it compresses smallest."""
    return {
        field.name: min(
            ENCODING_CANDIDATES[field.type],
            key=lambda encoding: _compressed_size(sample.select([field.name]), encoding, cfg),
        )
        for field in sample.schema
    }


def _compressed_size(column: pa.Table, encoding: str, cfg: StoreConfig) -> int:
    """Bytes of a one-column table written as Parquet with `encoding`, row groups and zstd as `cfg` says."""
    sink = pa.BufferOutputStream()
    options = {**parquet_options({column.column_names[0]: encoding}, cfg), "write_statistics": False}
    pq.write_table(column, sink, row_group_size=cfg.row_group_rows, **options)
    return sink.getvalue().size


def parquet_options(encodings: dict[str, str], cfg: StoreConfig) -> dict[str, Any]:
    """`pq.ParquetWriter` options of the match files: zstd, no dictionary, `encodings`, pair_id statistics."""
    return {
        "compression": "zstd",
        "compression_level": cfg.zstd_level,
        "use_dictionary": False,
        "column_encoding": encodings,
        "write_statistics": ["pair_id"],
    }


__all__ = [
    "COORD_COLUMNS",
    "ENCODING_CANDIDATES",
    "ENCODING_SAMPLE_GROUPS",
    "FLOAT_MATCH_COLUMNS",
    "MANTISSA_COLUMNS",
    "StoreConfig",
    "choose_encodings",
    "parquet_options",
    "round_for_storage",
    "round_mantissa",
    "stored_precision",
]
