"""Trainer: exact resume on CPU, DDP ranks end identical, metrics/curves written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from toy import make_toy_dataset

from xseason.core.errors import ConfigError
from xseason.learn.dataset import AugmentConfig
from xseason.learn.losses import LossConfig
from xseason.learn.models import ModelConfig
from xseason.learn.train import DataConfig, TrainConfig, load_train_config, train

TINY = ModelConfig(num_classes=4, embedding_dim=8, widths=(8, 8, 16), decoder_width=8)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), places=4, size=(64, 48), matches_per_pair=80)


def _cfg(dataset, out, **kw) -> TrainConfig:
    data = DataConfig(
        num_workers=0,
        augment=AugmentConfig(short_side=40, crop=(48, 40), hflip=0.5, brightness=0.2, max_matches=32),
    )
    base = dict(
        dataset=dataset,
        out=out,
        model=TINY,
        data=data,
        steps=6,
        batch_size=2,
        corr_start_step=2,
        checkpoint_every=3,
        log_every=1,
        progress=False,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.mark.parametrize("kind", ["class", "cluster"])
def test_resume_is_bit_identical(toy, tmp_path, kind):
    loss = LossConfig(kind=kind, moving_classes=[], num_clusters=3)
    straight = train(_cfg(toy, tmp_path / "a", loss=loss))
    train(_cfg(toy, tmp_path / "b", loss=loss, max_steps_per_run=4))  # interrupted after 4 steps
    resumed = train(_cfg(toy, tmp_path / "b", loss=loss))
    assert straight.steps == resumed.steps == 6
    a, b = _weights(straight.model_path), _weights(resumed.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    init = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    assert init["train_config"]["loss"]["kind"] == kind
    rows_a = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_b] == list(range(1, 7))
    assert [r["loss"] for r in rows_a] == [r["loss"] for r in rows_b]
    # poly learning rate: base * (1 - step / steps) ** 0.9 after each step
    assert [r["lr"] for r in rows_b] == pytest.approx(
        [2e-3 * (1 - s / 6) ** 0.9 for s in range(1, 7)], abs=1e-15
    )
    assert "corr" in rows_a[-1] and "corr" not in rows_a[0]  # correspondence loss from step 2 on
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "a" / "metrics.csv").read_text().startswith("step,")


def test_training_reduces_the_supervised_loss(toy, tmp_path):
    result = train(_cfg(toy, tmp_path / "r", steps=40, corr_weight=0.0, lr=0.01))
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    first = sum(r["supervised"] for r in rows[:5]) / 5
    last = sum(r["supervised"] for r in rows[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert result.seconds_per_step > 0 and result.steps_run == 40
    # Rerun of the finished run: nothing is trained; speed and metrics come from its log (no NaN).
    again = train(_cfg(toy, tmp_path / "r", steps=40, corr_weight=0.0, lr=0.01))
    assert again.steps == 40 and again.steps_run == 0 and again.weights_digest == result.weights_digest
    assert again.seconds_per_step == pytest.approx(sum(r["seconds_per_step"] for r in rows) / len(rows))
    assert again.last_metrics == rows[-1] and "(already trained)" in again.summary()


def test_cli_trains_then_reports_a_finished_run(toy, tmp_path, capsys):
    from xseason.cli import main

    args = [
        "train",
        "--dataset",
        str(toy),
        "--out",
        str(tmp_path / "cli"),
        "--set",
        "steps=3",
        "--set",
        "batch_size=1",
        "--set",
        "data.num_workers=0",
        "--set",
        "progress=false",
        "--set",
        "model.widths=[8, 8, 16]",
        "--set",
        "model.decoder_width=8",
        "--set",
        "loss.moving_classes=[]",
    ]
    assert main(args) == 0
    assert "trained 3 steps (3 trained now)" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps (already trained)" in out and "nan" not in out
    assert (tmp_path / "cli" / "model.pt").is_file()


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="dataset"):
        train(TrainConfig())
    with pytest.raises(ConfigError, match="did you mean 'corr_weight'"):
        load_train_config(None, ["corr_wieght=1"])
    with pytest.raises(ConfigError, match="kind"):
        load_train_config(None, ["loss.kind=nope"])


def test_ddp_two_ranks_end_identical(toy, tmp_path):
    """torchrun, 2 processes on CPU (gloo): each rank trains on its half of the batch; weights end equal."""
    script = tmp_path / "ddp_run.py"
    script.write_text(
        textwrap.dedent(f"""
        import os
        from xseason.learn.dataset import AugmentConfig
        from xseason.learn.losses import LossConfig
        from xseason.learn.models import ModelConfig
        from xseason.learn.train import DataConfig, TrainConfig, train
        cfg = TrainConfig(dataset={str(toy)!r}, out={str(tmp_path / "ddp")!r},
                          model=ModelConfig(num_classes=4, embedding_dim=8, widths=(8, 8, 16),
                                            decoder_width=8),
                          data=DataConfig(num_workers=0, augment=AugmentConfig(short_side=40, crop=(48, 40),
                                          max_matches=32)),
                          loss=LossConfig(moving_classes=[]), steps=4, batch_size=1, corr_start_step=1,
                          progress=False, threads=1)
        result = train(cfg)
        with open(os.path.join({str(tmp_path)!r}, "rank" + os.environ["RANK"]), "w") as f:
            f.write(result.weights_digest)
    """)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = [(tmp_path / f"rank{r}").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    single = train(
        _cfg(
            toy,
            tmp_path / "single",
            steps=4,
            batch_size=1,
            corr_start_step=1,
            loss=LossConfig(moving_classes=[]),
        )
    )
    assert single.weights_digest != digests[0]  # the two ranks really trained on different (more) data


def test_demo_shares_the_warm_up_exactly(toy, tmp_path):
    """The demo trains the common supervised warm-up once: both runs end as if trained on their own."""
    from xseason.pipeline.demo import train_pair

    loss = LossConfig(moving_classes=[])
    shared = train_pair(
        _cfg(toy, tmp_path / "base", loss=loss, corr_weight=0.0, corr_start_step=3),
        _cfg(toy, tmp_path / "corr", loss=loss, corr_start_step=3),
    )
    alone = train(_cfg(toy, tmp_path / "alone", loss=loss, corr_start_step=3))  # (the baseline: resume test)
    assert shared.correspondence.steps == shared.baseline.steps == 6
    assert shared.correspondence.weights_digest == alone.weights_digest
    assert shared.baseline.weights_digest != shared.correspondence.weights_digest
    rows = [json.loads(x) for x in (tmp_path / "corr" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7)) and "corr" in rows[3] and "corr" not in rows[2]


def test_a_rebuilt_dataset_is_not_resumed_on(tmp_path):
    """A checkpoint trained on one build of a dataset is refused for the next build (the trainer),
    and set aside to train anew (the demo)."""
    from xseason.pipeline.demo import set_aside_stale_runs

    data = make_toy_dataset(tmp_path / "ds", places=2, size=(64, 48), matches_per_pair=40)
    train(_cfg(data, tmp_path / "run", steps=3, max_steps_per_run=2))
    set_aside_stale_runs([tmp_path / "run"], data)  # same build: left alone
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    meta = data / "dataset.json"
    meta.write_text(
        meta.read_text().replace('"created"', '"created" ', 1)
    )  # a rebuild writes a new dataset.json
    with pytest.raises(ConfigError, match="trained on another dataset"):
        train(_cfg(data, tmp_path / "run", steps=3))
    set_aside_stale_runs([tmp_path / "run"], data)
    assert (
        not (tmp_path / "run").exists() and (tmp_path / "run.previous" / "checkpoints" / "last.pt").is_file()
    )
    assert train(_cfg(data, tmp_path / "run", steps=3)).steps_run == 3
