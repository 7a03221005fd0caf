"""Dataset integrity (issue 16, never serve corrupt data): recorded checksums, `open_dataset(verify=...)`,
`xseason verify`, value checks on reading, and a match cache that is rebuilt when damaged."""

from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_store import make_tables, write

from xseason.cli import main
from xseason.core.errors import DatasetFormatError
from xseason.store import open_dataset
from xseason.store.format import data_files

IMAGES, PAIRS, MATCHES = make_tables()  # test_store's small tables; tests only read them


@pytest.fixture
def dataset(tmp_path):
    return write(tmp_path, IMAGES, PAIRS, MATCHES)


def _part(dataset):
    return dataset / "matches" / "part-00000.parquet"


def _flip(path, offset: int, n: int = 64) -> None:
    """Invert `n` bytes of `path` from `offset` on (same size, footer intact)."""
    data = bytearray(path.read_bytes())
    data[offset : offset + n] = bytes(b ^ 0xFF for b in data[offset : offset + n])
    path.write_bytes(bytes(data))


def _verify(capsys, dataset, *extra):
    """Run `xseason verify`; return its exit status, stdout and stderr lines."""
    rc = main(["verify", str(dataset), "--quiet", *extra])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err.splitlines()


def test_files_record_every_data_file_with_size_checksum_and_rows(tmp_path):
    points = pd.DataFrame({"point3d_id": np.arange(5), "x": 0.0, "y": 1.0, "z": 2.0})
    root = write(tmp_path, IMAGES, PAIRS, MATCHES, points3d=points)
    files = json.loads((root / "dataset.json").read_text())["files"]
    assert (
        list(files)
        == data_files(root)
        == [
            "images.parquet",
            "pairs.parquet",
            "points3d.parquet",
            "matches/part-00000.parquet",
        ]
    )
    for name, record in files.items():
        data = (root / name).read_bytes()
        assert record["bytes"] == len(data) == os.path.getsize(root / name)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
        assert record["rows"] == pq.read_metadata(root / name).num_rows
    rows = {name: files[name]["rows"] for name in files}
    assert rows["images.parquet"] == len(IMAGES) and rows["pairs.parquet"] == len(PAIRS)
    assert rows["points3d.parquet"] == 5 and rows["matches/part-00000.parquet"] == len(MATCHES)
    assert open_dataset(root, verify="full").meta["files"] == files


def test_verify_command_says_ok_in_one_line(capsys, dataset):
    for extra, checked in (((), "sizes, rows checked"), (("--full",), "SHA-256, values checked")):
        rc, out, err = _verify(capsys, dataset, *extra)
        assert rc == 0 and err == [] and len(out) == 1, (out, err)
        assert out[0].startswith(
            f"OK {dataset}: 3 files, 24 images, {len(PAIRS)} pairs, {len(MATCHES)} matches"
        )
        assert checked in out[0]


