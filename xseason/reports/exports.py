"""Exports of a build: the registered reconstruction as a COLMAP model, the clouds as a coloured PLY.

Both read the build folder's registered models (``xseason.sfm.registration.load_registered``: one
pycolmap model per sequence, all in the common world frame) or take such a mapping directly.

Colours: every condition gets one colour of ``CONDITION_PALETTE`` (Paul Tol's "bright" scheme,
colour-blind safe and readable on white and on black), assigned to the condition names in sorted
order, so that a set of conditions is always drawn the same way (the report's legend, the PLY,
and the report's top view agree). More conditions than colours reuse the palette from the start.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pycolmap

from xseason.core.colmap import camera_from_colmap, camera_to_colmap, copy_points, is_colmap_model
from xseason.core.errors import XSeasonError
from xseason.core.files import atomic_path, write_json
from xseason.core.log import progress
from xseason.inputs.manifest import Manifest
from xseason.sfm.paths import BuildPaths, sequence_folder
from xseason.sfm.registration import load_registered
from xseason.store import UNKNOWN_CONDITION, open_dataset

# Paul Tol's "bright" qualitative scheme (personal.sron.nl/~pault), RGB 0-255.
CONDITION_PALETTE: tuple[tuple[int, int, int], ...] = (
    (68, 119, 170),  # blue
    (238, 102, 119),  # red
    (34, 136, 51),  # green
    (204, 187, 68),  # yellow
    (102, 204, 238),  # cyan
    (170, 51, 119),  # purple
    (187, 187, 187),  # grey
)

Models = Mapping[str, pycolmap.Reconstruction]
ModelSource = str | os.PathLike | Models


class ExportError(XSeasonError):
    """A build folder cannot be exported (missing, empty, or conditions unknown)."""


def condition_colors(conditions: Iterable[str]) -> dict[str, tuple[int, int, int]]:
    """Condition -> RGB (0-255) from CONDITION_PALETTE, by sorted condition name."""
    names = sorted(set(conditions))
    return {name: CONDITION_PALETTE[i % len(CONDITION_PALETTE)] for i, name in enumerate(names)}


def sequence_conditions(source: Manifest | pd.DataFrame | Mapping[str, str]) -> dict[str, str]:
    """Sequence -> condition, from a manifest, a dataset's images table, or an explicit mapping."""
    if isinstance(source, Manifest):
        return {seq: recs[0].condition for seq, recs in source.sequences().items()}
    if isinstance(source, pd.DataFrame):
        rows = source.dropna(subset=["sequence"])
        return dict(zip(rows["sequence"], rows["condition"].fillna(UNKNOWN_CONDITION)))
    return dict(source)


def find_build_dir(dataset_dir: str | os.PathLike) -> Path | None:
    """The build (work) folder of a dataset, if it still exists: dataset.json's `work_dir`, else
    `<dataset>.work` beside it; None when neither holds a registration.json."""
    dataset_dir = Path(dataset_dir)
    meta = open_dataset(dataset_dir).meta
    candidates = [BuildPaths(meta["work_dir"])] if meta.get("work_dir") else []
    for paths in [*candidates, BuildPaths.beside(dataset_dir)]:
        if paths.registration.is_file():
            return paths.root
    return None


def add_build_arguments(
    parser: argparse.ArgumentParser, help_text: str, no_build_help: str | None = None
) -> None:
    """The option `--build DIR` of a command that reads a dataset's build (work) folder (without
    it, the command takes `find_build_dir(DATASET)`), and `--no-build`, exclusive with it, when
    `no_build_help` is given."""
    group = parser.add_mutually_exclusive_group() if no_build_help is not None else parser
    group.add_argument("--build", type=Path, metavar="DIR", help=help_text)
    if no_build_help is not None:
        group.add_argument("--no-build", action="store_true", help=no_build_help)


def load_models(source: ModelSource) -> dict[str, pycolmap.Reconstruction]:
    """The registered per-sequence models: a build folder (read with load_registered) or a mapping."""
    if isinstance(source, Mapping):
        models = dict(source)
    else:
        build_dir = Path(source)
        if not build_dir.is_dir():
            raise ExportError(f"{build_dir}: build folder not found")
        models = load_registered(BuildPaths(build_dir))
    if not models:
        where = "models" if isinstance(source, Mapping) else source
        raise ExportError(f"{where}: no registered sequence to export")
    return models


def model_points(rec: pycolmap.Reconstruction) -> np.ndarray:
    """(N, 3) float64 positions of a model's 3D points (pycolmap offers no bulk accessor)."""
    return np.array([p.xyz for p in rec.points3D.values()], dtype=np.float64).reshape(-1, 3)


def merge_models(models: Models) -> pycolmap.Reconstruction:
    """One model holding every registered image and 3D point of `models` (already in one frame).

    Cameras and images are renumbered (sequence by sequence, in the mapping's order); image names,
    keypoints, poses, point positions, colours and tracks are kept. Unregistered images are left out.
    """
    merged = pycolmap.Reconstruction()
    names: set[str] = set()
    next_camera, next_image = 1, 1
    for sequence, rec in progress(models.items(), desc="merge models", unit="sequence", leave=False):
        camera_ids: dict[int, int] = {}
        for old_id, cam in rec.cameras.items():
            camera_ids[old_id] = next_camera
            merged.add_camera_with_trivial_rig(camera_to_colmap(camera_from_colmap(cam), next_camera))
            next_camera += 1
        image_ids: dict[int, int] = {}
        for old_id in sorted(rec.reg_image_ids()):
            img = rec.image(old_id)
            if img.name in names:
                raise ExportError(
                    f"image name {img.name!r} occurs in two sequences (second: {sequence!r}); "
                    "cannot merge them into one COLMAP model"
                )
            names.add(img.name)
            image_ids[old_id] = next_image
            keypoints = np.array([p.xy for p in img.points2D], np.float64).reshape(-1, 2)  # no bulk accessor
            new = pycolmap.Image(
                name=img.name, keypoints=keypoints, camera_id=camera_ids[img.camera_id], image_id=next_image
            )
            merged.add_image_with_trivial_frame(new, img.cam_from_world())
            next_image += 1
        copy_points(rec, merged, image_ids, keep_ids=False)
    merged.update_point_3d_errors()
    return merged


