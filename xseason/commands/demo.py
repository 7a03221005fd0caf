"""`xseason demo`: the reference paper's experiment end to end on the built-in scene.

synth (data/demo) -> build (build/demo) -> train a baseline (no correspondence loss) and a
model with it -> evaluate both on held-out pairs and images -> HTML report. Every step is
resumable: rerunning reuses what a previous run finished.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..build import DEFAULT_MANIFEST, DEFAULT_SCENE, ensure_default_scene, load_build_config, run_build
from ..evaluate import evaluate, load_eval_config
from ..report import write_report
from ..train import load_train_config, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the runs, evaluation and report")
    parser.add_argument("--dataset", type=Path, default=Path("build/demo"), help="dataset folder to build")
    parser.add_argument("--build-config", type=Path, default=Path("configs/build.yaml"))
    parser.add_argument("--train-config", type=Path, default=Path("configs/train.yaml"))
    parser.add_argument("--eval-config", type=Path, default=Path("configs/eval.yaml"))
    parser.add_argument("--steps", type=int, help="training steps of each model (default: the train config's)")


def _config(path: Path) -> Path | None:
    return path if path.is_file() else None


def run(args: argparse.Namespace) -> int:
    start = time.time()
    ensure_default_scene(DEFAULT_MANIFEST)
    summary = run_build(DEFAULT_MANIFEST, args.dataset, load_build_config(_config(args.build_config)))
    print(summary.format(), flush=True)

    steps = [f"steps={args.steps}"] if args.steps else []
    checkpoints = []
    for name, corr_weight in (("baseline", 0.0), ("correspondence", None)):
        overrides = [f"dataset={args.dataset}", f"out={args.out / name}", *steps]
        overrides += [f"corr_weight={corr_weight}"] if corr_weight is not None else []
        result = train(load_train_config(_config(args.train_config), overrides))
        print(f"{name}: {result.steps} steps, {result.seconds_per_step:.3f} s/step -> {result.model_path}", flush=True)
        checkpoints.append(result.model_path)

    eval_cfg = load_eval_config(_config(args.eval_config),
                                [f"out={args.out / 'eval'}", "names=[baseline, correspondence]"])
    report = evaluate(checkpoints, args.dataset, eval_cfg)
    page = write_report(args.dataset, args.out / "report", build_dir=summary.work_dir, truth_dir=DEFAULT_SCENE)
    print(f"\nevaluation: {report.out}\nreport: {page}\ntotal: {time.time() - start:.0f} s")
    return 0
