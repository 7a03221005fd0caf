"""The reference paper's per-pair `.mat` correspondence files <-> our dataset (docs/FORMAT.md §5).

Layout of one file (Larsson et al., CVPR 2019), as their PyTorch loader reads it with h5py
(`maunzzz/cross-season-segmentation`, `datasets/correspondences.py`). The files are MATLAB
v7.3 MAT-files, i.e. HDF5 files with a 512-byte userblock holding the MATLAB header.
MATLAB stores arrays column-major, so an m x n MATLAB array is an HDF5 dataset of shape
(n, m) as h5py sees it:

| field              | MATLAB                | h5py shape | meaning                                    |
| ------------------ | --------------------- | ---------- | ------------------------------------------ |
| `im_i_path`        | 1 x L char            | (L, 1)     | reference image path, uint16 char codes    |
| `im_j_path`        | 1 x L char            | (L, 1)     | other-condition image path                 |
| `pt_i`, `pt_j`     | 2 x N double          | (N, 2)     | column 0 = x, column 1 = y (loader: 2 x N) |
| `dist_from_center` | N x 1 double          | (1, N)     | per match; the loader's weight = exp(-d)   |

Attributes as MATLAB writes them: `MATLAB_class` (fixed-length ASCII: `char` / `double`),
`MATLAB_int_decode = 2` on char arrays (UTF-16 code units), and for an empty array a
`MATLAB_empty = 1` attribute with the array's dimensions as the stored data.

Pixel convention: their loader indexes the network output with `int(pt + 0.5)` and keeps a
point when `pt >= 0` and `pt + 0.5 < size`, i.e. it treats the stored values as 0-based with
the centre of the top-left pixel at (0, 0) — the same as docs/FORMAT.md §1 — so by default
coordinates are copied unchanged. Files known to hold MATLAB 1-based pixels can be imported
with `pixel_offset=-1` (added on import, subtracted on export).

Import: weight = exp(-dist_from_center) (clipped to the smallest positive float32), dist3d =
dist_from_center (the closest quantity we have), err0/err1 = NaN and point3d_id = null
(unknown), overlap = NaN. Image i is the reference condition. Conditions come from the file
name (`correspondence_run1_<reference>_run2_<condition>_*.mat`), else from the options. The
pair_id is the number ending each file name when all files have distinct ones (as
`export_mat` writes them), else the rank of the file name. The split is by place: the slice of
`correspondence_slice<N>_*.mat` files, otherwise blocks of `place_block` consecutive reference
images (sorted by path, i.e. along the traversal); each place goes to train / val / test by a
hash of its key, so no place is in two splits.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from xseason.core.config import to_dict
from xseason.core.errors import ConfigError, DatasetFormatError
from xseason.core.files import atomic_path, check_outside
from xseason.core.log import progress
from xseason.store.encoding import StoreConfig
from xseason.store.format import check_dataset_output, write_dataset
from xseason.store.reader import open_dataset

MAT_FIELDS = ("im_i_path", "im_j_path", "pt_i", "pt_j", "dist_from_center")
_RUN_PATTERN = re.compile(r"run\d+_(?P<reference>[^_]+)_run\d+_(?P<condition>[^_.]+)")
_SLICE_PATTERN = re.compile(r"^correspondence_slice(?P<slice>\d+)_")


@dataclass
class MatPair:
    """One `.mat` file's content, in our orientation: points are (N, 2) arrays of (x, y)."""

    im_i_path: str
    im_j_path: str
    pt_i: np.ndarray
    pt_j: np.ndarray
    dist_from_center: np.ndarray


@dataclass
class ImportConfig:
    """Options of `import_mat`."""

    reference_condition: str | None = None  # when the file name does not say
    condition: str | None = None  # the other condition, when the file name does not say
    pixel_offset: float = 0.0  # added to the files' coordinates (-1 for MATLAB 1-based files)
    place_block: int = 50  # consecutive reference images that form one place (no slice in the name)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test, by place
    seed: int = 0  # changes the place -> split draw
    read_image_sizes: bool = True  # read width/height from the image files when they exist (else 0)

    def validate(self) -> None:
        if self.place_block < 1:
            raise ValueError("place_block must be >= 1")
        if min(self.split_fractions) < 0 or not np.isclose(sum(self.split_fractions), 1.0):
            raise ValueError("split_fractions must be three non-negative numbers summing to 1")


@dataclass
class MatName:
    """What a file name tells: the place (slice) and the two conditions, when present."""

    place: str | None = None
    reference: str | None = None
    condition: str | None = None


