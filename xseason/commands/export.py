"""`xseason export DATASET [--colmap DIR] [--ply FILE]`: the registered reconstruction as a COLMAP
model and the clouds as a PLY coloured by condition."""

from __future__ import annotations

import argparse
from pathlib import Path

from xseason.core.errors import XSeasonError
from xseason.reports.exports import add_build_arguments, export_colmap, export_ply, find_build_dir
from xseason.store import open_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        metavar="DATASET",
        type=Path,
        help="dataset folder (gives each sequence's condition, and the build folder)",
    )
    add_build_arguments(
        parser, "build (work) folder with registration.json and sfm/ (default: the dataset's)"
    )
    parser.add_argument("--colmap", type=Path, metavar="DIR", help="write the registered COLMAP model here")
    parser.add_argument(
        "--per-sequence",
        action="store_true",
        help="one COLMAP model per sequence in DIR/<sequence>/ instead of one merged model",
    )
    parser.add_argument("--text", action="store_true", help="COLMAP text format instead of binary")
    parser.add_argument(
        "--ply",
        type=Path,
        metavar="FILE",
        help="write all registered 3D points here, coloured by condition (+ FILE.legend.json)",
    )


def run(args: argparse.Namespace) -> int:
    if args.colmap is None and args.ply is None:
        raise XSeasonError("nothing to export: give --colmap DIR and/or --ply FILE")
    build = args.build or find_build_dir(args.dataset)
    if build is None:
        raise XSeasonError(f"{args.dataset}: its build folder is gone; give it with --build DIR")
    if args.colmap is not None:
        out = export_colmap(build, args.colmap, merged=not args.per_sequence, text=args.text)
        print(f"wrote COLMAP model{'s' if args.per_sequence else ''} to {out}")
    if args.ply is not None:
        legend = export_ply(build, args.ply, open_dataset(args.dataset).images)
        counts = ", ".join(
            f"{c['name']} {c['points']:,} (rgb {tuple(c['rgb'])})" for c in legend["conditions"]
        )
        print(f"wrote {args.ply}: {counts}")
    return 0
