"""Trainer: exact resume on CPU, DDP ranks end identical, metrics/curves written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest
import torch
from toy import make_toy_dataset, toy_train_config

from xseason.core.errors import ConfigError
from xseason.learn.dataset import AugmentConfig
from xseason.learn.losses import LossConfig
from xseason.learn.models import ModelConfig
from xseason.learn.train import TrainConfig, load_train_config, train

TINY = ModelConfig(num_classes=4, widths=(8, 8, 16), decoder_width=8)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), places=4, size=(64, 48), matches_per_pair=80)


def _cfg(dataset, out, **kw) -> TrainConfig:
    return toy_train_config(dataset, out=out, **kw)


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


def test_cli_names_the_packaged_configs_for_a_missing_one(toy, tmp_path, capsys, monkeypatch):
    """`--config NAME` that is neither a file nor a packaged config: an error listing them, no training."""
    from xseason.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", "trian", "--dataset", str(toy)]) == 2
    assert "trian: no such config file, nor a packaged config of that name (packaged: train" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "runs").exists()


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
                          model=ModelConfig(num_classes=4, widths=(8, 8, 16),
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
    base, corr = train_pair(
        _cfg(toy, tmp_path / "base", loss=loss, corr_weight=0.0, corr_start_step=3),
        _cfg(toy, tmp_path / "corr", loss=loss, corr_start_step=3),
    )
    alone = train(_cfg(toy, tmp_path / "alone", loss=loss, corr_start_step=3))  # (the baseline: resume test)
    assert corr.steps == base.steps == 6
    assert corr.weights_digest == alone.weights_digest
    assert base.weights_digest != corr.weights_digest
    rows = [json.loads(x) for x in (tmp_path / "corr" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7)) and "corr" in rows[3] and "corr" not in rows[2]


@pytest.mark.parametrize("corr_weight", [0.0, 1.0])
def test_demo_adabn_arm_from_its_twin_is_exact(toy, tmp_path, corr_weight):
    """An AdaBN arm derived from its twin's finished run is bit-identical to one trained on its own,
    differs from the twin in the BatchNorm running statistics only, and a rerun gives it again."""
    from xseason.pipeline.demo import adabn_from

    cfg = _cfg(toy, tmp_path / "twin", loss=LossConfig(moving_classes=[]), corr_weight=corr_weight)
    twin = train(cfg)
    derived = adabn_from(twin, replace(cfg, out=tmp_path / "derived", adabn=True))
    alone = train(replace(cfg, out=tmp_path / "alone", adabn=True))
    assert derived.steps_run == 0 and derived.steps == 6
    assert derived.weights_digest == alone.weights_digest != twin.weights_digest
    a, b = _weights(twin.model_path), _weights(derived.model_path)
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(
        k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed
    )
    again = adabn_from(twin, replace(cfg, out=tmp_path / "derived", adabn=True))
    assert again.weights_digest == alone.weights_digest


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


# ----------------------------------------------------------------------------- fair baselines


class _Recorder(torch.nn.Module):
    """A stand-in network: remembers its batch sizes; logits, features and (`aux`) auxiliary ones from
    a 1x1 conv, or (`aux_as_main`) its auxiliary outputs as the main ones."""

    def __init__(self, aux: bool = False, aux_as_main: bool = False) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 10, 1)
        self.aux, self.aux_as_main = aux, aux_as_main
        self.seen: list[int] = []

    def forward(self, x):
        self.seen.append(len(x))
        y = self.conv(x)
        main, aux = (
            {"logits": y[:, :4], "features": y[:, 4:7]},
            {"logits": 2 * y[:, :4], "features": y[:, 7:]},
        )
        if self.aux_as_main:
            return aux
        return main | ({f"aux_{k}": v for k, v in aux.items()} if self.aux else {})


def _batch(toy, augment: AugmentConfig, size: int = 2) -> dict:
    from xseason.learn.dataset import CorrespondenceDataset, PadCollate

    ds = CorrespondenceDataset(toy, augment=augment)
    return PadCollate(augment.max_matches)([ds[(i, 0)] for i in range(size)])


def test_target_forward_shows_the_targets_to_batchnorm_without_a_loss(toy, tmp_path):
    from xseason.learn.train import _Runtime, _step_losses

    cfg = _cfg(toy, tmp_path / "x", corr_weight=0.0)
    batch = _batch(toy, cfg.data.augment)
    supervised = {"day"}
    for target_forward, seen in ((False, 2), (True, 4)):
        cfg.target_forward = target_forward
        torch.manual_seed(0)
        net = _Recorder()
        losses = _step_losses(net, batch, cfg, _Runtime(cfg), supervised, False, None)
        assert net.seen == [seen] and set(losses) == {"supervised"}
        if not target_forward:
            plain = losses["supervised"]
        else:  # the targets are forwarded, yet they add nothing to the loss
            assert losses["supervised"].item() == pytest.approx(plain.item(), rel=1e-6)


def test_auxiliary_head_adds_its_weighted_losses(toy, tmp_path):
    """A network with `aux_logits`/`aux_features`: supervised and correspondence losses = main + 0.4 aux."""
    from xseason.learn.train import _Runtime, _step_losses

    cfg = _cfg(toy, tmp_path / "x", loss=LossConfig(kind="hinge_feature", moving_classes=[]))
    batch = _batch(toy, cfg.data.augment)
    rt = _Runtime(cfg)
    torch.manual_seed(0)
    net = _Recorder(aux=True)
    both = _step_losses(net, batch, cfg, rt, {"day"}, True, None)
    parts = []
    for kw in ({}, {"aux_as_main": True}):
        alone = _Recorder(**kw)
        alone.load_state_dict(net.state_dict())
        parts.append(_step_losses(alone, batch, cfg, rt, {"day"}, True, None))
    for key in ("supervised", "corr"):
        assert parts[1][key].item() > 0
        assert both[key].item() == pytest.approx(parts[0][key].item() + 0.4 * parts[1][key].item(), rel=1e-5)
    cfg.aux_weight = 0.0
    assert _step_losses(net, batch, cfg, rt, {"day"}, True, None)["corr"].item() == pytest.approx(
        parts[0]["corr"].item()
    )


def test_adabn_re_estimates_batchnorm_over_all_training_images(toy, tmp_path):
    """After the last step, the first BatchNorm's running mean is the mean of its input over every
    training image of both conditions (one batch here); the resumable checkpoint keeps the trained
    statistics. AdaBN on a finished run (its checkpoint copied, rerun with adabn=true: no step trained)
    gives the same network as a run trained with adabn=true."""
    import shutil

    from xseason.learn.dataset import CorrespondenceDataset, PairFilter
    from xseason.learn.models import load_model

    cfg = _cfg(toy, tmp_path / "a", adabn=True, corr_weight=0.0)
    result = train(cfg)
    model = load_model(result.model_path).eval()
    ds = CorrespondenceDataset(toy, PairFilter(["train"]), cfg.data.augment)
    ids = np.unique(ds.image_ids)
    assert set(ds.conditions.ravel()) == {"day", "night"} and len(ids) == 6
    images = torch.from_numpy(np.stack([ds.view(int(i))[0] for i in ids])).permute(0, 3, 1, 2).float() / 255
    conv, bn = model.stem[0][0], model.stem[0][1]
    with torch.no_grad():
        expected = conv((images - 0.45) / 0.25).mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean, expected, rtol=1e-4, atol=1e-5)
    trained = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=False)["model"]
    assert not torch.allclose(trained["stem.0.1.running_mean"], bn.running_mean)

    plain = train(_cfg(toy, tmp_path / "b", corr_weight=0.0))
    assert plain.weights_digest != result.weights_digest  # the same training, without AdaBN
    shutil.copytree(tmp_path / "b" / "checkpoints", tmp_path / "c" / "checkpoints")
    after = train(_cfg(toy, tmp_path / "c", adabn=True, corr_weight=0.0))
    assert after.steps_run == 0 and after.weights_digest == result.weights_digest


# ----------------------------------------------------------------------------- guardrails


def _copy_with_images(src, dst, change) -> object:
    """A copy of dataset `src` at `dst` whose images.parquet is `change(images)`."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.copytree(src, dst)
    table = pq.read_table(dst / "images.parquet")
    images = change(table.to_pandas())
    schema = pa.schema([f for f in table.schema if f.name in images.columns])
    pq.write_table(pa.Table.from_pandas(images, schema=schema, preserve_index=False), dst / "images.parquet")
    return dst


