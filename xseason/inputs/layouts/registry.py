"""The layouts that `xseason manifest` and the scripts of pipelines/ read: their options and readers.

`LAYOUTS` maps a layout's name to its description and its reader (parsed options ->
`LayoutRows`); `add_layout_arguments` declares a layout's options on a parser, and
`manifest_from_layout` reads a layout and writes its validated manifest. A layout's module is
imported only when it is read.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xseason.inputs.layouts import (
    Condition,
    LayoutRows,
    conditions_from,
    parse_condition_args,
    write_layout_manifest,
)
from xseason.inputs.manifest import Manifest

DEFAULT_MANIFEST_NAME = "xseason_manifest.csv"  # written in the layout's image folder unless told otherwise


@dataclass(frozen=True)
class Layout:
    """One input layout: a one-line description and its reader of the parsed options."""

    description: str
    read: Callable[[argparse.Namespace], LayoutRows]


def _conditions(args: argparse.Namespace) -> tuple[dict[str, Condition], Condition | None]:
    return conditions_from(
        args.condition or [], getattr(args, "conditions", None), getattr(args, "default_condition", None)
    )


def _folder(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.folder import folder_rows

    return folder_rows(args.root, *_conditions(args), pattern=args.pattern)


def _sevenscenes(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.sevenscenes import INDOOR, sevenscenes_rows

    given, default = _conditions(args)
    return sevenscenes_rows(args.root, given, default or INDOOR)


def _kapture(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.kapture import kapture_rows

    return kapture_rows(args.root, *_conditions(args), images=args.images, sequence_depth=args.sequence_depth)


def _colmap(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.colmap import colmap_rows

    return colmap_rows(args.root, *_conditions(args), images=args.images, sequence_depth=args.sequence_depth)


def _cmu(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.cmu import cmu_rows

    return cmu_rows(args.root, args.slice, args.queries, parse_condition_args(args.condition or []))


def _robotcar(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.robotcar import CAMERAS, robotcar_rows

    cameras = args.camera or CAMERAS
    return robotcar_rows(args.root, args.only, args.queries, cameras, args.principal_point_offset)


def _aachen(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.aachen import aachen_rows

    return aachen_rows(args.root, day_queries=args.day_queries)


def _fourseasons(args: argparse.Namespace) -> LayoutRows:
    from xseason.inputs.layouts.fourseasons import fourseasons_rows

    given, _ = _conditions(args)
    return fourseasons_rows(args.root, args.only, given, pose_file=args.pose_file, unposed=args.unposed)


LAYOUTS: dict[str, Layout] = {
    "folder": Layout(
        "ROOT/<sequence>/<images>; conditions per sequence from --condition/--conditions", _folder
    ),
    "7scenes": Layout(
        "Microsoft 7-Scenes: seq-XX/frame-XXXXXX.color.* + .pose.txt (RGB camera poses)", _sevenscenes
    ),
    "kapture": Layout("any kapture dataset (sensors, rigs, trajectories, records_camera)", _kapture),
    "colmap": Layout(
        "any COLMAP model (text or binary): cameras and poses; sequences from image folders", _colmap
    ),
    "cmu": Layout(
        "(Extended) CMU Seasons slices: reference traversal + query traversals with ground truth", _cmu
    ),
    "robotcar": Layout(
        "RobotCar Seasons v2: overcast-reference (NVM poses) + other conditions (training poses)", _robotcar
    ),
    "aachen": Layout("Aachen Day-Night v1.1: posed day database (COLMAP model) + night queries", _aachen),
    "4seasons": Layout("4Seasons: recordings of one route (GNSS poses, DSO calibration)", _fourseasons),
}
# Layouts whose conditions come from --condition / --conditions.
_CONDITION_OPTIONS = {"folder", "7scenes", "kapture", "colmap", "4seasons"}


def add_layout_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """The options of layout `name` (all but ROOT and the output), for `xseason manifest` and pipelines/."""
    if name in _CONDITION_OPTIONS | {"cmu"}:
        parser.add_argument(
            "--condition",
            action="append",
            metavar="DATE=COND" if name == "cmu" else "SEQ=COND",
            help="condition of one sequence (repeatable)"
            if name != "cmu"
            else "condition of one capture date, e.g. 2010-12-21=winter-snow (repeatable)",
        )
    if name in _CONDITION_OPTIONS:
        parser.add_argument(
            "--conditions",
            metavar="FILE.csv",
            help="CSV with header sequence,condition[,season,daytime,weather]",
        )
    if name in ("folder", "7scenes", "kapture", "colmap"):
        parser.add_argument(
            "--default-condition",
            metavar="COND",
            help="condition of every sequence not named otherwise"
            + (" (default: indoor)" if name == "7scenes" else ""),
        )
    if name == "folder":
        parser.add_argument(
            "--pattern",
            default="*",
            metavar="GLOB",
            help="image file names to take, e.g. '*.color.jpg' (default: every image)",
        )
    if name in ("kapture", "colmap"):
        parser.add_argument(
            "--images",
            metavar="DIR",
            help="image folder (default: records_data/ beside the files)"
            if name == "kapture"
            else "image folder (default: images/ beside the model's folder, else its parent)",
        )
        parser.add_argument(
            "--sequence-depth",
            type=int,
            default=1,
            metavar="K",
            help="a sequence is the first K folders of an image path (default: %(default)s)",
        )
    if name in ("cmu", "robotcar"):
        parser.add_argument(
            "--queries",
            choices=("posed", "all") + (("none",) if name == "cmu" else ()),
            default="posed",
            help="query images: with ground truth only (default), or all (the rest unposed)",
        )
    if name == "cmu":
        _add_selection(parser, "--slice", "slice", type=int, metavar="N")
    if name in ("robotcar", "4seasons"):
        _add_selection(parser, "--only", "query condition (robotcar) or recording (4seasons)", metavar="NAME")
    if name == "robotcar":
        _add_selection(parser, "--camera", "camera", "all three", choices=("left", "rear", "right"))
        parser.add_argument(
            "--principal-point-offset",
            type=float,
            default=0.0,
            metavar="PX",
            help="added to cx, cy of the intrinsics files (0.5 if they use OpenCV's origin)",
        )
    if name == "aachen":
        parser.add_argument("--day-queries", action="store_true", help="also the day queries (unposed)")
    if name == "4seasons":
        parser.add_argument(
            "--pose-file", default="GNSSPoses.txt", help="pose file in each recording (default: %(default)s)"
        )
        parser.add_argument("--unposed", action="store_true", help="keep images without a pose (unposed)")


def _add_selection(
    parser: argparse.ArgumentParser, flag: str, what: str, default: str = "all", **settings: Any
) -> None:
    """An option naming one part of the dataset to convert, given once per part (`default`: what
    is converted without it)."""
    parser.add_argument(
        flag, action="append", help=f"{what} to convert (repeatable; default {default})", **settings
    )


def manifest_from_layout(
    name: str, args: argparse.Namespace, out: str | os.PathLike | None = None
) -> Manifest:
    """Read layout `name` with the parsed options `args` and write its validated manifest at `out`
    (default: `DEFAULT_MANIFEST_NAME` in the layout's image folder)."""
    rows = LAYOUTS[name].read(args)
    return write_layout_manifest(out if out is not None else rows.image_root / DEFAULT_MANIFEST_NAME, rows)


__all__ = ["DEFAULT_MANIFEST_NAME", "LAYOUTS", "Layout", "add_layout_arguments", "manifest_from_layout"]
