"""Issue 14: accuracy and coverage of builds over several generated scenes (seeds), in one table.

For each seed S of `--seeds` and each mode of `--modes`, with the repository's CLI:

    xseason synth --preset P --seed S --out ROOT/scene-S [--set K=V (from --synth-set) ...]
    xseason build ROOT/scene-S/manifest.csv --out ROOT/posed-S --allow-partial [--set K=V ...]
    xseason build ROOT/scene-S/manifest_hidden.csv --out ROOT/hidden-S --allow-partial [--set K=V ...]
    python benchmarks/bench_accuracy.py --scene ROOT/scene-S --dataset ROOT/MODE-S \\
        --out ROOT/MODE-S.accuracy --json ROOT/MODE-S.accuracy/accuracy.json

`manifest_hidden.csv` is `manifest.csv` without the pose columns qw..tz, the bytes `xseason synth
--hide-poses` writes for the same scene (images, ground truth and truth.json are the same), so
the hidden build needs no second rendering. Builds run with `--allow-partial`: a condition the
build loses shows as 0 % coverage instead of leaving no figures.

Each step's command is printed. A step whose output exists (scene truth.json, dataset.json,
accuracy.json) and whose recorded command (ROOT/commands/<step>.txt) is the same is skipped, so
a rerun only does what is missing; one whose command changed (other --set, preset, ...) stops the
driver: use another ROOT or delete that output.

Then one table, printed and written to ROOT/summary.md: seed, mode, matches, wrong % (error > 5 px
or not visible), the largest failure classes (% of all matches), median error (px, exact GT), the
lowest coverage over the condition pairs (and which), and pass/fail against the targets:

    posed:  wrong <= 0.1 %, median <= 0.2 px, coverage >= 90 % in every condition
    hidden: wrong <= 0.3 %, median <= 0.3 px, coverage >= 85 % in every condition

Exit status 0 when every row passes, 1 otherwise.

    .venv/bin/python benchmarks/bench_seeds.py --preset tiny --seeds 1 --modes posed --root /tmp/seeds
    .venv/bin/python benchmarks/bench_seeds.py --preset random --seeds 101 102 103 --root /tmp/seeds \\
        --set correspondences.max_pairs_per_image=40 --synth-set world.car_occupancy=0.3
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POSE_COLUMNS = ("qw", "qx", "qy", "qz", "tx", "ty", "tz")
MODES = ("posed", "hidden")


@dataclass(frozen=True)
class Target:
    wrong_pct: float  # at most, % of all matches
    median_px: float  # at most
    coverage_pct: float  # at least, in every condition pair


TARGETS = {"posed": Target(0.1, 0.2, 90.0), "hidden": Target(0.3, 0.3, 85.0)}


def xseason_command() -> list[str]:
    """The repository's CLI: the venv's `xseason` script when installed, else `python -m xseason.cli`."""
    script = Path(sys.executable).parent / "xseason"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "xseason.cli"]


class Steps:
    """Runs the driver's commands, skipping those whose output exists and whose command is unchanged."""

    def __init__(self, root: Path):
        self.records = root / "commands"
        self.records.mkdir(parents=True, exist_ok=True)

    def run(self, name: str, cmd: list[str], output: Path) -> bool:
        """Run `cmd` unless `output` exists from the same command; False when it failed."""
        line = shlex.join(cmd)
        record = self.records / f"{name}.txt"
        if output.exists():
            if record.is_file() and record.read_text().strip() == line:
                print(f"[skip, {output} exists] {line}", flush=True)
                return True
            raise SystemExit(
                f"{output} exists from another command (recorded in {record}); "
                f"now asked for:\n  {line}\nuse another --root, or delete {output} and {record}"
            )
        print(f"$ {line}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO).returncode
        print(f"  ({name}: exit {rc}, {time.perf_counter() - t0:.0f} s)", flush=True)
        if rc == 0 and output.exists():
            record.write_text(line + "\n")
            return True
        return False


def hidden_manifest(scene: Path) -> Path:
    """scene/manifest_hidden.csv: manifest.csv without pose columns (as `synth --hide-poses` writes it)."""
    from xseason.inputs.manifest import write_manifest

    out = scene / "manifest_hidden.csv"
    if not out.is_file():
        print(f"write {out} (manifest.csv without {' '.join(POSE_COLUMNS)})", flush=True)
        with open(scene / "manifest.csv", newline="") as f:
            rows = [{k: v for k, v in row.items() if k not in POSE_COLUMNS} for row in csv.DictReader(f)]
        write_manifest(out, rows)
    return out


def judge(mode: str, figures: dict) -> dict:
    """One row of the summary from bench_accuracy's JSON figures."""
    all_ = figures["all"]
    covered = [
        (r["coverage_%"], r["condition"]) for r in figures["condition_pairs"] if r["coverage_%"] is not None
    ]
    cov_min, cov_at = min(covered) if covered else (math.nan, "-")
    classes = sorted(((all_[f"{c}_%"] or 0.0, c) for c in figures["failure_classes"]), key=lambda t: -t[0])
    top = ", ".join(f"{c} {v:.3f}" for v, c in classes[:3] if v > 0) or "-"
    wrong, median = _num(all_["wrong_%"]), _num(all_["median_px"])
    t = TARGETS[mode]
    failed = [
        name
        for name, ok in [
            ("wrong", wrong <= t.wrong_pct),
            ("median", median <= t.median_px),
            ("coverage", cov_min >= t.coverage_pct),
        ]
        if not ok  # NaN (no matches, no pair to cover) fails
    ]
    return {
        "matches": all_["matches"],
        "wrong %": f"{wrong:.3f}",
        "top failure classes (%)": top,
        "median px": f"{median:.3f}",
        "coverage min %": f"{cov_min:.1f} ({cov_at})",
        "result": "PASS" if not failed else "FAIL: " + ", ".join(failed),
    }


def _num(v) -> float:
    return math.nan if v is None else float(v)


def evaluate_seed(
    steps: Steps, args: argparse.Namespace, seed: int, xs: list[str]
) -> list[dict[str, object]]:
    """Synth, build and evaluate one seed in every mode; one summary row per mode."""
    root = args.root
    scene = root / f"scene-{seed}"
    synth = [*xs, "synth", "--preset", args.preset, "--seed", str(seed), "--out", str(scene), "--quiet"]
    synth += ["--jobs", str(args.jobs), *(f"--set={kv}" for kv in args.synth_set)]
    base = {"seed": seed}
    if not steps.run(f"synth-{seed}", synth, scene / "truth.json"):
        return [base | {"mode": m, "result": "FAIL: synth error"} for m in args.modes]
    rows = []
    for mode in args.modes:
        manifest = scene / "manifest.csv" if mode == "posed" else hidden_manifest(scene)
        dataset, acc = root / f"{mode}-{seed}", root / f"{mode}-{seed}.accuracy"
        build = [*xs, "build", str(manifest), "--out", str(dataset), "--allow-partial", "--quiet"]
        build += [f"--set={kv}" for kv in args.overrides]
        evaluate = [
            sys.executable,
            str(REPO / "benchmarks" / "bench_accuracy.py"),
            "--scene",
            str(scene),
            "--dataset",
            str(dataset),
            "--out",
            str(acc),
            "--json",
            str(acc / "accuracy.json"),
            "--max-distance",
            str(args.max_distance),
        ]
        row = base | {"mode": mode}
        if not steps.run(f"build-{mode}-{seed}", build, dataset / "dataset.json"):
            rows.append(row | {"result": "FAIL: build error"})
        elif not steps.run(f"accuracy-{mode}-{seed}", evaluate, acc / "accuracy.json"):
            rows.append(row | {"result": "FAIL: accuracy error"})
        else:
            rows.append(row | judge(mode, json.loads((acc / "accuracy.json").read_text())))
    return rows


COLUMNS = ["seed", "mode", "matches", "wrong %", "top failure classes (%)", "median px", "coverage min %"]


def markdown(rows: list[dict]) -> str:
    """The summary rows as a markdown table."""
    cols = [*COLUMNS, "result"]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(str(r.get(c, "-")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def plain(rows: list[dict]) -> str:
    """The summary rows as an aligned text table."""
    cols = [*COLUMNS, "result"]
    cells = [cols] + [[str(r.get(c, "-")) for c in cols] for r in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="random", help="xseason synth --preset (default: random)")
    ap.add_argument("--seeds", type=int, nargs="+", required=True, help="scene seeds")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="builds (default: both)")
    ap.add_argument("--root", type=Path, required=True, help="folder of scenes, datasets and summary.md")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="build config override section.key=value (repeatable)",
    )
    ap.add_argument(
        "--synth-set", action="append", default=[], metavar="KEY=VALUE", help="synth setting (repeatable)"
    )
    ap.add_argument("--jobs", type=int, default=2, help="synth worker processes (default: 2)")
    ap.add_argument(
        "--max-distance", type=float, default=20.0, help="bench_accuracy: true overlap within this distance"
    )
    args = ap.parse_args()
    args.root = args.root.resolve()
    steps, xs = Steps(args.root), xseason_command()
    rows = [row for seed in args.seeds for row in evaluate_seed(steps, args, seed, xs)]
    settings = " ".join(
        [f"--preset {args.preset}", *(f"--synth-set {kv}" for kv in args.synth_set)]
        + [f"--set {kv}" for kv in args.overrides]
    )
    targets = "; ".join(
        f"{m}: wrong <= {t.wrong_pct} %, median <= {t.median_px} px, coverage >= {t.coverage_pct} %"
        for m, t in TARGETS.items()
    )
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    summary = f"# bench_seeds {stamp}\n\n{settings}\n\nTargets: {targets}.\n\n{markdown(rows)}"
    (args.root / "summary.md").write_text(summary)
    print(f"\n{settings}\n{plain(rows)}\n\nwritten: {args.root / 'summary.md'}")
    return 0 if all(r["result"] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
