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
    parser.add_argument("--build-config", type=Path, default=Path("configs/build.yaml"))
    parser.add_argument("--train-config", type=Path, default=Path("configs/train.yaml"))
    parser.add_argument("--eval-config", type=Path, default=Path("configs/eval.yaml"))
    parser.add_argument(
        "--steps", type=int, help="training steps of each model (default: the train config's)"
    )
    add_config_arguments(
        parser, set_help="override a training setting of both runs, e.g. --set loss.kind=kl (repeatable)"
    )


def _existing(path: Path) -> Path | None:
    """A config file that is not there means that stage's defaults."""
    return path if path.is_file() else None


def run(args: argparse.Namespace) -> int:
    result = run_demo(
        DemoConfig(
            out=args.out,
            dataset=args.dataset,
            build_config=_existing(args.build_config),
            train_config=_existing(args.train_config),
            eval_config=_existing(args.eval_config),
            steps=args.steps,
            train_overrides=args.overrides,
        )
    )
    print(result.format())
    return 0
