"""The one adapter between xseason and pycolmap.

Everything that converts between pycolmap objects and xseason's own lives here:
- pixels: COLMAP puts the centre of the top-left pixel at (0.5, 0.5), xseason at (0, 0)
  (docs/FORMAT.md section 1): `from_colmap_pixels`;
- poses: `pycolmap.Rigid3d` (cam_from_world) <-> `Pose` (world-to-camera), `pose_arrays` (many at
  once, with pycolmap's own arithmetic), similarities -> `pycolmap.Sim3d` (`sim3d`);
- cameras: `pycolmap.Camera` <-> `Camera` (same model names and parameters);
- models: `point_observations`, the one walker over a reconstruction's points and their
  observations (reading the pycolmap containers is the only per-item Python loop); `image_points2D`
  and `renumbered_model`, a model brought in from elsewhere (`reconstruction.sfm_from`) with the
  build database's ids;
- COLMAP's log level (`quiet_logs`), set by the stages that run COLMAP, never on import;
- what a COLMAP model folder holds (`is_colmap_model`), so that writers replace only models.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycolmap

from xseason.core.geometry import Camera, Pose

COLMAP_PIXEL_OFFSET = 0.5  # COLMAP pixel = xseason pixel + 0.5


def quiet_logs(level: int = 2) -> None:
    """Keep COLMAP's own log to warnings and errors (2) while xseason logs the stages."""
    pycolmap.logging.minloglevel = level


MODEL_FILES = frozenset(
    f"{name}.{ext}" for name in ("cameras", "images", "points3D", "rigs", "frames") for ext in ("bin", "txt")
)


