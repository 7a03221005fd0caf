"""`xseason manifest LAYOUT ... --out manifest.csv`: a dataset's layout -> a validated image manifest."""

from __future__ import annotations

import argparse

from xseason.inputs.layouts.registry import LAYOUTS, add_layout_arguments, manifest_from_layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="layout", metavar="LAYOUT", required=True)
    for name, layout in LAYOUTS.items():
        description = layout.description + " (see xseason/inputs/layouts/ for the files read)"
        p = sub.add_parser(name, help=layout.description, description=description)
        p.add_argument("root", metavar="ROOT", help="the dataset's folder")
        p.add_argument(
            "--out",
            default="data_manifest.csv",
            help="manifest to write; it must be in the image folder or above it (default: %(default)s)",
        )
        add_layout_arguments(p, name)


def run(args: argparse.Namespace) -> int:
    print(f"wrote {manifest_from_layout(args.layout, args, args.out).describe()}")
    return 0
