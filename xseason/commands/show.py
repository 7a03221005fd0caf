"""`xseason show DATASET PAIR_ID --out pair.png`: draw an image pair with a sample of its matches."""

from __future__ import annotations

import argparse

from xseason.reports.show import draw_pair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder (with dataset.json)")
    parser.add_argument("pair_id", metavar="PAIR_ID", type=int)
    parser.add_argument("--out", required=True, help="image to write (.png or .jpg)")
    parser.add_argument(
        "--max-matches", type=int, default=200, help="random sample of matches drawn (default 200)"
    )
    parser.add_argument(
        "--color",
        choices=["weight", "error"],
        help="colour by weight, or by error against the ground truth (needs --truth); "
        "default: error with --truth, else weight",
    )
    parser.add_argument("--truth", metavar="SCENE_DIR", help="synthetic scene folder with ground truth")
    parser.add_argument("--seed", type=int, default=0, help="seed of the match sample")


def run(args: argparse.Namespace) -> int:
    color = args.color or ("error" if args.truth else "weight")
    out = draw_pair(
        args.dataset,
        args.pair_id,
        args.out,
        max_matches=args.max_matches,
        color=color,
        truth_dir=args.truth,
        seed=args.seed,
    )
    print(f"wrote {out}")
    return 0
