"""Training throughput: images/s and peak memory of `xseason.train` steps (CUDA when present, else CPU).

    .venv/bin/python benchmarks/bench_train.py [--dataset DIR] [--steps 30] [--batch 4] [--size 160x120]
                                               [--threads 2] [--workers 1]

Without --dataset a toy dataset is generated in a temporary folder. Each setting (the supervised
baseline and three correspondence losses) trains in a fresh process, so that its peak memory
(GPU: max allocated; CPU: peak RSS of the training process) is its own. Prints one line per setting.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from xseason.learn.dataset import AugmentConfig
from xseason.learn.losses import LossConfig
from xseason.learn.train import DataConfig, TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from toy import make_toy_dataset  # noqa: E402

SETTINGS = {
    "baseline (lambda=0)": ("class", 0.0),
    "class": ("class", 1.0),
    "hinge_feature": ("hinge_feature", 1.0),
    "contrastive": ("contrastive", 1.0),
}


def measure(cfg: TrainConfig) -> tuple[float, float, str]:
    """(ms/step, images/s, peak memory) of one training run."""
    result = train(cfg)
    peak = (
        f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB GPU"
        if torch.cuda.is_available()
        else f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB RSS"
    )
    return result.seconds_per_step * 1000, result.images_per_second, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", default="160x120", help="crop WxH (the short side is resized to H)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or make_toy_dataset(Path(tmp) / "toy", places=16, size=(w * 2, h * 2))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(
            f"device {device}, threads {args.threads or torch.get_num_threads()}, batch {args.batch} pairs, "
            f"crop {w}x{h}, {args.steps} steps, {args.workers} loader worker(s), dataset {dataset}"
        )
        for k, (label, (kind, lam)) in enumerate(SETTINGS.items()):
            cfg = TrainConfig(
                dataset=dataset,
                out=Path(tmp) / f"run{k}",
                steps=args.steps,
                batch_size=args.batch,
                corr_weight=lam,
                resume=False,
                progress=False,
                threads=args.threads,
                log_every=1000,
                checkpoint_every=10**9,
                loss=LossConfig(kind=kind),
                data=DataConfig(num_workers=args.workers, augment=AugmentConfig(short_side=h, crop=(w, h))),
            )
            with ProcessPoolExecutor(1, mp_context=spawn) as pool:  # not daemonic: loader workers may start
                ms, rate, peak = pool.submit(measure, cfg).result()
            print(f"{label:<20} {ms:7.1f} ms/step  {rate:7.1f} images/s  peak {peak}", flush=True)


if __name__ == "__main__":
    main()
