"""The correspondence dataset on disk (docs/FORMAT.md §3): write it, open it, read pairs, compare builds.

Modules: `format` (names, version, schemas, `write_dataset`; `is_dataset` and
`check_dataset_output`: what a dataset may replace), `encoding` (`StoreConfig`: rounding, stored
precision, column encodings), `reader` (`open_dataset` -> `CorrespondenceStore`, the memory-mapped
cache), `digest` (content digests of a dataset), `interop` (the reference
paper's per-pair .mat files: `import_mat`, `export_mat`; import it from `xseason.store.interop`).
"""

from xseason.store.digest import content_digests, table_digest
from xseason.store.encoding import StoreConfig, round_mantissa, stored_precision
from xseason.store.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    IMAGES_SCHEMA,
    MATCHES_SCHEMA,
    OPTIONAL_IMAGE_FIELDS,
    OPTIONAL_MATCH_FIELDS,
    PAIRS_SCHEMA,
    SPLITS,
    check_dataset_output,
    is_dataset,
    write_dataset,
)
from xseason.store.reader import UNKNOWN_CONDITION, CorrespondenceStore, open_dataset

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IMAGES_SCHEMA",
    "MATCHES_SCHEMA",
    "OPTIONAL_IMAGE_FIELDS",
    "OPTIONAL_MATCH_FIELDS",
    "PAIRS_SCHEMA",
    "SPLITS",
    "UNKNOWN_CONDITION",
    "CorrespondenceStore",
    "StoreConfig",
    "check_dataset_output",
    "content_digests",
    "is_dataset",
    "open_dataset",
    "round_mantissa",
    "stored_precision",
    "table_digest",
    "write_dataset",
]
