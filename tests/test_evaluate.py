"""Evaluation metrics on constructed predictions, and the side-by-side report of two trained checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from toy import make_toy_dataset

from xseason.learn.dataset import AugmentConfig
from xseason.learn.evaluate import EvalConfig, evaluate, match_metrics, segmentation_scores
from xseason.learn.losses import LossConfig
from xseason.learn.models import ModelConfig
from xseason.learn.train import DataConfig, TrainConfig, train


def test_match_metrics_on_constructed_maps():
    h, w, stride = 6, 8, 4
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 16, h, w, generator=gen)
    logits = torch.zeros(1, 3, h, w)
    logits[0, 1, :, : w // 2] = 5  # class 1 on the left half, class 2 on the right
    logits[0, 2, :, w // 2 :] = 5
    outs = {"embedding": torch.cat([emb, emb]), "logits": torch.cat([logits, logits])}
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.stack([(xs.flatten() + 0.5) * stride - 0.5, (ys.flatten() + 0.5) * stride - 0.5], 1)
    size = (h * stride, w * stride)
    same = torch.cat([centres, centres], 1)
    assert match_metrics(outs, same, size, size, radius=1.0) == (h * w, h * w)
    shifted = torch.cat([centres, centres + torch.tensor([16.0, 0.0])], 1)  # 4 cells to the right
    agree, correct = match_metrics(outs, shifted, size, size, radius=4.0)
    assert correct == 0
    assert agree == h * (w // 2 - 4) + h * (w // 2)  # left cells landing left, right cells landing right


def test_segmentation_scores():
    cm = np.array([[5, 1, 0], [2, 4, 0], [0, 0, 0]])
    s = segmentation_scores(cm)
    assert s["miou"] == pytest.approx((5 / 8 + 4 / 7) / 2)
    assert s["pixel_accuracy"] == pytest.approx(9 / 12)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ds = make_toy_dataset(root, places=8, size=(48, 36), matches_per_pair=150, test_fraction=0.25, seed=1)
    data = DataConfig(num_workers=0, augment=AugmentConfig(short_side=36, crop=(48, 36), max_matches=128))
    runs = []
    for name, lam in (("baseline", 0.0), ("corr", 1.0)):
        cfg = TrainConfig(
            dataset=ds,
            out=root / name,
            model=ModelConfig(num_classes=4, widths=(8, 16, 16), decoder_width=16, embedding_dim=8),
            data=data,
            loss=LossConfig(moving_classes=[]),
            corr_weight=lam,
            corr_start_step=25,
            steps=70,
            batch_size=4,
            lr=0.01,
            progress=False,
        )
        runs.append(train(cfg).model_path)
    return ds, runs, root


def test_report_puts_checkpoints_side_by_side(two_runs):
    ds, runs, root = two_runs
    report = evaluate(runs, ds, EvalConfig(out=root / "report", short_side=36, progress=False))
    pairs = report.pairs.set_index("checkpoint")
    assert set(report.pairs["checkpoint"]) == {"baseline", "corr"}
    assert (report.pairs["pairs"] == 2).all() and (report.pairs["matches"] == 300).all()
    cond = report.conditions.set_index(["checkpoint", "condition"])
    assert set(cond.index) == {(c, k) for c in ("baseline", "corr") for k in ("day", "night")}
    assert (cond["images"] == 2).all()
    # The supervised-only baseline never saw night labels; the correspondence loss transfers them.
    assert pairs.loc["corr", "label_agreement"] > pairs.loc["baseline", "label_agreement"] + 0.2
    assert cond.loc[("corr", "night"), "miou"] > cond.loc[("baseline", "night"), "miou"] + 0.1
    assert cond.loc[("baseline", "day"), "miou"] > 0.5
    for name in ("pairs.csv", "conditions.csv", "report.md", "label_agreement.png", "miou.png"):
        assert (root / "report" / name).stat().st_size > 100
    assert pd.read_csv(root / "report" / "pairs.csv").shape == (2, 6)
    md = (root / "report" / "report.md").read_text()
    assert "label_agreement [baseline]" in md and "label_agreement [corr]" in md
    print(report.pairs.to_string(), report.conditions.to_string(), sep="\n")


def test_cli_eval_writes_the_report(two_runs, tmp_path, capsys):
    from xseason.cli import main

    ds, runs, _ = two_runs
    assert (
        main(
            [
                "eval",
                *map(str, runs),
                "--dataset",
                str(ds),
                "--out",
                str(tmp_path / "r"),
                "--set",
                "short_side=36",
                "--set",
                "progress=false",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "label_agreement [baseline]" in out
        and "miou [corr]" in out
        and f"report written to {tmp_path / 'r'}" in out
    )
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "conditions.csv",
        "label_agreement.png",
        "miou.png",
        "pairs.csv",
        "report.md",
    ]
