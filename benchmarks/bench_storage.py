"""Bytes per match on disk: our Parquet store vs per-pair .mat (as the reference paper stored them)
vs per-pair .npz.

    .venv/bin/python benchmarks/bench_storage.py [--pairs 2000] [--matches 500]
    .venv/bin/python benchmarks/bench_storage.py --dataset build/demo   # a real build, re-written

The synthetic match set imitates what the build emits: per pair two images (1024x768 or 640x480),
matches at sub-pixel positions related by a smooth warp plus noise, point ids sorted within a
pair and drawn from the points that image sees, dist3d small positives, weight = exp(-dist3d),
reprojection errors ~0.1-1 px, 30 % densified matches. `--dataset` takes the tables of a built
dataset instead (read-only; every layout is written to a temporary folder; values already
rounded by its build stay as they are, so "exact" there means "as built").

The last line is the order-0 entropy of the default store's values, column by column
(point3d_id and pair_id as differences within the table): what a coder of each column alone
needs when values are independent, as in the synthetic set; a real build goes below it, because
a point recurs with the same pixel in the pairs of one image.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xseason.store import StoreConfig, open_dataset, write_dataset  # noqa: E402
from xseason.store.interop import MatPair, write_mat  # noqa: E402


def synthetic_tables(
    n_pairs: int = 2000,
    mean_matches: int = 500,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Realistic synthetic images / pairs / matches tables in the contract's layout."""
    rng = np.random.default_rng(seed)
    n_images = max(8, n_pairs // 2)
    sizes = np.where(rng.random(n_images) < 0.5, 1024, 640)
    heights = np.where(sizes == 1024, 768, 480)
    conditions = np.array(["overcast-reference", "winter-snow", "night", "summer-sun"])
    images = pd.DataFrame(
        {
            "image_id": np.arange(n_images),
            "image": [f"run{i % 4}/{i:06d}.jpg" for i in range(n_images)],
            "sequence": [f"run{i % 4}" for i in range(n_images)],
            "condition": conditions[np.arange(n_images) % 4],
            "season": None,
            "daytime": None,
            "weather": None,
            "camera_model": "PINHOLE",
            "width": sizes,
            "height": heights,
            "params": [[0.8 * w, 0.8 * w, w / 2, h / 2] for w, h in zip(sizes, heights)],
            "registered": True,
            "qw": 1.0,
            "qx": 0.0,
            "qy": 0.0,
            "qz": 0.0,
            "tx": 0.0,
            "ty": 0.0,
            "tz": 0.0,
        }
    )
    ref = rng.integers(0, n_images // 4, n_pairs) * 4
    pairs = pd.DataFrame(
        {
            "pair_id": np.arange(n_pairs),
            "image_id0": ref,
            "image_id1": ref + rng.integers(1, 4, n_pairs),
            "num_matches": rng.poisson(mean_matches, n_pairs).astype(np.int32),
            "overlap": rng.uniform(0.1, 0.7, n_pairs).astype(np.float32),
            "split": rng.choice(["train", "val", "test"], n_pairs),
        }
    )
    counts = pairs["num_matches"].to_numpy()
    n = int(counts.sum())
    pid = np.repeat(pairs["pair_id"].to_numpy(), counts)
    w0 = np.repeat(images["width"].to_numpy()[ref], counts).astype(np.float64)
    h0 = np.repeat(images["height"].to_numpy()[ref], counts).astype(np.float64)
    x0, y0 = rng.uniform(0, 1, n) * (w0 - 1), rng.uniform(0, 1, n) * (h0 - 1)
    # smooth per-pair warp (scale, rotation, shift) + 0.5 px noise
    s, a = (
        np.repeat(rng.uniform(0.8, 1.2, n_pairs), counts),
        np.repeat(rng.uniform(-0.1, 0.1, n_pairs), counts),
    )
    shift = np.repeat(rng.normal(0, 40, (n_pairs, 2)), counts, axis=0)
    x1 = (
        s * (np.cos(a) * (x0 - w0 / 2) - np.sin(a) * (y0 - h0 / 2))
        + w0 / 2
        + shift[:, 0]
        + rng.normal(0, 0.5, n)
    )
    y1 = (
        s * (np.sin(a) * (x0 - w0 / 2) + np.cos(a) * (y0 - h0 / 2))
        + h0 / 2
        + shift[:, 1]
        + rng.normal(0, 0.5, n)
    )
    # point ids: each reference image sees a block of ~3000 points; a pair uses a sorted subset
    base = np.repeat(ref * 3000, counts)
    local = np.concatenate([np.sort(rng.choice(3000, c, replace=c > 3000)) for c in counts])
    dist = rng.exponential(0.05, n)
    matches = {
        "pair_id": pid.astype(np.int64),
        "x0": x0.astype(np.float32),
        "y0": y0.astype(np.float32),
        "x1": x1.astype(np.float32),
        "y1": y1.astype(np.float32),
        "weight": np.exp(-dist).astype(np.float32),
        "point3d_id": (base + local).astype(np.int64),
        "dist3d": dist.astype(np.float32),
        "err0": rng.gamma(2.0, 0.2, n).astype(np.float32),
        "err1": rng.gamma(2.0, 0.2, n).astype(np.float32),
        "densified": rng.random(n) < 0.3,
    }
    return images, pairs, matches


def dataset_tables(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """A built dataset's images / pairs / matches tables, as `write_dataset` takes them
    (point3d_id null -> -1)."""
    store = open_dataset(path)
    table = pq.read_table(store.root / "matches")
    table = table.set_column(
        table.schema.get_field_index("point3d_id"), "point3d_id", pc.fill_null(table.column("point3d_id"), -1)
    )
    return store.images, store.pairs, {c: table.column(c).to_numpy() for c in table.column_names}


def entropy_bytes(values: np.ndarray) -> float:
    """Order-0 entropy of `values`, in bytes per value."""
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() / 8)


def column_entropy(matches: pd.DataFrame) -> dict[str, float]:
    """Order-0 entropy of every stored column (ids as differences), bytes per match."""
    return {
        c: entropy_bytes(np.diff(v, prepend=v[:1]) if c.endswith("_id") else v)
        for c, v in ((c, matches[c].to_numpy()) for c in matches.columns)
    }


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def column_bytes(folder: Path) -> dict[str, int]:
    """Compressed bytes of every column over all Parquet files of `folder`."""
    out: dict[str, int] = {}
    for f in sorted(folder.glob("*.parquet")):
        meta = pq.read_metadata(f)
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                col = meta.row_group(g).column(c)
                out[col.path_in_schema] = out.get(col.path_in_schema, 0) + col.total_compressed_size
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--matches", type=int, default=500, help="mean matches per pair")
    parser.add_argument("--dataset", help="measure a built dataset's tables instead of the synthetic set")
    args = parser.parse_args()
    images, pairs, matches = (
        dataset_tables(args.dataset) if args.dataset else synthetic_tables(args.pairs, args.matches)
    )
    n = len(matches["pair_id"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        variants = [
            ("parquet, default (1/64 px, 8 mantissa bits)", StoreConfig()),
            ("parquet, default precision, zstd level 19", StoreConfig(zstd_level=19)),
            ("parquet, coarse (1/32 px, 6 mantissa bits)", StoreConfig(coord_step=1 / 32, mantissa_bits=6)),
            ("parquet, exact (no rounding)", StoreConfig(coord_step=0, mantissa_bits=23)),
        ]
        for k, (label, cfg) in enumerate(variants):
            root = write_dataset(
                tmp / f"ds{k}",
                images,
                pairs,
                matches,
                config={},
                manifest_checksum=None,
                image_root=tmp,
                store_config=cfg,
            )
            rows.append((label, folder_bytes(root / "matches")))
            if k == 0:
                per_column = column_bytes(root / "matches")
                encodings = open_dataset(root).meta["storage"]["encodings"]
                entropy = column_entropy(pd.read_parquet(root / "matches"))
        starts = np.r_[0, np.cumsum(pairs["num_matches"].to_numpy())]
        names = images.set_index("image_id")["image"]
        (tmp / "mat").mkdir()
        (tmp / "npz").mkdir()
        for k, row in enumerate(tqdm(pairs.itertuples(), total=len(pairs), desc="per-pair files")):
            sl = slice(starts[k], starts[k + 1])
            pair = MatPair(
                names[row.image_id0],
                names[row.image_id1],
                np.stack([matches["x0"][sl], matches["y0"][sl]], 1).astype(np.float64),
                np.stack([matches["x1"][sl], matches["y1"][sl]], 1).astype(np.float64),
                -np.log(matches["weight"][sl].astype(np.float64)),
            )
            write_mat(tmp / "mat" / f"correspondence_{row.pair_id:06d}.mat", pair)
            np.savez_compressed(
                tmp / "npz" / f"{row.pair_id:06d}.npz",
                **{c: v[sl] for c, v in matches.items() if c != "pair_id"},
            )
        rows.append((".mat per pair (paper layout: points + distance only)", folder_bytes(tmp / "mat")))
        rows.append((".npz per pair (compressed, all columns)", folder_bytes(tmp / "npz")))
    print(f"{args.dataset or 'synthetic'}: {len(pairs)} pairs, {n} matches")
    print(
        "default parquet, bytes/match by column (encoding): "
        + ", ".join(f"{c} {b / n:.2f} ({encodings[c]})" for c, b in per_column.items())
    )
    print(f"{'store':<54} {'MB':>8} {'bytes/match':>12}")
    for label, size in rows:
        print(f"{label:<54} {size / 1e6:8.2f} {size / n:12.2f}")
    print(
        f"order-0 entropy of the default store's columns: {sum(entropy.values()):.2f} bytes/match ("
        + ", ".join(f"{c} {b:.2f}" for c, b in entropy.items())
        + ")"
    )


if __name__ == "__main__":
    main()
