"""Datasets at a filesystem URI (`store.remote`): built locally, uploaded dataset.json last, read
through a checked local mirror. fsspec's in-memory filesystem stands in for S3 / GCS."""

from __future__ import annotations

import logging
import uuid

import fsspec
import pyarrow.fs as pafs
import pytest
from test_store import make_tables, write

from xseason.cli import main
from xseason.core.errors import DatasetFormatError, OutputError
from xseason.store import content_digests, open_dataset
from xseason.store.remote import RemoteDataset


@pytest.fixture
def uri() -> str:
    return f"memory://bucket-{uuid.uuid4().hex[:8]}/ds"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "xseason" / "remote"


def _memory() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("memory")


def test_published_dataset_reads_back_the_same(tmp_path, uri, cache, caplog):
    local = write(tmp_path, *make_tables())
    assert RemoteDataset.at(uri).publish(local)
    remote = open_dataset(uri, verify="full")
    assert content_digests(remote.root) == content_digests(local)
    assert remote.root.parent == cache
    pair = int(remote.pairs["pair_id"].iloc[0])
    assert (remote.matches(pair)["x0"] == open_dataset(local).matches(pair)["x0"]).all()
    with caplog.at_level(logging.INFO, logger="xseason"):
        assert open_dataset(uri).root == remote.root  # the mirror is reused, not downloaded again
        assert not RemoteDataset.at(uri).publish(local)  # the same dataset is not uploaded again
    assert "local mirror" in caplog.text and "already holds this dataset" in caplog.text


def test_replacing_a_remote_dataset_removes_only_its_own_files(tmp_path, uri, cache):
    first = write(tmp_path, *make_tables(n_pairs=40), name="first")
    second = write(tmp_path, *make_tables(n_pairs=5, seed=3), name="second")
    target = RemoteDataset.at(uri)
    target.publish(first)
    _memory().pipe(f"{target.path}/NOTES.txt", b"the user's")
    target.publish(second)
    assert content_digests(open_dataset(uri).root) == content_digests(second)
    assert _memory().cat(f"{target.path}/NOTES.txt") == b"the user's"


def test_an_upload_cut_short_is_not_a_dataset(tmp_path, uri, cache, monkeypatch):
    local = write(tmp_path, *make_tables())
    copy, calls = pafs.copy_files, []

    def dies_on_the_second_file(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise OSError("connection reset")
        return copy(*args, **kwargs)

    monkeypatch.setattr(pafs, "copy_files", dies_on_the_second_file)
    with pytest.raises(OSError, match="connection reset"):
        RemoteDataset.at(uri).publish(local)
    monkeypatch.setattr(pafs, "copy_files", copy)
    with pytest.raises(DatasetFormatError, match="no dataset.json; not a complete xseason dataset"):
        open_dataset(uri)
    assert RemoteDataset.at(uri).publish(local)  # the rerun replaces what the cut-short upload left
    assert content_digests(open_dataset(uri).root) == content_digests(local)
    assert not _memory().exists(f"{RemoteDataset.at(uri).path}/.xseason-upload.json")


def test_a_damaged_remote_file_is_refused_and_nothing_is_mirrored(tmp_path, uri, cache):
    local = write(tmp_path, *make_tables())
    target = RemoteDataset.at(uri)
    target.publish(local)
    _memory().pipe(f"{target.path}/pairs.parquet", b"not parquet")
    with pytest.raises(DatasetFormatError, match="pairs.parquet: its SHA-256 differs"):
        open_dataset(uri)
    assert not cache.exists() or not list(cache.iterdir())  # no mirror, no temporary folder left


def test_foreign_locations_are_refused(tmp_path, uri):
    target = RemoteDataset.at(uri)
    _memory().pipe(f"{target.path}/photo.jpg", b"jpeg")
    with pytest.raises(OutputError, match="not empty and not an xseason dataset"):
        target.publish(write(tmp_path, *make_tables()))
    assert _memory().cat(f"{target.path}/photo.jpg") == b"jpeg"
    with pytest.raises(OutputError, match="no filesystem for it"):
        RemoteDataset.at("nosuchfs://bucket/ds")
    with pytest.raises(DatasetFormatError, match="no filesystem for it"):
        open_dataset("nosuchfs://bucket/ds")


def test_file_uris_take_pyarrows_local_filesystem(tmp_path, cache):
    local = write(tmp_path, *make_tables())
    uri = (tmp_path / "published").as_uri()
    RemoteDataset.at(uri).publish(local)
    assert (tmp_path / "published" / "dataset.json").read_bytes() == (local / "dataset.json").read_bytes()
    assert content_digests(open_dataset(uri).root) == content_digests(local)


def test_build_to_a_uri_then_read_it_with_the_commands(two_condition_scene, tmp_path, uri, cache, capsys):
    work = tmp_path / "work"
    args = ["build", str(two_condition_scene / "manifest.csv"), "--out", uri, "--work", str(work), "--quiet"]
    assert main(args) == 0
    assert f"dataset: {uri}" in capsys.readouterr().out
    assert content_digests(open_dataset(uri).root) == content_digests(work / "dataset")
    assert len(open_dataset(uri).pairs) > 0
    assert main(args) == 0  # complete: reused, and not uploaded again
    assert "(already complete: reused)" in capsys.readouterr().out
    assert main(["stats", uri]) == 0 and "matches" in capsys.readouterr().out
