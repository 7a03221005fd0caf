"""kapture (naver/kapture, format 1.x, text files) -> manifest rows.

Files read (in `ROOT/sensors/`, or in ROOT itself when that is where `sensors.txt` is):
- `sensors.txt`: `sensor_id, name, sensor_type, [params]+`; for `camera` sensors the params
  are `model, width, height, model params...` with COLMAP models and COLMAP's parameter
  order and pixel convention (kapture mirrors COLMAP), so they are copied unchanged.
  `UNKNOWN_CAMERA` gives no intrinsics.
- `rigs.txt` (optional): `rig_id, sensor_id, qw, qx, qy, qz, tx, ty, tz`, the transform
  *from rig to sensor* (x_sensor = R x_rig + t, i.e. sensor_from_rig).
- `trajectories.txt` (optional): `timestamp, device_id, qw, qx, qy, qz, tx, ty, tz[, ...]`,
  world-to-device (COLMAP convention), where the device is a sensor or a rig.
- `records_camera.txt`: `timestamp, sensor_id, image_path`.
A camera's pose at a timestamp is its own trajectory entry, else
`sensor_from_rig @ rig_from_world` through its rig; with neither, the image is unposed.
Sequences: the first `sequence_depth` folders of each image path (the sensor id for files
at the top); timestamps: kapture's integer timestamps; camera id: the sensor id.
Images are under `records_data/` beside the files (kapture's rule); when that folder does
not exist, the kapture root or its parent, whichever holds the first image (some exports,
e.g. the 7-Scenes sample here, keep kapture files next to the original dataset).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xseason.core.geometry import CAMERA_MODELS, Pose
from xseason.inputs.layouts import (
    Condition,
    LayoutError,
    LayoutRows,
    assign_conditions,
    floats,
    pose_from_qt,
    text_lines,
)


@dataclass
class KaptureCamera:
    model: str | None  # None for UNKNOWN_CAMERA
    width: int
    height: int
    params: tuple[float, ...] | None


@dataclass
class Kapture:
    """The parts of a kapture dataset that a manifest needs."""

    folder: Path
    cameras: dict[str, KaptureCamera] = field(default_factory=dict)
    rig_of: dict[str, tuple[str, Pose]] = field(default_factory=dict)  # sensor -> (rig, sensor_from_rig)
    trajectories: dict[tuple[int, str], Pose] = field(default_factory=dict)  # world-to-device
    records: list[tuple[int, str, str]] = field(default_factory=list)  # (timestamp, sensor, image path)

    def pose(self, timestamp: int, sensor: str) -> Pose | None:
        """World-to-camera pose of `sensor` at `timestamp`, directly or through its rig."""
        own = self.trajectories.get((timestamp, sensor))
        if own is not None:
            return own
        if sensor in self.rig_of:
            rig, sensor_from_rig = self.rig_of[sensor]
            rig_pose = self.trajectories.get((timestamp, rig))
            if rig_pose is not None:
                return sensor_from_rig @ rig_pose
        return None


def find_sensors_folder(root: str | os.PathLike) -> Path:
    """`ROOT/sensors` or ROOT, whichever holds `sensors.txt`."""
    root = Path(root)
    for folder in (root / "sensors", root):
        if (folder / "sensors.txt").is_file():
            return folder
    raise LayoutError(f"{root}: not a kapture dataset (no sensors/sensors.txt or sensors.txt)")


def read_kapture(root: str | os.PathLike) -> Kapture:
    """Parse sensors, rigs, trajectories and camera records; errors name file and line."""
    folder = find_sensors_folder(root)
    kap = Kapture(folder)
    path = folder / "sensors.txt"
    for line, f in text_lines(path):
        if len(f) < 3:
            raise LayoutError(f"{path}:{line}: expected 'sensor_id, name, sensor_type, [params]+'")
        if f[2] == "camera":
            kap.cameras[f[0]] = _camera(path, line, f[3:])
    path = folder / "rigs.txt"
    if path.exists():
        for line, f in text_lines(path):
            if len(f) != 9:
                raise LayoutError(f"{path}:{line}: expected 'rig_id, sensor_id, qw, qx, qy, qz, tx, ty, tz'")
            if f[1] in kap.rig_of:
                raise LayoutError(f"{path}:{line}: sensor {f[1]!r} is already in rig {kap.rig_of[f[1]][0]!r}")
            v = floats(path, line, f[2:9], "qw, qx, qy, qz, tx, ty, tz")
            kap.rig_of[f[1]] = (f[0], pose_from_qt(path, line, v[:4], v[4:]))
    path = folder / "trajectories.txt"
    if path.exists():
        for line, f in text_lines(path):
            if len(f) < 9:
                raise LayoutError(
                    f"{path}:{line}: expected 'timestamp, device_id, qw, qx, qy, qz, tx, ty, tz'"
                )
            v = floats(path, line, f[2:9], "qw, qx, qy, qz, tx, ty, tz")
            kap.trajectories[(_timestamp(path, line, f[0]), f[1])] = pose_from_qt(path, line, v[:4], v[4:])
    path = folder / "records_camera.txt"
    for line, f in text_lines(path):
        if len(f) != 3:
            raise LayoutError(f"{path}:{line}: expected 'timestamp, sensor_id, image_path'")
        if f[1] not in kap.cameras:
            raise LayoutError(f"{path}:{line}: sensor {f[1]!r} is not a camera of {folder / 'sensors.txt'}")
        kap.records.append((_timestamp(path, line, f[0]), f[1], f[2]))
    if not kap.records:
        raise LayoutError(f"{path}: no camera records")
    return kap


def _camera(path: Path, line: int, params: list[str]) -> KaptureCamera:
    if len(params) < 3:
        raise LayoutError(f"{path}:{line}: camera needs 'model, width, height, params...'")
    model = params[0]
    size = floats(path, line, params[1:3], "image width and height")
    if model == "UNKNOWN_CAMERA":
        return KaptureCamera(None, int(size[0]), int(size[1]), None)
    if model not in CAMERA_MODELS:
        raise LayoutError(f"{path}:{line}: unknown camera model {model!r}; known: {', '.join(CAMERA_MODELS)}")
    values = floats(path, line, params[3:], f"{model} parameters")
    if len(values) != CAMERA_MODELS[model]:
        raise LayoutError(
            f"{path}:{line}: {model} takes {CAMERA_MODELS[model]} parameters after width and "
            f"height, got {len(values)}"
        )
    return KaptureCamera(model, int(size[0]), int(size[1]), tuple(float(v) for v in values))


def _timestamp(path: Path, line: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LayoutError(f"{path}:{line}: timestamp {text!r} is not an integer") from None


def kapture_rows(
    root: str | os.PathLike,
    conditions: Mapping[str, Condition] | None = None,
    default: Condition | None = None,
    images: str | os.PathLike | None = None,
    sequence_depth: int = 1,
) -> LayoutRows:
    """Rows for every camera record of a kapture dataset."""
    kap = read_kapture(root)
    image_root = Path(images) if images is not None else _image_root(kap)
    sequence_of = {}
    for _, sensor, image in kap.records:
        parts = image.replace("\\", "/").split("/")[:-1]
        sequence_of[image] = "/".join(parts[:sequence_depth]) if parts else sensor
    sequences = list(dict.fromkeys(sequence_of.values()))
    assigned = assign_conditions(sequences, conditions or {}, default, source=f"{kap.folder}: ")
    rows: list[dict[str, object]] = []
    for timestamp, sensor, image in kap.records:
        cam, seq = kap.cameras[sensor], sequence_of[image]
        rows.append(
            {
                "image": image,
                "sequence": seq,
                **assigned[seq].row(),
                "timestamp": timestamp,
                "camera": sensor,
                "camera_model": cam.model,
                "camera_params": cam.params,
                "pose": kap.pose(timestamp, sensor),
            }
        )
    return LayoutRows(rows, image_root)


def _image_root(kap: Kapture) -> Path:
    data = kap.folder / "records_data"
    if data.is_dir():
        return data
    first = kap.records[0][2]
    root = kap.folder.parent if kap.folder.name == "sensors" else kap.folder
    for candidate in (root, root.parent):
        if (candidate / first).is_file():
            return candidate
    raise LayoutError(
        f"{kap.folder}: no records_data/ folder, and {first!r} is neither in {root} nor in {root.parent}; "
        "give the image folder explicitly (--images)"
    )