def parse_mat_name(name: str) -> MatName:
    """Parse `correspondence_run1_<ref>_run2_<cond>*.mat` / `correspondence_slice<N>_*.mat` names."""
    out = MatName()
    if m := _SLICE_PATTERN.search(name):
        out.place = f"slice{int(m['slice'])}"
    if m := _RUN_PATTERN.search(name):
        out.reference, out.condition = m["reference"], m["condition"]
    return out


# ----------------------------------------------------------------------------- one file


def read_mat(path: str | os.PathLike, pixel_offset: float = 0.0) -> MatPair:
    """Read one paper-layout `.mat` file (errors name the file and the field)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise DatasetFormatError(
            f"{path}: not a MATLAB v7.3 (HDF5) file (truncated, or an older MAT-file version)"
        )
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in MAT_FIELDS if k not in f]
            if missing:
                raise DatasetFormatError(
                    f"{path}: missing field(s) {', '.join(missing)}; has {', '.join(f.keys())}"
                )
            names = [_read_char(f[k], path) for k in ("im_i_path", "im_j_path")]
            pt_i, pt_j = (_read_points(f[k], path) for k in ("pt_i", "pt_j"))
            dist = _read_vector(f["dist_from_center"], path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise DatasetFormatError(f"{path}: unreadable HDF5 content: {exc}") from None
    if not (len(pt_i) == len(pt_j) == len(dist)):
        raise DatasetFormatError(
            f"{path}: pt_i, pt_j and dist_from_center have different lengths "
            f"({len(pt_i)}, {len(pt_j)}, {len(dist)})"
        )
    for name, values in (("pt_i", pt_i), ("pt_j", pt_j), ("dist_from_center", dist)):
        if not np.isfinite(values).all():
            raise DatasetFormatError(f"{path}: field '{name}' has non-finite values")
    if (dist < 0).any():
        raise DatasetFormatError(
            f"{path}: field 'dist_from_center' has negative values (weight exp(-d) would exceed 1)"
        )
    return MatPair(names[0], names[1], pt_i + pixel_offset, pt_j + pixel_offset, dist)


def _is_empty(ds: h5py.Dataset) -> bool:
    return bool(np.asarray(ds.attrs.get("MATLAB_empty", 0)).ravel()[:1].sum())


def _read_char(ds: h5py.Dataset, path: Path) -> str:
    if _is_empty(ds):
        return ""
    data = np.asarray(ds[()])
    if data.dtype.kind not in "ui":
        raise DatasetFormatError(
            f"{path}: field '{ds.name.lstrip('/')}' is {data.dtype}, expected uint16 character codes"
        )
    return data.ravel().astype("<u2").tobytes().decode("utf-16-le", errors="replace")


def _read_points(ds: h5py.Dataset, path: Path) -> np.ndarray:
    if _is_empty(ds):
        return np.zeros((0, 2))
    data = np.asarray(ds[()], dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != 2:
        raise DatasetFormatError(
            f"{path}: field '{ds.name.lstrip('/')}' has shape {data.shape} in the file; "
            "expected (N, 2) (a MATLAB 2 x N array)"
        )
    return data


def _read_vector(ds: h5py.Dataset, path: Path) -> np.ndarray:
    if _is_empty(ds):
        return np.zeros(0)
    data = np.asarray(ds[()], dtype=np.float64)
    if data.ndim > 2 or (data.ndim == 2 and min(data.shape) > 1):
        raise DatasetFormatError(
            f"{path}: field '{ds.name.lstrip('/')}' has shape {data.shape}; expected a vector"
        )
    return data.ravel()


def write_mat(path: str | os.PathLike, pair: MatPair, pixel_offset: float = 0.0) -> None:
    """Write one pair as a MATLAB v7.3 MAT-file in the paper's layout (atomically)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=512, libver="earliest") as f:
            _write_char(f, "im_i_path", pair.im_i_path)
            _write_char(f, "im_j_path", pair.im_j_path)
            _write_double(f, "pt_i", np.asarray(pair.pt_i, dtype=np.float64).reshape(-1, 2) - pixel_offset)
            _write_double(f, "pt_j", np.asarray(pair.pt_j, dtype=np.float64).reshape(-1, 2) - pixel_offset)
            _write_double(
                f, "dist_from_center", np.asarray(pair.dist_from_center, dtype=np.float64).reshape(1, -1)
            )
        with open(tmp, "r+b") as fh:
            fh.write(_matlab_header())


