"""Datasets at a filesystem URI: ``s3://bucket/ds``, ``gs://bucket/ds``, ``file:///data/ds`` or any
fsspec protocol (``memory://``, ``az://`` with adlfs, ...).

A dataset is always built in a local folder first. `publish` then uploads it: every data file,
then dataset.json last -- a folder without dataset.json is not a dataset to any reader, so a crash
mid-upload never leaves one that looks whole. What is at the URI may be nothing, an empty folder,
an xseason dataset (its dataset.json goes first, then the files it lists) or what an upload cut
short left (`UPLOADING` lists its files): only what xseason wrote is removed. `fetch` mirrors a
remote dataset into a local cache folder (written atomically, every file checked against the
SHA-256 of dataset.json) and reuses the mirror while the remote dataset.json is unchanged, so that
the reader's memory-mapped random access works as for a local folder. Filesystems: pyarrow's own
(S3, GCS, HDFS, local) where it knows the scheme, else fsspec's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from xseason.core.errors import DatasetFormatError, OutputError, XSeasonError
from xseason.core.files import atomic_path, sha256_file, user_cache_dir
from xseason.store.format import DATASET_OUTPUT, FORMAT_NAME, data_files

log = logging.getLogger(__name__)

META = "dataset.json"
UPLOADING = ".xseason-upload.json"  # the files of an upload in progress (so that a rerun may replace them)


def is_uri(location: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (a dataset on some filesystem), False for a local path."""
    return isinstance(location, str) and "://" in location


def dataset_location(text: str) -> str | Path:
    """A dataset location given as text (a command-line argument): a URI as it is, else a path."""
    return text if is_uri(text) else Path(text)


