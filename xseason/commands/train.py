"""`xseason train`: train a segmentation network with the correspondence loss."""

from __future__ import annotations

import argparse

from xseason.core.config import add_config_arguments, packaged_config_names
from xseason.learn.train import load_train_config, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="YAML file of TrainConfig settings, or the name of a packaged one "
        f"({', '.join(packaged_config_names())}); none: the defaults",
    )
    parser.add_argument("--dataset", help="dataset folder made by 'xseason build' (overrides the config)")
    parser.add_argument("--out", help="run folder: checkpoints, metrics, curves (overrides the config)")
    add_config_arguments(
        parser, set_help="override a setting, e.g. --set corr_weight=0 --set loss.kind=kl (repeatable)"
    )
    parser.epilog = "Under torchrun (several processes) it trains with DistributedDataParallel."


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    overrides += [f"dataset={args.dataset}"] if args.dataset else []
    overrides += [f"out={args.out}"] if args.out else []
    cfg = load_train_config(args.config, overrides)
    print(f"trained {train(cfg).summary()}")
    return 0