def test_training_without_labels_stops_with_a_clear_error(toy, tmp_path):
    from xseason.core.errors import XSeasonError

    no_column = _copy_with_images(toy, tmp_path / "a", lambda im: im.drop(columns="label"))
    with pytest.raises(XSeasonError, match=r"a: no labels to train on: images.parquet has no 'label' column"):
        train(_cfg(no_column, tmp_path / "run_a"))

    def unlabel_reference(images):
        images.loc[images["condition"] == "day", "label"] = None
        return images

    no_ref = _copy_with_images(toy, tmp_path / "b", unlabel_reference)
    with pytest.raises(XSeasonError, match=r"none of the 3 supervised training images \(condition day\)"):
        train(_cfg(no_ref, tmp_path / "run_b"))
    # Without the supervised loss no label is needed.
    assert train(_cfg(no_column, tmp_path / "run_c", steps=2, supervised_weight=0.0)).steps == 2


def test_labels_beyond_num_classes_stop_with_a_clear_error(toy, tmp_path):
    """The toy labels are 0..3: a 3-class network is refused before training, naming a file, the value
    and the setting; 4 classes train."""
    from xseason.core.errors import XSeasonError

    small = ModelConfig(num_classes=3, widths=(8, 8, 16), decoder_width=8)
    with pytest.raises(XSeasonError) as err:
        train(_cfg(toy, tmp_path / "r", model=small))
    message = str(err.value)
    assert "_label.png: label value 3 >= model.num_classes = 3" in message
    assert "set model.num_classes=4" in message
    assert not (tmp_path / "r").exists()  # stopped before anything was written


def test_num_classes_null_takes_the_dataset_labels(toy, tmp_path):
    """`model.num_classes: null` becomes the largest label id of the dataset + 1 (toy labels 0..3)
    before the network is made; the checkpoint records the resolved number."""
    auto = replace(TINY, num_classes=None)
    result = train(_cfg(toy, tmp_path / "auto", model=auto, steps=2))
    saved = torch.load(result.model_path, map_location="cpu", weights_only=False)
    assert saved["model_config"]["num_classes"] == 4
    assert saved["model"]["classifier.weight"].shape[0] == 4
    with pytest.raises(ValueError, match="num_classes is null"):
        from xseason.learn.models import build_model

        build_model(auto)