@dataclass(frozen=True)
class RemoteDataset:
    """The dataset location `uri` on `filesystem`, at `path` there."""

    uri: str
    filesystem: pafs.FileSystem
    path: str

    @classmethod
    def at(cls, uri: str, error: type[XSeasonError] = OutputError) -> RemoteDataset:
        """The location of `uri`; `error` with the filesystem's own first line when no filesystem
        takes it (unknown scheme, missing package, unreachable service)."""
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except pa.ArrowInvalid:  # a scheme pyarrow does not know: fsspec's
            fs, path = _fsspec_filesystem(uri, error)
        except (OSError, pa.ArrowException) as exc:
            raise error(f"{uri}: cannot open its filesystem: {_first_line(exc)}") from None
        return cls(uri, fs, path.rstrip("/"))

    @property
    def name(self) -> str:
        """The last part of the path (names the local work folder of a build)."""
        return self.path.rsplit("/", 1)[-1] or "dataset"

    def _file(self, relative: str) -> str:
        return f"{self.path}/{relative}"

    def meta_text(self) -> str | None:
        """The text of the dataset.json there; None when there is none."""
        if self.filesystem.get_file_info(self._file(META)).type != pafs.FileType.File:
            return None
        with self.filesystem.open_input_stream(self._file(META)) as f:
            return f.read().decode()

    def meta(self, text: str | None = None) -> dict | None:
        """dataset.json there (or its `text`, already read) when it is an xseason dataset's, else None."""
        try:
            meta = json.loads((self.meta_text() if text is None else text) or "null")
        except ValueError:
            return None
        return meta if isinstance(meta, dict) and meta.get("format") == FORMAT_NAME else None

    def check_output(self) -> None:
        """`OutputError` unless a dataset may be written here: nothing there, an empty folder or an
        xseason dataset (the rule of local outputs, `format.check_dataset_output`)."""
        info = self.filesystem.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return
        if info.type != pafs.FileType.Directory:
            raise OutputError(f"{self.uri}: is a file; refusing to replace it by {DATASET_OUTPUT}")
        if self.meta() is not None or self._uploading():
            return
        if self.filesystem.get_file_info(pafs.FileSelector(self.path, recursive=False)):
            raise OutputError(
                f"{self.uri}: is a folder that is not empty and not {DATASET_OUTPUT}; refusing to "
                "replace it: give a new location or an empty folder"
            )

    def publish(self, local: Path) -> bool:
        """Upload the dataset folder `local` here (module doc); False when the dataset here already
        has the same dataset.json (nothing uploaded)."""
        self.check_output()
        text = (local / META).read_text()
        there = self.meta_text()
        if there == text:
            log.info("%s already holds this dataset (same dataset.json): not uploaded again", self.uri)
            return False
        old = None if there is None else self.meta(there)
        if old is not None:  # no longer a dataset before any of its files changes
            self.filesystem.delete_file(self._file(META))
        files = data_files(local)
        ours = {*(old or {}).get("files", {}), *self._uploading()}
        self.filesystem.create_dir(self.path, recursive=True)
        with self.filesystem.open_output_stream(self._file(UPLOADING)) as f:
            f.write(json.dumps({"format": FORMAT_NAME, "files": sorted(ours | set(files))}).encode())
        for name in sorted(ours):
            if self.filesystem.get_file_info(self._file(name)).type == pafs.FileType.File:
                self.filesystem.delete_file(self._file(name))
        for name in files:
            self.filesystem.create_dir(self._file(name).rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(str(local / name), self._file(name), pafs.LocalFileSystem(), self.filesystem)
        with self.filesystem.open_output_stream(self._file(META)) as f:
            f.write(text.encode())
        self.filesystem.delete_file(self._file(UPLOADING))
        log.info("uploaded %s to %s: %d data files, then dataset.json", local, self.uri, len(files))
        return True

    def _uploading(self) -> list[str]:
        """The files an upload cut short may have left here (its `UPLOADING` record), else []."""
        if self.filesystem.get_file_info(self._file(UPLOADING)).type != pafs.FileType.File:
            return []
        with self.filesystem.open_input_stream(self._file(UPLOADING)) as f:
            try:
                record = json.loads(f.read().decode())
            except ValueError:
                return []
        return list(record.get("files", [])) if record.get("format") == FORMAT_NAME else []

    def fetch(self, cache_root: Path | None = None) -> Path:
        """A local mirror of the dataset here (module doc): reused while the remote dataset.json is
        unchanged, else downloaded anew and checked against the files' SHA-256."""
        text = self.meta_text()
        if text is None:
            raise DatasetFormatError(f"{self.uri}: no {META}; not a complete xseason dataset")
        meta = self.meta(text)
        if meta is None:
            raise DatasetFormatError(f"{self.uri}/{META}: not the dataset.json of an xseason dataset")
        files = meta.get("files")
        if not isinstance(files, dict) or not files:
            raise DatasetFormatError(
                f"{self.uri}/{META}: has no 'files' record: a remote dataset is checked against it"
            )
        root = cache_root or user_cache_dir() / "remote"
        mirror = root / hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        if (mirror / META).is_file() and (mirror / META).read_text() == text:
            log.info("%s: local mirror %s reused (same dataset.json)", self.uri, mirror)
            return mirror
        root.mkdir(parents=True, exist_ok=True)
        with atomic_path(mirror, "folder", replace_only_if=lambda p: (p / META).is_file()) as tmp:
            for name, record in files.items():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                try:
                    pafs.copy_files(
                        self._file(name), str(tmp / name), self.filesystem, pafs.LocalFileSystem()
                    )
                except (OSError, pa.ArrowException) as exc:
                    raise DatasetFormatError(
                        f"{self.uri}/{name}: cannot be read: {_first_line(exc)}"
                    ) from None
                if sha256_file(tmp / name) != record.get("sha256"):
                    raise DatasetFormatError(
                        f"{self.uri}/{name}: its SHA-256 differs from dataset.json's record"
                    )
            (tmp / META).write_text(text)
        log.info("%s: mirrored into %s (%d files, checked)", self.uri, mirror, len(files))
        return mirror


def _fsspec_filesystem(uri: str, error: type[XSeasonError]) -> tuple[pafs.FileSystem, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError, OSError) as exc:
        raise error(f"{uri}: no filesystem for it (pyarrow's or fsspec's): {_first_line(exc)}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
