"""Evaluation for seasonal robustness, several checkpoints side by side.

For every checkpoint, on the pairs of the held-out splits (default `test`):

- per condition (all images of those pairs, at **full label resolution**: the network's logits
  are upsampled to the label image's size, not scored at the input size): **mIoU**, per-class
  IoU, pixel accuracy and the (label x prediction) confusion matrix over the labelled pixels,
  the label histogram, and the **prediction histogram** (share of pixels predicted per class,
  over every pixel of every image, labelled or not: the collapse check);
- per condition pair, at the matches: **label agreement** (the predicted class at both ends is
  the same), the chance agreement sum_c p0(c) p1(c) from the two prediction histograms at the
  matched points, **Cohen's kappa** (agreement - chance) / (1 - chance) (0 when chance is 1:
  every match on one class that both predict shows nothing beyond chance), the **target
  accuracy** (target prediction at x1 against the target image's label, where it has one), the
  reference-label histogram at x0, and the **feature matching accuracy** (the nearest
  neighbour, over the whole other image, of the reference's classifier features at x0 (the
  map the feature losses train) lies within `match_radius` px of x1);
- per condition pair and class: one-vs-rest kappa of the *predicted* class c (Cohen's kappa of
  "is it c?" answered by the two predictions), label agreement among the matches whose
  *reference label* is c, and target accuracy among the matches whose target label is c.

Images are resized like in training (`short_side`, no crop) for the network; matches, radii
and predictions at the matches are in pixels of that resized image. The report under `cfg.out`:
`pairs.csv`, `conditions.csv`, `per_class_iou.csv`, `match_classes.csv`,
`confusion_<checkpoint>_<condition>.csv`, `report.md` and two PNG charts (`label_agreement.png`,
`miou.png`). Charts are drawn by `xseason.core.plots` (OpenCV; matplotlib is not a dependency).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from xseason.core.config import load_config
from xseason.core.errors import ConfigError, DatasetFormatError
from xseason.core.files import atomic_path
from xseason.core.log import progress
from xseason.core.plots import draw_bar_chart
from xseason.learn.dataset import (
    IGNORE,
    ArrayCache,
    AugmentConfig,
    CorrespondenceDataset,
    PairFilter,
    label_paths,
    read_label,
)
from xseason.learn.losses import sample_at
from xseason.learn.models import load_model, upsample_to
from xseason.store import CorrespondenceStore


@dataclass
class EvalConfig:
    """Settings of `xseason eval` (`configs/eval.yaml`)."""

    splits: list[str] = field(default_factory=lambda: ["test"])
    conditions: list[str] | None = None  # conditions of the non-reference image; None = all
    short_side: int = 120  # resize like training (0 = full resolution)
    max_matches: int = 1000  # matches per pair (random subset, fixed seed)
    match_radius: float = 4.0  # px (resized image): a feature match counted correct within this
    names: list[str] | None = None  # display names of the checkpoints (default: their folder names)
    out: Path = Path("runs/eval")
    device: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        if self.match_radius <= 0 or self.max_matches < 1 or self.short_side < 0:
            raise ValueError("match_radius must be > 0, max_matches >= 1, short_side >= 0")


def load_eval_config(path: str | Path | None = None, overrides: list[str] | None = None) -> EvalConfig:
    """EvalConfig from a YAML file and `key=value` overrides."""
    return load_config(EvalConfig, path, overrides)


@dataclass
class EvalReport:
    """Result tables and where they were written.

    `pairs`: one row per checkpoint x condition pair; `conditions`: per checkpoint x condition;
    `classes`: per checkpoint x condition x class (IoU, label and prediction histograms);
    `match_classes`: per checkpoint x condition pair x class (kappa, agreement, accuracy at the
    matches); `confusions`: (checkpoint, condition) -> (k, k) label x prediction pixel counts.
    """

    pairs: pd.DataFrame
    conditions: pd.DataFrame
    out: Path
    classes: pd.DataFrame = field(default_factory=pd.DataFrame)
    match_classes: pd.DataFrame = field(default_factory=pd.DataFrame)
    confusions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def evaluate(checkpoints: list[str | Path], dataset: str | Path, cfg: EvalConfig | None = None) -> EvalReport:
    """Evaluate each checkpoint on `dataset` and write the side-by-side report."""
    cfg = cfg or EvalConfig()
    names = _names(checkpoints, cfg.names)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    ds = CorrespondenceDataset(
        dataset,
        PairFilter(cfg.splits, cfg.conditions, 1),
        AugmentConfig(short_side=cfg.short_side, crop=(0, 0), max_matches=cfg.max_matches),
        load_images=False,
    )
    parts = [
        _evaluate_model(load_model(ckpt).to(device).eval(), ds, cfg, device, name)
        for name, ckpt in zip(names, checkpoints)
    ]
    tables = {
        key: pd.concat([p[key] for p in parts], ignore_index=True)
        for key in ("pairs", "conditions", "classes", "match_classes")
    }
    confusions = {key: cm for p in parts for key, cm in p["confusions"].items()}
    report = EvalReport(out=Path(cfg.out), confusions=confusions, **tables)
    write_report(report)
    return report


def _names(checkpoints: list[str | Path], names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(checkpoints):
            raise ConfigError(f"eval: {len(names)} names for {len(checkpoints)} checkpoints")
        return list(names)
    parents = [Path(c).parent.name or Path(c).stem for c in checkpoints]
    return parents if len(set(parents)) == len(parents) else [str(c) for c in checkpoints]


@torch.no_grad()
def predict_images(
    model, ds: CorrespondenceDataset, image_ids: list[int], device: torch.device, batch_size: int = 16
) -> dict[int, dict[str, torch.Tensor]]:
    """Model outputs ({"logits", "features"}, on the CPU) of each image's `ds.view`.

    Every image is run once however many pairs it is in; images of equal size are batched.
    """
    out: dict[int, dict[str, torch.Tensor]] = {}
    for ids, x in ds.view_batches(image_ids, batch_size):
        res = model(x.to(device).float().div_(255))
        for j, image_id in enumerate(ids):
            out[image_id] = {key: v[j : j + 1].float().cpu() for key, v in res.items()}
    return out


# ----------------------------------------------------------------------------- counting


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, k: int, cols: int | None = None) -> np.ndarray:
    """(k, cols) int64 counts (default cols = k) of (truth, pred) pairs, truth in rows; entries whose truth
    is IGNORE are left out (other truths must be < k, predictions < cols)."""
    cols = k if cols is None else cols
    keep = truth != IGNORE
    index = truth[keep].astype(np.int64) * cols + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=k * cols).reshape(k, cols)


def label_at(label: np.ndarray, xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class ids of an (H', W') `label` at (N, 2) pixels (x, y) of an image of `size` (H, W) that shows
    the same view: the label pixel holding each point (the top-left pixel's centre is (0, 0))."""
    h, w = label.shape
    col = np.clip(np.floor((xy[:, 0] + 0.5) * w / size[1]), 0, w - 1).astype(np.int64)
    row = np.clip(np.floor((xy[:, 1] + 0.5) * h / size[0]), 0, h - 1).astype(np.int64)
    return label[row, col]


