"""`xseason build [MANIFEST] --out DIR|URI [--config FILE] [--reference CONDITION ...] [--allow-partial]
[--executor local|ray] [--address auto|HOST:PORT] [--workers N]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xseason.core.config import add_config_arguments
from xseason.core.executor import EXECUTORS
from xseason.pipeline.build import DEFAULT_MANIFEST, ensure_default_scene, load_build_config, run_build
from xseason.store.remote import dataset_location


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "manifest",
        nargs="?",
        type=Path,
        default=DEFAULT_MANIFEST,
        help=f"image manifest CSV (default: {DEFAULT_MANIFEST}, the built-in demo scene, "
        "rendered into data/demo/ when missing)",
    )
    parser.add_argument(
        "--out",
        type=dataset_location,
        required=True,
        help="dataset folder to write, or a filesystem URI (s3://bucket/ds, gs://..., any fsspec protocol): "
        "built in WORK/dataset, then uploaded",
    )
    add_config_arguments(
        parser,
        config_help="build config YAML (e.g. configs/build.yaml)",
        type=Path,
        set_help="override one config value, e.g. --set correspondences.densify=false (repeatable)",
    )
    parser.add_argument(
        "--reference",
        action="append",
        metavar="CONDITION",
        help="reference condition (repeatable; default: the condition of the manifest's first row)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        help="work folder for intermediate results (default: OUT.work; ./NAME.work for a URI)",
    )
    parser.add_argument("--image-root", type=Path, help="folder the manifest's image paths are relative to")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="where the correspondence generation runs: local (this process, the default) or ray "
        "(pip install 'xseason[ray]'); sets build.executor",
    )
    parser.add_argument(
        "--address",
        help="with --executor ray: 'auto' or HOST:PORT of a running Ray cluster (default: start a local "
        "Ray instance); sets build.ray_address",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="with --executor ray: CPUs of the local Ray instance, or tasks at once on a cluster; "
        "sets build.workers",
    )
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="write the dataset even when it is incomplete (one condition, a condition that lost all its "
        "images, no cross-condition pair); what was lost is listed in the summary and dataset.json",
    )


def run(args: argparse.Namespace) -> int:
    flags = {"executor": args.executor, "ray_address": args.address, "workers": args.workers}
    overrides = [f"build.{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    config = load_build_config(args.config, [*(args.overrides or []), *overrides])
    if args.manifest == DEFAULT_MANIFEST:
        ensure_default_scene(args.manifest)
    summary = run_build(
        args.manifest,
        args.out,
        config,
        references=args.reference,
        work_dir=args.work,
        image_root=args.image_root,
        progress=not args.quiet,
        allow_partial=args.allow_partial,
    )
    print(summary.format())
    return 0
