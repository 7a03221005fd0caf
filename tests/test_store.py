"""The correspondence dataset store: contract schema, rounding bounds, validation, readers."""

from __future__ import annotations

import json
import pickle
import re

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest

from xseason.core.errors import DatasetFormatError
from xseason.store import (
    IMAGES_SCHEMA,
    MATCHES_SCHEMA,
    PAIRS_SCHEMA,
    StoreConfig,
    content_digests,
    open_dataset,
    round_mantissa,
    stored_precision,
    write_dataset,
)
from xseason.store.encoding import ENCODING_CANDIDATES

PRECISION = stored_precision(StoreConfig())
COORD_BOUND = PRECISION["coord_max_error_px"] + 1e-4  # half the default step (+ float32 rounding at ~1000 px)
REL_BOUND = PRECISION["max_relative_error"] + 1e-7


def make_tables(
    n_pairs: int = 40, mean: int = 60, seed: int = 0, densified: bool = False, n_images: int = 24
):
    """Small images / pairs / matches tables in the contract's layout (conditions cycle over 3 labels)."""
    rng = np.random.default_rng(seed)
    conditions = np.array(["summer-day", "winter-snow", "night"])
    images = pd.DataFrame(
        {
            "image_id": np.arange(n_images) + 100,
            "image": [f"s{i % 3}/img{i:04d}.png" for i in range(n_images)],
            "sequence": [f"s{i % 3}" for i in range(n_images)],
            "condition": conditions[np.arange(n_images) % 3],
            "season": [None if i % 2 else "summer" for i in range(n_images)],
            "daytime": None,
            "weather": None,
            "camera_model": "PINHOLE",
            "width": 640,
            "height": 480,
            "params": [[500.0, 500.0, 320.0, 240.0]] * n_images,
            "registered": np.arange(n_images) % 5 != 0,
            **{k: rng.normal(size=n_images) for k in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")},
        }
    )
    images.loc[~images["registered"], ["qw", "qx", "qy", "qz", "tx", "ty", "tz"]] = np.nan
    ref = rng.integers(0, n_images // 3, n_pairs) * 3 + 100
    counts = rng.integers(1, 2 * mean, n_pairs).astype(np.int32)
    counts[3] = 0  # a pair without matches is legal
    pairs = pd.DataFrame(
        {
            "pair_id": np.arange(n_pairs, dtype=np.int64) * 5 + 2,
            "image_id0": ref,
            "image_id1": ref + rng.integers(1, 3, n_pairs),
            "num_matches": counts,
            "overlap": rng.uniform(0.1, 0.7, n_pairs).astype(np.float32),
            "split": np.array(["train", "val", "test"])[np.arange(n_pairs) % 3],
        }
    )
    n = int(counts.sum())
    d = rng.exponential(0.05, n)
    matches = {
        "pair_id": np.repeat(pairs["pair_id"].to_numpy(), counts),
        "x0": rng.uniform(0, 639, n),
        "y0": rng.uniform(0, 479, n),
        "x1": rng.uniform(0, 639, n),
        "y1": rng.uniform(0, 479, n),
        "weight": np.exp(-d),
        "point3d_id": pd.array(rng.integers(0, 10**6, n), dtype="Int64"),
        "dist3d": d,
        "err0": rng.gamma(2, 0.2, n),
        "err1": rng.gamma(2, 0.2, n),
    }
    matches["point3d_id"][::7] = pd.NA
    if densified:
        matches["densified"] = rng.random(n) < 0.25
    return images, pairs, pd.DataFrame(matches)


def write(tmp_path, images, pairs, matches, name="ds", **kw):
    return write_dataset(
        tmp_path / name,
        images,
        pairs,
        matches,
        config={"stage": {"k": 1}},
        manifest_checksum="abc123",
        image_root=tmp_path / "imgs",
        **kw,
    )


@pytest.fixture
def tables():
    return make_tables()


@pytest.fixture
def dataset(tmp_path, tables):
    return write(tmp_path, *tables)


def test_schema_files_and_metadata(dataset, tables):
    images, pairs, matches = tables
    assert pq.read_schema(dataset / "images.parquet").remove_metadata().equals(IMAGES_SCHEMA)
    assert pq.read_schema(dataset / "pairs.parquet").remove_metadata().equals(PAIRS_SCHEMA)
    files = sorted((dataset / "matches").glob("*.parquet"))
    assert files and pq.read_schema(files[0]).remove_metadata().equals(MATCHES_SCHEMA)
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["format"] == "xseason-correspondences" and meta["version"] == 1
    assert meta["config"] == {"stage": {"k": 1}} and meta["manifest_sha256"] == "abc123"
    assert meta["counts"] == {
        "images": len(images),
        "pairs": len(pairs),
        "matches": len(matches),
        "points3d": None,
    }
    store = open_dataset(dataset)
    assert store.images["image_id"].tolist() == images["image_id"].tolist()
    assert store.images["qw"].isna().sum() == (~images["registered"]).sum()
    stored = pq.read_table(dataset / "images.parquet")  # the table holds nulls, not NaN (docs/FORMAT.md §3)
    unregistered = int((~images["registered"]).sum())
    assert all(
        stored.column(c).null_count == unregistered for c in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")
    )
    assert store.pairs["num_matches"].tolist() == pairs["num_matches"].tolist()
    assert not any(
        p.name.startswith(".") for p in dataset.parent.iterdir() if p.name != "imgs"
    )  # no temp left


def stored_order(matches: pd.DataFrame) -> pd.DataFrame:
    """The store keeps rows sorted by pair_id, then point3d_id (nulls last), stably."""
    return matches.sort_values(["pair_id", "point3d_id"], kind="stable", na_position="last")


@pytest.mark.parametrize("random_access", ["mmap", "parquet"])
def test_per_pair_reads_within_documented_precision(dataset, tables, random_access):
    _, pairs, matches = tables
    store = open_dataset(dataset, random_access=random_access)
    order = np.random.default_rng(3).permutation(pairs["pair_id"].to_numpy())
    for pid in order:
        got = store.matches(int(pid))
        want = stored_order(matches[matches["pair_id"] == pid])
        assert len(got["x0"]) == len(want)
        for c in ("x0", "y0", "x1", "y1"):
            assert np.abs(got[c] - want[c].to_numpy()).max(initial=0) <= COORD_BOUND
        for c in ("weight", "dist3d", "err0", "err1"):
            assert np.abs(got[c] / want[c].to_numpy() - 1).max(initial=0) <= REL_BOUND
        ids = want["point3d_id"].fillna(-1).to_numpy(dtype=np.int64)
        assert np.array_equal(got["point3d_id"], ids)
        assert got["x0"].dtype == np.float32 and got["pair_id"].dtype == np.int64
    with pytest.raises(KeyError):
        store.matches(3)


def test_exact_config_is_lossless(tmp_path, tables):
    images, pairs, matches = tables
    root = write(tmp_path, images, pairs, matches, store_config=StoreConfig(coord_step=0, mantissa_bits=23))
    back = pd.read_parquet(root / "matches")
    want = stored_order(matches)
    for c in ("x0", "weight", "err1"):
        assert np.array_equal(back[c].to_numpy(), want[c].to_numpy(np.float32))


def test_unsorted_table_and_streamed_chunks_give_the_same_dataset(tmp_path, tables):
    images, pairs, matches = tables
    shuffled = matches.sample(frac=1.0, random_state=0)
    a = pd.read_parquet(write(tmp_path, images, pairs, shuffled, name="a") / "matches")
    chunks = [g for _, g in matches.groupby(matches["pair_id"] // 40)]
    b = pd.read_parquet(write(tmp_path, images, pairs, iter(chunks), name="b") / "matches")
    assert (np.diff(a["pair_id"].to_numpy()) >= 0).all()
    pd.testing.assert_frame_equal(
        a.sort_values(["pair_id", "x0", "y0", "x1", "y1"]).reset_index(drop=True),
        b.sort_values(["pair_id", "x0", "y0", "x1", "y1"]).reset_index(drop=True),
    )
    assert len(a) == len(matches)


def test_dataset_json_records_precision_and_encodings(dataset):
    storage = json.loads((dataset / "dataset.json").read_text())["storage"]
    assert storage["coord_max_error_px"] == 1 / 128 and storage["max_relative_error"] == 2.0**-9
    assert stored_precision(StoreConfig(coord_step=0, mantissa_bits=23)) == {
        "coord_max_error_px": 0.0,
        "max_relative_error": 0.0,
    }
    assert set(storage["encodings"]) == set(MATCHES_SCHEMA.names)
    md = pq.read_metadata(sorted((dataset / "matches").glob("*.parquet"))[0])
    for c in range(md.num_columns):
        column = md.row_group(0).column(c)
        assert storage["encodings"][column.path_in_schema] in column.encodings


def recurring_tables(n_pairs: int = 30, n_points: int = 400):
    """Pairs that share image 1 and its points (same id, same pixel there), as in a real build."""
    images, pairs, _ = make_tables(n_pairs=n_pairs, n_images=3 * n_pairs)
    rng = np.random.default_rng(1)
    pairs["image_id1"] = pairs["image_id0"].iloc[0] + 1
    pairs["num_matches"] = 200
    seen = np.sort(rng.choice(10**6, n_points, replace=False))
    pixel = rng.uniform(0, [639, 479], (n_points, 2))
    pick = np.concatenate([np.sort(rng.choice(n_points, 200, replace=False)) for _ in range(n_pairs)])
    n = pick.size
    d = rng.exponential(0.05, n)
    matches = pd.DataFrame(
        {
            "pair_id": np.repeat(pairs["pair_id"].to_numpy(), 200),
            "x0": rng.uniform(0, 639, n),
            "y0": rng.uniform(0, 479, n),
            "x1": pixel[pick, 0],
            "y1": pixel[pick, 1],
            "weight": np.exp(-d),
            "point3d_id": seen[pick],
            "dist3d": d,
            "err0": rng.gamma(2, 0.2, n),
            "err1": rng.gamma(2, 0.2, n),
        }
    )
    return images, pairs, matches


def test_each_column_gets_its_smallest_candidate_encoding(tmp_path):
    """Recurring pixels pack best as PLAIN, random ones as BYTE_STREAM_SPLIT; no candidate beats either."""
    root = write(tmp_path, *recurring_tables())
    encodings = open_dataset(root).meta["storage"]["encodings"]
    assert (
        encodings["x1"] == encodings["y1"] == "PLAIN"
        and encodings["x0"] == encodings["y0"] == "BYTE_STREAM_SPLIT"
    )
    stored = pq.read_table(root / "matches")
    for field in stored.schema:
        sizes = {}
        for encoding in ENCODING_CANDIDATES[field.type]:
            pq.write_table(
                stored.select([field.name]),
                tmp_path / "one.parquet",
                compression="zstd",
                compression_level=StoreConfig().zstd_level,
                use_dictionary=False,
                column_encoding={field.name: encoding},
                write_statistics=False,
            )
            sizes[encoding] = (
                pq.read_metadata(tmp_path / "one.parquet").row_group(0).column(0).total_compressed_size
            )
        assert sizes[encodings[field.name]] == min(sizes.values()), (field.name, sizes)


def test_each_pair_lies_in_one_row_group(tmp_path, tables):
    images, pairs, matches = tables
    root = write(
        tmp_path, images, pairs, matches, store_config=StoreConfig(row_group_rows=200, file_rows=600)
    )
    files = sorted((root / "matches").glob("*.parquet"))
    assert len(files) > 1
    ranges = []
    for f in files:
        md = pq.read_metadata(f)
        for g in range(md.num_row_groups):
            st = md.row_group(g).column(0).statistics
            ranges.append((st.min, st.max))
    assert len(ranges) > 5
    assert all(prev[1] < nxt[0] for prev, nxt in zip(ranges, ranges[1:]))  # no pair in two groups
    store = open_dataset(root, random_access="parquet")
    assert len(store.matches(int(pairs["pair_id"].iloc[-1]))["x0"]) == pairs["num_matches"].iloc[-1]


def test_plain_pandas_pyarrow_and_duckdb_read_it(dataset, tables):
    _, pairs, matches = tables
    df = pd.read_parquet(dataset / "matches")
    assert len(df) == len(matches) and df["point3d_id"].isna().sum() == matches["point3d_id"].isna().sum()
    assert pq.read_table(dataset / "matches").num_rows == len(matches)
    assert pds.dataset(dataset / "matches", format="parquet").count_rows() == len(matches)
    per_pair = duckdb.sql(
        f"SELECT pair_id, count(*) AS n FROM '{dataset}/matches/*.parquet' GROUP BY pair_id ORDER BY pair_id"
    ).df()
    expected = pairs[pairs["num_matches"] > 0]
    assert per_pair["n"].tolist() == expected["num_matches"].tolist()
    joined = duckdb.sql(
        f"SELECT count(*) FROM '{dataset}/pairs.parquet' p JOIN '{dataset}/images.parquet' i "
        "ON p.image_id0 = i.image_id"
    ).fetchall()[0][0]
    assert joined == len(pairs)


def test_pickled_store_reopens_lazily(dataset, tables):
    _, pairs, _ = tables
    store = open_dataset(dataset)
    first = store.matches(int(pairs["pair_id"].iloc[5]))
    blob = pickle.dumps(store)
    assert len(blob) < 200_000  # no memory-mapped data in the pickle
    clone = pickle.loads(blob)
    again = clone.matches(int(pairs["pair_id"].iloc[5]))
    assert all(np.array_equal(first[k], again[k]) for k in first)


def test_iter_matches_streams_every_row_in_pair_batches(dataset, tables):
    _, pairs, matches = tables
    store = open_dataset(dataset)
    batches = list(store.iter_matches(batch_pairs=4))
    assert all(np.unique(b["pair_id"]).size <= 4 for b in batches)
    ids = np.concatenate([b["pair_id"] for b in batches])
    assert np.array_equal(ids, np.sort(matches["pair_id"].to_numpy()))


def test_image_path_falls_back_to_path_relative_to_dataset(tmp_path, tables):
    (tmp_path / "imgs").mkdir()
    root = write(tmp_path, *tables)
    store = open_dataset(root)
    assert store.image_path(101) == (tmp_path / "imgs" / "s1/img0001.png").resolve()
    moved = tmp_path / "moved"
    moved.mkdir()
    root.rename(moved / "ds")
    (tmp_path / "imgs").rename(moved / "imgs")
    store = open_dataset(moved / "ds")
    assert store.image_path(101) == (moved / "imgs" / "s1/img0001.png").resolve()


def test_densified_column_is_optional_and_kept(tmp_path):
    images, pairs, matches = make_tables(densified=True)
    store = open_dataset(write(tmp_path, images, pairs, matches))
    got = store.matches(int(pairs["pair_id"].iloc[0]))
    want = stored_order(matches[matches["pair_id"] == pairs["pair_id"].iloc[0]])["densified"].to_numpy()
    assert got["densified"].dtype == bool and np.array_equal(got["densified"], want)


def test_round_mantissa_relative_error_bound():
    x = np.random.default_rng(0).lognormal(0, 3, 100_000).astype(np.float32)
    for bits in (4, 8, 12):
        err = np.abs(round_mantissa(x, bits).astype(np.float64) / x - 1)
        assert err.max() <= 2.0 ** -(bits + 1) * (1 + 1e-6)
    assert np.isnan(round_mantissa(np.array([np.nan], np.float32), 8)).all()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda i, p, m: (i, p, m.drop(columns="err1")), "missing column 'err1'"),
        (lambda i, p, m: (i, p, m.assign(x0="a")), "column 'x0'"),
        (
            lambda i, p, m: (i, p, m.assign(weight=np.where(np.arange(len(m)) == 5, 0.0, m.weight))),
            "'weight' is 0, not in (0, 1]",
        ),
        (lambda i, p, m: (i, p, m.assign(weight=m.weight + 1)), "not in (0, 1]"),
        (lambda i, p, m: (i, p, m.assign(x1=m.x1 + 1000)), "'x1' is"),
        (
            lambda i, p, m: (i, p, m.assign(y1=np.where(np.arange(len(m)) == 2, np.nan, m.y1))),
            "'y1' has non-finite",
        ),
        (
            lambda i, p, m: (i, p, m.assign(pair_id=np.where(m.pair_id == 2, 4, m.pair_id))),
            "pair_id 4 is not in the pairs",
        ),
        (
            lambda i, p, m: (i, p.assign(num_matches=p.num_matches + (p.index == 1)), m),
            "num_matches of pair_id 7",
        ),
        (
            lambda i, p, m: (i, p.assign(image_id1=p.image_id1.where(p.index != 0, 9999)), m),
            "unknown image_id 9999",
        ),
        (lambda i, p, m: (i, p.assign(split="training"), m), "'split' has 'training'"),
        (lambda i, p, m: (i.assign(camera_model=None), p, m), "'camera_model' has 24 null"),
        (lambda i, p, m: (pd.concat([i, i.iloc[:1]]), p, m), "image_id values are not unique"),
    ],
)
def test_bad_input_is_rejected_and_nothing_is_written(tmp_path, tables, mutate, message):
    with pytest.raises(DatasetFormatError, match=re.escape(message)):
        write(tmp_path, *mutate(*tables))
    assert not (tmp_path / "ds").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_open_rejects_incomplete_or_foreign_folders(tmp_path, dataset):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="dataset.json: missing"):
        open_dataset(tmp_path / "empty")
    meta = json.loads((dataset / "dataset.json").read_text())
    (dataset / "dataset.json").write_text(json.dumps({**meta, "version": 2}))
    with pytest.raises(DatasetFormatError, match="version 2 was written by a newer xseason"):
        open_dataset(dataset)
    (dataset / "dataset.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(DatasetFormatError, match="'format' is 'other'"):
        open_dataset(dataset)
    (dataset / "dataset.json").write_text(json.dumps(meta))
    table = pq.read_table(dataset / "images.parquet")
    bad = table.set_column(
        table.schema.get_field_index("width"), "width", table.column("width").cast(pa.float64())
    )
    pq.write_table(bad, dataset / "images.parquet")
    with pytest.raises(DatasetFormatError, match=r"images.parquet: column 'width' is double, expected int32"):
        open_dataset(dataset)
    pq.write_table(table, dataset / "images.parquet")
    part = sorted((dataset / "matches").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(part).slice(0, 10), part)
    with pytest.raises(DatasetFormatError, match="matches: holds 10 rows, dataset.json says"):
        open_dataset(dataset)
    part.write_bytes(b"PAR1 truncated")
    with pytest.raises(DatasetFormatError, match="part-00000.parquet: not a readable Parquet file"):
        open_dataset(dataset)


def test_content_digests_ignore_layout_and_see_every_value(tmp_path, tables):
    """Digests compare builds by content: equal for another row order or row-group size, not for
    one change."""
    images, pairs, matches = tables
    a = content_digests(write(tmp_path, images, pairs, matches, name="a"))
    small_groups = StoreConfig(row_group_rows=64, file_rows=256)
    shuffled = matches.sample(frac=1.0, random_state=1)
    b = content_digests(write(tmp_path, images, pairs, shuffled, name="b", store_config=small_groups))
    assert a == b and set(a) == {"images", "pairs", "matches"}
    changed = matches.copy()
    changed.loc[changed.index[7], "x0"] += 1.0
    c = content_digests(write(tmp_path, images, pairs, changed, name="c"))
    assert c["matches"] != a["matches"] and c["images"] == a["images"] and c["pairs"] == a["pairs"]
