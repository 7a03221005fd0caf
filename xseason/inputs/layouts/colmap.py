"""Any COLMAP model (text or binary) -> manifest rows, its cameras and poses copied unchanged.

`xseason manifest colmap MODEL_DIR --condition SEQ=COND ... [--images DIR] [--sequence-depth K]`.
The model is read with pycolmap (a text model is checked line by line first, so that a malformed
line is named): its poses are world-to-camera (COLMAP's convention, as the manifest's) and its
cameras COLMAP models with COLMAP's parameters and pixel convention, as the manifest takes them.
Images without a pose in the model become unposed rows (the build registers them). A sequence is
the first `sequence_depth` folders of an image name (`model` for names without a folder); the
camera id is `colmap-<camera id>`; images are under `--images` (default: the folder `images/`
beside the model's folder, else the model's parent folder). Rows are sorted by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xseason.core.geometry import CAMERA_MODELS, Pose
from xseason.inputs.layouts import (
    Condition,
    LayoutError,
    LayoutRows,
    assign_conditions,
    floats,
    natural_key,
    pose_from_qt,
    text_lines,
)


def model_rows(model_dir: Path) -> list[dict[str, object]]:
    """One row per image of the COLMAP model at `model_dir`, sorted by name: `image`, `camera`
    (the model's camera id), `camera_model`, `camera_params` and `pose` (None without one)."""
    import pycolmap

    if not any((model_dir / f"images.{ext}").is_file() for ext in ("bin", "txt")):
        raise LayoutError(f"{model_dir}: no COLMAP model (images.bin or images.txt)")
    if not (model_dir / "images.bin").is_file():
        check_text_model(model_dir)  # pycolmap's own errors name neither file nor line
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception as exc:  # pycolmap raises plain RuntimeError/ValueError on bad files
        raise LayoutError(f"{model_dir}: cannot read the COLMAP model: {exc}") from None
    rows = []
    for image in sorted(rec.images.values(), key=lambda im: natural_key(im.name)):
        cam = rec.cameras[image.camera_id]
        if cam.model.name not in CAMERA_MODELS:
            raise LayoutError(
                f"{model_dir}: camera {image.camera_id} has model {cam.model.name}, not supported"
            )
        pose = None
        if image.has_pose:
            world = image.cam_from_world()
            pose = Pose(
                np.asarray(world.rotation.matrix(), dtype=np.float64),
                np.asarray(world.translation, dtype=np.float64),
            )
        rows.append(
            {
                "image": image.name,
                "camera": str(image.camera_id),
                "camera_model": cam.model.name,
                "camera_params": tuple(float(v) for v in cam.params),
                "pose": pose,
            }
        )
    return rows


def check_text_model(model_dir: Path) -> None:
    """Raise LayoutError at the first malformed line of a text model's cameras.txt or images.txt."""
    path = model_dir / "cameras.txt"
    for line, f in text_lines(path, sep=None):
        if len(f) < 4 or not f[0].isdigit() or f[1] not in CAMERA_MODELS or len(f) != 4 + CAMERA_MODELS[f[1]]:
            raise LayoutError(
                f"{path}:{line}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...' with a COLMAP model "
                "and its number of parameters"
            )
        floats(path, line, f[2:], "width, height and parameters")
    path = model_dir / "images.txt"
    points_line = False  # each image line is followed by its (possibly empty) POINTS2D line
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line, text in enumerate(lines, start=1):
            f = text.split()
            if points_line:
                points_line = False
                if len(f) % 3:
                    raise LayoutError(
                        f"{path}:{line}: expected POINTS2D as X Y POINT3D_ID triples, got {len(f)} values"
                    )
            elif f and not f[0].startswith("#"):
                if len(f) != 10 or not f[0].isdigit() or not f[8].isdigit():
                    raise LayoutError(
                        f"{path}:{line}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'"
                    )
                pose_from_qt(path, line, *np.split(floats(path, line, f[1:8], "QW QX QY QZ TX TY TZ"), [4]))
                points_line = True


def _images_folder(model_dir: Path, images: str | os.PathLike | None) -> Path:
    if images is not None:
        return Path(images)
    beside = model_dir.parent / "images"
    return beside if beside.is_dir() else model_dir.parent


def colmap_rows(
    model_dir: str | os.PathLike,
    conditions: Mapping[str, Condition],
    default: Condition | None = None,
    images: str | os.PathLike | None = None,
    sequence_depth: int = 1,
) -> LayoutRows:
    """Manifest rows of every image of the COLMAP model at `model_dir` (module doc)."""
    model_dir = Path(model_dir)
    if sequence_depth < 1:
        raise LayoutError(f"--sequence-depth must be >= 1, got {sequence_depth}")
    rows = model_rows(model_dir)
    sequence_of = {
        row["image"]: "/".join(str(row["image"]).split("/")[:-1][:sequence_depth]) or "model" for row in rows
    }
    sequences = list(dict.fromkeys(sequence_of.values()))
    condition = assign_conditions(sequences, conditions, default, source=f"{model_dir}: ")
    out = []
    for row in rows:
        seq = sequence_of[row["image"]]
        pose = row.pop("pose")
        out.append(
            {
                **row,
                "sequence": seq,
                **condition[seq].row(),
                "camera": f"colmap-{row['camera']}",
                **({"pose": pose} if pose is not None else {}),
            }
        )
    return LayoutRows(out, _images_folder(model_dir, images))


__all__ = ["check_text_model", "colmap_rows", "model_rows"]
