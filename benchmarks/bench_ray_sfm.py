"""The SfM stages (features, matching, the sequences' models) on Ray with 1 and 2 workers, and in one process.

    .venv/bin/python benchmarks/bench_ray_sfm.py MANIFEST [--runs local ray1 ray2]

MANIFEST: an image manifest of several sequences, e.g. a scene written by
``xseason synth --preset demo --set images_per_sequence=16 --hide-poses --out DIR`` (unposed sequences:
incremental mapping, the costly model task). Each run happens in a fresh subprocess with a fresh work
folder (nothing reused), COLMAP single-threaded (`build.deterministic`: one core per task, the same models
on every run), the executor started first (`ray1`, `ray2`: a local Ray instance of 1 or 2 CPUs, its
workers warmed up). Timed: `extract` (tasks: blocks of `features._BLOCK` images; the driver writes the
database) and `reconstruct`: the matching (`local`: COLMAP's matcher in the driver, on the database
itself; `ray1`, `ray2`: tasks of `features._MATCH_BLOCK` pairs, the driver writing their rows) and the
sequence models (one task per sequence). Printed per run: wall times, the tasks' times (count, mean,
max; and their mean CPU time: a task whose wall time grows while its CPU time does not waited for a
core, e.g. under other load), the speed-up and scaling efficiency of the parallel stages against one
Ray worker, the peak RSS of the processes that ran tasks (the largest; with `local` the driver) and of
the driver, and a digest of the SfM records (feature index, the database's matches and two-view
geometries, the models' statuses: the same for every run).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import xseason.sfm.features as features  # noqa: E402
import xseason.sfm.reconstruction as reconstruction  # noqa: E402
from xseason.core.executor import make_executor  # noqa: E402
from xseason.inputs.manifest import read_manifest  # noqa: E402
from xseason.sfm.config import SfMConfig  # noqa: E402
from xseason.sfm.paths import BuildPaths  # noqa: E402

WORKERS = {"local": None, "ray1": 1, "ray2": 2}
STAGES = ("features", "matching", "models")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn: Callable, stage: str, log_file: str) -> Callable:
    """`fn(item, shared)` that appends its stage, wall and CPU seconds, process id and peak RSS to
    `log_file` (tasks may run in other processes)."""

    def timed(item, shared):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn(item, shared)
        took = [time.perf_counter() - start, time.process_time() - cpu]
        with open(log_file, "a") as f:
            f.write(json.dumps([stage, *took, os.getpid(), _peak_rss_mb()]) + "\n")
        return out

    return timed


def _warm(item: int, shared: None) -> int:
    import xseason.sfm.reconstruction  # noqa: F401  (the workers' imports, before the timing)

    return item


def _records(paths: BuildPaths) -> str:
    """A digest of the SfM records: the feature index, the database's matches and two-view geometries
    (rows by pair) and every sequence's model status (cache keys left out: they name the code)."""
    files = [paths.features, *sorted((paths.colmap / "models").glob("*/status.json"))]
    records = [{k: v for k, v in json.loads(f.read_text()).items() if k != "key"} for f in files]
    digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode())
    with closing(sqlite3.connect(paths.database)) as con:
        for table in ("matches", "two_view_geometries"):
            for row in con.execute(f"SELECT * FROM {table} ORDER BY pair_id"):
                digest.update(repr(row).encode())
    return digest.hexdigest()[:12]


def one_run(manifest_path: Path, run: str) -> dict:
    """One timed run (module doc) in this process."""
    manifest = read_manifest(manifest_path)
    cfg = SfMConfig()
    cfg = replace(
        cfg,
        matching=replace(cfg.matching, num_threads=1),
        reconstruction=replace(cfg.reconstruction, num_threads=1),
    )
    workers = WORKERS[run]
    executor = make_executor("local" if run == "local" else "ray", workers=workers)
    if workers:
        list(executor.map(_warm, range(4 * workers)))
    with tempfile.TemporaryDirectory() as tmp:
        paths, log_file = BuildPaths(Path(tmp) / "work"), str(Path(tmp) / "tasks.jsonl")
        features._extract_block = _timed(features._extract_block, "features", log_file)
        features._match_block = _timed(features._match_block, "matching", log_file)
        reconstruction._sequence_task = _timed(reconstruction._sequence_task, "models", log_file)
        match = reconstruction.match
        matching: list[float] = []

        def timed_match(*args, **kwargs):
            start = time.perf_counter()
            out = match(*args, **kwargs)
            matching.append(time.perf_counter() - start)
            return out

        reconstruction.match = timed_match
        start = time.perf_counter()
        index = features.extract(manifest, paths, cfg, executor=executor)
        extracted = time.perf_counter()
        models = reconstruction.reconstruct(manifest, index, paths, cfg, executor=executor)
        done = time.perf_counter()
        tasks = [json.loads(line) for line in Path(log_file).read_text().splitlines()]
        digest = _records(paths)
    executor.close()
    out = {
        "run": run,
        "images": len(manifest.images),
        "sequences": len(models.status),
        "models_ok": sum(s.ok for s in models.status.values()),
        "features_s": extracted - start,
        "matching_s": matching[0],
        "models_s": done - extracted - matching[0],
        "driver_rss_mb": _peak_rss_mb(),
        "digest": digest,
    }
    for stage in STAGES:
        wall, cpu = np.array([(t, c) for s, t, c, _, _ in tasks if s == stage]).reshape(-1, 2).T
        if not len(wall):  # matching with `local`: no tasks
            continue
        out[stage] = {
            "tasks": len(wall),
            "mean_s": float(wall.mean()),
            "max_s": float(wall.max()),
            "cpu_mean_s": float(cpu.mean()),
        }
    rss: dict[int, float] = {}
    for _, _, _, pid, peak in tasks:
        rss[pid] = max(rss.get(pid, 0.0), peak)
    out["worker_rss_mb"] = max(rss.values())
    out["task_processes"] = len(rss)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--runs", nargs="+", default=list(WORKERS), choices=list(WORKERS))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, printed as JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.manifest, args.one)))
        return
    results = []
    for run in args.runs:
        cmd = [sys.executable, __file__, str(args.manifest), "--one", run]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{run} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = results[0]
    print(
        f"{args.manifest}: {first['images']} images, {first['sequences']} sequences "
        f"({first['models_ok']} models made), {os.cpu_count()} cores, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())} (after the runs)"
    )
    one = next((r for r in results if r["run"] == "ray1"), None)
    print(
        "run    stage     wall s  tasks  task mean / max s (CPU mean s)  speed-up  efficiency  "
        "task process peak RSS MB (n)  driver peak RSS MB  digest"
    )
    for r in results:
        n = WORKERS[r["run"]] or 1
        for stage in STAGES:
            wall = r[f"{stage}_s"]
            speedup = one[f"{stage}_s"] / wall if one else float("nan")
            t = r.get(stage)
            tasks = (
                f"{t['tasks']:5d}  {t['mean_s']:8.2f} / {t['max_s']:6.2f} ({t['cpu_mean_s']:6.2f})"
                if t
                else f"{'-':>5}  {'(driver)':>26}"
            )
            print(
                f"{r['run']:<6} {stage:<8} {wall:7.2f}  {tasks}      {speedup:8.2f}  {speedup / n:10.2f}  "
                f"{r['worker_rss_mb']:22.0f} ({r['task_processes']})  {r['driver_rss_mb']:18.0f}  "
                f"{r['digest']}"
            )


if __name__ == "__main__":
    main()
