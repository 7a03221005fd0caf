"""`xseason build` killed in the middle and run again gives the same dataset as an uninterrupted build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from xseason.store import open_dataset

# Files that appear as the build goes: killed right after each, the build is mid-way through
# feature extraction / sequence models / the correspondences (registration done, dataset not written).
KILL_AFTER = ["colmap/database.db", "sfm", "registration.json"]
# COLMAP's multi-threaded matching and triangulation may number the same 3D points differently run to
# run, which changes the order-dependent steps after them: single-threaded, a build repeats exactly.
SINGLE_THREADED = ["matching.num_threads=1", "reconstruction.num_threads=1"]


def _build_command(manifest: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from xseason.cli import main; sys.exit(main())",
        "build",
        str(manifest),
        "--out",
        str(out),
        "--quiet",
        *(f"--set={setting}" for setting in SINGLE_THREADED),
    ]


def _kill_when(manifest: Path, out: Path, marker: str, timeout: float = 600.0) -> None:
    """Start a build and SIGKILL it as soon as `OUT.work/<marker>` exists."""
    proc = subprocess.Popen(
        _build_command(manifest, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    work = out.parent / f"{out.name}.work"
    start = time.monotonic()
    while not (work / marker).exists():
        if proc.poll() is not None:
            pytest.fail(f"the build ended before {marker} appeared: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def _tables(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    store = open_dataset(path)
    meta = json.loads((path / "dataset.json").read_text())
    for key in ("created", "work_dir"):  # when, and the (per-build) work folder
        meta.pop(key)
    return store.images, store.pairs, pd.read_parquet(path / "matches"), meta


def test_a_killed_build_resumes_to_the_same_dataset(tiny_scene, tmp_path):
    manifest = tiny_scene / "manifest.csv"
    straight = tmp_path / "straight"
    done = subprocess.run(_build_command(manifest, straight), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]

    resumed = tmp_path / "resumed"
    for marker in KILL_AFTER:
        _kill_when(manifest, resumed, marker)
        assert not (resumed / "dataset.json").exists()  # nothing that looks like a finished dataset
    done = subprocess.run(_build_command(manifest, resumed), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]

    a, b = _tables(straight), _tables(resumed)
    assert len(a[2]) > 500
    for x, y in zip(a[:3], b[:3]):
        pd.testing.assert_frame_equal(x, y)
    assert a[3] == b[3]
