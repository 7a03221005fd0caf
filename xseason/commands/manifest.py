"""`xseason manifest LAYOUT ... --out manifest.csv`: a dataset's layout -> a validated image manifest."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..layouts import Condition, LayoutRows, parse_condition_args, read_conditions_csv, write_layout_manifest


def _conditions(args: argparse.Namespace) -> tuple[dict[str, Condition], Condition | None]:
    given = parse_condition_args(args.condition or [])
    if args.conditions:
        from_file = read_conditions_csv(args.conditions)
        given = {**from_file, **given}
    default = Condition(args.default_condition) if args.default_condition else None
    return given, default


def _folder(args: argparse.Namespace) -> LayoutRows:
    from ..layouts.folder import folder_rows

    return folder_rows(args.root, *_conditions(args))


def _sevenscenes(args: argparse.Namespace) -> LayoutRows:
    from ..layouts.sevenscenes import sevenscenes_rows

    given, default = _conditions(args)
    return sevenscenes_rows(args.root, given, default or Condition("indoor"))


def _kapture(args: argparse.Namespace) -> LayoutRows:
    from ..layouts.kapture import kapture_rows

    return kapture_rows(args.root, *_conditions(args), images=args.images, sequence_depth=args.sequence_depth)


LAYOUTS: dict[str, tuple[str, Callable[[argparse.Namespace], LayoutRows]]] = {
    "folder": ("ROOT/<sequence>/<images>; conditions per sequence from --condition/--conditions", _folder),
    "7scenes": ("Microsoft 7-Scenes: seq-XX/frame-XXXXXX.color.* + .pose.txt (RGB camera poses)", _sevenscenes),
    "kapture": ("any kapture dataset (sensors, rigs, trajectories, records_camera)", _kapture),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="layout", metavar="LAYOUT", required=True)
    for name, (text, _) in LAYOUTS.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("root", metavar="ROOT", help="the dataset's folder")
        p.add_argument("--out", default="data_manifest.csv",
                       help="manifest to write; it must be in ROOT or a folder above (default: %(default)s)")
        p.add_argument("--condition", action="append", metavar="SEQ=COND",
                       help="condition of one sequence (repeatable)")
        p.add_argument("--conditions", metavar="FILE.csv",
                       help="CSV with header sequence,condition[,season,daytime,weather]")
        p.add_argument("--default-condition", metavar="COND",
                       help="condition of every sequence not named otherwise"
                       + (" (default: indoor)" if name == "7scenes" else ""))
        if name == "kapture":
            p.add_argument("--images", metavar="DIR", help="image folder (default: records_data/ beside the files)")
            p.add_argument("--sequence-depth", type=int, default=1, metavar="K",
                           help="a sequence is the first K folders of an image path (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    layout = LAYOUTS[args.layout][1](args)
    manifest = write_layout_manifest(args.out, layout)
    print(f"wrote {manifest.path}: {len(manifest.images)} images")
    for seq, recs in manifest.sequences().items():
        posed = "posed" if manifest.is_posed(seq) else "unposed"
        print(f"  {seq}: {len(recs)} images, condition {recs[0].condition}, {posed}")
    return 0
