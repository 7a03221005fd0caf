"""`xseason report DATASET [--build DIR] [--truth SCENE] --out DIR`: one static HTML page about a build."""

from __future__ import annotations

import argparse
from pathlib import Path

from xseason.core.config import add_config_arguments, load_config
from xseason.reports.exports import add_build_arguments, find_build_dir
from xseason.reports.report import ReportConfig, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", type=Path, help="dataset folder (with dataset.json)")
    parser.add_argument("--out", type=Path, required=True, help="report folder to write (index.html + img/)")
    add_build_arguments(
        parser,
        "build (work) folder with registration.json (default: the dataset's work folder, "
        "from dataset.json or DATASET.work, when it still exists)",
        no_build_help="leave the registration section out",
    )
    parser.add_argument(
        "--truth",
        type=Path,
        metavar="SCENE",
        help="synthetic scene folder (xseason synth): adds pixel errors against its ground truth",
    )
    parser.add_argument(
        "--examples", type=int, default=2, metavar="N", help="example pairs per condition pair (default 2)"
    )
    add_config_arguments(
        parser,
        config_help="YAML file of report settings (xseason.report.ReportConfig)",
        type=Path,
        set_help="override one report setting, e.g. --set example_max_matches=300 (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(ReportConfig, args.config, args.overrides)
    build = None if args.no_build else (args.build or find_build_dir(args.dataset))
    index = write_report(
        args.dataset,
        args.out,
        build_dir=build,
        truth_dir=args.truth,
        examples_per_pair=args.examples,
        cfg=cfg,
    )
    print(f"wrote {index}" + ("" if build else " (no build folder: registration section left out)"))
    return 0