def _matlab_header() -> bytes:
    now = _dt.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {now} HDF5 schema 1.00 .".encode("ascii")
    # 116 bytes of text, 8 bytes subsystem offset (none), version 0x0200, endian indicator 'IM'
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"


def _write_char(f: h5py.File, name: str, value: str) -> None:
    codes = np.frombuffer(value.encode("utf-16-le"), dtype="<u2")
    if codes.size == 0:
        _write_empty(f, name, (1, 0), "char")
        return
    ds = f.create_dataset(name, data=codes.reshape(-1, 1))  # MATLAB 1 x L
    ds.attrs["MATLAB_class"] = np.bytes_("char")
    ds.attrs["MATLAB_int_decode"] = np.int32(2)


def _write_double(f: h5py.File, name: str, h5_array: np.ndarray) -> None:
    """`h5_array` is in h5py orientation, i.e. the transpose of the MATLAB array."""
    if h5_array.size == 0:
        _write_empty(f, name, h5_array.shape[::-1], "double")
        return
    ds = f.create_dataset(name, data=h5_array)
    ds.attrs["MATLAB_class"] = np.bytes_("double")


def _write_empty(f: h5py.File, name: str, matlab_shape: tuple[int, ...], matlab_class: str) -> None:
    ds = f.create_dataset(name, data=np.array(matlab_shape, dtype=np.uint64))
    ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
    ds.attrs["MATLAB_empty"] = np.uint8(1)


# ----------------------------------------------------------------------------- folders


def import_mat(
    mat_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    image_root: str | os.PathLike,
    cfg: ImportConfig | None = None,
) -> Path:
    """A folder of paper-layout `.mat` files -> a dataset in our format at `out_dir`."""
    cfg = cfg or ImportConfig()
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(f"import-mat: {exc}") from None
    mat_dir, image_root = Path(mat_dir), Path(image_root)
    check_outside(out_dir, [mat_dir, image_root], "the .mat folder or the image root", "the dataset folder")
    check_dataset_output(out_dir)  # before reading anything: refuse an output that is not ours
    files = sorted(mat_dir.glob("*.mat"))
    if not files:
        raise DatasetFormatError(f"{mat_dir}: no .mat files")
    records = []
    for path in progress(files, desc="reading .mat files", unit="file"):
        pair = read_mat(path, cfg.pixel_offset)
        name = parse_mat_name(path.name)
        reference = name.reference or cfg.reference_condition
        condition = name.condition or cfg.condition
        if reference is None or condition is None:
            raise DatasetFormatError(
                f"{path}: the file name does not name the conditions; "
                "pass --reference-condition and --condition"
            )
        records.append((path, pair, name.place, reference, condition))
    images = _images_table(records, image_root, cfg.read_image_sizes)
    image_id = dict(zip(images["image"], images["image_id"]))
    counts = np.array([len(r[1].dist_from_center) for r in records], dtype=np.int32)
    pairs = pd.DataFrame(
        {
            "pair_id": _pair_ids(files),
            "image_id0": [image_id[r[1].im_i_path] for r in records],
            "image_id1": [image_id[r[1].im_j_path] for r in records],
            "num_matches": counts,
            "overlap": np.full(len(records), np.nan, dtype=np.float32),
            "split": _split_by_place(records, cfg),
        }
    )
    pt_i = np.concatenate([r[1].pt_i for r in records])
    pt_j = np.concatenate([r[1].pt_j for r in records])
    dist = np.concatenate([r[1].dist_from_center for r in records])
    matches = {
        "pair_id": np.repeat(pairs["pair_id"].to_numpy(), counts),
        "x0": pt_i[:, 0],
        "y0": pt_i[:, 1],
        "x1": pt_j[:, 0],
        "y1": pt_j[:, 1],
        "weight": np.clip(np.exp(-dist), np.finfo(np.float32).tiny, 1.0),
        "point3d_id": pd.arrays.IntegerArray(
            np.zeros(len(dist), dtype=np.int64), np.ones(len(dist), dtype=bool)
        ),
        "dist3d": dist,
        "err0": np.full(len(dist), np.nan),
        "err1": np.full(len(dist), np.nan),
    }
    source = {
        "source": "import-mat",
        "mat_dir": str(mat_dir.resolve()),
        "files": len(files),
        "import": to_dict(cfg),
    }
    # Imported values are kept bit-exact (float32): the paper's files carry no finer truth to round to.
    return write_dataset(
        out_dir,
        images,
        pairs,
        matches,
        config=source,
        manifest_checksum=None,
        image_root=image_root,
        store_config=StoreConfig(coord_step=0, mantissa_bits=23),
    )


