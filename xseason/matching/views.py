"""The images of a scene as the matching stages see them: camera, registered pose, condition, mask.

`views_from_manifest` makes one `ImageView` per manifest record, in the manifest's order (the
store's image_id is that position). A registered image has the camera and pose of its registered
model; an unregistered one keeps pose None and the camera of its sequence (its first registered
image's), else the manifest's (`ImageRecord.camera_for` at its file's size).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xseason.core.colmap import camera_from_colmap, pose_from_rigid
from xseason.core.errors import XSeasonError
from xseason.core.geometry import Camera, Pose
from xseason.inputs.manifest import DEFAULT_FOCAL_FACTOR, Manifest

if TYPE_CHECKING:
    import pycolmap


class ViewError(XSeasonError):
    """An image or mask of a view cannot be read, or does not fit its camera."""


@dataclass(frozen=True)
class ImageView:
    """One image as the association/correspondence stages see it (pose None = not registered)."""

    name: str
    sequence: str
    condition: str
    camera: Camera
    pose: Pose | None
    mask: Path | None = None
    season: str | None = None
    daytime: str | None = None
    weather: str | None = None


@lru_cache(maxsize=256)
def load_mask(path: Path | None, width: int, height: int) -> np.ndarray | None:
    """Boolean (H, W) exclusion mask (non-zero = excluded) or None; cached."""
    if path is None:
        return None
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ViewError(f"{path}: cannot read the mask")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != (height, width):
        raise ViewError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}")
    return mask != 0


def unmasked(view: ImageView, pixels: np.ndarray) -> np.ndarray:
    """True where a pixel is not excluded by the view's mask (pixels must be inside the image)."""
    mask = load_mask(view.mask, view.camera.width, view.camera.height)
    if mask is None:
        return np.ones(len(pixels), bool)
    ij = np.rint(pixels).astype(np.int64)
    ij[:, 0] = np.clip(ij[:, 0], 0, view.camera.width - 1)
    ij[:, 1] = np.clip(ij[:, 1], 0, view.camera.height - 1)
    return ~mask[ij[:, 1], ij[:, 0]]


def world_rays(view: ImageView, pixels: np.ndarray) -> np.ndarray:
    """(N, 3) unit world directions of the rays through `pixels` of a registered view."""
    d = view.camera.unproject(pixels) @ view.pose.R  # camera -> world: R^T d
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def views_from_manifest(
    manifest: Manifest,
    models: Mapping[str, pycolmap.Reconstruction],
    default_focal_factor: float = DEFAULT_FOCAL_FACTOR,
) -> list[ImageView]:
    """One `ImageView` per manifest record, camera and pose from the registered models (module doc).

    `models` maps each sequence to its registered model (one world frame); `default_focal_factor`
    gives the camera of an image without intrinsics whose sequence has no registered image.
    """
    registered: dict[str, tuple[Camera, Pose]] = {}
    sequence_camera: dict[str, Camera] = {}
    for sequence, model in models.items():
        for image in model.images.values():
            if not image.has_pose:
                continue
            camera = camera_from_colmap(model.camera(image.camera_id))
            registered[image.name] = (camera, pose_from_rigid(image.cam_from_world()))
            sequence_camera.setdefault(str(sequence), camera)
    views = []
    for r in manifest.images:
        camera, pose = registered.get(r.image, (None, None))
        if camera is None:
            camera = sequence_camera.get(r.sequence)
        if camera is None:
            camera = r.camera_for(*_image_size(r.path), default_focal_factor)
        views.append(
            ImageView(r.image, r.sequence, r.condition, camera, pose, r.mask, r.season, r.daytime, r.weather)
        )
    return views


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ViewError(f"{path}: cannot read the image (needed for its size)")
    return image.shape[1], image.shape[0]


__all__ = ["ImageView", "ViewError", "load_mask", "unmasked", "views_from_manifest", "world_rays"]
