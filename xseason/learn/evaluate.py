"""Evaluation for seasonal robustness, several checkpoints side by side.

For every checkpoint, on the pairs of the held-out splits (default `test`):
- per condition pair: **label agreement** (the predicted class at both ends of a match is the
  same) and **embedding matching accuracy** (the nearest neighbour, over the whole other
  image, of the reference embedding at x0 lies within `match_radius` px of x1);
- per condition: **mIoU** (and pixel accuracy) on the held-out labelled images.
Images are resized like in training (`short_side`, no crop); radii are in pixels of that
resized image. The report is `pairs.csv`, `conditions.csv`, `report.md` and two PNG charts
(`label_agreement.png`, `miou.png`) under `cfg.out`.

Charts are drawn by `xseason.plots` (OpenCV; matplotlib is not a dependency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from xseason.core.config import load_config
from xseason.core.errors import ConfigError
from xseason.core.files import atomic_path
from xseason.core.log import progress
from xseason.core.plots import draw_bar_chart
from xseason.learn.dataset import IGNORE, AugmentConfig, CorrespondenceDataset, PairFilter
from xseason.learn.losses import sample_at
from xseason.learn.models import load_model, upsample_to


@dataclass
class EvalConfig:
    """Settings of `xseason eval` (`configs/eval.yaml`)."""

    splits: list[str] = field(default_factory=lambda: ["test"])
    conditions: list[str] | None = None  # conditions of the non-reference image; None = all
    short_side: int = 120  # resize like training (0 = full resolution)
    max_matches: int = 1000  # matches per pair (random subset, fixed seed)
    match_radius: float = 4.0  # px (resized image): embedding match counted correct within this
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
    """Result tables (one row per checkpoint x condition pair / condition) and where they were written."""

    pairs: pd.DataFrame
    conditions: pd.DataFrame
    out: Path


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
    pair_rows, cond_rows = [], []
    for name, ckpt in zip(names, checkpoints):
        model = load_model(ckpt).to(device).eval()
        p, c = _evaluate_model(model, ds, cfg, device, name)
        pair_rows.append(p)
        cond_rows.append(c)
    report = EvalReport(
        pd.concat(pair_rows, ignore_index=True), pd.concat(cond_rows, ignore_index=True), Path(cfg.out)
    )
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
    """Model outputs ({"logits", "embedding"} at 1/4 resolution, on the CPU) of each image's `ds.view`.

    Every image is run once however many pairs it is in; images of equal size are batched.
    """
    by_size: dict[tuple[int, ...], list[int]] = {}
    for image_id in image_ids:
        by_size.setdefault(ds.view(image_id)[0].shape, []).append(image_id)
    out: dict[int, dict[str, torch.Tensor]] = {}
    for ids in by_size.values():
        for k in range(0, len(ids), batch_size):
            chunk = ids[k : k + batch_size]
            x = torch.from_numpy(np.stack([ds.view(i)[0] for i in chunk])).permute(0, 3, 1, 2)
            res = model(x.to(device).float().div_(255))
            for j, image_id in enumerate(chunk):
                out[image_id] = {key: v[j : j + 1].float().cpu() for key, v in res.items()}
    return out


@torch.no_grad()
def _evaluate_model(
    model, ds: CorrespondenceDataset, cfg: EvalConfig, device: torch.device, name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    k = model.cfg.num_classes
    image_ids = sorted({int(i) for i in np.unique(ds.image_ids)})
    outs = predict_images(model, ds, image_ids, device)
    pair_stats: dict[str, np.ndarray] = {}  # condition pair -> [pairs, matches, agree, emb_correct]
    for i in progress(range(len(ds)), desc=f"eval {name}", enabled=cfg.progress, unit="pair"):
        s = ds[i]
        a, b = outs[s["image_id0"]], outs[s["image_id1"]]
        both = {key: torch.cat([a[key], b[key]]) for key in a}
        size0, size1 = (ds.view(s[f"image_id{side}"])[0].shape[:2] for side in (0, 1))
        agree, correct = match_metrics(both, s["matches"], size0, size1, cfg.match_radius)
        key = f"{s['condition0']}|{s['condition1']}"
        pair_stats.setdefault(key, np.zeros(4))
        pair_stats[key] += [1, len(s["matches"]), agree, correct]
    confusion: dict[str, np.ndarray] = {}  # condition -> (k, k) label x prediction
    n_images: dict[str, int] = {}
    condition = dict(zip(ds.image_ids.ravel().tolist(), ds.conditions.ravel().tolist()))
    for image_id in image_ids:
        label = torch.from_numpy(ds.view(image_id)[1].astype(np.int64))
        keep = label != IGNORE
        if not keep.any():
            continue
        pred = upsample_to(outs[image_id]["logits"], tuple(label.shape)).argmax(1)[0]
        cm = torch.bincount(label[keep] * k + pred[keep], minlength=k * k).reshape(k, k).numpy()
        cond = condition[image_id]
        confusion[cond] = confusion.get(cond, 0) + cm
        n_images[cond] = n_images.get(cond, 0) + 1
    pairs = pd.DataFrame(
        [
            {
                "checkpoint": name,
                "condition_pair": key,
                "pairs": int(v[0]),
                "matches": int(v[1]),
                "label_agreement": v[2] / max(v[1], 1),
                "embedding_accuracy": v[3] / max(v[1], 1),
            }
            for key, v in sorted(pair_stats.items())
        ]
    )
    conds = pd.DataFrame(
        [
            {"checkpoint": name, "condition": cond, "images": n_images[cond], **segmentation_scores(cm)}
            for cond, cm in sorted(confusion.items())
        ]
    )
    return pairs, conds


def match_metrics(
    outs: dict[str, torch.Tensor],
    matches: torch.Tensor,
    size0: tuple[int, int],
    size1: tuple[int, int],
    radius: float,
) -> tuple[int, int]:
    """(label agreements, embedding matches within `radius`) of one pair's (n, 4) matches.

    `outs` holds the model's outputs for the stacked [image0, image1].
    """
    if len(matches) == 0:
        return 0, 0
    logits0 = sample_at(outs["logits"][:1], matches[None, :, :2], size0)[0]
    logits1 = sample_at(outs["logits"][1:], matches[None, :, 2:], size1)[0]
    agree = int((logits0.argmax(-1) == logits1.argmax(-1)).sum())
    f0 = F.normalize(sample_at(outs["embedding"][:1], matches[None, :, :2], size0)[0], dim=-1)
    emb1 = F.normalize(outs["embedding"][1], dim=0)  # (D, h, w)
    h, w = emb1.shape[-2:]
    best = (f0 @ emb1.flatten(1)).argmax(-1)
    # Map cell centre -> image pixel: x = (j + 0.5) * W / w - 0.5.
    xy = torch.stack([(best % w + 0.5) * size1[1] / w - 0.5, (best // w + 0.5) * size1[0] / h - 0.5], -1)
    correct = int(((xy - matches[:, 2:]).norm(dim=-1) <= radius).sum())
    return agree, correct


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
    """mIoU over classes present in labels or predictions, pixel accuracy, from a (k, k) confusion."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    return {
        "miou": float((tp[present] / union[present]).mean()) if present.any() else float("nan"),
        "pixel_accuracy": float(tp.sum() / max(confusion.sum(), 1)),
        "pixels": int(confusion.sum()),
    }