def _pair_ids(files: list[Path]) -> np.ndarray:
    """The number ending every file name (`..._0000123.mat`) when all have distinct ones, else 0, 1, ..."""
    found = [re.search(r"_(\d+)$", f.stem) for f in files]
    ids = np.array([int(m[1]) if m else -1 for m in found], dtype=np.int64)
    if (ids < 0).any() or np.unique(ids).size != ids.size:
        return np.arange(len(files), dtype=np.int64)
    return ids


def _images_table(records: list, image_root: Path, read_sizes: bool) -> pd.DataFrame:
    """One row per distinct image path; its condition from the side (i = reference) it appears on."""
    seen: dict[str, tuple[str, str]] = {}
    for path, pair, place, reference, condition in records:
        for image, cond in ((pair.im_i_path, reference), (pair.im_j_path, condition)):
            sequence = f"{place}/{cond}" if place else cond
            if seen.setdefault(image, (cond, sequence))[0] != cond:
                raise DatasetFormatError(
                    f"{path}: image '{image}' appears under conditions '{seen[image][0]}' and '{cond}'"
                )
    names = sorted(seen)
    sizes = np.array(
        [
            _image_size(image_root / n) if read_sizes else (0, 0)
            for n in progress(names, desc="image sizes", unit="image", enabled=read_sizes)
        ],
        dtype=np.int32,
    ).reshape(-1, 2)
    n = len(names)
    return pd.DataFrame(
        {
            "image_id": np.arange(n, dtype=np.int32),
            "image": names,
            "sequence": [seen[k][1] for k in names],
            "condition": [seen[k][0] for k in names],
            "season": None,
            "daytime": None,
            "weather": None,
            "camera_model": "UNKNOWN",
            "width": sizes[:, 0],
            "height": sizes[:, 1],
            "params": [[] for _ in range(n)],
            "registered": False,
            **{k: np.full(n, np.nan) for k in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")},
        }
    )


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, (0, 0) when it is missing or unreadable."""
    import cv2

    if not path.is_file():
        return 0, 0
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return (0, 0) if image is None else (image.shape[1], image.shape[0])


def _split_by_place(records: list, cfg: ImportConfig) -> list[str]:
    """train/val/test per place: the slice, else a block of consecutive reference images."""
    refs = sorted({r[1].im_i_path for r in records if r[2] is None})
    block = {name: f"block{k // cfg.place_block}" for k, name in enumerate(refs)}
    cuts = np.cumsum(cfg.split_fractions)
    out = []
    for _, pair, place, _, _ in records:
        key = place or block[pair.im_i_path]
        u = int(hashlib.sha256(f"{cfg.seed}:{key}".encode()).hexdigest()[:12], 16) / 16**12
        out.append(("train", "val", "test")[min(int(np.searchsorted(cuts, u, side="right")), 2)])
    return out


def export_mat(
    dataset: str | os.PathLike,
    out_dir: str | os.PathLike,
    pixel_offset: float = 0.0,
    pair_ids: Iterable[int] | None = None,
) -> list[Path]:
    """A dataset in our format -> a paper-layout `.mat` per pair in `out_dir` (dist_from_center = -log w)."""
    store = open_dataset(dataset)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairs = store.pairs if pair_ids is None else store.pairs[store.pairs["pair_id"].isin(list(pair_ids))]
    images = store.images.set_index("image_id")
    written = []
    rows = pairs.itertuples(index=False)
    for row in progress(rows, total=len(pairs), desc="writing .mat files", unit="pair"):
        m = store.matches(row.pair_id)
        ref, cond = (_name_part(images.at[i, "condition"]) for i in (row.image_id0, row.image_id1))
        path = out_dir / f"correspondence_run1_{ref}_run2_{cond}_{row.pair_id:07d}.mat"
        write_mat(
            path,
            MatPair(
                images.at[row.image_id0, "image"],
                images.at[row.image_id1, "image"],
                np.stack([m["x0"], m["y0"]], axis=1),
                np.stack([m["x1"], m["y1"]], axis=1),
                -np.log(m["weight"].astype(np.float64)),
            ),
            pixel_offset,
        )
        written.append(path)
    return written


def _name_part(condition: str | None) -> str:
    """A condition label usable between the underscores of the paper's file names."""
    return re.sub(r"[^A-Za-z0-9-]", "-", condition or "unknown")


__all__ = [
    "MatPair",
    "MatName",
    "ImportConfig",
    "parse_mat_name",
    "read_mat",
    "write_mat",
    "import_mat",
    "export_mat",
]
