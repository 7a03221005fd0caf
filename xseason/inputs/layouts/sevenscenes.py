"""Microsoft 7-Scenes: `ROOT/seq-XX/frame-XXXXXX.color.{png,jpg}` + `frame-XXXXXX.pose.txt`.

What is read and assumed:
- `seq-XX/` folders are the sequences; the frame number is the timestamp.
- `frame-XXXXXX.pose.txt`: a 4x4 **camera-to-world** matrix (metres) of the Kinect *depth*
  camera, the sensor KinectFusion tracked. Its rotation is rounded to 8 digits, so it is
  projected to the nearest rotation (the camera centre is kept exactly), as kapture's importer does.
- The RGB camera sits beside the depth camera. Its pose is `rgb_from_depth @ depth_from_world`
  with the depth-to-RGB extrinsics of the LIRIS Kinect calibration
  (https://projet.liris.cnrs.fr/voir/activities-dataset/kinect-calibration.html), the same
  values kapture's 7-Scenes importer stores in `rigs.txt` as the pose of `kinect_rgb` in the
  rig `kinect` (kapture: "rotation/translation from rig to sensor", i.e. sensor_from_rig).
- Intrinsics: the authors' defaults, SIMPLE_PINHOLE 640x480, f = 525, principal point
  (320, 240) read in COLMAP's convention (the image centre). One camera `kinect_rgb` for all sequences.
- All images are posed; one condition per sequence (default `indoor`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from xseason.core.geometry import Pose, qvec_to_rotmat, rotmat_to_qvec
from xseason.inputs.layouts import Condition, LayoutError, LayoutRows, assign_conditions, floats, text_lines

CAMERA_ID = "kinect_rgb"
CAMERA_MODEL = "SIMPLE_PINHOLE"
CAMERA_PARAMS = (525.0, 320.0, 240.0)
INDOOR = Condition("indoor")  # the condition of a sequence not named otherwise

# x_rgb = R x_depth + T (metres): LIRIS Kinect calibration, as used by kapture.
_R_RGB_FROM_DEPTH = np.array(
    [
        [9.9996518012567637e-01, 2.6765126468950343e-03, -7.9041012313000904e-03],
        [-2.7409311281316700e-03, 9.9996302803027592e-01, -8.1504520778013286e-03],
        [7.8819942130445332e-03, 8.1718328771890631e-03, 9.9993554558014031e-01],
    ]
)
_T_RGB_FROM_DEPTH = np.array([-2.5558943178152542e-02, 1.0109636268061706e-04, 2.0318321729487039e-03])
RGB_FROM_DEPTH = Pose(qvec_to_rotmat(rotmat_to_qvec(_R_RGB_FROM_DEPTH)), _T_RGB_FROM_DEPTH)

_SEQ = re.compile(r"^seq-(\d+)$")
_FRAME = re.compile(r"^frame-(\d+)\.color\.(png|jpg)$")


def read_pose_file(path: Path) -> Pose:
    """A 7-Scenes `.pose.txt` (4x4 camera-to-world) -> world-to-camera pose of the depth camera."""
    lines = list(text_lines(path, sep=None))
    if len(lines) != 4 or any(len(fields) != 4 for _, fields in lines):
        bad = next((n for n, f in lines if len(f) != 4), lines[-1][0] if lines else 1)
        raise LayoutError(f"{path}:{bad}: expected a 4x4 matrix (4 lines of 4 numbers)")
    m = np.stack([floats(path, n, fields, "4 numbers") for n, fields in lines])
    if not np.allclose(m[3], [0, 0, 0, 1]) or abs(np.linalg.det(m[:3, :3]) - 1) > 1e-2:
        raise LayoutError(
            f"{path}:1: not a rigid camera-to-world matrix "
            f"(last row {m[3]}, det {np.linalg.det(m[:3, :3]):.4g})"
        )
    return Pose.from_cam_to_world(m)


def sevenscenes_rows(
    root: str | os.PathLike,
    conditions: Mapping[str, Condition] | None = None,
    default: Condition | None = INDOOR,
    rgb_from_depth: Pose = RGB_FROM_DEPTH,
) -> LayoutRows:
    """Rows for every colour frame of every `seq-XX` folder, with RGB-camera poses."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: not a folder")
    sequences = sorted(
        (d.name for d in root.iterdir() if d.is_dir() and _SEQ.match(d.name)),
        key=lambda s: int(_SEQ.match(s).group(1)),
    )
    if not sequences:
        raise LayoutError(
            f"{root}: no seq-XX folders; expected the 7-Scenes layout ROOT/seq-01/frame-000000.color.png"
        )
    assigned = assign_conditions(sequences, conditions or {}, default)
    rows: list[dict[str, object]] = []
    for seq in sequences:
        frames = sorted(
            (m for n in os.listdir(root / seq) if (m := _FRAME.match(n))), key=lambda m: int(m.group(1))
        )
        if not frames:
            raise LayoutError(f"{root / seq}: no frame-XXXXXX.color.png/jpg images")
        for m in frames:
            depth_pose = read_pose_file(root / seq / f"frame-{m.group(1)}.pose.txt")
            rows.append(
                {
                    "image": f"{seq}/{m.group(0)}",
                    "sequence": seq,
                    **assigned[seq].row(),
                    "timestamp": int(m.group(1)),
                    "camera": CAMERA_ID,
                    "camera_model": CAMERA_MODEL,
                    "camera_params": CAMERA_PARAMS,
                    "pose": rgb_from_depth @ depth_pose,
                }
            )
    return LayoutRows(rows, root)
