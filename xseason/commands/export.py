"""`xseason export DATASET [--colmap DIR] [--ply FILE] [--megadepth DIR] [--hloc DIR] [--colmap-db FILE]
[--kapture DIR]`: the registered reconstruction as a COLMAP model, the clouds as a PLY coloured by
condition, and the ground-truth matches in the formats matcher tools read (reports/matcher_exports.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xseason.core.errors import XSeasonError
from xseason.reports.exports import add_build_arguments, export_colmap, export_ply, find_build_dir
from xseason.reports.matcher_exports import EXPORTERS
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
    for name, kind, what in (
        ("megadepth", "DIR", "LoFTR/MegaDepth-style scene_info.npz + gt_matches.npz"),
        ("hloc", "DIR", "hloc features.h5, matches.h5 and pairs.txt of the ground-truth matches"),
        ("colmap-db", "FILE", "a COLMAP database with the ground-truth matches as verified geometries"),
        ("kapture", "DIR", "kapture reconstruction/keypoints and matches of the ground-truth matches"),
    ):
        parser.add_argument(f"--{name}", type=Path, metavar=kind, help=f"write {what} here")


def run(args: argparse.Namespace) -> int:
    matcher_outputs = {name: getattr(args, name.replace("-", "_")) for name in EXPORTERS}
    matcher_outputs = {name: path for name, path in matcher_outputs.items() if path is not None}
    if args.colmap is None and args.ply is None and not matcher_outputs:
        raise XSeasonError(
            "nothing to export: give --colmap DIR, --ply FILE, --megadepth DIR, --hloc DIR, "
            "--colmap-db FILE and/or --kapture DIR"
        )
    if matcher_outputs:
        store = open_dataset(args.dataset)
        for name, path in matcher_outputs.items():
            EXPORTERS[name](store, path)
            print(f"wrote the ground-truth matches ({name}) to {path}")
    if args.colmap is None and args.ply is None:
        return 0
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
