"""`xseason verify DATASET [--full]`: check a dataset's files against what its dataset.json records.

Default: every data file is there with its recorded size and row count, none is unrecorded, and
every table has its schema and row count (`open_dataset(verify="size")`). `--full` also compares
every file's SHA-256 and checks the values of every match (weights in (0, 1], coordinates finite and
inside their image): it reads everything. Exit 0 with one OK line, or 2 with one line per problem.
"""

from __future__ import annotations

import argparse
import sys

from xseason.store.reader import open_dataset, read_meta, verify_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder (with dataset.json)")
    parser.add_argument(
        "--full",
        action="store_true",
        help="also compare every file's SHA-256 and check every match's values (reads every byte)",
    )


def run(args: argparse.Namespace) -> int:
    meta = read_meta(args.dataset)
    problems = verify_files(args.dataset, meta, full=args.full)
    for problem in problems:
        print(f"xseason verify: error: {problem}", file=sys.stderr)
    if problems:
        return 2
    store = open_dataset(args.dataset)  # schemas and row counts
    if args.full:
        for _ in store.iter_matches():  # every row group's values (raises on the first bad one)
            pass
    counts = meta["counts"]
    checked = "sizes, rows, SHA-256, values" if args.full else "sizes, rows"
    print(
        f"OK {args.dataset}: {len(meta['files'])} files, {counts['images']} images, {counts['pairs']} pairs, "
        f"{counts['matches']} matches ({checked} checked)"
    )
    return 0
