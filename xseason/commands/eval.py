"""`xseason eval`: evaluate checkpoints for seasonal robustness, by condition pair (agreement, kappa and
accuracy at the matches) and by condition (full-resolution mIoU, per-class IoU, confusion, histograms);
prints report.md (see `xseason.learn.evaluate` for the files written)."""

from __future__ import annotations

import argparse

from xseason.core.config import add_config_arguments
from xseason.learn.evaluate import evaluate, load_eval_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoints", nargs="+", help="model.pt files written by 'xseason train'")
    parser.add_argument("--dataset", required=True, help="dataset folder made by 'xseason build'")
    parser.add_argument("--config", help="YAML file of EvalConfig settings (e.g. configs/eval.yaml)")
    parser.add_argument("--out", help="report folder (overrides the config)")
    add_config_arguments(parser, set_help="override a setting, e.g. --set splits=[val] (repeatable)")


def run(args: argparse.Namespace) -> int:
    cfg = load_eval_config(args.config, list(args.overrides) + ([f"out={args.out}"] if args.out else []))
    report = evaluate(args.checkpoints, args.dataset, cfg)
    print((report.out / "report.md").read_text())
    print(f"report written to {report.out}")
    return 0
