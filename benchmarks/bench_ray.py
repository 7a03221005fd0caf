"""Correspondence generation and the matches' part files on Ray with 1 and 2 workers, and in one process.

    .venv/bin/python benchmarks/bench_ray.py MANIFEST [--work DIR] [--shard-targets N] [--runs ...]
                                             [--repeat N] [--set SECTION.KEY=VALUE ...]

MANIFEST: an image manifest (e.g. a scene's written by `xseason synth`, or data_manifest.csv). The
SfM stages are made once by a first `run_build` (cached in the work folder, default
MANIFEST.bench-ray.work; a copy of a build's work folder reuses its SfM stages); each run
then happens in a fresh subprocess (so that its peak memory is its own): the cached SfM stages and
the association are loaded, the executor started (`local`: this process; `ray1`, `ray2`: a local
Ray instance of 1 or 2 CPUs) and its workers' imports made, and timed: `make_correspondences` +
`write_dataset(parts=...)`, the build's generation and store stages. Printed per run (the fastest
of `--repeat`): the 1-minute load average as it started; wall times of the driver's serial work
before the first task (`serial`: the surface and surfel models), of the rest of the generation
(`map`: the clutter hulls' tasks, the candidate pairs, the reference sides' tasks, the shards'
tasks, then the tables), of the generation
(`gen`) and of the store stage; the generation shards' task times (mean, max, sum: a worker's
first task of a target condition also builds that condition's ray-casting scene from the shipped
hull) and CPU time (sum: above the wall time where a task used more than one core); speed-up and
scaling efficiency (speed-up / workers) of map, gen and gen + store against one Ray worker; peak
RSS of the driver (before generation -> after the store stage: the growth is what generation and
the commit cost the driver; `--set correspondences.max_surface_matches=...` changes the number of
matches, to see that it does not grow with them) and of each process that ran generation tasks (the
driver itself with `local`); the content digest of the dataset (the same for every run).
"""

from __future__ import annotations

import argparse
import json
import os
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
from xseason.pipeline.build import BuildConfig, load_build_config, run_build  # noqa: E402
from xseason.sfm.features import extract  # noqa: E402
from xseason.sfm.paths import BuildPaths  # noqa: E402
from xseason.sfm.reconstruction import reconstruct  # noqa: E402
from xseason.sfm.registration import register  # noqa: E402
from xseason.store import content_digests, write_dataset  # noqa: E402
from xseason.store.tables import images_table  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_shard(times_file: str):
    """`_run_shard` that appends its process id, wall and CPU time and the process's peak RSS (MB) so
    far to `times_file` (tasks may run in other processes)."""
    run_shard = correspondences._run_shard

    def timed(task, shared):
        start, cpu = time.perf_counter(), time.process_time()
        info = run_shard(task, shared)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        with open(times_file, "a") as f:
            f.write(f"{os.getpid()} {wall} {cpu} {_peak_rss_mb()}\n")
        return info

    return timed


class _FirstMap:
    """An executor that notes when its first `map` is called (the end of the driver's serial work)."""

    def __init__(self, executor):
        self.executor, self.kind, self.first = executor, executor.kind, None

    def map(self, fn, items, shared=None):
        self.first = self.first or time.perf_counter()
        return self.executor.map(fn, items, shared)

    def close(self) -> None:
        self.executor.close()


def _warm(item: int, shared: None) -> int:
    """The imports of a generation task (open3d's takes seconds), before the timing."""
    import open3d  # noqa: F401

    import xseason.matching.correspondences  # noqa: F401

    return item


