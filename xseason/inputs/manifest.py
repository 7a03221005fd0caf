"""The image manifest (docs/FORMAT.md §2): read, validate, write.

`read_manifest` turns a manifest CSV into typed `ImageRecord`s, checking every row and
column at once (vectorised with pandas/numpy, so 100k rows read in about a second) and
reporting *all* problems together, each as ``FILE:ROW: column 'X': message`` where ROW
is the CSV line number (the header is line 1). `write_manifest` writes one atomically,
in a fixed column order, with floats in ``repr`` precision so that a round trip is exact.
Image contents are not opened here: a corrupt image is the reconstruction stage's skip.
"""

from __future__ import annotations

import csv
import difflib
import gc
import hashlib
import io
import math
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xseason.core.errors import ManifestError
from xseason.core.files import atomic_path
from xseason.core.geometry import CAMERA_MODELS, SINGLE_FOCAL_MODELS, Camera, Pose, qvec_to_rotmat

DEFAULT_FOCAL_FACTOR = 1.2  # unknown intrinsics: f = factor * max(width, height)

REQUIRED = ("image", "sequence", "condition")
TAGS = ("season", "daytime", "weather")
POSE_COLUMNS = ("qw", "qx", "qy", "qz", "tx", "ty", "tz")
PRIOR_COLUMNS = ("prior_x", "prior_y", "prior_z")
COLUMNS: tuple[str, ...] = (
    *REQUIRED,
    *TAGS,
    "timestamp",
    "camera",
    "camera_model",
    "camera_params",
    *POSE_COLUMNS,
    *PRIOR_COLUMNS,
    "mask",
    "label",
)
QUATERNION_TOLERANCE = 1e-3  # |‖q‖ - 1| above this is an error; below, q is normalised
MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True, eq=False)  # eq=False: numpy fields; records compare (and hash) by identity
class ImageRecord:
    """One validated manifest row."""

    image: str  # exactly as in the manifest
    path: Path  # absolute path of the image file
    sequence: str
    condition: str
    season: str | None
    daytime: str | None
    weather: str | None
    timestamp: float | None
    camera: str  # camera id (default: the sequence name)
    camera_model: str | None
    camera_params: tuple[float, ...] | None
    pose: Pose | None  # world-to-camera
    prior: np.ndarray | None  # (3,) camera-centre prior
    mask: Path | None
    label: Path | None
    row: int  # CSV line number (header = 1)

    def camera_for(
        self, width: int, height: int, default_focal_factor: float = DEFAULT_FOCAL_FACTOR
    ) -> Camera:
        """The camera of this image at its file's size: the manifest's intrinsics, else the default.

        The default (no intrinsics in the manifest) is SIMPLE_RADIAL with f = factor * max(w, h),
        the principal point at the image centre and no distortion; SfM refines it.
        """
        if self.camera_model is not None and self.camera_params is not None:
            return Camera(self.camera_model, int(width), int(height), tuple(self.camera_params))
        focal = default_focal_factor * max(width, height)
        return Camera("SIMPLE_RADIAL", int(width), int(height), (focal, width / 2, height / 2, 0.0))


@dataclass
class Manifest:
    """A validated manifest: its records in file order, plus grouping helpers."""

    path: Path
    root: Path
    images: list[ImageRecord]
    checksum: str  # sha256 of the file bytes
    _sequences: dict[str, list[ImageRecord]] | None = field(default=None, init=False, repr=False)

    def sequences(self) -> dict[str, list[ImageRecord]]:
        """Sequence -> records, sequences in order of first appearance, records by (timestamp, row)."""
        if self._sequences is None:
            groups: dict[str, list[ImageRecord]] = {}
            for rec in self.images:
                groups.setdefault(rec.sequence, []).append(rec)
            self._sequences = {
                seq: sorted(recs, key=lambda r: (r.timestamp if r.timestamp is not None else 0.0, r.row))
                for seq, recs in groups.items()
            }
        return self._sequences

    def conditions(self) -> list[str]:
        """Condition labels in order of first appearance."""
        return list(dict.fromkeys(rec.condition for rec in self.images))

    def is_posed(self, sequence: str) -> bool:
        """True when every row of `sequence` carries a pose."""
        recs = self.sequences().get(sequence)
        if recs is None:
            raise KeyError(f"no sequence {sequence!r} in {self.path}")
        return all(rec.pose is not None for rec in recs)

    def describe(self) -> str:
        """Its file and image count, then one line per sequence: images, condition, posed or not."""
        lines = [f"{self.path}: {len(self.images)} images"]
        lines += [
            f"  {seq}: {len(recs)} images, {recs[0].condition}, "
            f"{'posed' if self.is_posed(seq) else 'unposed'}"
            for seq, recs in self.sequences().items()
        ]
        return "\n".join(lines)


