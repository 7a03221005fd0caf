"""Manifest speed: rows/s of `write_manifest` and `read_manifest` (with and without file checks).

    .venv/bin/python benchmarks/bench_manifest.py [--rows 100000] [--sequences 10]

Every row has a pose, a position prior and SIMPLE_RADIAL intrinsics (one camera per sequence);
the image files exist (empty), so `read_manifest` checks each one. Prints one line per step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from xseason.inputs.manifest import read_manifest, write_manifest


def manifest_rows(n: int, sequences: int, seed: int = 0) -> list[dict]:
    """`n` posed rows over `sequences` sequences (conditions c0..c2), as `write_manifest` takes them."""
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t, prior = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    return [
        {
            "image": f"s{i % sequences}/{i:07d}.png",
            "sequence": f"s{i % sequences}",
            "condition": f"c{i % sequences % 3}",
            "timestamp": i * 0.1,
            "camera_model": "SIMPLE_RADIAL",
            "camera_params": [500.0, 320.0, 240.0, 0.01],
            "qw": a,
            "qx": b,
            "qy": c,
            "qz": d,
            "tx": x,
            "ty": y,
            "tz": z,
            "prior": p,
        }
        for i, ((a, b, c, d), (x, y, z), p) in enumerate(zip(q.tolist(), t.tolist(), prior))
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--sequences", type=int, default=10)
    args = ap.parse_args()
    rows = manifest_rows(args.rows, args.sequences)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for s in range(args.sequences):
            (root / f"s{s}").mkdir()
        for row in rows:
            (root / row["image"]).touch()
        steps = {
            "write_manifest": lambda: write_manifest(root / "m.csv", rows),
            "read_manifest, file checks": lambda: read_manifest(root / "m.csv"),
            "read_manifest, no file checks": lambda: read_manifest(root / "m.csv", check_files=False),
        }
        for label, step in steps.items():
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
            print(f"{label:<30} {args.rows} rows in {seconds:6.2f} s  ({args.rows / seconds:9.0f} rows/s)")


if __name__ == "__main__":
    main()
