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

from xseason.core.geometry import CAMERA_MODELS
from xseason.inputs.layouts import Condition, LayoutError, LayoutRows, floats, text_lines
from xseason.inputs.layouts.colmap import model_rows

DAY = Condition("day", daytime="day")
NIGHT = Condition("night", daytime="night")


def read_model_rows(model_dir: Path) -> list[dict[str, object]]:
    """Database rows from the COLMAP model (registered images only, sequence `db`, `day`), by name."""
    return [
        {**row, "sequence": "db", **DAY.row(), "camera": f"model-{row['camera']}"}
        for row in model_rows(model_dir)
        if row["pose"] is not None
    ]


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