def write_report(report: EvalReport) -> None:
    """pairs.csv, conditions.csv, report.md, label_agreement.png, miou.png under `report.out`."""
    out = report.out
    out.mkdir(parents=True, exist_ok=True)
    for df, fname in ((report.pairs, "pairs.csv"), (report.conditions, "conditions.csv")):
        with atomic_path(out / fname) as tmp:
            df.to_csv(tmp, index=False)
    lines = ["# Seasonal robustness", ""]
    for title, df, index, metrics in (
        (
            "Per condition pair (held-out correspondences)",
            report.pairs,
            "condition_pair",
            ["label_agreement", "embedding_accuracy"],
        ),
        (
            "Per condition (held-out labelled images)",
            report.conditions,
            "condition",
            ["miou", "pixel_accuracy"],
        ),
    ):
        lines += [f"## {title}", ""]
        if df.empty:
            lines += ["(nothing to evaluate)", ""]
            continue
        wide = df.pivot(index=index, columns="checkpoint", values=metrics)
        wide.columns = [f"{m} [{c}]" for m, c in wide.columns]
        lines += [markdown_table(wide.reset_index()), ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    for df, index, metric, fname in (
        (report.pairs, "condition_pair", "label_agreement", "label_agreement.png"),
        (report.conditions, "condition", "miou", "miou.png"),
    ):
        if not df.empty:
            wide = df.pivot(index=index, columns="checkpoint", values=metric)
            draw_bar_chart(
                list(wide.index), {c: wide[c].tolist() for c in wide.columns}, out / fname, title=metric
            )


def markdown_table(df: pd.DataFrame) -> str:
    """A Markdown table of `df` (floats with 3 decimals, missing values as '-')."""
    cells = [
        [
            "-" if isinstance(v, float) and v != v else f"{v:.3f}" if isinstance(v, float) else str(v)
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
    "match_metrics",
    "segmentation_scores",
    "write_report",
    "markdown_table",
    "load_eval_config",
]
