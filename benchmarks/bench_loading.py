"""Match loading speed in pairs/s, random pair order: our reader vs per-pair .mat files read with h5py.

    .venv/bin/python benchmarks/bench_loading.py [--pairs 2000] [--matches 500] [--reads 2000]

"our reader, mmap" is `open_dataset(path).matches(pair_id)` (memory-mapped Arrow cache, built
once and timed separately); "our reader, parquet" reads row groups from the Parquet files
(LRU of 8 decoded row groups); ".mat (h5py)" opens the pair's file and reads its five fields
the way the reference loader does. The readers take turns for `--repeats` rounds, so that load
from other processes hits all of them; the output gives each reader's range and median, and
the ratio of medians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_storage import synthetic_tables  # noqa: E402

from xseason.store import open_dataset, write_dataset  # noqa: E402
from xseason.store.interop import export_mat, read_mat  # noqa: E402


def rate(read, ids: np.ndarray) -> float:
    """Pairs per second of `read(pair_id)` over `ids` (after one warm-up read)."""
    read(ids[0])
    start = time.perf_counter()
    for pid in ids:
        read(pid)
    return len(ids) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--matches", type=int, default=500, help="mean matches per pair")
    parser.add_argument("--reads", type=int, default=2000, help="random pair reads per reader and round")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the readers take turns in each")
    args = parser.parse_args()
    images, pairs, matches = synthetic_tables(args.pairs, args.matches)
    ids = np.random.default_rng(1).choice(pairs["pair_id"].to_numpy(), args.reads)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_dataset(
            Path(tmp) / "ds", images, pairs, matches, config={}, manifest_checksum=None, image_root=tmp
        )
        store = open_dataset(root)
        t0 = time.perf_counter()
        store.build_cache()
        cache_s = time.perf_counter() - t0
        files = {int(p.stem.rsplit("_", 1)[1]): p for p in export_mat(root, Path(tmp) / "mat")}
        readers = {
            "our reader, mmap": store.matches,
            "our reader, parquet": open_dataset(root, random_access="parquet").matches,
            ".mat (h5py)": lambda pid: read_mat(files[int(pid)]),
        }
        rates = {label: [] for label in readers}
        for _ in range(args.repeats):
            for label, read in readers.items():
                rates[label].append(rate(read, ids))
    median = {label: float(np.median(r)) for label, r in rates.items()}
    print(
        f"{args.pairs} pairs x ~{args.matches} matches, {args.reads} random reads x {args.repeats} rounds "
        f"(mmap cache built once in {cache_s:.2f} s)"
    )
    print(f"{'reader':<22} {'pairs/s min-max':>17} {'median':>8} {'vs .mat':>8}")
    for label, r in rates.items():
        span = f"{min(r):.0f}-{max(r):.0f}"
        print(f"{label:<22} {span:>17} {median[label]:8.0f} {median[label] / median['.mat (h5py)']:7.1f}x")


if __name__ == "__main__":
    main()
