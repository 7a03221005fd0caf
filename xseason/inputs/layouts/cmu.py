"""(Extended) CMU Seasons -> manifest rows, with the benchmark's ground-truth poses.

Expected layout (the Extended CMU Seasons release, https://www.visuallocalization.net):
```
ROOT/intrinsics.txt                                    c0 OPENCV 1024 768 fx fy cx cy k1 k2 p1 p2
ROOT/slice<N>/database/img_<k>_<cam>_<timestamp>us.jpg reference traversal (sunny, no foliage)
ROOT/slice<N>/query/img_<k>_<cam>_<timestamp>us.jpg    the other traversals
ROOT/slice<N>/ground-truth-database-images-slice<N>.txt   name qw qx qy qz cx cy cz
ROOT/slice<N>/camera-poses/*.txt                       query ground truth, same format, about half the queries
ROOT/slice<N>/test-images-slice<N>.txt                 all query names
```
Conventions (from the dataset README): the quaternion is the rotation R of the camera matrix
[R | t] (world-to-camera, w first) and the last three numbers are the camera **centre**
C = -R^T t, so t = -R C. Intrinsics are COLMAP models whose pixel origin is the top-left
image *corner* (COLMAP's convention): copied unchanged. The file name's timestamp is in
microseconds (manifest: seconds).

Conditions: database images are the reference traversal (`sunny-nofoliage`). A query
image's traversal is its capture date, taken from its timestamp in Pittsburgh standard time
(UTC-5); `CONDITIONS_BY_DATE` maps the capture dates listed in the README to conditions.
A date missing from the table is labelled `cmu-<date>`; `conditions` overrides by date.
Sequences are `slice<N>/reference` and `slice<N>/<date>`; cameras are `c0` and `c1`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from xseason.core.geometry import CAMERA_MODELS, Pose
from xseason.inputs.layouts import (
    Condition,
    LayoutError,
    LayoutRows,
    floats,
    pose_from_q_center,
    season_of_month,
    text_lines,
)

REFERENCE = Condition("sunny-nofoliage", season="spring", daytime="day", weather="sunny")


def _cmu(label: str, month: int, weather: str) -> Condition:
    return Condition(label, season=season_of_month(month), daytime="day", weather=weather)


# Capture dates of the README's condition table (the reference, 4 Apr 2011, is the database).
CONDITIONS_BY_DATE: dict[str, Condition] = {
    "2010-09-01": _cmu("sunny-foliage", 9, "sunny"),
    "2010-09-15": _cmu("sunny-foliage", 9, "sunny"),
    "2010-10-01": _cmu("cloudy-foliage", 10, "cloudy"),
    "2010-10-19": _cmu("sunny-foliage", 10, "sunny"),
    "2010-10-28": _cmu("overcast-mixedfoliage", 10, "overcast"),
    "2010-11-03": _cmu("lowsun-mixedfoliage", 11, "sunny"),
    "2010-11-12": _cmu("lowsun-mixedfoliage", 11, "sunny"),
    "2010-11-22": _cmu("cloudy-mixedfoliage", 11, "cloudy"),
    "2010-12-21": _cmu("lowsun-nofoliage-snow", 12, "snow"),
    "2011-03-04": _cmu("lowsun-foliage", 3, "sunny"),
    "2011-07-28": _cmu("overcast-foliage", 7, "overcast"),
}
_NAME = re.compile(r"^img_(\d+)_(c\d+)_(\d+)us\.jpg$")
_SLICE = re.compile(r"^slice(\d+)$")
_PITTSBURGH = dt.timezone(dt.timedelta(hours=-5))


def read_intrinsics(path: Path) -> dict[str, tuple[str, tuple[float, ...]]]:
    """`intrinsics.txt` -> {camera: (COLMAP model, params)} (width and height dropped)."""
    out = {}
    for line, f in text_lines(path, sep=None):
        if len(f) < 4 or f[1] not in CAMERA_MODELS or len(f) != 4 + CAMERA_MODELS[f[1]]:
            raise LayoutError(
                f"{path}:{line}: expected 'CAMERA MODEL WIDTH HEIGHT PARAMS...' with a COLMAP model "
                "and its number of parameters"
            )
        out[f[0]] = (f[1], tuple(float(v) for v in floats(path, line, f[4:], f"{f[1]} parameters")))
    return out


def read_pose_list(path: Path) -> dict[str, Pose]:
    """`name qw qx qy qz cx cy cz` lines (camera centre, not t) -> {name: world-to-camera pose}."""
    out = {}
    for line, f in text_lines(path, sep=None):
        if len(f) != 8:
            raise LayoutError(f"{path}:{line}: expected 'name qw qx qy qz cx cy cz', got {len(f)} fields")
        v = floats(path, line, f[1:], "qw qx qy qz cx cy cz")
        out[_checked_name(path, line, f[0])] = pose_from_q_center(path, line, v[:4], v[4:])
    return out


def read_name_list(path: Path) -> list[str]:
    """`test-images-slice<N>.txt`: one image name per line."""
    return [_checked_name(path, line, f[0]) for line, f in text_lines(path, sep=None)]


def _checked_name(path: Path, line: int, name: str) -> str:
    if not _NAME.match(name):
        raise LayoutError(f"{path}:{line}: image name {name!r} is not img_<k>_<camera>_<timestamp>us.jpg")
    return name


def capture_date(timestamp_us: int) -> str:
    """Capture date (Pittsburgh standard time) of a CMU timestamp in microseconds."""
    return dt.datetime.fromtimestamp(timestamp_us / 1e6, tz=_PITTSBURGH).date().isoformat()


def cmu_rows(
    root: str | os.PathLike,
    slices: Sequence[int] | None = None,
    queries: Literal["posed", "all", "none"] = "posed",
    conditions: Mapping[str, Condition] | None = None,
) -> LayoutRows:
    """Rows for the database and query images of the chosen slices (default: all found).

    queries: `posed` keeps the query images with ground truth, `all` adds the others (unposed).
    """
    root = Path(root)
    found = sorted(
        int(m.group(1)) for d in (root.iterdir() if root.is_dir() else []) if (m := _SLICE.match(d.name))
    )
    if not found:
        raise LayoutError(f"{root}: no slice<N> folders; expected the Extended CMU Seasons layout")
    unknown = sorted(set(slices or []) - set(found))
    if unknown:
        raise LayoutError(f"{root}: unknown slice(s) {unknown}; found slices {found}")
    cameras = read_intrinsics(root / "intrinsics.txt")
    by_date = {**CONDITIONS_BY_DATE, **(conditions or {})}
    rows: list[dict[str, object]] = []
    for n in slices or found:
        folder = root / f"slice{n}"
        database = read_pose_list(folder / f"ground-truth-database-images-slice{n}.txt")
        rows += [
            _row(root, folder, "database", name, pose, f"slice{n}/reference", REFERENCE, cameras)
            for name, pose in database.items()
        ]
        if queries == "none":
            continue
        truth: dict[str, Pose] = {}
        gt_dir = folder / "camera-poses"
        for path in sorted(gt_dir.glob("*.txt")) if gt_dir.is_dir() else []:
            truth.update(read_pose_list(path))
        names = list(truth) if queries == "posed" else read_name_list(folder / f"test-images-slice{n}.txt")
        for name in names:
            date = capture_date(_parse_name(name)[1])
            cond = by_date.get(date) or Condition(f"cmu-{date}", daytime="day")
            rows.append(_row(root, folder, "query", name, truth.get(name), f"slice{n}/{date}", cond, cameras))
    return LayoutRows(rows, root)


def _parse_name(name: str) -> tuple[str, int]:
    """(camera, timestamp in microseconds) of a name checked by `_checked_name`."""
    m = _NAME.match(name)
    return m.group(2), int(m.group(3))


def _row(
    root: Path,
    folder: Path,
    part: str,
    name: str,
    pose: Pose | None,
    sequence: str,
    condition: Condition,
    cameras: Mapping[str, tuple[str, tuple[float, ...]]],
) -> dict[str, object]:
    camera, timestamp = _parse_name(name)
    if camera not in cameras:
        raise LayoutError(f"{root / 'intrinsics.txt'}: no intrinsics for camera {camera!r} (image {name})")
    model, params = cameras[camera]
    return {
        "image": f"{folder.name}/{part}/{name}",
        "sequence": sequence,
        **condition.row(),
        "timestamp": timestamp / 1e6,
        "camera": camera,
        "camera_model": model,
        "camera_params": params,
        "pose": pose,
    }
