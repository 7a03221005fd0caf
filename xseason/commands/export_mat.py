"""`xseason export-mat DATASET --out DIR`: our dataset -> one reference-paper .mat file per pair."""

from __future__ import annotations

import argparse

from xseason.store.interop import export_mat


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder (with dataset.json)")
    parser.add_argument("--out", required=True, help="folder for the .mat files")
    parser.add_argument(
        "--pairs", type=int, nargs="+", metavar="PAIR_ID", help="only these pairs (default: all)"
    )
    parser.add_argument(
        "--pixel-offset",
        type=float,
        default=0.0,
        help="subtracted from our coordinates (-1 writes MATLAB 1-based pixels; default 0)",
    )


def run(args: argparse.Namespace) -> int:
    written = export_mat(args.dataset, args.out, pixel_offset=args.pixel_offset, pair_ids=args.pairs)
    print(f"wrote {len(written)} .mat files to {args.out}")
    return 0
