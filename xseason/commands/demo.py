"""`xseason demo`: the whole chain on the built-in scene (see `xseason.pipeline.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xseason.core.config import add_config_arguments
from xseason.pipeline.demo import DemoConfig, run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="folder of the runs, evaluation and report"
    )
    parser.add_argument("--dataset", type=Path, default=Path("build/demo"), help="dataset folder to build")
    for stage in ("build", "train", "eval"):
        parser.add_argument(
            f"--{stage}-config",
            type=Path,
            help=f"{stage} config file; a missing one is an error (default: configs/{stage}.yaml when "
            "present, else the packaged config or the built-in defaults)",
        )
    parser.add_argument(
        "--steps", type=int, help="training steps of each model (default: the train config's)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=DemoConfig.seeds,
        help="seeds per arm: the train config's seed and the ones after it (default: %(default)s)",
    )
    add_config_arguments(
        parser, set_help="override a training setting of every run, e.g. --set loss.kind=kl (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    result = run_demo(
        DemoConfig(
            out=args.out,
            dataset=args.dataset,
            build_config=args.build_config,
            train_config=args.train_config,
            eval_config=args.eval_config,
            steps=args.steps,
            seeds=args.seeds,
            train_overrides=args.overrides,
        )
    )
    print(result.format())
    return 0
