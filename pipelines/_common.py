"""What every pipeline script shares: dataset layout -> manifest -> `xseason build`.

Each script in this folder only says which layout reader it uses, which options it takes,
which build config is its default and which condition is the reference.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from xseason.errors import XSeasonError
from xseason.layouts import LayoutRows, write_layout_manifest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def run_pipeline(
    description: str,
    make_layout: Callable[[argparse.Namespace], LayoutRows],
    config: str,
    references: list[str] | None,
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None,
    argv: list[str] | None = None,
) -> int:
    """Parse the command line, write the manifest, then build the correspondence dataset."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="the dataset's root folder")
    parser.add_argument("--out", type=Path, required=True, help="correspondence dataset folder to write")
    parser.add_argument("--manifest", type=Path,
                        help="manifest to write (default: xseason_manifest.csv in the dataset's image folder)")
    parser.add_argument("--config", type=Path, default=CONFIGS / config, help="build config (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a build setting, e.g. features.max_num_features=4096")
    parser.add_argument("--reference", action="append", metavar="CONDITION",
                        help=f"reference condition(s) (default: {', '.join(references) if references else 'the first row'})")
    parser.add_argument("--manifest-only", action="store_true", help="write the manifest and stop")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        layout = make_layout(args)
        manifest = write_layout_manifest(args.manifest or layout.image_root / "xseason_manifest.csv", layout)
        print(f"manifest: {manifest.path} ({len(manifest.images)} images)")
        for seq, recs in manifest.sequences().items():
            print(f"  {seq}: {len(recs)} images, {recs[0].condition}, {'posed' if manifest.is_posed(seq) else 'unposed'}")
        if args.manifest_only:
            return 0
        from xseason.build import load_build_config, run_build

        summary = run_build(manifest, args.out, load_build_config(args.config, args.overrides),
                            references=args.reference or references)
        print(summary.format())
        return 0
    except XSeasonError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
