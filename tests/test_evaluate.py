"""Evaluation metrics on constructed predictions, and the side-by-side report of two trained checkpoints."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from toy import make_toy_dataset

from xseason.core.errors import DatasetFormatError
from xseason.learn.dataset import AugmentConfig, plan_transform
from xseason.learn.evaluate import (
    EvalConfig,
    class_iou,
    class_kappas,
    cohen_kappa,
    evaluate,
    full_resolution_counts,
    label_at,
    match_counts,
    match_predictions,
    pair_scores,
    segmentation_scores,
)
from xseason.learn.losses import LossConfig
from xseason.learn.models import ModelConfig
from xseason.learn.train import DataConfig, TrainConfig, train


def test_match_predictions_on_constructed_maps():
    h, w, stride = 6, 8, 4
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(1, 16, h, w, generator=gen)
    logits = torch.zeros(1, 3, h, w)
    logits[0, 1, :, : w // 2] = 5  # class 1 on the left half, class 2 on the right
    logits[0, 2, :, w // 2 :] = 5
    outs = {"features": torch.cat([feat, feat]), "logits": torch.cat([logits, logits])}
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.stack([(xs.flatten() + 0.5) * stride - 0.5, (ys.flatten() + 0.5) * stride - 0.5], 1)
    size = (h * stride, w * stride)
    same = torch.cat([centres, centres], 1)
    pred0, pred1, correct = match_predictions(outs, same, size, size, radius=1.0)
    assert (pred0 == pred1).all() and correct.all() and (pred0 == np.where(xs.flatten() < w // 2, 1, 2)).all()
    shifted = torch.cat([centres, centres + torch.tensor([16.0, 0.0])], 1)  # 4 cells to the right
    pred0, pred1, correct = match_predictions(outs, shifted, size, size, radius=4.0)
    assert not correct.any()
    assert (pred0 == pred1).sum() == h * (w // 2 - 4) + h * (w // 2)  # left cells landing left, right right


def test_segmentation_scores():
    cm = np.array([[5, 1, 0], [2, 4, 0], [0, 0, 0]])
    s = segmentation_scores(cm)
    assert s["miou"] == pytest.approx((5 / 8 + 4 / 7) / 2)
    assert s["pixel_accuracy"] == pytest.approx(9 / 12)


def test_class_iou_of_a_known_confusion():
    """Rows = labels, columns = predictions; class 2 is predicted (4 px) but never labelled."""
    cm = np.array([[8, 2, 0], [0, 6, 4], [0, 0, 0]])
    assert class_iou(cm) == pytest.approx([8 / 10, 6 / 12, 0.0])
    assert segmentation_scores(cm)["miou"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert np.isnan(class_iou(np.diag([3, 0]))[1])  # a class in neither labels nor predictions: no IoU


def test_kappa_is_agreement_beyond_chance():
    independent = np.outer([4, 4], [2, 6])  # reference 50/50, target 25/75, independent of each other
    k = cohen_kappa(independent)
    assert k["label_agreement"] == pytest.approx(0.5) and k["chance_agreement"] == pytest.approx(0.5)
    assert k["kappa"] == pytest.approx(0.0, abs=1e-12)
    assert cohen_kappa(np.diag([5, 5]))["kappa"] == pytest.approx(1.0)
    near_trivial = np.outer([99, 1], [99, 1])  # 99 % on one class each side, independently
    k = cohen_kappa(near_trivial)
    assert k["label_agreement"] == pytest.approx(0.9802) and k["kappa"] == pytest.approx(0.0, abs=1e-12)
    assert class_kappas(independent) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert class_kappas(np.diag([5, 5])) == pytest.approx([1.0, 1.0])
    # class 0 always agreed, classes 1 and 2 confused at random: kappa 1 for class 0, 1/3 for the others
    assert class_kappas(np.array([[40, 0, 0], [0, 10, 10], [0, 10, 10]])) == pytest.approx([1, 1 / 3, 1 / 3])


def test_all_matches_on_one_class_give_kappa_zero_not_one():
    """The issue's trivial case: every match on road, both ends predict road -> agreement 1, kappa 0."""
    road = np.zeros(1000, np.int64)
    labels = np.zeros(1000, np.uint8)
    counts = match_counts(road, road, labels, labels, k=4)
    scores = pair_scores(counts)
    assert scores["label_agreement"] == 1.0 and scores["kappa"] == 0.0
    assert scores["top_label"] == 0 and scores["top_label_share"] == 1.0 and scores["target_accuracy"] == 1.0
    # half the target points unlabelled (255), the other half predicted wrong: accuracy over the labelled
    labels1 = np.r_[np.full(500, 255, np.uint8), np.full(500, 1, np.uint8)]
    scores = pair_scores(match_counts(road, road, labels, labels1, k=4))
    assert scores["target_labelled"] == 500 and scores["target_accuracy"] == 0.0


