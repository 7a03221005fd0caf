"""Aachen Day-Night v1.1 -> manifest rows: the posed day database and the night queries.

Expected layout (https://www.visuallocalization.net, as hloc reads it):
```
ROOT/images_upright/db/*.jpg, sequences/..., query/night/...   images (names below are relative to it)
ROOT/3D-models/aachen_v_1_1/{cameras,images,points3D}.{bin,txt} COLMAP model of the day database
ROOT/queries/night_time_queries_with_intrinsics.txt             name MODEL WIDTH HEIGHT PARAMS...
ROOT/queries/day_time_queries_with_intrinsics.txt               (optional) the same for day queries
```
The model is read with pycolmap: its poses are world-to-camera (COLMAP) and its cameras
COLMAP models, copied unchanged; image names are kept. The query files give COLMAP
intrinsics per image; the dataset does not publish query poses, so queries are unposed
(the build registers them). Conditions: `day` for the database (sequence `db`), `night`
for the night queries (`query-night`), `day` for the day queries (`query-day`, optional).
Cameras: `model-<camera id>` for the database, the image name for each query.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from xseason.core.geometry import CAMERA_MODELS, Pose
from xseason.inputs.layouts import Condition, LayoutError, LayoutRows, floats, pose_from_qt, text_lines

DAY = Condition("day", daytime="day")
NIGHT = Condition("night", daytime="night")


def read_model_rows(model_dir: Path) -> list[dict[str, object]]:
    """Database rows from the COLMAP model (registered images only), sorted by name."""
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
    for image in sorted(rec.images.values(), key=lambda im: im.name):
        if not image.has_pose:
            continue
        cam = rec.cameras[image.camera_id]
        if cam.model.name not in CAMERA_MODELS:
            raise LayoutError(
                f"{model_dir}: camera {image.camera_id} has model {cam.model.name}, not supported"
            )
        world = image.cam_from_world()
        rows.append(
            {
                "image": image.name,
                "sequence": "db",
                **DAY.row(),
                "camera": f"model-{image.camera_id}",
                "camera_model": cam.model.name,
                "camera_params": tuple(float(v) for v in cam.params),
                "pose": Pose(
                    np.asarray(world.rotation.matrix(), dtype=np.float64),
                    np.asarray(world.translation, dtype=np.float64),
                ),
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


def read_query_list(path: Path, sequence: str, condition: Condition) -> list[dict[str, object]]:
    """`name MODEL WIDTH HEIGHT PARAMS...` lines -> unposed rows, one camera per image."""
    rows = []
    for line, f in text_lines(path, sep=None):
        if len(f) < 4 or f[1] not in CAMERA_MODELS or len(f) != 4 + CAMERA_MODELS[f[1]]:
            raise LayoutError(
                f"{path}:{line}: expected 'name MODEL WIDTH HEIGHT PARAMS...' with a COLMAP model "
                "and its number of parameters"
            )
        params = tuple(float(v) for v in floats(path, line, f[4:], f"{f[1]} parameters"))
        rows.append(
            {
                "image": f[0],
                "sequence": sequence,
                **condition.row(),
                "camera": f[0],
                "camera_model": f[1],
                "camera_params": params,
            }
        )
    return rows


def aachen_rows(root: str | os.PathLike, day_queries: bool = False, night_queries: bool = True) -> LayoutRows:
    """Rows for the database (posed, `day`), the night queries and optionally the day queries."""
    root = Path(root)
    images = root / "images_upright"
    if not images.is_dir():
        raise LayoutError(f"{root}: no images_upright/ folder; expected the Aachen Day-Night v1.1 layout")
    rows = read_model_rows(root / "3D-models" / "aachen_v_1_1")
    if night_queries:
        rows += read_query_list(
            root / "queries" / "night_time_queries_with_intrinsics.txt", "query-night", NIGHT
        )
    if day_queries:
        rows += read_query_list(root / "queries" / "day_time_queries_with_intrinsics.txt", "query-day", DAY)
    return LayoutRows(rows, images)