def one_run(manifest_path: Path, work: Path, run: str, shard_targets: int, overrides: list[str]) -> dict:
    """One timed generation (module doc) in this process, `overrides` (``section.key=value``) applied
    to the generation's configuration (the SfM stages are the cached ones)."""
    manifest = read_manifest(manifest_path)
    cfg, paths = BuildConfig(), BuildPaths(work)
    gen = load_build_config(None, overrides)
    refs = [manifest.images[0].condition]
    index = extract(manifest, paths, cfg)
    registration = register(manifest, index, reconstruct(manifest, index, paths, cfg), paths, cfg, refs)
    views = views_from_manifest(manifest, registration.models, cfg.features.default_focal_factor)
    points = point_table_from_reconstructions(
        registration.models, views, cfg.association.spacing_k, joint=registration.joint
    )
    associated = associate_clouds(points, refs, cfg.association)
    load = os.getloadavg()[0]
    workers = {"local": None, "ray1": 1, "ray2": 2}[run]
    executor = _FirstMap(make_executor("local" if run == "local" else "ray", workers=workers))
    list(executor.map(_warm, range(4 * (workers or 1))))
    executor.first = None
    with tempfile.TemporaryDirectory() as tmp:
        times_file = Path(tmp) / "times.txt"
        correspondences._run_shard = _timed_shard(str(times_file))
        rss_before = _peak_rss_mb()
        start = time.perf_counter()
        tables = correspondences.make_correspondences(
            associated, gen.correspondences, gen.surfaces, gen.surfels, False, executor, None, shard_targets
        )
        generated = time.perf_counter()
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
        end = time.perf_counter()
        pid, task_s, cpu_s, rss = np.loadtxt(times_file, ndmin=2).T
        digest = content_digests(Path(tmp) / "ds")
    executor.close()
    return {
        "run": run,
        "load": load,
        "gen_s": generated - start,
        "store_s": end - generated,
        "serial_s": executor.first - start,
        "tasks": len(task_s),
        "task_mean_s": float(task_s.mean()),
        "task_max_s": float(task_s.max()),
        "task_total_s": float(task_s.sum()),
        "task_cpu_s": float(cpu_s.sum()),
        "worker_rss_mb": [float(rss[pid == p].max()) for p in np.unique(pid)],
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
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest is shown")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="generation config override"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one run, printed as JSON
    args = parser.parse_args()
    work = args.work or args.manifest.with_name(args.manifest.name + ".bench-ray.work")
    if args.one:
        print(json.dumps(one_run(args.manifest, work, args.one, args.shard_targets, args.set)))
        return
    with tempfile.TemporaryDirectory() as tmp:  # the SfM stages, cached in `work` for every run
        run_build(args.manifest, Path(tmp) / "ds", work_dir=work, progress=False)
    results = []
    for run in args.runs:
        cmd = [sys.executable, __file__, str(args.manifest), "--work", str(work), "--one", run]
        cmd += [f"--set={item}" for item in args.set]
        tries = []
        for _ in range(args.repeat):
            out = subprocess.run(
                cmd + ["--shard-targets", str(args.shard_targets)], capture_output=True, text=True
            )
            if out.returncode:
                sys.exit(f"{run} failed:\n{out.stderr[-3000:]}")
            tries.append(json.loads(out.stdout.strip().splitlines()[-1]))
        results.append(min(tries, key=lambda r: r["gen_s"]))
    _report(results, args)


def _report(results: list[dict], args: argparse.Namespace) -> None:
    """The table of the module doc."""
    one = next((r for r in results if r["run"] == "ray1"), None)
    print(
        f"{args.manifest}: {results[0]['pairs']} pairs, {results[0]['matches']:,} matches, "
        f"{results[0]['tasks']} shards of {args.shard_targets} target images; best of {args.repeat}"
    )
    print(
        "run    load  serial s  map s  gen s  store s  task mean / max / sum s  task cpu s  "
        "speed-up map / gen / all  efficiency map / gen / all  driver RSS MB  worker peak RSS MB  digest"
    )
    for r in results:
        n = {"local": 1, "ray1": 1, "ray2": 2}[r["run"]]
        phases = {
            "map": lambda x: x["gen_s"] - x["serial_s"],
            "gen": lambda x: x["gen_s"],
            "all": lambda x: x["gen_s"] + x["store_s"],
        }
        speed = [f(one) / f(r) if one else float("nan") for f in phases.values()]
        workers = "-" if r["run"] == "local" else " ".join(f"{m:.0f}" for m in r["worker_rss_mb"])
        print(
            f"{r['run']:<6} {r['load']:4.2f}  {r['serial_s']:8.2f}  {r['gen_s'] - r['serial_s']:5.1f}  "
            f"{r['gen_s']:5.1f}  {r['store_s']:7.2f}  "
            f"{r['task_mean_s']:5.2f} / {r['task_max_s']:5.2f} / {r['task_total_s']:7.2f}  "
            f"{r['task_cpu_s']:10.2f}  {' / '.join(f'{x:4.2f}' for x in speed):>24}  "
            f"{' / '.join(f'{x / n:4.2f}' for x in speed):>26}  "
            f"{r['rss_before_mb']:5.0f} -> {r['rss_peak_mb']:<5.0f}  {workers:>18}  {r['digest']}"
        )
    print(
        "serial: the driver's work before the first task; map: from there to the tables; gen: both; "
        "all: gen + store; load: the 1-minute load average as the run started (quiet: below 0.5)"
    )


if __name__ == "__main__":
    main()
