"""`xseason stats DATASET [--json]`: pairs, matches and matches per pair by condition pair and split."""

from __future__ import annotations

import argparse
import json

from xseason.reports.stats import condition_pair_stats, format_stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder (with dataset.json)")
    parser.add_argument("--json", action="store_true", help="print JSON records instead of a table")


def run(args: argparse.Namespace) -> int:
    stats = condition_pair_stats(args.dataset)
    if args.json:
        records = json.loads(stats.to_json(orient="records"))  # NaN -> null
        print(json.dumps(records, indent=2))
    else:
        print(format_stats(stats))
    return 0
