"""RobotCar Seasons v2 -> manifest rows: the overcast-reference run against the other conditions.

Expected layout (https://www.visuallocalization.net, RobotCar Seasons v2):
```
ROOT/images/<condition>/<camera>/<timestamp>.jpg        camera: left, rear, right; timestamp in microseconds
ROOT/intrinsics/<camera>_intrinsics.txt                 'fx 400.0', 'fy ..', 'cx ..', 'cy ..' (1024x1024)
ROOT/3D-models/all-merged/all.nvm                        reference poses of overcast-reference (NVM_V3)
ROOT/robotcar_v2_train.txt                               released training poses of query images
```
Conventions:
- NVM camera lines are `name focal qw qx qy qz cx cy cz radial 0`: the quaternion is the
  world-to-camera rotation and (cx, cy, cz) the camera **centre**, so t = -R C. The model was
  built from PNGs: names are matched with the `.png` suffix replaced by `.jpg`.
- `robotcar_v2_train.txt` lines are `name` and a row-major 4x4 (or 3x4) **camera-to-world**
  matrix; it is inverted (rotation re-orthonormalised, centre kept). Names use `.png` too.
- Intrinsics: PINHOLE fx fy cx cy, copied as COLMAP parameters (as kapture's importer does;
  `principal_point_offset` adds a shift if the values follow OpenCV's pixel-centre origin).
Conditions are the image folder names, with tags; `overcast-reference` is the reference.
Sequences are the conditions (one traversal each); cameras are `left`, `rear`, `right`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from xseason.core.geometry import Pose
from xseason.inputs.layouts import Condition, LayoutError, LayoutRows, floats, pose_from_q_center, text_lines

REFERENCE = "overcast-reference"
CONDITIONS: dict[str, Condition] = {
    "overcast-reference": Condition("overcast-reference", season="autumn", daytime="day", weather="overcast"),
    "overcast-summer": Condition("overcast-summer", season="summer", daytime="day", weather="overcast"),
    "overcast-winter": Condition("overcast-winter", season="winter", daytime="day", weather="overcast"),
    "sun": Condition("sun", daytime="day", weather="sunny"),
    "rain": Condition("rain", daytime="day", weather="rain"),
    "snow": Condition("snow", season="winter", daytime="day", weather="snow"),
    "dawn": Condition("dawn", daytime="dawn"),
    "dusk": Condition("dusk", daytime="dusk"),
    "night": Condition("night", daytime="night"),
    "night-rain": Condition("night-rain", daytime="night", weather="rain"),
}
CAMERAS = ("left", "rear", "right")


def read_intrinsics(path: Path, principal_point_offset: float = 0.0) -> tuple[float, float, float, float]:
    """`<camera>_intrinsics.txt` (lines 'fx V', 'fy V', 'cx V', 'cy V') -> PINHOLE (fx, fy, cx, cy)."""
    values: dict[str, float] = {}
    for line, f in text_lines(path, sep=None):
        if len(f) != 2 or f[0] not in ("fx", "fy", "cx", "cy"):
            raise LayoutError(f"{path}:{line}: expected 'fx|fy|cx|cy VALUE'")
        values[f[0]] = float(floats(path, line, f[1:], "a number")[0])
    missing = [k for k in ("fx", "fy", "cx", "cy") if k not in values]
    if missing:
        raise LayoutError(f"{path}: missing {', '.join(missing)}")
    return (
        values["fx"],
        values["fy"],
        values["cx"] + principal_point_offset,
        values["cy"] + principal_point_offset,
    )


def read_nvm_poses(path: Path) -> dict[str, Pose]:
    """Camera poses of an NVM_V3 file -> {image name: world-to-camera pose} (points are not read)."""
    lines = text_lines(path, sep=None)
    first = next(lines, None)
    if first is None or first[1][0] != "NVM_V3":
        raise LayoutError(f"{path}:{first[0] if first else 1}: not an NVM_V3 file")
    line, f = next(lines, (first[0] + 1, []))
    if len(f) != 1 or not f[0].isdigit():
        raise LayoutError(f"{path}:{line}: expected the number of cameras")
    count = int(f[0])
    out = {}
    for _ in range(count):
        line, f = next(lines, (None, None))
        if line is None:
            raise LayoutError(f"{path}: ends before its {count} cameras")
        if len(f) != 11:
            raise LayoutError(f"{path}:{line}: expected 'name focal qw qx qy qz cx cy cz radial 0'")
        v = floats(path, line, f[2:9], "qw qx qy qz cx cy cz")
        out[f[0].removeprefix("./")] = pose_from_q_center(path, line, v[:4], v[4:])
    return out


def read_train_poses(path: Path) -> dict[str, Pose]:
    """`robotcar_v2_train.txt`: `name` + row-major 4x4/3x4 camera-to-world -> {name: world-to-camera}."""
    out = {}
    for line, f in text_lines(path, sep=None):
        if len(f) not in (13, 17):
            raise LayoutError(f"{path}:{line}: expected 'name' and 12 or 16 matrix entries, got {len(f) - 1}")
        m = floats(path, line, f[1:], "matrix entries").reshape(-1, 4)
        det = float(np.linalg.det(m[:3, :3]))
        if abs(det - 1) > 1e-2:
            raise LayoutError(f"{path}:{line}: not a rotation (det {det:.4g})")
        out[f[0]] = Pose.from_cam_to_world(m)
    return out


def robotcar_rows(
    root: str | os.PathLike,
    conditions: Sequence[str] | None = None,
    queries: Literal["posed", "all"] = "posed",
    cameras: Sequence[str] = CAMERAS,
    principal_point_offset: float = 0.0,
) -> LayoutRows:
    """Rows for the reference images (NVM poses) and the query images of `conditions` (default: all).

    queries: `posed` keeps the query images with released training poses; `all` adds the rest, unposed.
    """
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise LayoutError(f"{root}: no images/ folder; expected the RobotCar Seasons layout")
    present = sorted(d.name for d in images.iterdir() if d.is_dir())
    chosen = [c for c in present if c != REFERENCE] if conditions is None else list(conditions)
    unknown = sorted(set(chosen) - set(present))
    if unknown or REFERENCE not in present:
        raise LayoutError(
            f"{images}: missing condition folder(s) {', '.join(unknown or [REFERENCE])}; "
            f"found {', '.join(present)}"
        )
    intrinsics = {
        c: read_intrinsics(root / "intrinsics" / f"{c}_intrinsics.txt", principal_point_offset)
        for c in cameras
    }
    reference = {_jpg(n): p for n, p in read_nvm_poses(root / "3D-models" / "all-merged" / "all.nvm").items()}
    train = {_jpg(n): p for n, p in read_train_poses(root / "robotcar_v2_train.txt").items()}
    if not any(name.startswith(f"{REFERENCE}/") for name in reference):
        example = next(iter(reference), "none")
        raise LayoutError(
            f"{root / '3D-models/all-merged/all.nvm'}: no {REFERENCE}/<camera>/<timestamp> image names "
            f"(first name: {example!r})"
        )
    rows: list[dict[str, object]] = []
    for cond in [REFERENCE, *chosen]:
        for cam in cameras:
            folder = images / cond / cam
            names = sorted(p.name for p in folder.glob("*.jpg")) if folder.is_dir() else []
            for name in names:
                key = f"{cond}/{cam}/{name}"
                pose = (reference if cond == REFERENCE else train).get(key)
                if pose is None and (cond == REFERENCE or queries == "posed"):
                    continue
                rows.append(
                    {
                        "image": key,
                        "sequence": cond,
                        **CONDITIONS.get(cond, Condition(cond)).row(),
                        "timestamp": _timestamp(folder, name) / 1e6,
                        "camera": cam,
                        "camera_model": "PINHOLE",
                        "camera_params": intrinsics[cam],
                        "pose": pose,
                    }
                )
    return LayoutRows(rows, images)


def _jpg(name: str) -> str:
    return name[:-4] + ".jpg" if name.endswith(".png") else name


def _timestamp(folder: Path, name: str) -> int:
    stem = name.rsplit(".", 1)[0]
    if not stem.isdigit():
        raise LayoutError(f"{folder / name}: expected <timestamp>.jpg")
    return int(stem)