class _Errors:
    """Collects `FILE:ROW: column 'X': message` lines; raises them together."""

    def __init__(self, file: Path, cap: int = MAX_REPORTED_ERRORS) -> None:
        self.file, self.cap = file, cap
        self.items: list[tuple[int, str]] = []
        self.total = 0

    def add(self, row: int, column: str | None, message: str) -> None:
        self.total += 1
        where = f"{self.file}:{row}: " + (f"column '{column}': " if column else "")
        self.items.append((row, where + message))

    def raise_if_any(self) -> None:
        if not self.total:
            return
        shown = [text for _, text in sorted(self.items, key=lambda item: item[0])[: self.cap]]
        more = self.total - len(shown)
        tail = [f"... and {more} more error(s)"] if more > 0 else []
        raise ManifestError(
            f"invalid manifest {self.file} ({self.total} error(s)):\n  " + "\n  ".join(shown + tail)
        )


def read_manifest(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None, check_files: bool = True
) -> Manifest:
    """Read and validate a manifest CSV; raise ManifestError listing every problem found.

    Paths (image, mask, label) are relative to `image_root`, by default the manifest's folder.
    With `check_files`, the files must exist (their contents are not read).
    """
    path = Path(path)
    raw = _read_bytes(path)
    root = Path(image_root if image_root is not None else path.parent).resolve()
    table = _parse_csv(path, raw)
    errors = _Errors(path)
    cols = _Columns(table, errors)
    errors.raise_if_any()
    if not cols.n:
        raise ManifestError(f"{path}: no image rows after the header")
    gc_was_enabled = gc.isenabled()
    gc.disable()  # building 100k small objects: the cyclic GC would rescan them again and again
    try:
        records = _validate(cols, root, check_files, errors)
    finally:
        if gc_was_enabled:
            gc.enable()
    errors.raise_if_any()
    return Manifest(path=path, root=root, images=records, checksum=hashlib.sha256(raw).hexdigest())


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ManifestError(f"{path}: manifest not found")
    if not path.is_file():
        raise ManifestError(f"{path}: not a file (a manifest is a CSV file)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from None
    if not raw.strip():
        raise ManifestError(
            f"{path}: empty file; a manifest is a CSV with a header row ({','.join(REQUIRED)},...)"
        )
    if b"\x00" in raw[:65536]:
        raise ManifestError(f"{path}: binary content; a manifest is a UTF-8 text CSV file")
    return raw


def _parse_csv(path: Path, raw: bytes) -> pd.DataFrame:
    """CSV bytes -> DataFrame of stripped strings whose index is each row's CSV line number.

    Fast path: pyarrow's parser. On a malformed file, or when line numbers are not simply
    row + 2 (blank lines, quoted newlines), the csv module re-reads it to name exact lines.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); a manifest is a CSV file"
        ) from None
    header = [name.strip() for name in next(csv.reader(io.StringIO(text.split("\n", 1)[0])), [])]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ManifestError(f"{path}:1: column '{duplicated[0]}': appears more than once in the header")
    try:
        frame = pd.read_csv(io.BytesIO(text.encode()), engine="pyarrow", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError):
        frame = None
    n_lines = text.count("\n") + (not text.endswith("\n"))
    if frame is None or len(frame) + 1 != n_lines:
        lines, rows = _csv_lines(path, text, len(header))
        frame = pd.DataFrame(rows, columns=header, dtype=str)
    else:
        lines = np.arange(2, len(frame) + 2)
    frame.columns = header
    frame = frame.apply(lambda col: col.str.strip())
    frame.index = pd.Index(lines, name="line")
    return frame


def _csv_lines(path: Path, text: str, width: int) -> tuple[list[int], list[list[str]]]:
    """Slow exact path: (line numbers, rows), skipping blank lines; malformed rows raise with their line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    lines, rows = [], []
    try:
        next(reader)
        for fields in reader:
            if not any(value.strip() for value in fields):
                continue
            if len(fields) != width:
                raise ManifestError(
                    f"{path}:{reader.line_num}: expected {width} comma-separated fields "
                    f"(as in the header), got {len(fields)}"
                )
            rows.append(fields)
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise ManifestError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from None
    return lines, rows


class _Columns:
    """Header checks and typed column access for the validator."""

    def __init__(self, table: pd.DataFrame, errors: _Errors) -> None:
        self.table, self.errors = table, errors
        self.lines = table.index.to_numpy()
        self.n = len(table)
        header = list(table.columns)
        for name in header:
            if name not in COLUMNS:
                close = difflib.get_close_matches(name, COLUMNS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                errors.add(1, name, f"unknown column{hint}; known columns: {', '.join(COLUMNS)}")
        for name in REQUIRED:
            if name not in header:
                errors.add(
                    1,
                    name,
                    "required column is missing"
                    + ("" if any(c in header for c in REQUIRED) else "; is this a manifest CSV?"),
                )

    def text(self, name: str) -> pd.Series:
        """Column as stripped strings ('' where absent)."""
        if name in self.table.columns:
            return self.table[name].reset_index(drop=True)
        return pd.Series([""] * self.n, dtype=object)

    def flag(self, mask, column: str | None, message) -> None:
        """Report every row where `mask` is true; `message` is a string or `message(row_index)`."""
        rows = np.flatnonzero(np.asarray(mask, dtype=bool))
        text = message if callable(message) else (lambda i: message)
        for i in rows[: self.errors.cap]:  # only the first few get a message: cheap on 100k bad rows
            self.errors.add(int(self.lines[i]), column, text(int(i)))
        self.errors.total += max(len(rows) - self.errors.cap, 0)

    def numbers(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Parse a numeric column: (values with NaN where empty, given mask); reports bad values."""
        s = self.text(name)
        given = (s != "").to_numpy()
        values = pd.to_numeric(s.where(given, None), errors="coerce").to_numpy(dtype=np.float64)
        bad = given & ~np.isfinite(values)
        self.flag(bad, name, lambda i: _number_problem(s.iloc[i]))
        return values, given


def _number_problem(value: str) -> str:
    try:
        float(value)
    except ValueError:
        return f"{value!r} is not a number"
    return f"{value!r} is not a finite number"


def _validate(cols: _Columns, root: Path, check_files: bool, errors: _Errors) -> list[ImageRecord]:
    n = cols.n
    text = {
        name: cols.text(name) for name in ("image", "sequence", "condition", *TAGS, "camera", "mask", "label")
    }
    for name in REQUIRED:
        cols.flag(text[name] == "", name, "empty value; this column is required")

    images = text["image"]
    norm = _check_paths(cols, "image", images, root, check_files)
    for name in ("mask", "label"):
        _check_paths(cols, name, text[name], root, check_files)
    given_image = (images != "").to_numpy()
    dup = pd.Series(norm).duplicated(keep="first").to_numpy() & given_image
    first_row = pd.Series(np.arange(n)).groupby(pd.Series(norm)).transform("min").to_numpy()
    cols.flag(
        dup,
        "image",
        lambda i: f"duplicate image {images.iloc[i]!r} (first on line {cols.lines[first_row[i]]})",
    )

    seq, cond = text["sequence"], text["condition"]
    first_cond = cond.groupby(seq).transform("first")
    first_cond_row = pd.Series(np.arange(n)).groupby(seq).transform("first").to_numpy()
    cols.flag(
        (cond != first_cond).to_numpy() & (seq != "").to_numpy(),
        "condition",
        lambda i: (
            f"sequence {seq.iloc[i]!r} mixes conditions: {cond.iloc[i]!r} here, "
            f"{first_cond.iloc[i]!r} on line {cols.lines[first_cond_row[i]]}; use one sequence per condition"
        ),
    )

    timestamps, ts_given = cols.numbers("timestamp")
    some = pd.Series(ts_given).groupby(seq).transform("any").to_numpy()
    cols.flag(
        some & ~ts_given,
        "timestamp",
        lambda i: f"missing, while other rows of sequence {seq.iloc[i]!r} have timestamps",
    )

    camera = text["camera"].where(text["camera"] != "", seq)
    models, params = _check_intrinsics(cols, camera)
    pose_values, posed = _check_group(cols, POSE_COLUMNS, "pose")
    qvecs, tvecs = pose_values[:, :4], pose_values[:, 4:]
    prior_values, prior_given = _check_group(cols, PRIOR_COLUMNS, "camera-centre prior")
    norms = np.linalg.norm(qvecs, axis=1)
    cols.flag(
        posed & (np.abs(norms - 1.0) > QUATERNION_TOLERANCE),
        "qw",
        lambda i: (
            f"quaternion (qw, qx, qy, qz) has norm {norms[i]:.6g}, not 1 "
            f"(tolerance {QUATERNION_TOLERANCE:g}); poses are world-to-camera, Hamilton, w first"
        ),
    )
    if errors.total:
        return []
    rotations = qvec_to_rotmat(np.where(posed[:, None], qvecs, [1.0, 0, 0, 0]))
    stamps = [t if given else None for t, given in zip(timestamps.tolist(), ts_given)]
    poses = [Pose(r, t) if given else None for r, t, given in zip(rotations, tvecs, posed)]
    priors = [p if given else None for p, given in zip(prior_values, prior_given)]
    return _records(cols, text, root, camera, models, params, stamps, poses, priors)


def _check_paths(cols: _Columns, name: str, values: pd.Series, root: Path, check_files: bool) -> list[str]:
    """Reject absolute paths and paths that leave the root; check the files exist. Returns them normalised."""
    given = (values != "").to_numpy()
    slashed = values.str.replace("\\", "/", regex=False)
    absolute = (slashed.str.startswith("/") | slashed.str.match(r"^[A-Za-z]:")).to_numpy() & given
    escapes = slashed.str.contains(r"(?:^|/)\.\.(?:/|$)", regex=True).to_numpy() & given
    cols.flag(
        absolute,
        name,
        lambda i: f"absolute path {values.iloc[i]!r}; paths are relative to the image root {root}",
    )
    cols.flag(
        escapes & ~absolute, name, lambda i: f"path {values.iloc[i]!r} leaves the image root {root} ('..')"
    )
    norm = [posixpath.normpath(v) if v else "" for v in slashed.tolist()]
    if check_files:
        ok = given & ~absolute & ~escapes
        exists = _files_exist(root, [v for v, keep in zip(norm, ok) if keep])
        missing = np.zeros(len(values), dtype=bool)
        missing[np.flatnonzero(ok)] = ~exists
        cols.flag(missing, name, lambda i: f"file not found: {root / norm[i]}")
    return norm


def _files_exist(root: Path, relative: list[str]) -> np.ndarray:
    """Existence of many files, one directory listing per folder instead of one stat per file."""
    listings: dict[str, set[str]] = {}
    out = np.zeros(len(relative), dtype=bool)
    for k, rel in enumerate(relative):
        folder, name = posixpath.split(rel)
        names = listings.get(folder)
        if names is None:
            try:
                with os.scandir(root / folder) as it:
                    names = {e.name for e in it if not e.is_dir()}
            except OSError:
                names = set()
            listings[folder] = names
        out[k] = name in names
    return out


def _check_intrinsics(cols: _Columns, camera: pd.Series) -> tuple[list[str], list[tuple[float, ...] | None]]:
    """Validate camera_model/camera_params and that each camera id has one set of intrinsics.

    Parameter strings are parsed once per distinct value (a manifest has a handful).
    Returns per-row model names and parameter tuples.
    """
    model, params = cols.text("camera_model"), cols.text("camera_params")
    has_model, has_params = (model != "").to_numpy(), (params != "").to_numpy()
    cols.flag(has_params & ~has_model, "camera_model", "missing, while camera_params is given")
    cols.flag(
        has_model & ~has_params,
        "camera_params",
        lambda i: f"missing, while camera_model {model.iloc[i]!r} is given",
    )
    known = model.isin(list(CAMERA_MODELS)).to_numpy()
    cols.flag(
        has_model & ~known,
        "camera_model",
        lambda i: f"unknown camera model {model.iloc[i]!r}; known: {', '.join(CAMERA_MODELS)}",
    )
    codes, uniques = pd.factorize(params)
    parsed = [_parse_params(u) if u else () for u in uniques]
    bad_text = np.array([isinstance(p, str) for p in parsed])[codes]
    cols.flag(bad_text, "camera_params", lambda i: parsed[codes[i]])
    counts = np.array([len(p) if isinstance(p, tuple) else -1 for p in parsed])[codes]
    expected = model.map(CAMERA_MODELS).fillna(-1).to_numpy()
    wrong = has_model & known & has_params & (counts >= 0) & (counts != expected)
    cols.flag(
        wrong,
        "camera_params",
        lambda i: (
            f"camera model {model.iloc[i]} takes {int(expected[i])} "
            f"parameters, got {counts[i]}: {params.iloc[i]!r}"
        ),
    )
    n_focal = np.where(model.isin(SINGLE_FOCAL_MODELS).to_numpy(), 1, 2)
    focal = np.array(
        [[p[0], p[min(1, len(p) - 1)]] if isinstance(p, tuple) and p else [np.inf, np.inf] for p in parsed]
    )[codes]
    focal = np.where(n_focal == 1, focal[:, 0], focal.min(axis=1)) if len(focal) else np.zeros(0)
    cols.flag(
        focal <= 0,
        "camera_params",
        lambda i: f"focal length{'s' if n_focal[i] == 2 else ''} must be positive, got {focal[i]:g}",
    )
    # Same intrinsics = same model and the same parsed numbers ("525" == "525.0").
    canonical = pd.factorize(pd.Series([repr(p) for p in parsed], dtype=object))[0][codes]
    key = pd.Series(pd.factorize(model)[0] * (len(parsed) + 1) + canonical)
    first_key = key.groupby(camera).transform("first").to_numpy()
    first_row = pd.Series(np.arange(cols.n)).groupby(camera).transform("first").to_numpy()
    cols.flag(
        key.to_numpy() != first_key,
        "camera_params",
        lambda i: (
            f"camera {camera.iloc[i]!r} has other intrinsics on line {cols.lines[first_row[i]]} "
            f"({model.iloc[first_row[i]] or 'none'} {params.iloc[first_row[i]]!s}); rows of one camera id "
            "share intrinsics (give them different 'camera' ids)"
        ),
    )
    row_params = [p if isinstance(p, tuple) and p else None for p in parsed]
    return model.tolist(), [row_params[c] for c in codes.tolist()]


def _parse_params(value: str) -> tuple[float, ...] | str:
    """'f cx cy ...' -> floats, or the error message."""
    out = []
    for part in value.replace(",", " ").split():
        try:
            x = float(part)
        except ValueError:
            return f"{part!r} in {value!r} is not a number"
        if not math.isfinite(x):
            return f"{part!r} in {value!r} is not a finite number"
        out.append(x)
    return tuple(out)


def _check_group(cols: _Columns, names: Sequence[str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Columns given all together or not at all -> (values (N, k), mask of rows with all k valid)."""
    parsed = [cols.numbers(name) for name in names]
    values = np.stack([v for v, _ in parsed], axis=1)
    given = np.stack([g for _, g in parsed], axis=1)
    count = given.sum(axis=1)
    half = (count > 0) & (count < len(names))
    first_missing = np.argmin(given, axis=1)
    for k, name in enumerate(names):  # reported under the first missing column of each row
        cols.flag(
            half & (first_missing == k),
            name,
            lambda i: (
                f"{what} is half-given: missing "
                f"{', '.join(n for n, g in zip(names, given[i]) if not g)}; "
                f"give all of {', '.join(names)} or none"
            ),
        )
    return values, (count == len(names)) & np.isfinite(values).all(axis=1)


def _records(cols, text, root, camera, models, params, timestamps, poses, priors) -> list[ImageRecord]:
    """Build the typed records (one Python object per row; the maths was vectorised above).

    `timestamps`, `poses` and `priors` hold one value per row, None where the row has none."""

    def opt(name: str) -> list[str | None]:
        return [v or None for v in text[name].tolist()]

    def opt_path(name: str) -> list[Path | None]:
        return [root / v if v else None for v in text[name].tolist()]

    season, daytime, weather = opt("season"), opt("daytime"), opt("weather")
    mask, label = opt_path("mask"), opt_path("label")
    out = []
    for i, (image, seq, cond, cam) in enumerate(
        zip(text["image"].tolist(), text["sequence"].tolist(), text["condition"].tolist(), camera.tolist())
    ):
        out.append(
            ImageRecord(
                image=image,
                path=root / image,
                sequence=seq,
                condition=cond,
                season=season[i],
                daytime=daytime[i],
                weather=weather[i],
                timestamp=timestamps[i],
                camera=cam,
                camera_model=models[i] or None,
                camera_params=params[i],
                pose=poses[i],
                prior=priors[i],
                mask=mask[i],
                label=label[i],
                row=int(cols.lines[i]),
            )
        )
    return out


def write_manifest(path: str | os.PathLike, rows: Sequence[Mapping[str, object]]) -> Path:
    """Write a manifest atomically: fixed column order, all-empty optional columns left out.

    Each row maps column names to values (None or '' = empty). Conveniences: `pose` (a
    world-to-camera `Pose`, or None) fills qw..tz, `prior` (3 numbers) fills prior_x..z, and
    `camera_params` may be a sequence of numbers. Floats are written in repr precision.
    """
    path = Path(path)
    table = [_flatten_row(row, k) for k, row in enumerate(rows)]
    present = [c for c in COLUMNS if c in REQUIRED or any(r.get(c, "") != "" for r in table)]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(present)
        writer.writerows([r.get(c, "") for c in present] for r in table)
    return path


def _flatten_row(row: Mapping[str, object], k: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in row.items():
        if key == "pose":
            if value is not None:
                if not isinstance(value, Pose):
                    raise ManifestError(
                        f"row {k}: 'pose' must be an xseason.geometry.Pose, got {type(value).__name__}"
                    )
                out.update(zip(POSE_COLUMNS, map(_fmt, (*value.qvec, *value.t))))
        elif key == "prior":
            if value is not None:
                out.update(zip(PRIOR_COLUMNS, map(_fmt, np.asarray(value, dtype=float).reshape(3))))
        elif key in COLUMNS:
            if key == "camera_params" and value is not None and not isinstance(value, str):
                value = " ".join(_fmt(v) for v in value)
            out[key] = _fmt(value)
        else:
            close = difflib.get_close_matches(key, COLUMNS, n=1)
            raise ManifestError(
                f"row {k}: unknown manifest column {key!r}"
                + (f" (did you mean '{close[0]}'?)" if close else "")
            )
    return out


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        raise ManifestError(f"a manifest value cannot be a boolean ({value!r})")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


__all__ = ["COLUMNS", "ImageRecord", "Manifest", "read_manifest", "write_manifest"]
