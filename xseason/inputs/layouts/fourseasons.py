"""4Seasons -> manifest rows: recordings of the same route in different seasons.

Expected layout (https://www.4seasons-dataset.com, one route):
```
ROOT/calibration/undistorted_calib_0.txt        'Pinhole fx fy cx cy 0' then 'width height'
ROOT/calibration/undistorted_calib_1.txt
ROOT/calibration/undistorted_calib_stereo.txt   4x4: x_cam1 = T x_cam0 (as hloc's 4Seasons pipeline reads it)
ROOT/recording_<YYYY-MM-DD_hh-mm-ss>/undistorted_images/cam0/<timestamp ns>.png   (and cam1/)
ROOT/recording_.../GNSSPoses.txt                 '#' header, then 'timestamp, tx, ty, tz, qx, qy, qz, qw, ...'
```
Conventions:
- Pose lines are TUM-style **camera-to-world** poses of cam0 (translation first, quaternion
  x, y, z, w last); commas or spaces; extra columns (scale, quality) are ignored. They are
  inverted to world-to-camera. All recordings of a route are assumed to be given in one
  world frame (the globally consistent GNSS poses); `pose_file` may name another file, e.g.
  the relocalization benchmark's `poses.txt` or `result.txt`.
- cam1's pose is `T_stereo @ cam0_from_world`.
- Intrinsics are DSO-style: absolute values put pixel centres at integers (DSO subtracts
  0.5 when it converts relative calibrations), i.e. OpenCV's origin; COLMAP's principal
  point is therefore cx + 0.5, cy + 0.5. Relative calibrations (cx, cy < 1) are scaled by the
  image size and need no shift. Images are PINHOLE.
- Timestamps: nanoseconds in file names and pose files (matched as integers); seconds in the manifest.
Sequences are the recording folders; the default condition is the season of the recording
date (Dec-Feb winter, ...); `conditions` (by recording name) overrides it. Cameras: cam0, cam1.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xseason.core.geometry import Pose, qvec_to_rotmat, rotmat_to_qvec
from xseason.inputs.layouts import (
    Condition,
    LayoutError,
    LayoutRows,
    assign_conditions,
    floats,
    pose_from_cam_to_world_qt,
    season_of_month,
    text_lines,
)

_RECORDING = re.compile(r"^recording_(\d{4})-(\d{2})-(\d{2})")


def read_calibration(path: Path) -> tuple[float, float, float, float]:
    """DSO `undistorted_calib_*.txt` -> COLMAP PINHOLE (fx, fy, cx, cy)."""
    lines = list(text_lines(path, sep=None))
    if len(lines) < 2 or lines[0][1][0] != "Pinhole" or len(lines[0][1]) < 5 or len(lines[1][1]) != 2:
        raise LayoutError(
            f"{path}:{lines[0][0] if lines else 1}: expected 'Pinhole fx fy cx cy ...' then 'width height'"
        )
    fx, fy, cx, cy = floats(path, lines[0][0], lines[0][1][1:5], "fx fy cx cy")
    w, h = floats(path, lines[1][0], lines[1][1], "width height")
    if cx < 1 and cy < 1:  # relative calibration: corner origin, as COLMAP
        return (fx * w, fy * h, cx * w, cy * h)
    return (fx, fy, cx + 0.5, cy + 0.5)


def read_stereo(path: Path) -> Pose:
    """`undistorted_calib_stereo.txt` (4x4, cam1_from_cam0; the rounded rotation is re-orthonormalised)."""
    rows = list(text_lines(path, sep=None))
    if len(rows) != 4 or any(len(f) != 4 for _, f in rows):
        raise LayoutError(f"{path}: expected a 4x4 matrix")
    m = np.stack([floats(path, n, f, "4 numbers") for n, f in rows])
    if abs(np.linalg.det(m[:3, :3]) - 1) > 1e-3:
        raise LayoutError(f"{path}: not a rigid transform")
    return Pose(qvec_to_rotmat(rotmat_to_qvec(m[:3, :3])), m[:3, 3])


def read_tum_poses(path: Path) -> dict[int, Pose]:
    """TUM-style `timestamp tx ty tz qx qy qz qw [...]` camera-to-world lines -> {timestamp: world-to-cam}."""
    out = {}
    for line, f in text_lines(path, sep="any"):
        if len(f) < 8:
            raise LayoutError(
                f"{path}:{line}: expected 'timestamp tx ty tz qx qy qz qw', got {len(f)} fields"
            )
        if not f[0].isdigit():
            raise LayoutError(f"{path}:{line}: timestamp {f[0]!r} is not an integer (nanoseconds)")
        v = floats(path, line, f[1:8], "tx ty tz qx qy qz qw")
        out[int(f[0])] = pose_from_cam_to_world_qt(path, line, v[[6, 3, 4, 5]], v[:3])
    return out


def season_of(recording: str) -> Condition:
    """Default condition of a `recording_YYYY-MM-DD_...` folder: the season of its date."""
    m = _RECORDING.match(recording)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise LayoutError(
            f"cannot tell the season of recording {recording!r} from its name; give its condition"
        )
    season = season_of_month(int(m.group(2)))
    return Condition(season, season=season)


def fourseasons_rows(
    root: str | os.PathLike,
    recordings: Sequence[str] | None = None,
    conditions: Mapping[str, Condition] | None = None,
    pose_file: str = "GNSSPoses.txt",
    cameras: Sequence[str] = ("cam0", "cam1"),
    unposed: bool = False,
) -> LayoutRows:
    """Rows for the images of the chosen recordings (default: all); images without a pose are
    left out unless `unposed`."""
    root = Path(root)
    found = sorted(
        d.name for d in (root.iterdir() if root.is_dir() else []) if (d / "undistorted_images").is_dir()
    )
    if not found:
        raise LayoutError(
            f"{root}: no recording folders with undistorted_images/; expected the 4Seasons layout"
        )
    chosen = list(recordings or found)
    unknown = sorted(set(chosen) - set(found))
    if unknown:
        raise LayoutError(f"{root}: unknown recording(s) {', '.join(unknown)}; found {', '.join(found)}")
    if not set(cameras) <= {"cam0", "cam1"}:
        unknown = ", ".join(sorted(set(cameras) - {"cam0", "cam1"}))
        raise LayoutError(f"unknown camera(s) {unknown}; 4Seasons has cam0 and cam1")
    calib = root / "calibration"
    intrinsics = {cam: read_calibration(calib / f"undistorted_calib_{cam[-1]}.txt") for cam in cameras}
    cam_from_cam0 = {"cam0": Pose(np.eye(3), np.zeros(3))}
    if "cam1" in cameras:
        cam_from_cam0["cam1"] = read_stereo(calib / "undistorted_calib_stereo.txt")
    given = dict(conditions or {})
    assigned = assign_conditions(chosen, {**{r: season_of(r) for r in chosen if r not in given}, **given})
    rows: list[dict[str, object]] = []
    for rec in chosen:
        cond = assigned[rec]
        poses = read_tum_poses(root / rec / pose_file)
        for cam in cameras:
            folder = root / rec / "undistorted_images" / cam
            stamps = (
                sorted(int(p.stem) for p in folder.glob("*.png") if p.stem.isdigit())
                if folder.is_dir()
                else []
            )
            for ts in stamps:
                pose = poses.get(ts)
                if pose is None and not unposed:
                    continue
                rows.append(
                    {
                        "image": f"{rec}/undistorted_images/{cam}/{ts}.png",
                        "sequence": rec,
                        **cond.row(),
                        "timestamp": ts / 1e9,
                        "camera": cam,
                        "camera_model": "PINHOLE",
                        "camera_params": intrinsics[cam],
                        "pose": None if pose is None else cam_from_cam0[cam] @ pose,
                    }
                )
    return LayoutRows(rows, root)
