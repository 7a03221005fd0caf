"""`xseason manifest LAYOUT ... --out manifest.csv`: a dataset's layout -> a validated image manifest."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from xseason.inputs.layouts import Condition, LayoutRows, conditions_from, parse_condition_args, write_layout_manifest
from xseason.inputs.manifest import Manifest


def _conditions(args: argparse.Namespace) -> tuple[dict[str, Condition], Condition | None]:
    return conditions_from(args.condition or [], getattr(args, "conditions", None), getattr(args, "default_condition", None))


def _folder(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.folder import folder_rows

    return folder_rows(args.root, *_conditions(args), pattern=args.pattern)


def _sevenscenes(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.sevenscenes import sevenscenes_rows

    given, default = _conditions(args)
    return sevenscenes_rows(args.root, given, default or Condition("indoor"))


def _kapture(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.kapture import kapture_rows

    return kapture_rows(args.root, *_conditions(args), images=args.images, sequence_depth=args.sequence_depth)


def _cmu(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.cmu import cmu_rows

    return cmu_rows(args.root, args.slice, args.queries, parse_condition_args(args.condition or []))


def _robotcar(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.robotcar import CAMERAS, robotcar_rows

    return robotcar_rows(args.root, args.only, args.queries, args.camera or CAMERAS, args.principal_point_offset)


def _aachen(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.aachen import aachen_rows

    return aachen_rows(args.root, day_queries=args.day_queries)


def _fourseasons(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.fourseasons import fourseasons_rows

    given, _ = _conditions(args)
    return fourseasons_rows(args.root, args.only, given, pose_file=args.pose_file, unposed=args.unposed)


LAYOUTS: dict[str, tuple[str, Callable[[argparse.Namespace], LayoutRows]]] = {
    "folder": ("ROOT/<sequence>/<images>; conditions per sequence from --condition/--conditions", _folder),
    "7scenes": ("Microsoft 7-Scenes: seq-XX/frame-XXXXXX.color.* + .pose.txt (RGB camera poses)", _sevenscenes),
    "kapture": ("any kapture dataset (sensors, rigs, trajectories, records_camera)", _kapture),
    "cmu": ("(Extended) CMU Seasons slices: reference traversal + query traversals with ground truth", _cmu),
    "robotcar": ("RobotCar Seasons v2: overcast-reference (NVM poses) + other conditions (training poses)", _robotcar),
    "aachen": ("Aachen Day-Night v1.1: posed day database (COLMAP model) + night queries", _aachen),
    "4seasons": ("4Seasons: recordings of one route (GNSS poses, DSO calibration)", _fourseasons),
}
# Layouts whose conditions come from --condition / --conditions.
_CONDITION_OPTIONS = {"folder", "7scenes", "kapture", "4seasons"}


def add_layout_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options of layout `name` (everything but ROOT and the output), for `xseason manifest` and pipelines/."""
    if name in _CONDITION_OPTIONS | {"cmu"}:
        parser.add_argument("--condition", action="append", metavar="DATE=COND" if name == "cmu" else "SEQ=COND",
                            help="condition of one sequence (repeatable)" if name != "cmu"
                            else "condition of one capture date, e.g. 2010-12-21=winter-snow (repeatable)")
    if name in _CONDITION_OPTIONS:
        parser.add_argument("--conditions", metavar="FILE.csv",
                            help="CSV with header sequence,condition[,season,daytime,weather]")
    if name in ("folder", "7scenes", "kapture"):
        parser.add_argument("--default-condition", metavar="COND",
                            help="condition of every sequence not named otherwise"
                            + (" (default: indoor)" if name == "7scenes" else ""))
    if name == "folder":
        parser.add_argument("--pattern", default="*", metavar="GLOB",
                            help="image file names to take, e.g. '*.color.jpg' (default: every image)")
    if name == "kapture":
        parser.add_argument("--images", metavar="DIR", help="image folder (default: records_data/ beside the files)")
        parser.add_argument("--sequence-depth", type=int, default=1, metavar="K",
                            help="a sequence is the first K folders of an image path (default: %(default)s)")
    if name in ("cmu", "robotcar"):
        parser.add_argument("--queries", choices=("posed", "all") + (("none",) if name == "cmu" else ()), default="posed",
                            help="query images: with ground truth only (default), or all (the rest unposed)")
    if name == "cmu":
        parser.add_argument("--slice", type=int, action="append", metavar="N", help="slice to convert (repeatable; default all)")
    if name in ("robotcar", "4seasons"):
        parser.add_argument("--only", action="append", metavar="NAME",
                            help="query condition (robotcar) or recording (4seasons) to convert (repeatable; default all)")
    if name == "robotcar":
        parser.add_argument("--camera", action="append", choices=("left", "rear", "right"),
                            help="camera to convert (repeatable; default all three)")
        parser.add_argument("--principal-point-offset", type=float, default=0.0, metavar="PX",
                            help="added to cx, cy of the intrinsics files (0.5 if they use OpenCV's origin)")
    if name == "aachen":
        parser.add_argument("--day-queries", action="store_true", help="also the day queries (unposed)")
    if name == "4seasons":
        parser.add_argument("--pose-file", default="GNSSPoses.txt", help="pose file in each recording (default: %(default)s)")
        parser.add_argument("--unposed", action="store_true", help="keep images without a pose (unposed)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="layout", metavar="LAYOUT", required=True)
    for name, (text, _) in LAYOUTS.items():
        p = sub.add_parser(name, help=text, description=text + " (see xseason/layouts/ for the files read)")
        p.add_argument("root", metavar="ROOT", help="the dataset's folder")
        p.add_argument("--out", default="data_manifest.csv",
                       help="manifest to write; it must be in the image folder or above it (default: %(default)s)")
        add_layout_arguments(p, name)


def describe(manifest: Manifest) -> str:
    """What a written manifest holds: its file and image count, then one line per sequence."""
    lines = [f"wrote {manifest.path}: {len(manifest.images)} images"]
    lines += [f"  {seq}: {len(recs)} images, {recs[0].condition}, {'posed' if manifest.is_posed(seq) else 'unposed'}"
              for seq, recs in manifest.sequences().items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(describe(write_layout_manifest(args.out, LAYOUTS[args.layout][1](args))))
    return 0