def test_full_resolution_scoring_sees_thin_structures():
    """A 1 px pole (class 1) in a 16 x 16 label; the network says class 0 everywhere at 4 x 4.

    At full label resolution the pole is missed (IoU 0, mIoU 0.47); scored at the network's input
    size (the label resized by nearest neighbour as the dataset does) it has vanished: mIoU 1.
    """
    label = np.zeros((16, 16), np.uint8)
    label[:, 1] = 1
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = 1.0
    predicted, cm = full_resolution_counts(logits, label.shape, label)
    assert cm.tolist() == [[240, 0], [16, 0]] and predicted.tolist() == [256, 0]
    assert segmentation_scores(cm)["miou"] == pytest.approx(240 / 256 / 2)
    t = plan_transform((16, 16), None, AugmentConfig(short_side=4, crop=(0, 0)), np.random.default_rng(0))
    small = t.resize(label, nearest=True)
    _, cm_small = full_resolution_counts(logits, small.shape, small)
    assert segmentation_scores(cm_small)["miou"] == 1.0
    # points of a 4 x 4 view read the 16 x 16 label at the pixel that holds them
    xy = np.array([[-0.1, 0.0], [0.0, 3.0], [3.4, 3.4]])  # label column = floor((x + 0.5) * 16 / 4)
    assert label_at(label, xy, (4, 4)).tolist() == [1, 0, 0]


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
            model=ModelConfig(
                num_classes=4,
                widths=(8, 16, 16),
                decoder_width=16,
            ),
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
    assert (cond["images"] == 2).all() and (cond["all_images"] == 2).all()
    # The supervised-only baseline never saw night labels; the correspondence loss transfers them.
    assert pairs.loc["corr", "label_agreement"] > pairs.loc["baseline", "label_agreement"] + 0.2
    assert cond.loc[("corr", "night"), "miou"] > cond.loc[("baseline", "night"), "miou"] + 0.1
    assert cond.loc[("baseline", "day"), "miou"] > 0.5
    # every toy match has labels at both ends; kappa is agreement beyond the chance of the histograms
    assert (report.pairs[["reference_labelled", "target_labelled"]] == 300).all().all()
    p = report.pairs
    assert np.allclose(
        p["kappa"], (p["label_agreement"] - p["chance_agreement"]) / (1 - p["chance_agreement"])
    )
    assert pairs.loc["corr", "target_accuracy"] > pairs.loc["baseline", "target_accuracy"]
    per_class = report.match_classes.groupby(["checkpoint", "condition_pair"])
    assert (per_class["reference_label_matches"].sum() == 300).all()
    assert (per_class["reference_predicted"].sum() == 300).all()
    # per-class IoU and histograms agree with the confusion matrices written beside them
    for (name, condition), group in report.classes.groupby(["checkpoint", "condition"]):
        cm = pd.read_csv(root / "report" / f"confusion_{name}_{condition}.csv", index_col="label").to_numpy()
        assert np.array_equal(cm, report.confusions[(name, condition)])
        iou = class_iou(cm)
        assert np.allclose(group["iou"], iou[group["class"]], equal_nan=True)
        assert group["predicted_share"].sum() == pytest.approx(1.0)
        assert cm.sum() == cond.loc[(name, condition), "pixels"] == 2 * 48 * 36
    for name in ("pairs.csv", "conditions.csv", "per_class_iou.csv", "match_classes.csv", "report.md"):
        assert (root / "report" / name).stat().st_size > 100
    assert pd.read_csv(root / "report" / "pairs.csv").shape == (2, 13)
    md = (root / "report" / "report.md").read_text()
    assert "label_agreement [baseline]" in md and "label_agreement [corr]" in md and "kappa [corr]" in md
    assert "iou [baseline]" in md
    print(report.pairs.to_string(), report.conditions.to_string(), sep="\n")


def test_images_are_scored_at_full_label_resolution(two_runs, tmp_path):
    """At half the input size the network sees 24 x 18 images; mIoU still counts all 48 x 36 label pixels."""
    ds, runs, _ = two_runs
    report = evaluate(runs[:1], ds, EvalConfig(out=tmp_path, short_side=18, progress=False))
    assert (report.conditions["pixels"] == 2 * 48 * 36).all()
    assert (report.pairs["reference_labelled"] == report.pairs["matches"]).all()


def test_labels_beyond_the_model_classes_are_an_error(two_runs, tmp_path):
    _, runs, _ = two_runs
    ds = make_toy_dataset(tmp_path, places=2, size=(48, 36), matches_per_pair=20, test_fraction=0.5, seed=2)
    cv2.imwrite(str(tmp_path / "images" / "p001_day_label.png"), np.full((36, 48), 7, np.uint8))
    with pytest.raises(DatasetFormatError, match="p001_day_label.png: label values must be < 4"):
        evaluate(runs[:1], ds, EvalConfig(out=tmp_path / "r", short_side=36, progress=False))


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
        *(f"confusion_{n}_{c}.csv" for n in ("baseline", "corr") for c in ("day", "night")),
        "label_agreement.png",
        "match_classes.csv",
        "miou.png",
        "pairs.csv",
        "per_class_iou.csv",
        "report.md",
    ]
