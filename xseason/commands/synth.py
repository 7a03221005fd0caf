"""`xseason synth`: render the built-in multi-condition street scene with exact ground truth.

`--preset random` composes a new layout per `--seed` (streets, squares, courtyards, clutter,
pedestrians and bicycles; see xseason/synth/random_world.py), with the traversals drawn from the seed.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

from xseason.core.config import add_config_arguments

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xseason.synth.config import preset_names

    parser.add_argument(
        "--preset",
        choices=preset_names(),
        default="demo",
        help="scene (default: demo); 'random' composes a new layout per --seed",
    )
    parser.add_argument(
        "--out",
        default="data/demo",
        help="output folder: new, empty or an earlier scene, replaced atomically (default: data/demo)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, 0)")
    parser.add_argument(
        "--hide-poses", action="store_true", help="write the manifest without qw..tz pose columns"
    )
    add_config_arguments(
        parser,
        config_help="YAML file of SynthConfig settings applied over the preset",
        set_help="override one setting, e.g. --set width=320 --set world.car_occupancy=0.3 (repeatable)",
    )
    parser.add_argument(
        "--root-manifest",
        default=None,
        metavar="FILE",
        help="also write a manifest at FILE with paths relative to FILE's folder "
        "(how the repository's data_manifest.csv is made)",
    )
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default: 2)"
    )


def run(args: argparse.Namespace) -> int:
    from xseason.synth import make_views, render_scene, synth_config

    cfg = synth_config(args.preset, args.config, args.overrides, args.seed)
    views = make_views(cfg)
    log.info(
        "%s scene, seed %d: %d sequences x %d images at %dx%d -> %s",
        args.preset,
        cfg.seed,
        len(cfg.sequences),
        cfg.images_per_sequence,
        cfg.width,
        cfg.height,
        args.out,
    )
    t0 = time.time()
    manifest = render_scene(
        args.out, cfg, hide_poses=args.hide_poses, root_manifest=args.root_manifest, jobs=args.jobs
    )
    out = Path(args.out)
    print(f"wrote {len(views)} images, labels, masks and depth maps in {time.time() - t0:.1f} s")
    print(f"  manifest:     {manifest}{' (poses hidden)' if args.hide_poses else ''}")
    print(f"  ground truth: {out / 'truth.json'}")
    if args.root_manifest:
        print(f"  root manifest: {args.root_manifest}")
    print(
        "  conditions:   "
        + ", ".join(f"{n} ({s.condition})" for n, s in zip(cfg.sequence_names(), cfg.sequences))
    )
    return 0
