"""Render a whole scene to disk: images, manifest (docs/FORMAT.md §2) and ground truth.

Layout of a scene folder (all paths relative to it):

    manifest.csv                 the image manifest (poses omitted with hide_poses)
    images/<sequence>/<i>.png    RGB, 8 bit, lossless
    labels/<sequence>/<i>.png    uint8 class ids (see CLASS_NAMES), the manifest's `label`
    masks/<sequence>/<i>.png     uint8, 255 on moving objects (MOVING_CLASSES: cars, people,
                                 bicycles), the manifest's `mask`
    depth/<sequence>/<i>.npy     float32 z-depth in metres at pixel centres, 0 = sky (no hit)
    truth.json                   format, classes, config, and per image: sequence, condition,
                                 camera (COLMAP model/params), world-to-camera qvec/tvec and
                                 the paths of its depth / label / mask files

truth.json always holds the true poses, also when the manifest hides them.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import cv2
import numpy as np

from xseason.core.config import to_dict
from xseason.core.errors import XSeasonError
from xseason.core.files import atomic_path, write_json
from xseason.core.log import progress as progress_bar
from xseason.inputs import manifest
from xseason.synth.cameras import View, make_views
from xseason.synth.conditions import CONDITIONS
from xseason.synth.config import SynthConfig, synth_config
from xseason.synth.random_world import scene_world
from xseason.synth.render import Rendered, SequenceScene, render_view
from xseason.synth.world import CLASS_NAMES, MOVING_CLASSES

TRUTH_FORMAT = "xseason-synth-truth"
TRUTH_VERSION = 1
POSE_COLUMNS = ["qw", "qx", "qy", "qz", "tx", "ty", "tz"]


def _fmt(v: float) -> str:
    return f"{float(v):.10g}"


def _truth_paths(image: str) -> dict[str, str]:
    stem = image[len("images/") : -len(".png")]
    return {"depth": f"depth/{stem}.npy", "label": f"labels/{stem}.png", "mask": f"masks/{stem}.png"}


def manifest_rows(
    views: list[View], cfg: SynthConfig, prefix: str = "", hide_poses: bool = False
) -> list[dict[str, str]]:
    """Manifest rows of `views`; file paths get `prefix` (e.g. "data/demo/" for a repo-root manifest)."""
    rows = []
    for v in views:
        cond = CONDITIONS[v.condition]
        paths = _truth_paths(v.image)
        prior = v.pose.center + np.random.default_rng([cfg.seed, 8, v.seq_index, v.index]).normal(
            0, cfg.prior_sigma, 3
        )
        row = {
            "image": prefix + v.image,
            "sequence": v.sequence,
            "condition": v.condition,
            "season": cond.season,
            "daytime": cond.daytime,
            "weather": cond.weather,
            "timestamp": _fmt(v.timestamp),
            "camera": v.sequence,
            "camera_model": v.camera.model,
            "camera_params": " ".join(_fmt(p) for p in v.camera.params),
        }
        if not hide_poses:
            row |= dict(zip(POSE_COLUMNS, map(_fmt, [*v.pose.qvec, *v.pose.t])))
        row |= {
            "prior_x": _fmt(prior[0]),
            "prior_y": _fmt(prior[1]),
            "prior_z": _fmt(prior[2]),
            "mask": prefix + paths["mask"],
            "label": prefix + paths["label"],
        }
        rows.append(row)
    return rows


def write_manifest(
    path: str | Path, views: list[View], cfg: SynthConfig, prefix: str = "", hide_poses: bool = False
) -> Path:
    """Write the manifest CSV atomically (deterministic bytes)."""
    return manifest.write_manifest(path, manifest_rows(views, cfg, prefix, hide_poses))


def is_scene(folder: str | Path) -> bool:
    """True when `folder` holds a scene `render_scene` wrote (its truth.json names the format)."""
    try:
        truth = json.loads((Path(folder) / "truth.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(truth, dict) and truth.get("format") == TRUTH_FORMAT


def truth_record(views: list[View], cfg: SynthConfig) -> dict:
    """The content of truth.json."""
    return {
        "format": TRUTH_FORMAT,
        "version": TRUTH_VERSION,
        "classes": {str(k): v for k, v in CLASS_NAMES.items()},
        "moving_classes": sorted(MOVING_CLASSES),
        "ignore_label": 255,
        "depth": (
            "float32 z-depth (m) in the camera frame at pixel centres; 0 where the ray hits nothing (sky)"
        ),
        "pose": (
            "world-to-camera, x_cam = R(qvec) x_world + tvec, COLMAP convention; world z up, street along +x"
        ),
        "config": to_dict(cfg),
        "images": {
            v.image: {
                "sequence": v.sequence,
                "condition": v.condition,
                "camera": {
                    "model": v.camera.model,
                    "width": v.camera.width,
                    "height": v.camera.height,
                    "params": list(v.camera.params),
                },
                "qvec": v.pose.qvec.tolist(),
                "tvec": v.pose.t.tolist(),
                **_truth_paths(v.image),
            }
            for v in views
        },
    }


def _select(views: list[View], images: list[str] | None) -> list[View]:
    if images is None:
        return views
    by_name = {v.image: v for v in views}
    missing = [i for i in images if i not in by_name]
    if missing:
        raise XSeasonError(
            f"not images of this scene: {', '.join(missing[:5])} (names look like {views[0].image})"
        )
    return [by_name[i] for i in images]


def iter_renders(cfg: SynthConfig, images: list[str] | None = None, progress: bool = False):
    """Yield (View, Rendered) for all images, or for the named ones
    (manifest names, e.g. 'images/00-summer-day/0003.png').

    The world is built once; each sequence's ray-casting scene once.
    """
    views = _select(make_views(cfg), images)
    world = scene_world(cfg)
    scene, current = None, -1
    ordered = sorted(views, key=lambda v: (v.seq_index, v.index))
    for v in progress_bar(ordered, desc="synth", unit="img", enabled=progress):
        if v.seq_index != current:
            scene, current = SequenceScene(world, cfg, v.seq_index), v.seq_index
        yield v, render_view(scene, v, cfg.supersample, cfg.seed)


def render_images(cfg: SynthConfig, images: list[str]) -> dict[str, Rendered]:
    """Render selected images of a scene in memory (no files), keyed by manifest name."""
    return {v.image: r for v, r in iter_renders(cfg, images)}


def _write_sequence(out: Path, cfg: SynthConfig, seq_index: int) -> int:
    """Render and write every image of one sequence into `out` (a worker task); returns the count."""
    names = [v.image for v in make_views(cfg) if v.seq_index == seq_index]
    for v, r in iter_renders(cfg, names):
        paths = _truth_paths(v.image)
        for rel in (v.image, *paths.values()):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / v.image), r.rgb[..., ::-1])
        cv2.imwrite(str(out / paths["label"]), r.label)
        cv2.imwrite(str(out / paths["mask"]), r.moving.astype(np.uint8) * 255)
        np.save(out / paths["depth"], r.depth)
    return len(names)


def render_scene(
    out: str | Path,
    cfg: SynthConfig | str = "demo",
    hide_poses: bool = False,
    *,
    seed: int | None = None,
    root_manifest: str | Path | None = None,
    jobs: int = 2,
    progress: bool = True,
) -> Path:
    """Render the whole scene into folder `out` (atomically; what is there must be nothing, an empty
    folder or an earlier scene, `is_scene`, else an `OutputError`); returns the manifest path.

    `cfg` is a SynthConfig or a preset name ("tiny", "demo", "random"); `seed` (if given) replaces its
    seed.

    Sequences are rendered by `jobs` worker processes (1 = in this process); the bytes do not
    depend on `jobs`. `root_manifest`: also write a manifest at that path whose file paths are
    relative to its folder (used for the repository's data_manifest.csv).
    """
    out = Path(out)
    if isinstance(cfg, str):
        cfg = synth_config(cfg, seed=seed)  # the random preset draws its traversals from the seed
    elif seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    views = make_views(cfg)
    n_seq = len(cfg.sequences)
    bar = progress_bar(total=len(views), desc="synth", unit="img", enabled=progress)
    with atomic_path(out, "folder", replace_only_if=is_scene, what="a rendered scene") as tmp, bar:
        tmp.mkdir()
        if jobs <= 1 or n_seq == 1:
            for si in range(n_seq):
                bar.update(_write_sequence(tmp, cfg, si))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(jobs, n_seq), mp_context=ctx) as pool:
                for fut in as_completed([pool.submit(_write_sequence, tmp, cfg, si) for si in range(n_seq)]):
                    bar.update(fut.result())
        write_json(tmp / "truth.json", truth_record(views, cfg))
        write_manifest(tmp / "manifest.csv", views, cfg, hide_poses=hide_poses)
    if root_manifest is not None:
        prefix = Path(os.path.relpath(out.resolve(), Path(root_manifest).resolve().parent)).as_posix() + "/"
        write_manifest(root_manifest, views, cfg, prefix=prefix, hide_poses=hide_poses)
    return out / "manifest.csv"
