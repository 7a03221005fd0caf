"""GPU readiness: a bf16 autocast + channels-last training step per network, the data loader at full speed
and its headroom, and DDP over NCCL when there are >= 2 GPUs.

    python benchmarks/gpu_check.py [--arch resnet50_psp segnet] [--batch 8] [--size 512x512] [--steps 20]
                                   [--warmup 5] [--dataset DIR] [--workers 8] [--cache-mb 0]
                                   [--loader-batches 60] [--cpu-smoke]

(a) Training step: each --arch trains on a synthetic batch (--batch pairs: 2 x batch images of --size,
    labels, --matches matches per pair) with the losses of `xseason train` (cross-entropy on the reference
    images + the correspondence loss, AdamW), under bf16 autocast with channels-last images and weights.
    Prints the median step time after --warmup steps, images/s, the GPU's utilisation while the timed
    steps ran (NVML through torch.cuda.utilization, else nvidia-smi, else n/a) and the peak memory.
(b) Loader: CorrespondenceDataset of --dataset (without it, a generated toy dataset) through a DataLoader
    with --workers processes, at the same crop and batch; prints batches/s and the headroom per arch:
    loader batches/s over training steps/s (>= 1: the loader keeps the GPU fed).
(c) DDP: with >= 2 GPUs, the first --arch under DistributedDataParallel over NCCL (processes started by
    torch.multiprocessing.spawn), --batch pairs per GPU, on 1, 2, 4 .. all GPUs; prints ms/step, images/s
    and the scaling efficiency against one GPU without DDP from (a).

Without CUDA it prints "skipped: no CUDA device" and exits 0. --cpu-smoke runs all three parts tiny on the
CPU instead (DDP over gloo with 2 processes), so that the script itself can be tested anywhere.
The repository root is put on sys.path: on a machine with torch but without xseason installed,
`python3 benchmarks/gpu_check.py` works from a checkout (it needs numpy, pandas, pyarrow, opencv, pyyaml).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from toy import make_toy_dataset  # noqa: E402

from xseason.learn.dataset import (  # noqa: E402
    AugmentConfig,
    CorrespondenceDataset,
    PadCollate,
    PairBatchSampler,
)
from xseason.learn.losses import LossConfig, correspondence_loss  # noqa: E402
from xseason.learn.models import ARCHS, ModelConfig, build_model, upsample_to  # noqa: E402


@dataclass
class Setting:
    """What one measurement trains: network, batch, crop, steps, device."""

    arch: str
    batch: int  # pairs per step (per process under DDP)
    size: tuple[int, int]  # crop (W, H)
    steps: int
    warmup: int
    device: str  # "cuda" or "cpu"
    matches: int = 256
    num_classes: int = 19
    base_width: int = 64  # ResNet width (64 = the standard network)
    head_width: int = 0  # 0 = the papers'

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def model(self, device: torch.device) -> torch.nn.Module:
        cfg = ModelConfig(self.arch, self.num_classes, base_width=self.base_width, head_width=self.head_width)
        torch.manual_seed(0)
        return build_model(cfg).to(device, memory_format=torch.channels_last).train()


def synthetic_batch(s: Setting, device: torch.device) -> dict[str, torch.Tensor]:
    """A training batch like PadCollate's: uint8 images of both sides, labels, matches inside the crop."""
    g = torch.Generator().manual_seed(0)
    w, h = s.size
    xy = torch.rand(s.batch, s.matches, 4, generator=g) * torch.tensor([w - 1.0, h - 1.0, w - 1.0, h - 1.0])
    batch = {
        "images": torch.randint(0, 256, (2 * s.batch, 3, h, w), dtype=torch.uint8, generator=g),
        "labels": torch.randint(0, s.num_classes, (s.batch, h, w), generator=g),
        "matches": xy,
        "weights": torch.ones(s.batch, s.matches),
        "valid": torch.ones(s.batch, s.matches, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in batch.items()}


def train_step(net, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], s: Setting) -> None:
    """One step as `xseason train` makes it: both sides forwarded at once, CE on the reference side's
    labels at full resolution, the correspondence loss (class kind) on the matches."""
    images = batch["images"].float().div_(255).contiguous(memory_format=torch.channels_last)
    with torch.autocast(s.device, dtype=torch.bfloat16):
        out = net(images)
    b = s.batch
    halves = [{k: v[i * b : (i + 1) * b].float() for k, v in out.items()} for i in (0, 1)]
    labels = batch["labels"]
    loss = F.cross_entropy(upsample_to(halves[0]["logits"], labels.shape[-2:]), labels)
    size = tuple(images.shape[-2:])
    loss = loss + correspondence_loss(
        *halves, batch["matches"], batch["weights"], batch["valid"], size, LossConfig(kind="class")
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def time_steps(step: Callable[[], None], n: int, cuda: bool) -> np.ndarray:
    """Seconds of each of `n` calls of `step` (the GPU synchronised after each)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return np.array(times)


def utilisation_reader(index: int) -> Callable[[], float] | None:
    """A function reading GPU `index`'s utilisation in %: NVML through torch (needs pynvml, e.g. the
    nvidia-ml-py package), else nvidia-smi; None when neither answers."""
    try:
        torch.cuda.utilization(index)
        return lambda: float(torch.cuda.utilization(index))
    except Exception:  # no pynvml (ModuleNotFoundError), or NVML refused
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    for gpu in ([f"GPU-{uuid}"] if uuid else []) + [str(index)]:
        cmd = [smi, f"--id={gpu}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]

        def read(cmd: list[str] = cmd) -> float:
            return float(subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=True).stdout)

        try:
            read()
            return read
        except (OSError, subprocess.SubprocessError, ValueError):
            continue
    return None


class UtilisationSampler:
    """Reads the utilisation every `period` seconds on a thread while its `with` block runs."""

    def __init__(self, read: Callable[[], float] | None, period: float = 0.1) -> None:
        self.read, self.period, self.samples = read, period, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(self.period):
            self.samples.append(self.read())

    def __enter__(self) -> UtilisationSampler:
        if self.read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def summary(self) -> str:
        return f"{np.mean(self.samples):.0f} %" if self.samples else "n/a"


def measure_step(s: Setting) -> float:
    """(a): prints one line for `s.arch`; returns its median seconds per step."""
    device = torch.device(s.device)
    net = s.model(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    batch = synthetic_batch(s, device)
    step = lambda: train_step(net, optimizer, batch, s)
    time_steps(step, s.warmup, s.cuda)
    if s.cuda:
        torch.cuda.reset_peak_memory_stats()
    with UtilisationSampler(utilisation_reader(torch.cuda.current_device()) if s.cuda else None) as util:
        times = time_steps(step, s.steps, s.cuda)
    sec = float(np.median(times))
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if s.cuda else "n/a (CPU)"
    params = sum(p.numel() for p in net.parameters()) / 1e6
    spread = f"(min {times.min() * 1000:.1f}, max {times.max() * 1000:.1f})"
    print(
        f"{s.arch:<24} {sec * 1000:8.1f} ms/step {spread}  {2 * s.batch / sec:8.1f} images/s  "
        f"GPU util {util.summary():>5}  peak {peak}  {params:.1f}M params",
        flush=True,
    )
    return sec


def loader_rate(dataset: Path, s: Setting, workers: int, batches: int, cache_mb: float) -> float:
    """(b): batches/s of CorrespondenceDataset through a DataLoader, after its workers are up."""
    w, h = s.size
    aug = AugmentConfig(short_side=h, crop=(w, h), hflip=0.5, brightness=0.2, max_matches=s.matches)
    ds = CorrespondenceDataset(dataset, augment=aug, cache_mb=cache_mb)
    warm = 2 * max(workers, 1)  # the batches the workers make at once on start
    sampler = PairBatchSampler(ds.condition_pairs(), s.batch, warm + batches, seed=0)
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=PadCollate(s.matches),
        num_workers=workers,
        pin_memory=s.cuda,
    )
    it = iter(loader)
    for _ in range(warm):
        next(it)
    t = time.perf_counter()
    n = sum(1 for _ in it)
    return n / (time.perf_counter() - t)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_worker(rank: int, world: int, s: Setting, port: int, results) -> None:
    """(c), one process: DDP over NCCL (gloo on the CPU); rank 0 puts the slowest rank's median s/step."""
    backend = "nccl" if s.cuda else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        if s.cuda:
            device = torch.device("cuda", rank)
            torch.cuda.set_device(device)
        else:
            device = torch.device("cpu")
            torch.set_num_threads(1)
        model = s.model(device)
        net = DistributedDataParallel(
            model, device_ids=[rank] if s.cuda else None, find_unused_parameters=True
        )  # as `xseason train` wraps it
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
        batch = synthetic_batch(s, device)
        step = lambda: train_step(net, optimizer, batch, s)
        time_steps(step, s.warmup, s.cuda)
        sec = torch.tensor([float(np.median(time_steps(step, s.steps, s.cuda)))], device=device)
        dist.all_reduce(sec, op=dist.ReduceOp.MAX)
        if rank == 0:
            results.put(float(sec))
        dist.barrier()  # no rank tears gloo down while another still talks to it (a SIGABRT otherwise)
    finally:
        dist.destroy_process_group()


