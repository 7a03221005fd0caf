"""benchmarks/gpu_check.py runs: skipped with a reason without CUDA, and every part of it in --cpu-smoke."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device runs the real check")
def test_skipped_without_cuda():
    assert run().startswith("skipped: no CUDA device")


def test_cpu_smoke():
    out = run("--cpu-smoke", "--arch", "resnet101_deeplabv3plus", "segnet")
    for arch in ("resnet101_deeplabv3plus", "segnet"):
        step = re.search(rf"^{arch}\s+([\d.]+) ms/step .*  ([\d.]+) images/s  GPU util\s+n/a", out, re.M)
        assert step and float(step[1]) > 0 and float(step[2]) > 0, out
    loader = re.search(r"^loader: ([\d.]+) batches/s .*headroom resnet101_deeplabv3plus ([\d.]+)x", out, re.M)
    assert loader and float(loader[1]) > 0 and float(loader[2]) > 0, out
    assert re.search(r"^DDP 2 processes resnet101_deeplabv3plus:\s+[\d.]+ ms/step", out, re.M), out