def is_colmap_model(folder: str | Path, also: Iterable[str] = ()) -> bool:
    """True when `folder` holds a COLMAP model (binary or text) and nothing else but the file names
    `also`; a folder whose sub-folders all are such models counts too (one model per sequence)."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return False
    names = {e.name for e in entries}
    if names & {"cameras.bin", "cameras.txt"}:
        return names <= MODEL_FILES | set(also) and not any(e.is_dir() for e in entries)
    return bool(entries) and all(e.is_dir() and is_colmap_model(e, also) for e in entries)


def from_colmap_pixels(xy: np.ndarray) -> np.ndarray:
    """COLMAP keypoints -> xseason pixels (top-left pixel centre at (0, 0))."""
    return np.asarray(xy, np.float64) - COLMAP_PIXEL_OFFSET


def to_colmap_pixels(xy: np.ndarray) -> np.ndarray:
    """xseason pixels -> COLMAP keypoints (its origin is the top-left pixel's corner)."""
    return np.asarray(xy, np.float64) + COLMAP_PIXEL_OFFSET


def pose_from_rigid(cam_from_world: pycolmap.Rigid3d) -> Pose:
    """A pycolmap cam_from_world transform as a world-to-camera `Pose`."""
    m = np.asarray(cam_from_world.matrix(), np.float64)
    return Pose(m[:3, :3], m[:3, 3])


def rigid_from_pose(pose: Pose) -> pycolmap.Rigid3d:
    """A world-to-camera `Pose` as a pycolmap cam_from_world transform."""
    return pycolmap.Rigid3d(pycolmap.Rotation3d(pose.R), pose.t)


def pose_arrays(poses: Iterable[pycolmap.Rigid3d]) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (N, 3, 3) and camera centres (N, 3) of cam_from_world transforms.

    Computed by pycolmap (`rotation.matrix()`, `inverse().translation`), so that every caller gets
    the same bits.
    """
    poses = list(poses)
    rotations = np.array([p.rotation.matrix() for p in poses]).reshape(-1, 3, 3)
    centres = np.array([p.inverse().translation for p in poses]).reshape(-1, 3)
    return rotations, centres


def sim3d(scale: float, rotation: np.ndarray, translation: np.ndarray) -> pycolmap.Sim3d:
    """The similarity x -> scale * rotation @ x + translation as a `pycolmap.Sim3d`."""
    return pycolmap.Sim3d(scale, pycolmap.Rotation3d(rotation), np.asarray(translation, float))


def camera_from_colmap(camera: pycolmap.Camera) -> Camera:
    """A pycolmap camera as a `Camera` (same model name and parameters)."""
    params = tuple(float(p) for p in camera.params)
    return Camera(camera.model.name, int(camera.width), int(camera.height), params)


def camera_to_colmap(camera: Camera, camera_id: int | None = None) -> pycolmap.Camera:
    """A `Camera` as a pycolmap camera, with `camera_id` when given."""
    out = camera.to_pycolmap()
    if camera_id is not None:
        out.camera_id = camera_id
    return out


@dataclass
class PointObservations:
    """A reconstruction's 3D points and, one row each, their observations in posed images.

    Points are sorted by COLMAP point3D id; observations follow the model's image order and,
    within an image, its keypoint order. Pixels are in xseason's convention.
    """

    point_ids: np.ndarray  # (P,) int64, sorted
    xyz: np.ndarray  # (P, 3) float64
    image_names: list[str]  # posed images of the model, in the model's order
    image_ids: np.ndarray  # (I,) int64, COLMAP image id of each name
    num_keypoints: np.ndarray  # (I,) int64, keypoints (points2D) of each image
    obs_image: np.ndarray  # (N,) int64 index into image_names
    obs_keypoint: np.ndarray  # (N,) int64 keypoint index within its image
    obs_point: np.ndarray  # (N,) int64 index into point_ids
    obs_xy: np.ndarray  # (N, 2) float64 pixels

    @property
    def obs_xyz(self) -> np.ndarray:
        return self.xyz[self.obs_point]

    def keypoint_points(self) -> list[np.ndarray]:
        """Per image, per keypoint: the index of its 3D point in `point_ids`, or -1."""
        offsets = np.concatenate([[0], np.cumsum(self.num_keypoints)]).astype(np.int64)
        flat = np.full(int(offsets[-1]), -1, np.int64)
        flat[offsets[self.obs_image] + self.obs_keypoint] = self.obs_point
        return np.split(flat, offsets[1:-1]) if len(self.num_keypoints) else []


def point_observations(
    model: pycolmap.Reconstruction, images: Iterable[str] | None = None
) -> PointObservations:
    """The points of `model` and their observations in its posed images (only in `images` when given)."""
    wanted = None if images is None else set(images)
    ids = np.fromiter(model.points3D.keys(), dtype=np.int64, count=model.num_points3D())
    xyz = np.array([p.xyz for p in model.points3D.values()], np.float64).reshape(-1, 3)
    order = np.argsort(ids)
    ids, xyz = ids[order], xyz[order]
    names, image_ids, counts, o_img, o_kp, o_pt, o_xy = [], [], [], [], [], [], []
    for image in model.images.values():
        if not image.has_pose or (wanted is not None and image.name not in wanted):
            continue
        p2d = image.points2D
        k = len(names)
        names.append(image.name)
        image_ids.append(int(image.image_id))
        counts.append(len(p2d))
        if len(p2d) == 0 or len(ids) == 0:
            continue
        pid = np.fromiter((p.point3D_id for p in p2d), dtype=np.uint64, count=len(p2d)).astype(np.int64)
        pos = np.searchsorted(ids, pid)  # the invalid id (2^64 - 1) reads as -1: never found
        found = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == pid)
        kp = np.flatnonzero(found)
        o_img.append(np.full(len(kp), k, np.int64))
        o_kp.append(kp)
        o_pt.append(pos[kp])
        o_xy.append(np.array([p.xy for p in p2d], np.float64).reshape(-1, 2)[kp])
    cat = np.concatenate
    return PointObservations(
        point_ids=ids,
        xyz=xyz,
        image_names=names,
        image_ids=np.asarray(image_ids, np.int64),
        num_keypoints=np.asarray(counts, np.int64),
        obs_image=cat([np.zeros(0, np.int64), *o_img]),
        obs_keypoint=cat([np.zeros(0, np.int64), *o_kp]),
        obs_point=cat([np.zeros(0, np.int64), *o_pt]),
        obs_xy=from_colmap_pixels(cat([np.zeros((0, 2)), *o_xy])),
    )


def image_points2D(model: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    """Image name -> (N, 2) its points2D in the model's order (row = point2D index), COLMAP pixels."""
    return {
        image.name: np.array([p.xy for p in image.points2D], np.float64).reshape(-1, 2)
        for image in model.images.values()
    }


def renumbered_model(
    model: pycolmap.Reconstruction,
    ids: Mapping[str, tuple[int, int]],
    keypoints: Mapping[str, np.ndarray],
) -> pycolmap.Reconstruction:
    """`model` restricted to the posed images named in `ids` (name -> (image id, camera id)), with those ids.

    Each image's points2D become `keypoints[name]` ((M, 2) COLMAP pixels, its first rows the model's
    own points2D, so that point2D indices keep their meaning); each camera is the model's camera of the
    first image given its new id; 3D points keep their id, xyz, colour and error, their tracks keep the
    kept images' observations, and a point left with fewer than two is dropped.
    """
    old = {image.name: image for image in model.images.values() if image.has_pose and image.name in ids}
    out = pycolmap.Reconstruction()
    for camera_id in sorted({ids[name][1] for name in old}):
        first = next(image for name, image in old.items() if ids[name][1] == camera_id)
        camera = copy.copy(model.camera(first.camera_id))
        camera.camera_id = camera_id
        out.add_camera_with_trivial_rig(camera)
    new_id = {}
    # pycolmap's maps iterate the newest entry first, and a model is written in the order its images were
    # added: added in reverse, the model read back iterates its images as `model` does (some consumers,
    # e.g. the registration, depend on that order)
    for name, image in reversed(old.items()):
        image_id, camera_id = ids[name]
        new_id[image.image_id] = image_id
        points = np.asarray(keypoints[name], np.float64)
        out.add_image_with_trivial_frame(
            pycolmap.Image(name=name, keypoints=points, camera_id=camera_id, image_id=image_id),
            image.cam_from_world(),
        )
    copy_points(model, out, new_id, keep_ids=True)
    return out


def copy_points(
    model: pycolmap.Reconstruction, out: pycolmap.Reconstruction, new_id: Mapping[int, int], keep_ids: bool
) -> None:
    """Add `model`'s 3D points to `out`, their tracks restricted to the images of `new_id` (model image
    id -> `out` image id, same point2D indices) and renumbered; a point left with fewer than two
    observations is dropped. xyz, colour and error are kept, and with `keep_ids` the point ids."""
    for point_id, point in model.points3D.items():
        kept = [
            pycolmap.TrackElement(new_id[e.image_id], e.point2D_idx)
            for e in point.track.elements
            if e.image_id in new_id
        ]
        if len(kept) < 2:
            continue
        kept_point = pycolmap.Point3D(
            xyz=point.xyz, track=pycolmap.Track(kept), color=point.color, error=point.error
        )
        if keep_ids:
            out.add_point3D_with_id(point_id, kept_point)
        else:
            out.add_point3D(kept_point.xyz, kept_point.track, kept_point.color)
