"""`xseason import-mat MAT_DIR --out DATASET --image-root DIR`: the paper's .mat files -> our format."""

from __future__ import annotations

import argparse

from xseason.store.interop import ImportConfig, import_mat


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mat_dir", metavar="MAT_DIR", help="folder of per-pair .mat files (MATLAB v7.3)")
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument(
        "--image-root", required=True, help="folder the .mat files' image paths are relative to"
    )
    parser.add_argument("--reference-condition", help="reference condition when the file names do not say")
    parser.add_argument("--condition", help="the other condition when the file names do not say")
    parser.add_argument(
        "--pixel-offset",
        type=float,
        default=0.0,
        help="added to the files' pixel coordinates (-1 for MATLAB 1-based files; default 0)",
    )
    parser.add_argument(
        "--place-block",
        type=int,
        default=ImportConfig.place_block,
        help="consecutive reference images per place, for the split when names carry no slice",
    )
    parser.add_argument(
        "--no-image-sizes", action="store_true", help="do not read image files for width/height"
    )


def run(args: argparse.Namespace) -> int:
    cfg = ImportConfig(
        reference_condition=args.reference_condition,
        condition=args.condition,
        pixel_offset=args.pixel_offset,
        place_block=args.place_block,
        read_image_sizes=not args.no_image_sizes,
    )
    out = import_mat(args.mat_dir, args.out, args.image_root, cfg)
    print(f"wrote {out}")
    return 0
