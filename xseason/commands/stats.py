"""`xseason stats DATASET [--json]`: pairs, matches and matches per pair by condition pair and split, and
the class histogram of the matches (reference image's label at x0) with a warning when one class
dominates."""

from __future__ import annotations

import argparse
import json

from xseason.reports.stats import (
    KEYS,
    condition_pair_stats,
    format_match_classes,
    format_stats,
    match_class_histogram,
)
from xseason.store import open_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder (with dataset.json)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON records instead of tables (one per condition pair and split, with the class "
        "histogram's columns when images have labels)",
    )


def run(args: argparse.Namespace) -> int:
    store = open_dataset(args.dataset)
    stats = condition_pair_stats(store)
    classes = match_class_histogram(store)
    if args.json:
        merged = stats.merge(classes.drop(columns="matches"), on=KEYS, how="left")
        records = json.loads(merged.to_json(orient="records"))  # NaN -> null
        print(json.dumps(records, indent=2))
    else:
        print(format_stats(stats))
        print()
        print(format_match_classes(classes))
    return 0
