"""The reference paper's experiment end to end on the built-in scene (`xseason demo`).

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

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from xseason.core.files import atomic_path
from xseason.learn.evaluate import EvalReport, evaluate, load_eval_config, markdown_table
from xseason.learn.models import read_checkpoint
from xseason.learn.train import (
    TrainConfig,
    TrainResult,
    checkpoint_dataset,
    dataset_fingerprint,
    load_train_config,
    train,
)
from xseason.pipeline.build import (
    DEFAULT_MANIFEST,
    DEFAULT_SCENE,
    BuildSummary,
    ensure_default_scene,
    load_build_config,
    run_build,
)
from xseason.reports.report import write_report

log = logging.getLogger(__name__)

RUNS = ("baseline", "correspondence")


@dataclass
class DemoConfig:
    """Where the demo reads and writes; a config file of None means that stage's defaults."""

    out: Path = Path("runs/demo")  # the runs, the evaluation, comparison.md and the report
    dataset: Path = Path("build/demo")  # the dataset to build from the built-in scene
    build_config: Path | None = None
    train_config: Path | None = None
    eval_config: Path | None = None
    steps: int | None = None  # training steps of each run (None: the train config's)
    train_overrides: list[str] = field(default_factory=list)  # KEY=VALUE settings of both runs


@dataclass
class DemoRuns:
    """The two trained runs of the demo."""

    baseline: TrainResult
    correspondence: TrainResult


@dataclass
class DemoResult:
    """What the demo produced, and how long its training and evaluation took."""

    build: BuildSummary
    runs: DemoRuns
    evaluation: EvalReport
    comparison: str  # the markdown written to <out>/comparison.md
    report: Path  # the dataset's HTML page
    train_seconds: float
    eval_seconds: float  # evaluation and report
    total_seconds: float

    def format(self) -> str:
        """Where the results are, the times, then the comparison table."""
        return (
            f"evaluation: {self.evaluation.out}\nreport: {self.report}\n"
            f"time: training {self.train_seconds:.0f} s, evaluation {self.eval_seconds:.0f} s, "
            f"total {self.total_seconds:.0f} s\n\n{self.comparison}"
        )


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Build the built-in scene's dataset, train both runs, evaluate them, write the comparison and report."""
    start = time.time()
    ensure_default_scene(DEFAULT_MANIFEST)
    summary = run_build(DEFAULT_MANIFEST, cfg.dataset, load_build_config(cfg.build_config))
    log.info("build:\n%s", summary.format())

    common = [f"dataset={cfg.dataset}", *cfg.train_overrides] + ([f"steps={cfg.steps}"] if cfg.steps else [])
    base_name, corr_name = RUNS
    base_cfg = load_train_config(cfg.train_config, [*common, f"out={cfg.out / base_name}", "corr_weight=0"])
    corr_cfg = load_train_config(cfg.train_config, [*common, f"out={cfg.out / corr_name}"])
    t_train = time.time()
    set_aside_stale_runs([cfg.out / name for name in RUNS], cfg.dataset)
    runs = train_pair(base_cfg, corr_cfg)
    log.info("%s: %s", base_name, runs.baseline.summary())
    log.info("%s: %s", corr_name, runs.correspondence.summary())
    t_eval = time.time()

    eval_cfg = load_eval_config(cfg.eval_config, [f"out={cfg.out / 'eval'}", f"names=[{', '.join(RUNS)}]"])
    report = evaluate([runs.baseline.model_path, runs.correspondence.model_path], cfg.dataset, eval_cfg)
    table = markdown_table(comparison_table(report))
    text = (
        f"# Baseline vs. correspondence loss ({eval_cfg.splits} pairs; mIoU on their labelled images)\n\n"
        f"{table}\n\ncharts: {report.out / 'miou.png'}, {report.out / 'label_agreement.png'}\n"
    )
    with atomic_path(cfg.out / "comparison.md") as tmp:  # written before the dataset report, which may fail
        tmp.write_text(text)
    page = write_report(cfg.dataset, cfg.out / "report", build_dir=summary.work_dir, truth_dir=DEFAULT_SCENE)
    end = time.time()
    return DemoResult(summary, runs, report, text, page, t_eval - t_train, end - t_eval, end - start)


def set_aside_stale_runs(runs: list[Path], dataset: Path) -> None:
    """Move runs whose checkpoint was not trained on this build of `dataset` to `<run>.previous`."""
    current = dataset_fingerprint(dataset)
    for run in runs:
        ckpt = run / "checkpoints" / "last.pt"
        if ckpt.is_file() and checkpoint_dataset(ckpt) != current:
            aside = run.with_name(run.name + ".previous")
            shutil.rmtree(aside, ignore_errors=True)
            run.rename(aside)
            log.warning(
                "%s was trained on an earlier build of %s: moved to %s, training anew", run, dataset, aside
            )


def train_pair(baseline: TrainConfig, corr: TrainConfig) -> DemoRuns:
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
        log.info("warm-up: %d supervised steps shared by both runs", warm)
    return DemoRuns(baseline=train(baseline), correspondence=train(corr))


def _checkpoint_step(run: Path) -> int:
    path = run / "checkpoints" / "last.pt"
    return int(read_checkpoint(path)["step"]) if path.is_file() else 0


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


__all__ = [
    "RUNS",
    "DemoConfig",
    "DemoResult",
    "DemoRuns",
    "comparison_table",
    "run_demo",
    "set_aside_stale_runs",
    "train_pair",
]
