"""`xseason demo` over seeds: the t interval against hand-computed values, the comparison of the arms
(paired by seed), the config files it reads, and the four arms trained and compared on a toy dataset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from toy import make_toy_dataset, toy_train_config

from xseason.cli import main
from xseason.core.config import PACKAGED_CONFIGS
from xseason.core.errors import ConfigError
from xseason.learn.evaluate import EvalConfig, EvalReport
from xseason.learn.losses import LossConfig
from xseason.learn.statistics import mean_interval, t_coverage, t_critical
from xseason.pipeline import demo
from xseason.pipeline.demo import (
    ARMS,
    compare_arms,
    comparison_markdown,
    seed_scores,
    stage_config,
    train_and_compare,
)

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    "level, df, table",  # two-sided Student t quantiles as printed in the usual tables
    [
        (0.95, 1, 12.706),
        (0.95, 2, 4.303),
        (0.95, 3, 3.182),
        (0.95, 4, 2.776),
        (0.95, 9, 2.262),
        (0.95, 30, 2.042),
        (0.99, 2, 9.925),
        (0.90, 5, 2.015),
    ],
)
def test_t_critical_matches_the_tables(level, df, table):
    t = t_critical(level, df)
    assert t == pytest.approx(table, abs=5e-4)
    assert t_coverage(t, df) == pytest.approx(level, abs=1e-12)


def test_t_critical_closed_forms():
    """df = 2: P(|T| <= t) = t / sqrt(2 + t^2), so t = sqrt(2) p / sqrt(1 - p^2);
    df = 1 (Cauchy): t = tan(pi p / 2)."""
    for p in (0.5, 0.9, 0.95, 0.999):
        assert t_critical(p, 2) == pytest.approx(math.sqrt(2) * p / math.sqrt(1 - p * p), rel=1e-12)
        assert t_critical(p, 1) == pytest.approx(math.tan(math.pi * p / 2), rel=1e-12)
    assert t_critical(0.95, 100_000) == pytest.approx(1.959975, abs=2e-5)  # the normal's 1.959964 + O(1/df)
    with pytest.raises(ValueError):
        t_critical(1.0, 3)


def test_mean_interval_by_hand():
    s = mean_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.30265: 2 +- 4.30265 / sqrt(3)
    assert (s.mean, s.sd, s.n) == (2.0, 1.0, 3)
    assert (s.ci_low, s.ci_high) == pytest.approx((2 - 2.48414, 2 + 2.48414), abs=1e-5)
    assert not s.excludes_zero
    s = mean_interval([0.1, 0.3, np.nan, 0.2, 0.2])  # NaN left out: mean 0.2, sd sqrt(0.02 / 3)
    sd = math.sqrt(0.02 / 3)
    assert (s.n, s.mean, s.sd) == (4, pytest.approx(0.2), pytest.approx(sd))
    assert s.ci_low == pytest.approx(0.2 - 3.1824 * sd / 2, abs=1e-4) and s.excludes_zero
    one = mean_interval([0.7])
    assert one.mean == 0.7 and one.n == 1 and all(math.isnan(v) for v in (one.sd, one.ci_low, one.ci_high))
    assert not one.excludes_zero and mean_interval([]).n == 0


# ----------------------------------------------------------------------------- comparison


def _scores(rows: dict[str, list[float]], condition: str = "night", metric: str = "miou") -> pd.DataFrame:
    """seed_scores-like rows of one condition and metric: arm -> one value per seed 0, 1, 2, ..."""
    return pd.DataFrame(
        [(seed, arm, condition, metric, v) for arm, values in rows.items() for seed, v in enumerate(values)],
        columns=["seed", "arm", "condition", "metric", "value"],
    )


def test_compare_arms_pairs_by_seed():
    base = [0.30, 0.10, 0.20]
    corr = [0.31, 0.12, 0.23]  # differences 0.01, 0.02, 0.03: mean 0.02, sd 0.01
    scores = _scores({"baseline": base, "correspondence": corr}).sample(frac=1, random_state=3)  # any order
    table = compare_arms(scores).set_index("arm")
    assert list(table.index) == ["baseline", "correspondence", "correspondence - baseline"]
    diff = table.loc["correspondence - baseline"]
    assert diff["mean"] == pytest.approx(0.02) and diff["sd"] == pytest.approx(0.01) and diff["n"] == 3
    assert (diff["ci_low"], diff["ci_high"]) == pytest.approx((0.02 - 0.0248414, 0.02 + 0.0248414), abs=1e-7)
    assert table.loc["baseline", "mean"] == pytest.approx(0.2) and table.loc[
        "baseline", "sd"
    ] == pytest.approx(0.1)
    # unpaired, the spread of the arms (sd 0.1) would swamp the 0.02 difference; paired it is 0.01


def test_comparison_markdown_and_scores_from_an_eval_report():
    names = {f"seed-{s}/{arm}": (s, arm) for s in (0, 1, 2) for arm in ARMS}
    miou = {"baseline": [0.2, 0.3, 0.4], "baseline+adabn": [0.25, 0.3, 0.35]}
    miou |= {"correspondence": [0.3, 0.4, 0.5], "correspondence+adabn": [0.2, 0.3, 0.4]}
    conditions = pd.DataFrame(
        [
            (name, cond, 10, miou[arm][s] + (cond == "day"))
            for name, (s, arm) in names.items()
            for cond in ("day", "night")
        ],
        columns=["checkpoint", "condition", "images", "miou"],
    )
    pairs = pd.DataFrame(
        [(name, "day|night", 500, 0.1 * s, 0.9) for name, (s, arm) in names.items()],
        columns=["checkpoint", "condition_pair", "matches", "kappa", "label_agreement"],
    )
    report = EvalReport(pairs=pairs, conditions=conditions, out=Path("eval"))
    scores = seed_scores(report, names)
    assert len(scores) == 12 * (2 + 2) and set(scores["condition"]) == {"day", "night"}
    assert scores.query("metric == 'kappa' and seed == 2")["value"].eq(0.2).all()  # filed under "night"
    table = compare_arms(scores).set_index(["condition", "metric", "arm"]).sort_index()
    night = table.loc[("night", "miou")]
    assert night.loc["correspondence - baseline", "sd"] == pytest.approx(0, abs=1e-12) and night.loc[
        "correspondence - baseline", "mean"
    ] == pytest.approx(0.1)
    assert night.loc["correspondence+adabn - baseline+adabn", "mean"] == pytest.approx(0.0, abs=1e-12)
    assert night.loc["correspondence - baseline+adabn", "ci_low"] == pytest.approx(
        0.1 - 4.3027 * 0.05 / math.sqrt(3), abs=1e-4
    )
    text = comparison_markdown(compare_arms(scores), report, [0, 1, 2])
    assert (
        "| night | 10 | 0.300 ± 0.100 | 0.300 ± 0.050 | 0.400 ± 0.100 | 0.300 ± 0.100 "
        "| +0.100 [+0.100, +0.100] * |" in text
    )
    assert "| night | 500 | 0.100 ± 0.100 |" in text  # kappa, with the matches of the night pairs
    one = comparison_markdown(compare_arms(scores[scores["seed"] == 1]), report, [1])
    assert "| night | 10 | 0.300 | 0.300 | 0.400 | 0.300 | +0.100 [n/a] |" in one and "undefined" in one


# ----------------------------------------------------------------------------- config files


def test_stage_config_files(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert stage_config("train", None) == Path("configs/train.yaml")
    assert stage_config("build", None) == Path("configs/build.yaml")
    monkeypatch.chdir(tmp_path)  # another folder: the packaged config, else the built-in defaults
    assert stage_config("train", None) == PACKAGED_CONFIGS / "train.yaml"
    assert stage_config("eval", None) is None
    assert stage_config("train", Path("train")) == PACKAGED_CONFIGS / "train.yaml"  # by name
    with pytest.raises(ConfigError, match="missing.yaml: no such config file"):
        stage_config("eval", Path("missing.yaml"))


def test_a_given_missing_config_stops_the_demo_before_the_build(tmp_path, monkeypatch, capsys):
    def no_build(*args, **kwargs):
        raise AssertionError("the build must not start")

    monkeypatch.setattr(demo, "ensure_default_scene", no_build)
    monkeypatch.chdir(REPO)
    missing = tmp_path / "configs" / "train.yaml"
    assert main(["demo", "--train-config", str(missing), "--out", str(tmp_path / "runs")]) == 2
    assert f"{missing}: no such config file" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="seeds must be >= 1"):
        demo.run_demo(demo.DemoConfig(seeds=0))


# ----------------------------------------------------------------------------- the arms on a toy dataset


def test_train_and_compare_on_a_toy_dataset(tmp_path):
    data = make_toy_dataset(tmp_path / "toy", places=4, size=(64, 48), matches_per_pair=80)
    base = toy_train_config(data, loss=LossConfig(moving_classes=[]), steps=4, seed=5)
    eval_cfg = EvalConfig(out=tmp_path / "out" / "eval", short_side=40, progress=False)
    result = train_and_compare(base, eval_cfg, tmp_path / "out", seeds=2)

    assert sorted(result.runs) == [5, 6] and all(list(arms) == list(ARMS) for arms in result.runs.values())
    for seed, arms in result.runs.items():
        assert all(
            r.out == tmp_path / "out" / f"seed-{seed}" / arm and r.steps == 4 for arm, r in arms.items()
        )
        cfg = torch.load(arms["correspondence+adabn"].model_path, weights_only=False)["train_config"]
        assert (cfg["seed"], cfg["adabn"], cfg["corr_weight"]) == (seed, True, 1.0)
        assert len({r.weights_digest for r in arms.values()}) == 4  # four different networks
    assert result.runs[5]["baseline"].weights_digest != result.runs[6]["baseline"].weights_digest

    # comparison.csv: every arm's and contrast's statistics from the evaluation's own figures
    csv = pd.read_csv(tmp_path / "out" / "comparison.csv")
    assert list(csv.columns) == ["condition", "arm", "metric", "mean", "sd", "ci_low", "ci_high", "n"]
    conds = result.evaluation.conditions.set_index(["checkpoint", "condition"])["miou"]
    for condition in ("day", "night"):
        miou = {arm: np.array([conds[(f"seed-{s}/{arm}", condition)] for s in (5, 6)]) for arm in ARMS}
        rows = csv[(csv["condition"] == condition) & (csv["metric"] == "miou")].set_index("arm")
        assert rows.loc["baseline", "mean"] == pytest.approx(miou["baseline"].mean())
        diff = miou["correspondence"] - miou["baseline+adabn"]
        row = rows.loc["correspondence - baseline+adabn"]
        assert (row["mean"], row["sd"], row["n"]) == (
            pytest.approx(diff.mean()),
            pytest.approx(diff.std(ddof=1)),
            2,
        )
        half = 12.7062 * diff.std(ddof=1) / math.sqrt(2)
        assert row["ci_high"] - row["mean"] == pytest.approx(half, abs=1e-4 * max(half, 1e-9))
    kappa = csv[csv["metric"] == "kappa"]
    assert set(kappa["condition"]) == {"night"} and len(kappa) == 4 + 3
    assert (tmp_path / "out" / "comparison.md").read_text() == result.markdown
    assert len(pd.read_csv(tmp_path / "out" / "scores_by_seed.csv")) == 2 * 4 * (2 + 2)

    again = train_and_compare(base, eval_cfg, tmp_path / "out", seeds=2)  # resumed: nothing trained again
    assert all(r.steps_run == 0 for arms in again.runs.values() for r in arms.values())
    assert again.table.equals(result.table)
