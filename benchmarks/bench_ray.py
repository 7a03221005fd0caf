"""Correspondence generation and the matches' part files on Ray with 1 and 2 workers, and in one process.

    .venv/bin/python benchmarks/bench_ray.py MANIFEST [--work DIR] [--shard-targets N] [--runs ...]

MANIFEST: an image manifest (e.g. a scene's written by `xseason synth`, or data_manifest.csv). The
SfM stages are made once by a first `run_build` (cached in the work folder, default
MANIFEST.bench-ray.work; a copy of a build's work folder reuses its SfM stages); each run
then happens in a fresh subprocess (so that its peak memory is its own): the cached SfM stages and
the association are loaded, the executor started (`ray1`, `ray2`: a local Ray instance of 1 or 2
CPUs, its workers warmed up first), and timed: `make_correspondences` + `write_dataset(parts=...)`,
the build's generation and store stages. Printed per run: wall time, the shards' task times
(median, max, total: a worker's first task also builds the visibility models' ray-casting scenes,
which it keeps for its next tasks), the speed-up and scaling efficiency against one Ray worker,
the driver's peak RSS before and after the generation (the driver holds the inputs and per-pair
metadata; with `local` it also runs every task), and the content digest of the dataset (the same
for every run).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import xseason.matching.correspondences as correspondences  # noqa: E402
from xseason.core.executor import make_executor  # noqa: E402
from xseason.inputs.manifest import read_manifest  # noqa: E402
from xseason.matching.association import associate_clouds, point_table_from_reconstructions  # noqa: E402
from xseason.matching.views import views_from_manifest  # noqa: E402
from xseason.pipeline.build import BuildConfig, run_build  # noqa: E402
from xseason.sfm.features import extract  # noqa: E402
from xseason.sfm.paths import BuildPaths  # noqa: E402
from xseason.sfm.reconstruction import reconstruct  # noqa: E402
from xseason.sfm.registration import register  # noqa: E402
from xseason.store import content_digests, write_dataset  # noqa: E402
from xseason.store.tables import images_table  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_shard(times_file: str):
    """`_run_shard` that appends its duration to `times_file` (tasks may run in other processes)."""
    run_shard = correspondences._run_shard

    def timed(task, shared):
        start = time.perf_counter()
        info = run_shard(task, shared)
        with open(times_file, "a") as f:
            f.write(f"{time.perf_counter() - start}\n")
        return info

    return timed


def _warm(item: int, shared: None) -> int:
    import xseason.matching.correspondences  # noqa: F401  (the workers' imports, before the timing)

    return item


def one_run(manifest_path: Path, work: Path, run: str, shard_targets: int) -> dict:
    """One timed generation (module doc) in this process."""
    manifest = read_manifest(manifest_path)
    cfg, paths = BuildConfig(), BuildPaths(work)
    refs = [manifest.images[0].condition]
    index = extract(manifest, paths, cfg)
    registration = register(manifest, index, reconstruct(manifest, index, paths, cfg), paths, cfg, refs)
    views = views_from_manifest(manifest, registration.models, cfg.features.default_focal_factor)
    points = point_table_from_reconstructions(
        registration.models, views, cfg.association.spacing_k, joint=registration.joint
    )
    associated = associate_clouds(points, refs, cfg.association)
    workers = {"local": None, "ray1": 1, "ray2": 2}[run]
    executor = make_executor("local" if run == "local" else "ray", workers=workers)
    if workers:
        list(executor.map(_warm, range(4 * workers)))
    with tempfile.TemporaryDirectory() as tmp:
        times_file = Path(tmp) / "times.txt"
        correspondences._run_shard = _timed_shard(str(times_file))
        rss_before = _peak_rss_mb()
        start = time.perf_counter()
        tables = correspondences.make_correspondences(
            associated, cfg.correspondences, cfg.surfaces, cfg.surfels, False, executor, None, shard_targets
        )
        confidence = [registration.images[v.name].confidence for v in views]
        write_dataset(
            Path(tmp) / "ds",
            images_table(views, tables.image_split, confidence),
            tables.pairs,
            parts=tables.match_parts(),
            executor=executor,
            config={},
            manifest_checksum=None,
            image_root=manifest.root,
            points3d=tables.points3d if len(tables.points3d) else None,
        )
        wall = time.perf_counter() - start
        task_times = np.loadtxt(times_file, ndmin=1)
        digest = content_digests(Path(tmp) / "ds")
    executor.close()
    return {
        "run": run,
        "wall_s": wall,
        "tasks": len(task_times),
        "task_median_s": float(np.median(task_times)),
        "task_total_s": float(task_times.sum()),
        "task_max_s": float(task_times.max()),
        "pairs": len(tables.pairs),
        "matches": tables.num_matches,
        "rss_before_mb": rss_before,
        "rss_peak_mb": _peak_rss_mb(),
        "digest": digest["matches"][:12] + "/" + digest["pairs"][:12],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--work", type=Path, help="work folder (default MANIFEST.bench-ray.work)")
    parser.add_argument("--shard-targets", type=int, default=correspondences.SHARD_TARGETS)
    parser.add_argument(
        "--runs", nargs="+", default=["local", "ray1", "ray2"], choices=["local", "ray1", "ray2"]
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, printed as JSON
    args = parser.parse_args()
    work = args.work or args.manifest.with_name(args.manifest.name + ".bench-ray.work")
    if args.one:
        print(json.dumps(one_run(args.manifest, work, args.one, args.shard_targets)))
        return
    with tempfile.TemporaryDirectory() as tmp:  # the SfM stages, cached in `work` for every run
        run_build(args.manifest, Path(tmp) / "ds", work_dir=work, progress=False)
    results = []
    for run in args.runs:
        cmd = [sys.executable, __file__, str(args.manifest), "--work", str(work), "--one", run]
        out = subprocess.run(
            cmd + ["--shard-targets", str(args.shard_targets)], capture_output=True, text=True
        )
        if out.returncode:
            sys.exit(f"{run} failed:\n{out.stderr[-3000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    one = next((r["wall_s"] for r in results if r["run"] == "ray1"), None)
    print(
        f"{args.manifest}: {results[0]['pairs']} pairs, {results[0]['matches']:,} matches, "
        f"{results[0]['tasks']} shards of {args.shard_targets} target images"
    )
    print(
        "run    wall s  task median / max / total s  speed-up  efficiency  driver peak RSS MB "
        "(before -> after)  digest"
    )
    for r in results:
        n = {"local": 1, "ray1": 1, "ray2": 2}[r["run"]]
        speedup = one / r["wall_s"] if one else float("nan")
        print(
            f"{r['run']:<6} {r['wall_s']:6.2f}  {r['task_median_s']:8.2f} / {r['task_max_s']:6.2f} / "
            f"{r['task_total_s']:7.2f}  "
            f"{speedup:8.2f}  {speedup / n:10.2f}  {r['rss_before_mb']:18.0f} -> {r['rss_peak_mb']:<15.0f}  "
            f"{r['digest']}"
        )


if __name__ == "__main__":
    main()
