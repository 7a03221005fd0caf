"""Loader throughput: pairs/s of CorrespondenceDataset through a DataLoader: decoding every image, with
the cache of decoded, resized images warm, and matches only.

    .venv/bin/python benchmarks/bench_loader.py [--dataset DIR] [--pairs 400] [--workers 0 2] [--batch 4]

Without --dataset a toy dataset (320x240 images) is generated in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from xseason.learn.dataset import AugmentConfig, CorrespondenceDataset, PadCollate, PairBatchSampler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from toy import make_toy_dataset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--pairs", type=int, default=400)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or make_toy_dataset(
            Path(tmp) / "toy", places=40, size=(320, 240), matches_per_pair=2000
        )
        aug = AugmentConfig(short_side=120, crop=(160, 120), hflip=0.5, brightness=0.2, max_matches=256)
        steps = max(args.pairs // args.batch, 1)
        settings = {
            "decode, no cache": dict(cache_mb=0),
            "decode, cached": dict(cache_mb=512),
            "matches only": dict(load_images=False),
        }
        for label, kwargs in settings.items():
            ds = CorrespondenceDataset(dataset, augment=aug, **kwargs)
            ds.store.build_cache()
            for i in range(len(ds) if kwargs.get("cache_mb") else 0):  # warm the cache (workers inherit it)
                ds[i]
            for workers in args.workers:
                sampler = PairBatchSampler(ds.condition_pairs(), args.batch, steps, seed=0)
                loader = DataLoader(
                    ds, batch_sampler=sampler, collate_fn=PadCollate(aug.max_matches), num_workers=workers
                )
                t = time.perf_counter()
                n = sum(len(b["pair_id"]) for b in loader)
                dt = time.perf_counter() - t
                print(f"{label:<17} workers={workers}: {n / dt:8.1f} pairs/s ({n} pairs in {dt:.2f} s)")


if __name__ == "__main__":
    main()