def test_flipped_bytes_are_caught_by_the_full_check(capsys, dataset):
    part = _part(dataset)
    _flip(part, part.stat().st_size // 2)
    open_dataset(dataset, verify="size")  # same size, intact footer: the cheap check cannot see it
    for verify in (True, "full"):
        with pytest.raises(DatasetFormatError, match=re.escape(f"{part}: SHA-256 is ")):
            open_dataset(dataset, verify=verify)
    assert _verify(capsys, dataset)[0] == 0
    rc, out, err = _verify(capsys, dataset, "--full")
    assert rc == 2 and out == [] and len(err) == 1, err
    assert err[0].startswith(f"xseason verify: error: {part}: SHA-256 is ") and "damaged or changed" in err[0]


def test_truncated_missing_and_unrecorded_files_are_caught_by_the_size_check(capsys, dataset):
    part = _part(dataset)
    size = part.stat().st_size
    part.write_bytes(part.read_bytes()[: size // 2])
    with pytest.raises(
        DatasetFormatError, match=re.escape(f"{part}: holds {size // 2} bytes, dataset.json records {size}")
    ):
        open_dataset(dataset, verify="size")
    (dataset / "pairs.parquet").unlink()
    (dataset / "matches" / "part-00001.parquet").write_bytes(b"PAR1")
    with pytest.raises(DatasetFormatError, match="3 problems: "):
        open_dataset(dataset, verify="size")
    rc, out, err = _verify(capsys, dataset)
    assert rc == 2 and out == []
    assert err == [
        f"xseason verify: error: {dataset / 'matches/part-00001.parquet'}: not recorded in dataset.json "
        "(added after the dataset was written?)",
        f"xseason verify: error: {dataset / 'pairs.parquet'}: missing",
        f"xseason verify: error: {part}: holds {size // 2} bytes, dataset.json records {size} "
        "(truncated or changed)",
    ]
    with pytest.raises(ValueError, match="verify must be"):
        open_dataset(dataset, verify="sizes")


def test_a_dataset_without_files_record_opens_but_cannot_be_verified(capsys, dataset):
    meta = json.loads((dataset / "dataset.json").read_text())
    del meta["files"]
    (dataset / "dataset.json").write_text(json.dumps(meta))
    store = open_dataset(dataset)
    pid = int(PAIRS["pair_id"].iloc[0])
    assert len(store.matches(pid)["x0"]) == PAIRS["num_matches"].iloc[0]
    with pytest.raises(DatasetFormatError, match="records no file sizes or checksums"):
        open_dataset(dataset, verify="size")
    rc, _, err = _verify(capsys, dataset)
    assert rc == 2 and len(err) == 1 and "nothing to verify the files against" in err[0]


def _rewrite_match(dataset, column: str, value: float, row: int = 7) -> int:
    """Write the matches file again with pyarrow, one value changed; return that row's pair_id."""
    part = _part(dataset)
    table = pq.read_table(part)
    values = table.column(column).to_numpy().copy()
    values[row] = value
    i = table.schema.get_field_index(column)
    pq.write_table(table.set_column(i, table.schema.field(i), pa.array(values, pa.float32())), part)
    return int(table.column("pair_id")[row].as_py())


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("weight", 1.004, "'weight' is 1.004, not in (0, 1]"),
        ("weight", 0.0, "'weight' is 0, not in (0, 1]"),
        ("x1", 641.0, "'x1' is 641, outside image 1 of the pair (allowed: -1.5 to 640.5 px"),
        ("y0", -1.75, "'y0' is -1.75, outside image 0 of the pair (allowed: -1.5 to 480.5 px"),
        ("x0", np.nan, "'x0' is nan, outside image 0"),
    ],
)
@pytest.mark.parametrize("random_access", ["mmap", "parquet"])
def test_bad_values_are_refused_on_reading(dataset, column, value, message, random_access):
    pid = _rewrite_match(dataset, column, value)
    store = open_dataset(dataset, random_access=random_access)  # schema and rows are fine
    expected = f"{_part(dataset)}: pair_id {pid}: {message}"
    with pytest.raises(DatasetFormatError, match=re.escape(expected)) as error:
        store.matches(pid)
    assert "cache" not in str(error.value)  # the bad value is in the Parquet file, not only in the cache
    with pytest.raises(DatasetFormatError, match=re.escape(expected)):
        list(store.iter_matches())


def test_coordinates_are_not_bounded_by_an_unknown_image_size(tmp_path):
    root = write(tmp_path, IMAGES.assign(width=0, height=0), PAIRS, MATCHES)  # as import-mat without images
    pid = _rewrite_match(root, "x1", 5000.0)
    assert open_dataset(root).matches(pid)["x1"].max() == 5000.0
    _rewrite_match(root, "x1", np.inf)
    with pytest.raises(DatasetFormatError, match="'x1' is inf, outside image 1"):
        open_dataset(root, random_access="parquet").matches(pid)


def _all_matches(store):
    return {int(p): store.matches(int(p)) for p in PAIRS["pair_id"]}


def _truncate(cache):
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])


def _write_arrow(cache, table):
    with pa.OSFile(str(cache), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _foreign(cache):
    _write_arrow(cache, pa.table({"pair_id": pa.array([2], pa.int64())}))  # a valid Arrow file, not ours


def _bad_weights(cache):
    table = pa.ipc.open_file(pa.BufferReader(cache.read_bytes())).read_all()  # in memory: rewritten below
    i = table.schema.get_field_index("weight")
    weights = pa.array(np.full(table.num_rows, 2.0, np.float32))
    _write_arrow(cache, table.set_column(i, table.schema.field(i), weights))  # our layout, bad values


@pytest.mark.parametrize(
    "damage, logged",
    [
        (_truncate, "unusable match cache"),
        (_foreign, "unusable match cache"),
        (_bad_weights, "the Parquet files hold other values: rebuilding the damaged cache"),
    ],
)
def test_a_damaged_cache_is_rebuilt_transparently(dataset, caplog, damage, logged):
    store = open_dataset(dataset)
    want = _all_matches(store)
    cache = store.cache_path()
    size = cache.stat().st_size
    damage(cache)
    got = _all_matches(open_dataset(dataset))
    assert cache.stat().st_size == size and logged in caplog.text
    assert all(np.array_equal(got[p][k], want[p][k]) for p in want for k in want[p])


def test_a_changed_matches_file_gets_a_new_cache(dataset):
    store = open_dataset(dataset)
    store.build_cache()
    old = store.cache_path()
    pid = _rewrite_match(dataset, "x0", 3.25)
    fresh = open_dataset(dataset)
    assert fresh.cache_path() != old
    row = fresh.matches(pid)
    assert 3.25 in row["x0"] and not old.exists()  # the stale cache of the old file is gone
    assert list((dataset / ".cache").iterdir()) == [fresh.cache_path()]
