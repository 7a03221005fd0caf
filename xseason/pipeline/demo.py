"""The reference paper's experiment end to end on the built-in scene (`xseason demo`).

synth (data/demo) -> build (build/demo) -> train four arms per seed -> evaluate every run on the
test split -> comparison over seeds (comparison.md, comparison.csv), charts and the HTML report
of the dataset. The arms (`ARMS`) share the train config but for two knobs:

- `baseline`: corr_weight = 0 (supervised on the reference condition only);
- `baseline+adabn`: the same, then AdaBN (BatchNorm statistics re-estimated over the training
  images of all conditions after the last step);
- `correspondence`: the train config as it is (its `corr_weight`), no AdaBN;
- `correspondence+adabn`: the same, then AdaBN.

Each arm is trained once per seed (`--seeds N`: the train config's `seed` and the N - 1 after it)
into `<out>/seed-<s>/<arm>/`. Within a seed, training is shared where it is the same computation
(the trainer's resume is exact on CPU, so every run is bit-identical to one trained on its own):
the supervised warm-up (steps before `corr_start_step`) is trained once, in the baseline's
folder, and seeds the correspondence run (`train_pair`); an AdaBN arm is its twin's finished run
with the statistics re-estimated (`adabn_from`), the AdaBN pass being the only difference.

Per condition, every arm's mean +- sd over seeds of mIoU, Cohen's kappa and label agreement at the
matches, and the paired (by seed) differences `CONTRASTS` with their 95 % t interval
(`xseason.learn.statistics`). Every step is resumable: rerunning reuses what a previous run
finished (the build reuses a complete dataset, the trainer resumes from its checkpoints); runs
trained on an earlier build of the dataset are moved aside (`<run>.previous`) and trained anew.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from xseason.core.config import PACKAGED_CONFIGS, config_file
from xseason.core.errors import ConfigError
from xseason.core.files import atomic_path
from xseason.learn.evaluate import EvalConfig, EvalReport, evaluate, load_eval_config, markdown_table
from xseason.learn.models import read_checkpoint
from xseason.learn.statistics import MeanInterval, mean_interval
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

ARMS = ("baseline", "baseline+adabn", "correspondence", "correspondence+adabn")
ADABN_TWINS = {"baseline+adabn": "baseline", "correspondence+adabn": "correspondence"}  # arm -> its twin
CONTRASTS = (  # (a, b): the paired difference a - b
    ("correspondence", "baseline"),
    ("correspondence", "baseline+adabn"),
    ("correspondence+adabn", "baseline+adabn"),
)
METRICS = {  # metric -> its title in comparison.md
    "miou": "mIoU (test images, full label resolution)",
    "kappa": "Cohen's kappa of the predicted classes at the test matches",
    "label_agreement": "label agreement at the test matches",
}
LEVEL = 0.95  # coverage of the paired intervals
DEFAULT_CONFIGS = Path("configs")  # <stage>.yaml used when present (the repository's)


@dataclass
class DemoConfig:
    """Where the demo reads and writes; a config file of None means that stage's default file
    (`stage_config`)."""

    out: Path = Path("runs/demo")  # the runs, the evaluation, comparison.md/.csv and the report
    dataset: Path = Path("build/demo")  # the dataset to build from the built-in scene
    build_config: Path | None = None
    train_config: Path | None = None
    eval_config: Path | None = None
    steps: int | None = None  # training steps of each run (None: the train config's)
    seeds: int = 3  # each arm is trained with seeds seed, seed + 1, ... (seed: the train config's)
    train_overrides: list[str] = field(default_factory=list)  # KEY=VALUE settings of every run


@dataclass
class Comparison:
    """The trained arms, their evaluation and the statistics over seeds."""

    runs: dict[int, dict[str, TrainResult]]  # seed -> arm -> its run
    evaluation: EvalReport
    scores: pd.DataFrame  # per seed: seed, arm, condition, metric, value (scores_by_seed.csv)
    table: pd.DataFrame  # `compare_arms` of `scores` (comparison.csv)
    markdown: str  # comparison.md
    train_seconds: float
    eval_seconds: float


@dataclass
class DemoResult:
    """What the demo produced, and how long it took."""

    build: BuildSummary
    comparison: Comparison
    report: Path  # the dataset's HTML page
    total_seconds: float

    def format(self) -> str:
        """Where the results are, the times, then the comparison tables."""
        c = self.comparison
        return (
            f"evaluation: {c.evaluation.out}\nreport: {self.report}\n"
            f"time: training {c.train_seconds:.0f} s, evaluation {c.eval_seconds:.0f} s, "
            f"total {self.total_seconds:.0f} s\n\n{c.markdown}"
        )


def run_demo(cfg: DemoConfig) -> DemoResult:
    """Build the built-in scene's dataset, train and evaluate the arms over seeds, write the comparison
    and the report. Config files and settings are checked before the build."""
    start = time.time()
    if cfg.seeds < 1:
        raise ConfigError(f"demo: seeds must be >= 1, got {cfg.seeds}")
    build_file, train_file, eval_file = (
        stage_config(stage, given)
        for stage, given in (
            ("build", cfg.build_config),
            ("train", cfg.train_config),
            ("eval", cfg.eval_config),
        )
    )
    build_cfg = load_build_config(build_file)
    steps = [f"steps={cfg.steps}"] if cfg.steps else []
    base = load_train_config(train_file, [f"dataset={cfg.dataset}", *cfg.train_overrides, *steps])
    eval_cfg = load_eval_config(eval_file, [f"out={cfg.out / 'eval'}"])
    ensure_default_scene(DEFAULT_MANIFEST)
    summary = run_build(DEFAULT_MANIFEST, cfg.dataset, build_cfg)
    log.info("build:\n%s", summary.format())
    comparison = train_and_compare(base, eval_cfg, cfg.out, cfg.seeds)
    page = write_report(cfg.dataset, cfg.out / "report", build_dir=summary.work_dir, truth_dir=DEFAULT_SCENE)
    return DemoResult(summary, comparison, page, time.time() - start)


def stage_config(stage: str, given: Path | None) -> Path | None:
    """The config file of a demo stage (`build`, `train`, `eval`): `given` when it is a file (or the
    name of a packaged config), else a ConfigError; without one, configs/<stage>.yaml when it is here,
    else the packaged xseason/configs/<stage>.yaml, else None (the stage's built-in defaults). Logged."""
    if given is not None:
        path: Path | None = config_file(given)
    else:
        found = [p for p in (DEFAULT_CONFIGS, PACKAGED_CONFIGS) if (p / f"{stage}.yaml").is_file()]
        path = found[0] / f"{stage}.yaml" if found else None
    log.info("%s config: %s", stage, path or f"built-in defaults (no {DEFAULT_CONFIGS}/{stage}.yaml here)")
    return path


def train_and_compare(base: TrainConfig, eval_cfg: EvalConfig, out: Path, seeds: int) -> Comparison:
    """Train the `ARMS` of `base` for `seeds` seeds (from `base.seed` on) under `out/seed-<s>/<arm>`,
    evaluate every run in one `evaluate` call (into `eval_cfg.out`), and write `out/comparison.md`,
    `out/comparison.csv` (`compare_arms`) and `out/scores_by_seed.csv`."""
    t_train = time.time()
    configs = {s: arm_configs(base, out / f"seed-{s}", s) for s in range(base.seed, base.seed + seeds)}
    set_aside_stale_runs([Path(c.out) for arms in configs.values() for c in arms.values()], base.dataset)
    runs = {}
    for seed, arms in configs.items():
        runs[seed] = train_seed(arms)
        for arm, result in runs[seed].items():
            log.info("seed %d, %s: %s", seed, arm, result.summary())
    t_eval = time.time()
    names = {f"seed-{s}/{arm}": (s, arm) for s in runs for arm in ARMS}
    report = evaluate(
        [runs[s][arm].model_path for s, arm in names.values()],
        base.dataset,
        replace(eval_cfg, names=list(names)),
    )
    scores = seed_scores(report, names)
    table = compare_arms(scores)
    text = comparison_markdown(table, report, sorted(runs))
    for name, write in (
        ("comparison.md", lambda p: p.write_text(text)),
        ("comparison.csv", lambda p: table.to_csv(p, index=False)),
        ("scores_by_seed.csv", lambda p: scores.to_csv(p, index=False)),
    ):
        with atomic_path(out / name) as tmp:
            write(tmp)
    return Comparison(runs, report, scores, table, text, t_eval - t_train, time.time() - t_eval)


def arm_configs(base: TrainConfig, out: Path, seed: int) -> dict[str, TrainConfig]:
    """The train config of every arm of one seed: `base` with `seed`, out = `out/<arm>`, corr_weight = 0
    for the baselines and adabn for the AdaBN arms."""
    return {
        arm: replace(
            base,
            out=out / arm,
            seed=seed,
            corr_weight=base.corr_weight if arm.startswith("correspondence") else 0.0,
            adabn=arm in ADABN_TWINS,
        )
        for arm in ARMS
    }


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


def train_seed(arms: dict[str, TrainConfig]) -> dict[str, TrainResult]:
    """Train the `ARMS` of one seed (`arm_configs`), sharing the warm-up of the baseline and the
    correspondence run (`train_pair`) and deriving each AdaBN arm from its twin (`adabn_from`)."""
    runs = dict(zip(("baseline", "correspondence"), train_pair(arms["baseline"], arms["correspondence"])))
    for arm, twin in ADABN_TWINS.items():
        runs[arm] = adabn_from(runs[twin], arms[arm])
    return {arm: runs[arm] for arm in ARMS}


def train_pair(baseline: TrainConfig, corr: TrainConfig) -> tuple[TrainResult, TrainResult]:
    """Train the baseline and the correspondence run, sharing their warm-up (see the module doc).

    `baseline` must be `corr` with `corr_weight=0` (and another `out`).
    """
    warm = corr.corr_start_step if corr.corr_weight > 0 else 0
    if warm > 0 and not _last(corr).is_file() and _checkpoint_step(baseline) <= warm:
        done = _checkpoint_step(baseline)
        if done < warm:
            train(replace(baseline, max_steps_per_run=warm - done))
        _copy_run(baseline, corr)
        log.info("warm-up: %d supervised steps shared by both runs", warm)
    return train(baseline), train(corr)


def adabn_from(twin: TrainResult, cfg: TrainConfig) -> TrainResult:
    """Run `cfg` (the config of `twin`'s run with adabn=true) from `twin`'s finished checkpoint: the
    trainer resumes at the last step and only re-estimates the BatchNorm statistics, which is what
    training `cfg` on its own does after its last step (the AdaBN pass draws on no training state)."""
    if not _last(cfg).is_file():
        if twin.steps != cfg.steps:
            raise ConfigError(f"{twin.out} ran {twin.steps} of {cfg.steps} steps: it cannot seed {cfg.out}")
        _copy_run(replace(cfg, out=twin.out), cfg)
        log.info("%s: %s's finished run, with AdaBN", cfg.out, twin.out)
    return train(cfg)


def _last(cfg: TrainConfig) -> Path:
    return Path(cfg.out) / "checkpoints" / "last.pt"


def _copy_run(src: TrainConfig, dst: TrainConfig) -> None:
    """`src`'s checkpoint and metrics into `dst`'s folder, where `dst` resumes from them."""
    for name in ("checkpoints/last.pt", "metrics.jsonl"):
        with atomic_path(Path(dst.out) / name) as tmp:
            shutil.copyfile(Path(src.out) / name, tmp)


def _checkpoint_step(cfg: TrainConfig) -> int:
    path = _last(cfg)
    return int(read_checkpoint(path)["step"]) if path.is_file() else 0


def seed_scores(report: EvalReport, runs: dict[str, tuple[int, str]]) -> pd.DataFrame:
    """Long table (seed, arm, condition, metric, value) of the `METRICS` of `report`, whose checkpoints
    are the keys of `runs` (name -> (seed, arm)). Match metrics are filed under the target condition
    of their condition pair (under the pair itself when the pairs have several references)."""
    pairs = report.pairs.assign(condition=_pair_condition(report.pairs["condition_pair"]))
    long = pd.concat(
        [
            frame[["checkpoint", "condition", *metrics]].melt(["checkpoint", "condition"], var_name="metric")
            for frame, metrics in ((report.conditions, ["miou"]), (pairs, ["kappa", "label_agreement"]))
        ],
        ignore_index=True,
    )
    key = pd.DataFrame(
        [(name, s, arm) for name, (s, arm) in runs.items()], columns=["checkpoint", "seed", "arm"]
    )
    return long.merge(key, on="checkpoint")[["seed", "arm", "condition", "metric", "value"]]


def _pair_condition(condition_pair: pd.Series) -> pd.Series:
    """The target condition of "reference|target" keys when all share one reference, else the keys."""
    parts = condition_pair.str.split("|")
    return parts.str[1] if parts.str[0].nunique() <= 1 else condition_pair


def compare_arms(
    scores: pd.DataFrame,
    arms: tuple[str, ...] = ARMS,
    contrasts: tuple[tuple[str, str], ...] = CONTRASTS,
    level: float = LEVEL,
) -> pd.DataFrame:
    """Per condition and metric of `seed_scores`: `mean_interval` over seeds of every arm present, and
    of the paired differences (same seed) of every contrast, as rows (condition, arm, metric, mean, sd,
    ci_low, ci_high, n); a contrast's `arm` is "a - b"."""
    rows = []
    for (condition, metric), group in scores.groupby(["condition", "metric"]):
        wide = group.pivot(index="seed", columns="arm", values="value")
        named = [(arm, wide[arm]) for arm in arms if arm in wide]
        named += [(f"{a} - {b}", wide[a] - wide[b]) for a, b in contrasts if a in wide and b in wide]
        for name, values in named:
            s = mean_interval(values, level)
            rows.append((condition, name, metric, s.mean, s.sd, s.ci_low, s.ci_high, s.n))
    table = pd.DataFrame(rows, columns=["condition", "arm", "metric", "mean", "sd", "ci_low", "ci_high", "n"])
    order = {m: i for i, m in enumerate(METRICS)}
    return table.sort_values(["metric", "condition"], key=lambda c: c.map(order) if c.name == "metric" else c)


def comparison_markdown(table: pd.DataFrame, report: EvalReport, seeds: list[int]) -> str:
    """comparison.md: per metric, one row per condition with every arm's mean +- sd and every
    contrast's paired mean difference [t interval] (* where the interval excludes 0)."""
    n = len(seeds)
    lines = [
        f"# Arms over {n} seed{'s' * (n > 1)} ({', '.join(map(str, seeds))}), test split",
        "",
        "Arms: mean ± sd over seeds. Contrasts a - b: mean of the paired (same seed) differences "
        f"[{LEVEL:.0%} t interval]; * = the interval excludes 0"
        + ("; with one seed the interval is undefined (n/a)." if n == 1 else "."),
        "",
    ]
    images = report.conditions.groupby("condition")["images"].first()
    matches = report.pairs.groupby(_pair_condition(report.pairs["condition_pair"]))["matches"].first()
    columns = [*ARMS, *(f"{a} - {b}" for a, b in CONTRASTS)]
    for metric, title in METRICS.items():
        sub = table[table["metric"] == metric]
        if sub.empty:
            continue
        cells = [
            _cell(MeanInterval(r.mean, r.sd, r.ci_low, r.ci_high, r.n, LEVEL), " - " in r.arm)
            for r in sub.itertuples(index=False)
        ]
        wide = sub.assign(cell=cells).pivot(index="condition", columns="arm", values="cell")
        wide = wide[[c for c in columns if c in wide]]
        label, count = ("images", images) if metric == "miou" else ("matches", matches)
        wide.insert(0, label, count.reindex(wide.index).astype("Int64"))
        lines += [f"## {title}", "", markdown_table(wide.reset_index()), ""]
    lines.append(
        f"Per run: {report.out / 'report.md'} (per-class IoU, per-class kappa, match classes), "
        f"{report.out / 'miou.png'}, {report.out / 'label_agreement.png'}; per seed: scores_by_seed.csv."
    )
    return "\n".join(lines) + "\n"


def _cell(s: MeanInterval, contrast: bool) -> str:
    """`mean ± sd` of an arm; `mean [low, high]` (with * when it excludes 0) of a contrast."""
    if s.n == 0:
        return "-"
    if not contrast:
        return f"{s.mean:.3f}" + (f" ± {s.sd:.3f}" if s.n > 1 else "")
    if s.n == 1:
        return f"{s.mean:+.3f} [n/a]"
    return f"{s.mean:+.3f} [{s.ci_low:+.3f}, {s.ci_high:+.3f}]" + (" *" if s.excludes_zero else "")


__all__ = [
    "ARMS",
    "CONTRASTS",
    "Comparison",
    "DemoConfig",
    "DemoResult",
    "adabn_from",
    "arm_configs",
    "compare_arms",
    "comparison_markdown",
    "run_demo",
    "seed_scores",
    "set_aside_stale_runs",
    "stage_config",
    "train_and_compare",
    "train_pair",
    "train_seed",
]
