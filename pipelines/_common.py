"""What every pipeline script shares: dataset layout -> manifest -> `xseason build`.

Each script in this folder only says which layout it reads (a layout of `xseason manifest`,
whose options it takes), which build config is its default and which condition is the reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xseason.core.config import add_config_arguments
from xseason.core.errors import XSeasonError
from xseason.core.log import configure
from xseason.inputs.layouts.registry import DEFAULT_MANIFEST_NAME, add_layout_arguments, manifest_from_layout

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run_pipeline(
    description: str, layout: str, config: str, references: list[str] | None, argv: list[str] | None = None
) -> int:
    """Parse the command line, write the manifest of `layout` (a layout of `xseason manifest`), then build."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", metavar="DATASET", type=Path, help="the dataset's root folder")
    parser.add_argument("--out", type=Path, required=True, help="correspondence dataset folder to write")
    parser.add_argument(
        "--manifest",
        type=Path,
        help=f"manifest to write (default: {DEFAULT_MANIFEST_NAME} in the dataset's image folder)",
    )
    add_config_arguments(
        parser,
        config_help="build config (default: %(default)s)",
        type=Path,
        default=CONFIGS / config,
        set_help="override a build setting, e.g. features.max_num_features=4096",
    )
    parser.add_argument(
        "--reference",
        action="append",
        metavar="CONDITION",
        help=f"reference condition(s) (default: {', '.join(references) if references else 'the first row'})",
    )
    parser.add_argument("--manifest-only", action="store_true", help="write the manifest and stop")
    add_layout_arguments(parser, layout)
    args = parser.parse_args(argv)
    configure()
    try:
        manifest = manifest_from_layout(layout, args, args.manifest)
        print(f"wrote {manifest.describe()}")
        if args.manifest_only:
            return 0
        from xseason.pipeline.build import load_build_config, run_build

        summary = run_build(
            manifest,
            args.out,
            load_build_config(args.config, args.overrides),
            references=args.reference or references,
        )
        print(summary.format())
        return 0
    except XSeasonError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