def _check_text_names(models: Models) -> None:
    """Raise an `ExportError` naming the first image (sequence by sequence, by image id) whose name
    holds whitespace: COLMAP's text format cuts names at the first space, so it would read such a
    model back with the wrong image names."""
    for sequence, rec in models.items():
        for image_id in sorted(rec.images):
            name = rec.image(image_id).name
            if any(c.isspace() for c in name):
                raise ExportError(
                    f"image {name!r} (sequence {sequence!r}) has whitespace in its name, which COLMAP's "
                    "text format cannot hold (it reads a name only up to the first space); "
                    "export the binary format instead (the default: without --text)"
                )


def export_colmap(
    source: ModelSource, out_dir: str | os.PathLike, merged: bool = True, text: bool = False
) -> Path:
    """Write the registered reconstruction as COLMAP model(s) in the common world frame.

    `merged`: one model of all sequences at `out_dir`; otherwise one model per sequence at
    `out_dir/<folder>/` (the build's file-system-safe sequence folder name, `sequence_folder`).
    `text`: COLMAP's text format instead of binary; it cannot hold an image name with whitespace
    (COLMAP reads the name only up to the first space), so such a name is an `ExportError`, raised
    before anything is written. Written atomically; what is at `out_dir` must be nothing, an empty
    folder or COLMAP model(s) (an earlier export), else an `OutputError`.
    """
    models = load_models(source)
    if text:
        _check_text_names(models)
    out_dir = Path(out_dir)
    with atomic_path(out_dir, "folder", replace_only_if=is_colmap_model, what="COLMAP model(s)") as tmp:
        tmp.mkdir(parents=True)
        parts = {"": merge_models(models)} if merged else {sequence_folder(s): m for s, m in models.items()}
        for name, rec in parts.items():
            folder = tmp / name
            folder.mkdir(parents=True, exist_ok=True)
            (rec.write_text if text else rec.write)(str(folder))
    return out_dir


def export_ply(
    source: ModelSource, path: str | os.PathLike, conditions: Manifest | pd.DataFrame | Mapping[str, str]
) -> dict[str, object]:
    """Write all registered 3D points as one PLY, coloured by condition; return its legend.

    Per vertex: ``x y z`` (float32, common frame), ``red green blue`` (the condition's colour),
    ``condition`` and ``sequence`` (int32 indices into the legend). The legend is also written
    beside the PLY as ``<name>.legend.json``.
    """
    import open3d as o3d

    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise ExportError(f"{path}: the point cloud file name must end in .ply")
    models = load_models(source)
    seq_cond = sequence_conditions(conditions)
    missing = sorted(set(models) - set(seq_cond))
    if missing:
        raise ExportError(f"no condition known for sequence(s) {', '.join(map(repr, missing))}")
    colors = condition_colors(seq_cond.values())  # every known condition: the same colours as the report
    cond_names = list(colors)
    seq_names = list(models)
    xyz = [model_points(models[s]) for s in seq_names]
    counts = np.array([x.shape[0] for x in xyz])
    if counts.sum() == 0:
        raise ExportError("the registered models hold no 3D point")
    seq_index = np.repeat(np.arange(len(seq_names), dtype=np.int32), counts)
    cond_of_seq = np.array([cond_names.index(seq_cond[s]) for s in seq_names], dtype=np.int32)
    cond_index = cond_of_seq[seq_index]
    palette = np.array([colors[c] for c in cond_names], dtype=np.uint8)

    cloud = o3d.t.geometry.PointCloud(o3d.core.Tensor(np.concatenate(xyz).astype(np.float32)))
    cloud.point.colors = o3d.core.Tensor(palette[cond_index])
    cloud.point.condition = o3d.core.Tensor(cond_index.reshape(-1, 1))
    cloud.point.sequence = o3d.core.Tensor(seq_index.reshape(-1, 1))
    legend = {
        "conditions": [
            {"index": i, "name": c, "rgb": list(colors[c]), "points": int(counts[cond_of_seq == i].sum())}
            for i, c in enumerate(cond_names)
        ],
        "sequences": [
            {"index": i, "name": s, "condition": seq_cond[s], "points": int(counts[i])}
            for i, s in enumerate(seq_names)
        ],
    }
    with atomic_path(path) as tmp:
        if not o3d.t.io.write_point_cloud(str(tmp), cloud):
            raise ExportError(f"{path}: open3d could not write the point cloud")
    write_json(path.with_suffix(".legend.json"), legend)
    return legend


__all__ = [
    "CONDITION_PALETTE",
    "ExportError",
    "condition_colors",
    "sequence_conditions",
    "find_build_dir",
    "add_build_arguments",
    "load_models",
    "model_points",
    "merge_models",
    "export_colmap",
    "export_ply",
]
