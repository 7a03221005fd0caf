"""`xseason demo`: the reference paper's experiment end to end on the built-in scene.

synth (data/demo) -> build (build/demo) -> train a baseline (no correspondence loss) and a
model with it -> evaluate both on held-out pairs and images -> comparison table, charts and
the HTML report of the dataset. Every step is resumable: rerunning reuses what a previous run
finished (the build reuses a complete dataset, the trainer resumes from its checkpoints). Runs
trained on an earlier build of the dataset are moved aside (`<run>.previous`) and trained anew.

The two runs share one configuration except `corr_weight`, so their supervised warm-up (the
steps before `corr_start_step`) is the same computation: it is trained once, in the baseline's
folder, and its checkpoint seeds the correspondence run (the trainer's resume is exact, so the
result is bit-identical to training both from scratch).
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from xseason.pipeline.build import DEFAULT_MANIFEST, DEFAULT_SCENE, ensure_default_scene, load_build_config, run_build
from xseason.learn.evaluate import EvalReport, evaluate, load_eval_config, markdown_table
from xseason.core.files import atomic_path
from xseason.learn.models import read_checkpoint
from xseason.reports.report import write_report
from xseason.learn.train import TrainConfig, TrainResult, checkpoint_dataset, dataset_fingerprint, load_train_config, train

RUNS = ("baseline", "correspondence")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="folder of the runs, evaluation and report")
    parser.add_argument("--dataset", type=Path, default=Path("build/demo"), help="dataset folder to build")
    parser.add_argument("--build-config", type=Path, default=Path("configs/build.yaml"))
    parser.add_argument("--train-config", type=Path, default=Path("configs/train.yaml"))
    parser.add_argument("--eval-config", type=Path, default=Path("configs/eval.yaml"))
    parser.add_argument("--steps", type=int, help="training steps of each model (default: the train config's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training setting of both runs, e.g. --set loss.kind=kl (repeatable)")


def _config(path: Path) -> Path | None:
    return path if path.is_file() else None


def _checkpoint_step(run: Path) -> int:
    path = run / "checkpoints" / "last.pt"
    return int(read_checkpoint(path)["step"]) if path.is_file() else 0


def set_aside_stale_runs(runs: list[Path], dataset: Path) -> None:
    """Move runs whose checkpoint was not trained on this build of `dataset` to `<run>.previous`."""
    current = dataset_fingerprint(dataset)
    for run in runs:
        ckpt = run / "checkpoints" / "last.pt"
        if ckpt.is_file() and checkpoint_dataset(ckpt) != current:
            aside = run.with_name(run.name + ".previous")
            shutil.rmtree(aside, ignore_errors=True)
            run.rename(aside)
            print(f"{run} was trained on an earlier build of {dataset}: moved to {aside}, training anew", flush=True)


def train_pair(baseline: TrainConfig, corr: TrainConfig) -> dict[str, TrainResult]:
    """Train the baseline and the correspondence run, sharing their warm-up (see the module doc).

    `baseline` must be `corr` with `corr_weight=0` (and another `out`).
    """
    warm = corr.corr_start_step if corr.corr_weight > 0 else 0
    seed = Path(corr.out) / "checkpoints" / "last.pt"
    if warm > 0 and not seed.is_file() and _checkpoint_step(Path(baseline.out)) <= warm:
        done = _checkpoint_step(Path(baseline.out))
        if done < warm:
            train(replace(baseline, max_steps_per_run=warm - done))
        for name in ("checkpoints/last.pt", "metrics.jsonl"):
            with atomic_path(Path(corr.out) / name) as tmp:
                shutil.copyfile(Path(baseline.out) / name, tmp)
        print(f"warm-up: {warm} supervised steps shared by both runs", flush=True)
    return {"baseline": train(baseline), "correspondence": train(corr)}


def comparison_table(report: EvalReport, names: tuple[str, str] = RUNS) -> pd.DataFrame:
    """Per condition: mIoU and label agreement (with the reference) of both runs and their difference."""
    miou = report.conditions.pivot(index="condition", columns="checkpoint", values="miou")
    pairs = report.pairs.assign(condition=report.pairs["condition_pair"].str.split("|").str[1])
    agree = pairs.pivot(index="condition", columns="checkpoint", values="label_agreement")
    images = report.conditions.groupby("condition")["images"].first()
    table = pd.DataFrame({"images": images})
    for metric, wide in (("mIoU", miou), ("agreement", agree)):
        a, b = wide.get(names[0]), wide.get(names[1])
        if a is None or b is None:
            continue
        table[f"{metric} {names[0]}"] = a
        table[f"{metric} {names[1]}"] = b
        table[f"{metric} diff"] = b - a
    return table.reset_index().rename(columns={"index": "condition"})


def run(args: argparse.Namespace) -> int:
    start = time.time()
    ensure_default_scene(DEFAULT_MANIFEST)
    summary = run_build(DEFAULT_MANIFEST, args.dataset, load_build_config(_config(args.build_config)))
    print(summary.format(), flush=True)

    common = [f"dataset={args.dataset}", *args.overrides] + ([f"steps={args.steps}"] if args.steps else [])
    configs = {name: load_train_config(_config(args.train_config),
                                       [*common, f"out={args.out / name}"] + (["corr_weight=0"] if name == RUNS[0] else []))
               for name in RUNS}
    t_train = time.time()
    set_aside_stale_runs([args.out / name for name in RUNS], args.dataset)
    results = train_pair(configs["baseline"], configs["correspondence"])
    for name, r in results.items():
        print(f"{name}: {r.summary()}", flush=True)
    t_eval = time.time()

    eval_cfg = load_eval_config(_config(args.eval_config), [f"out={args.out / 'eval'}", f"names=[{', '.join(RUNS)}]"])
    report = evaluate([results[n].model_path for n in RUNS], args.dataset, eval_cfg)
    table = markdown_table(comparison_table(report))
    text = (f"# Baseline vs. correspondence loss ({eval_cfg.splits} pairs; mIoU on their labelled images)\n\n"
            f"{table}\n\ncharts: {report.out / 'miou.png'}, {report.out / 'label_agreement.png'}\n")
    with atomic_path(args.out / "comparison.md") as tmp:  # written before the dataset report, which may fail
        tmp.write_text(text)
    page = write_report(args.dataset, args.out / "report", build_dir=summary.work_dir, truth_dir=DEFAULT_SCENE)
    print(f"\nevaluation: {report.out}\nreport: {page}\n"
          f"time: training {t_eval - t_train:.0f} s, evaluation {time.time() - t_eval:.0f} s, "
          f"total {time.time() - start:.0f} s\n")
    print(text)
    return 0