def full_resolution_counts(
    logits: torch.Tensor, size: tuple[int, int], label: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(prediction histogram (k,), label x prediction confusion (k, k)) of one image's (1, k, h, w)
    `logits` upsampled (bilinear) to `size` (H, W) = the size of `label` when there is one."""
    k = logits.shape[1]
    pred = upsample_to(logits, size).argmax(1)[0].numpy()
    confusion = confusion_matrix(label, pred, k) if label is not None else np.zeros((k, k), np.int64)
    return np.bincount(pred.ravel(), minlength=k), confusion


def match_predictions(
    outs: dict[str, torch.Tensor],
    matches: torch.Tensor,
    size0: tuple[int, int],
    size1: tuple[int, int],
    radius: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per match of one pair's (n, 4) matches: the predicted class at x0 (reference) and at x1
    (target), and whether the feature nearest neighbour of x0 in image 1 lies within `radius` of x1.

    `outs` holds the model's outputs for the stacked [image0, image1]; logits are read bilinearly.
    """
    if len(matches) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    pred0 = sample_at(outs["logits"][:1], matches[None, :, :2], size0)[0].argmax(-1)
    pred1 = sample_at(outs["logits"][1:], matches[None, :, 2:], size1)[0].argmax(-1)
    f0 = F.normalize(sample_at(outs["features"][:1], matches[None, :, :2], size0)[0], dim=-1)
    feat1 = F.normalize(outs["features"][1], dim=0)  # (C, h, w)
    h, w = feat1.shape[-2:]
    best = (f0 @ feat1.flatten(1)).argmax(-1)
    # Map cell centre -> image pixel: x = (j + 0.5) * W / w - 0.5.
    xy = torch.stack([(best % w + 0.5) * size1[1] / w - 0.5, (best // w + 0.5) * size1[0] / h - 0.5], -1)
    correct = (xy - matches[:, 2:]).norm(dim=-1) <= radius
    return pred0.numpy(), pred1.numpy(), correct.numpy()


def match_counts(
    pred0: np.ndarray, pred1: np.ndarray, label0: np.ndarray, label1: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Additive tables of one pair's matches: `agreement` (k, k) reference x target prediction,
    `target` (k, k) target label x target prediction, `reference` (k, 2) reference label x
    [predictions differ, agree]; labels are IGNORE where unknown."""
    return {
        "agreement": confusion_matrix(pred0, pred1, k),
        "target": confusion_matrix(label1, pred1, k),
        "reference": confusion_matrix(label0, pred0 == pred1, k, 2),
    }


def _add(totals: dict, key: str, values: dict) -> None:
    """totals[key][name] += value for every item of `values` (numbers or arrays)."""
    into = totals.setdefault(key, {})
    for name, value in values.items():
        into[name] = into.get(name, 0) + value


# ----------------------------------------------------------------------------- scores


def class_iou(confusion: np.ndarray) -> np.ndarray:
    """IoU of every class of a (k, k) label x prediction confusion; NaN for a class in neither."""
    tp = np.diag(confusion).astype(np.float64)
    return _share(tp, confusion.sum(0) + confusion.sum(1) - tp)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    """mIoU over classes present in labels or predictions, pixel accuracy, from a (k, k) confusion."""
    iou = class_iou(confusion)
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "pixel_accuracy": float(_share(np.trace(confusion), confusion.sum())),
        "pixels": int(confusion.sum()),
    }


def cohen_kappa(table: np.ndarray) -> dict[str, float]:
    """Observed agreement, chance agreement and Cohen's kappa of a (k, k) table of two raters' classes.

    chance = sum_c p0(c) p1(c) from the margins; kappa = (observed - chance) / (1 - chance), and 0
    when chance is 1 (both always give the one same class: no agreement beyond chance can show).
    """
    n = table.sum()
    if n == 0:
        return {"label_agreement": np.nan, "chance_agreement": np.nan, "kappa": np.nan}
    observed = float(np.trace(table) / n)
    chance = float(table.sum(1) @ table.sum(0) / n**2)
    kappa = (observed - chance) / (1 - chance) if chance < 1 else 0.0
    return {"label_agreement": observed, "chance_agreement": chance, "kappa": kappa}


def class_kappas(table: np.ndarray) -> np.ndarray:
    """One-vs-rest Cohen's kappa of every class c of a (k, k) two-rater table: the kappa of both raters'
    answers to "is it c?" (0 where both always or both never say c; NaN for an empty table)."""
    n = table.sum()
    if n == 0:
        return np.full(len(table), np.nan)
    r, t, both = table.sum(1) / n, table.sum(0) / n, np.diag(table) / n
    observed = 1 - r - t + 2 * both
    chance = r * t + (1 - r) * (1 - t)
    return np.divide(observed - chance, 1 - chance, out=np.zeros(len(r)), where=chance < 1)


def _share(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den as float64, NaN where den is 0."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def pair_scores(counts: dict[str, np.ndarray]) -> dict[str, float]:
    """Label agreement, chance agreement, kappa, target accuracy and the most frequent reference label
    (-1 when none is known) of summed `match_counts`."""
    labels, target = counts["reference"].sum(1), counts["target"]
    top = int(labels.argmax()) if labels.sum() else -1
    return {
        **cohen_kappa(counts["agreement"]),
        "target_labelled": int(target.sum()),
        "target_accuracy": float(_share(np.trace(target), target.sum())),
        "reference_labelled": int(labels.sum()),
        "top_label": top,
        "top_label_share": float(_share(labels[top], labels.sum())) if top >= 0 else np.nan,
    }


def match_class_scores(counts: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per class of summed `match_counts` (classes with any count): matches with that reference label
    and their label agreement, predictions at each end, one-vs-rest kappa of the predicted class,
    matches with that target label and the target accuracy on them."""
    agreement, target, reference = counts["agreement"], counts["target"], counts["reference"]
    table = pd.DataFrame(
        {
            "class": np.arange(len(agreement)),
            "reference_label_matches": reference.sum(1),
            "label_agreement": _share(reference[:, 1], reference.sum(1)),
            "reference_predicted": agreement.sum(1),
            "target_predicted": agreement.sum(0),
            "both_predicted": np.diag(agreement),
            "kappa": class_kappas(agreement),
            "target_label_matches": target.sum(1),
            "target_accuracy": _share(np.diag(target), target.sum(1)),
        }
    )
    counted = ["reference_label_matches", "reference_predicted", "target_predicted", "target_label_matches"]
    return table[table[counted].sum(axis=1) > 0]


def class_table(confusion: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Per class (classes with any pixel): IoU, label pixels and share (labelled pixels), predicted
    pixels and share (`predicted` = prediction histogram over all pixels)."""
    labels = confusion.sum(1)
    table = pd.DataFrame(
        {
            "class": np.arange(len(predicted)),
            "iou": class_iou(confusion),
            "label_pixels": labels,
            "label_share": _share(labels, labels.sum()),
            "predicted_pixels": predicted,
            "predicted_share": _share(predicted, predicted.sum()),
        }
    )
    return table[(labels > 0) | (predicted > 0)]


# ----------------------------------------------------------------------------- one checkpoint


@torch.no_grad()
def _evaluate_model(
    model, ds: CorrespondenceDataset, cfg: EvalConfig, device: torch.device, name: str
) -> dict:
    """The report's tables (`EvalReport` fields but `out`) of one model."""
    k = model.cfg.num_classes
    image_ids = sorted({int(i) for i in np.unique(ds.image_ids)})
    outs = predict_images(model, ds, image_ids, device)
    labels = FullLabels(ds.store, ds.cache, k)
    condition = dict(zip(ds.image_ids.ravel().tolist(), ds.conditions.ravel().tolist()))
    images = ds.store.images
    hw = dict(zip(images["image_id"].tolist(), zip(images["height"].tolist(), images["width"].tolist())))
    per_condition: dict[str, dict] = {}
    for image_id in image_ids:
        label = labels.get(image_id)
        size = label.shape if label is not None else hw[image_id]
        predicted, confusion = full_resolution_counts(outs[image_id]["logits"], size, label)
        _add(
            per_condition,
            condition[image_id],
            {
                "images": int(label is not None),
                "all_images": 1,
                "predicted": predicted,
                "confusion": confusion,
            },
        )
    per_pair: dict[str, dict] = {}
    for i in progress(range(len(ds)), desc=f"eval {name}", enabled=cfg.progress, unit="pair"):
        s = ds[i]
        a, b = outs[s["image_id0"]], outs[s["image_id1"]]
        both = {key: torch.cat([a[key], b[key]]) for key in a}
        sizes01 = [ds.view(s[f"image_id{side}"])[0].shape[:2] for side in (0, 1)]
        pred0, pred1, correct = match_predictions(both, s["matches"], *sizes01, cfg.match_radius)
        label0, label1 = (
            labels.at(s[f"image_id{side}"], s["matches"][:, 2 * side : 2 * side + 2].numpy(), sizes01[side])
            for side in (0, 1)
        )
        _add(
            per_pair,
            f"{s['condition0']}|{s['condition1']}",
            {"pairs": 1, "matches": len(pred0), "correct": int(correct.sum())}
            | match_counts(pred0, pred1, label0, label1, k),
        )
    return _tables(name, per_condition, per_pair)


class FullLabels:
    """The label images of a dataset at full resolution, by image id (kept in an `ArrayCache`); with
    `num_classes`, a label holding a value >= num_classes (IGNORE aside) is a `DatasetFormatError`."""

    def __init__(self, store: CorrespondenceStore, cache: ArrayCache, num_classes: int | None = None) -> None:
        self.paths = label_paths(store)
        self.cache, self.num_classes = cache, num_classes

    def get(self, image_id: int) -> np.ndarray | None:
        """uint8 (H, W) class ids, None for an image without a label."""
        path = self.paths.get(int(image_id))
        if path is None:
            return None
        return self.cache.get((int(image_id), "full label", self.num_classes), lambda: self._read(path))

    def _read(self, path: Path) -> np.ndarray:
        label = read_label(path)
        k = self.num_classes
        if k is not None and label.max(initial=0, where=label != IGNORE) >= k:
            raise DatasetFormatError(f"{path}: label values must be < {k} (the model's classes) or {IGNORE}")
        return label

    def at(self, image_id: int, xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """`label_at` of the image's label; IGNORE everywhere for an unlabelled image."""
        label = self.get(image_id)
        return label_at(label, xy, size) if label is not None else np.full(len(xy), IGNORE, np.uint8)


def _tables(name: str, per_condition: dict[str, dict], per_pair: dict[str, dict]) -> dict:
    """`EvalReport` fields (but `out`) of one checkpoint from the summed counts."""
    pairs, conditions, classes, match_classes, confusions = [], [], [], [], {}
    for key, c in sorted(per_pair.items()):
        scores = pair_scores(c)
        pairs.append(
            {
                "checkpoint": name,
                "condition_pair": key,
                "pairs": c["pairs"],
                "matches": c["matches"],
                "label_agreement": scores.pop("label_agreement"),
                "feature_accuracy": c["correct"] / max(c["matches"], 1),
                **scores,
            }
        )
        match_classes.append(match_class_scores(c).assign(checkpoint=name, condition_pair=key))
    for cond, c in sorted(per_condition.items()):
        top = int(c["predicted"].argmax())
        conditions.append(
            {
                "checkpoint": name,
                "condition": cond,
                "images": c["images"],
                **segmentation_scores(c["confusion"]),
                "all_images": c["all_images"],
                "predicted_top_class": top,
                "predicted_top_share": float(_share(c["predicted"][top], c["predicted"].sum())),
            }
        )
        classes.append(class_table(c["confusion"], c["predicted"]).assign(checkpoint=name, condition=cond))
        confusions[(name, cond)] = c["confusion"]
    return {
        "pairs": pd.DataFrame(pairs),
        "conditions": pd.DataFrame(conditions),
        "classes": _first(classes, ["checkpoint", "condition"]),
        "match_classes": _first(match_classes, ["checkpoint", "condition_pair"]),
        "confusions": confusions,
    }


def _first(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The frames concatenated, `columns` moved to the front."""
    if not frames:
        return pd.DataFrame(columns=columns)
    df = pd.concat(frames, ignore_index=True)
    return df[columns + [c for c in df.columns if c not in columns]]


# ----------------------------------------------------------------------------- report


def write_report(report: EvalReport) -> None:
    """Under `report.out`: pairs.csv, conditions.csv, per_class_iou.csv, match_classes.csv,
    confusion_<checkpoint>_<condition>.csv (rows: label, columns: prediction), report.md,
    label_agreement.png and miou.png."""
    out = report.out
    out.mkdir(parents=True, exist_ok=True)
    for df, fname in (
        (report.pairs, "pairs.csv"),
        (report.conditions, "conditions.csv"),
        (report.classes, "per_class_iou.csv"),
        (report.match_classes, "match_classes.csv"),
    ):
        with atomic_path(out / fname) as tmp:
            df.to_csv(tmp, index=False)
    for (name, cond), cm in report.confusions.items():
        k = len(cm)
        table = pd.DataFrame(
            cm, index=pd.Index(range(k), name="label"), columns=[f"pred_{c}" for c in range(k)]
        )
        with atomic_path(out / f"confusion_{_file_part(name)}_{_file_part(cond)}.csv") as tmp:
            table.to_csv(tmp)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(_markdown(report)))
    for df, index, metric, fname in (
        (report.pairs, "condition_pair", "label_agreement", "label_agreement.png"),
        (report.conditions, "condition", "miou", "miou.png"),
    ):
        if not df.empty:
            wide = df.pivot(index=index, columns="checkpoint", values=metric)
            draw_bar_chart(
                list(wide.index), {c: wide[c].tolist() for c in wide.columns}, out / fname, title=metric
            )


_SECTIONS = (  # title, EvalReport field, index, metrics per checkpoint, columns alike for all, definition
    (
        "Per condition pair (held-out correspondences)",
        "pairs",
        ["condition_pair"],
        ["label_agreement", "chance_agreement", "kappa", "target_accuracy", "feature_accuracy"],
        ["matches", "top_label", "top_label_share"],
        "label_agreement: share of matches whose two predicted classes agree; chance_agreement: the "
        "agreement expected from the two prediction histograms at the matches; kappa: (agreement - "
        "chance) / (1 - chance); target_accuracy: target prediction at x1 against the target label; "
        "top_label(_share): the most frequent reference label at x0 (and its share of the labelled matches).",
    ),
    (
        "Per condition (held-out images, full label resolution)",
        "conditions",
        ["condition"],
        ["miou", "pixel_accuracy", "predicted_top_share"],
        ["images", "all_images"],
        "images: labelled images; predicted_top_share: share of all pixels of all images given the most "
        "predicted class (collapse check).",
    ),
    (
        "Per condition and class",
        "classes",
        ["condition", "class"],
        ["iou", "predicted_share"],
        ["label_share"],
        "predicted_share over all pixels, label_share over the labelled pixels.",
    ),
    (
        "Per condition pair and class (at the matches)",
        "match_classes",
        ["condition_pair", "class"],
        ["kappa", "label_agreement", "target_accuracy"],
        ["reference_label_matches"],
        "kappa: one-vs-rest kappa of the predicted class; label_agreement among the matches with this "
        "reference label; target_accuracy among those with this target label.",
    ),
)


def _markdown(report: EvalReport) -> list[str]:
    """The lines of report.md: one wide table per `_SECTIONS` entry, checkpoints side by side."""
    lines = ["# Seasonal robustness", ""]
    for title, attr, index, metrics, alike, definition in _SECTIONS:
        df = getattr(report, attr)
        lines += [f"## {title}", "", definition, ""]
        if df.empty:
            lines += ["(nothing to evaluate)", ""]
            continue
        wide = df.pivot(index=index, columns="checkpoint", values=metrics)
        wide.columns = [f"{m} [{c}]" for m, c in wide.columns]
        wide = df.groupby(index)[alike].first().join(wide)
        lines += [markdown_table(wide.reset_index()), ""]
    return lines


def _file_part(text: str) -> str:
    """`text` made safe as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "-"


def markdown_table(df: pd.DataFrame) -> str:
    """A Markdown table of `df` (floats with 3 decimals, missing values as '-', '|' escaped)."""
    cells = [
        [
            "-"
            if isinstance(v, float) and v != v
            else f"{v:.3f}"
            if isinstance(v, float)
            else str(v).replace("|", "\\|")
            for v in row
        ]
        for row in df.itertuples(index=False)
    ]
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    return "\n".join([head, "|" + "---|" * len(df.columns), *("| " + " | ".join(r) + " |" for r in cells)])


__all__ = [
    "EvalConfig",
    "EvalReport",
    "evaluate",
    "predict_images",
    "confusion_matrix",
    "label_at",
    "FullLabels",
    "full_resolution_counts",
    "match_predictions",
    "match_counts",
    "class_iou",
    "segmentation_scores",
    "cohen_kappa",
    "class_kappas",
    "pair_scores",
    "match_class_scores",
    "class_table",
    "write_report",
    "markdown_table",
    "load_eval_config",
]