def measure_ddp(s: Setting, world: int) -> float:
    """Median seconds per step of `world` DDP processes (the slowest rank's)."""
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(ddp_worker, args=(world, s, _free_port(), results), nprocs=world, join=True)
    return results.get()


def parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--arch",
        nargs="+",
        default=["resnet50_psp", "segnet"],
        choices=ARCHS,
        metavar="ARCH",
        help=", ".join(ARCHS),
    )
    ap.add_argument("--batch", type=int, default=8, help="pairs per step (2 x images), per GPU under DDP")
    ap.add_argument("--size", type=parse_size, default=(512, 512), help="crop WxH")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (after the warm-up)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--matches", type=int, default=256, help="matches per pair")
    ap.add_argument("--dataset", type=Path, help="a dataset folder for the loader (default: a toy one)")
    ap.add_argument("--workers", type=int, default=8, help="loader worker processes")
    ap.add_argument("--cache-mb", type=float, default=0.0, help="loader image cache (0: every image decoded)")
    ap.add_argument("--loader-batches", type=int, default=60)
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny run of every part on the CPU")
    args = ap.parse_args()
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print(
            f"skipped: no CUDA device (torch {torch.__version__}; --cpu-smoke runs a tiny check on the CPU)"
        )
        return 0
    base = Setting(args.arch[0], args.batch, args.size, args.steps, args.warmup, "cuda", args.matches)
    workers, loader_batches, gpus = args.workers, args.loader_batches, torch.cuda.device_count()
    if args.cpu_smoke:
        base = replace(base, batch=1, size=(96, 64), steps=2, warmup=1, device="cpu", matches=32)
        base = replace(base, base_width=8, head_width=16)
        workers, loader_batches, gpus = 1, 4, 0
        torch.set_num_threads(1)  # it tests the script, not the CPU; spare a shared machine
        where = f"CPU smoke run, torch {torch.__version__}"
    else:
        where = (
            f"{gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
        )
    w, h = base.size
    print(
        f"{where}; bf16 autocast, channels-last; batch {base.batch} pairs ({2 * base.batch} images) "
        f"of {w}x{h}, {base.matches} matches per pair; median of {base.steps} steps after {base.warmup}",
        flush=True,
    )

    seconds = {}
    for arch in args.arch:
        seconds[arch] = measure_step(replace(base, arch=arch))
        if base.cuda:
            torch.cuda.empty_cache()  # the last network's cached blocks

    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or make_toy_dataset(
            Path(tmp) / "toy", places=2 if args.cpu_smoke else 16, size=(2 * w, 2 * h)
        )
        rate = loader_rate(dataset, base, workers, loader_batches, args.cache_mb)
    headroom = ", ".join(f"{arch} {rate * sec:.1f}x" for arch, sec in seconds.items())
    print(
        f"loader: {rate:.1f} batches/s (workers={workers}, cache {args.cache_mb:g} MB, "
        f"{'toy dataset' if args.dataset is None else args.dataset}); headroom {headroom} (>= 1: keeps up)",
        flush=True,
    )

    counts = [2] if args.cpu_smoke else sorted({n for n in (1, 2, 4, 8, 16) if n <= gpus} | {gpus})
    if len(counts) == 1 and counts[0] < 2:
        print(f"DDP: skipped ({gpus} GPU; needs >= 2)")
        return 0
    single, unit = seconds[base.arch], "processes" if args.cpu_smoke else "GPUs"
    for world in counts:
        sec = measure_ddp(base, world)
        print(
            f"DDP {world} {unit} {base.arch}: {sec * 1000:8.1f} ms/step  "
            f"{2 * base.batch * world / sec:8.1f} images/s  scaling {single / sec:.0%} of 1 without DDP",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
