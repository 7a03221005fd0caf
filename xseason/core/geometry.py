"""Poses and cameras in xseason's conventions (docs/FORMAT.md §1).

- Poses are world-to-camera: x_cam = R(q) x_world + t, q = (qw, qx, qy, qz), Hamilton.
- Cameras are COLMAP models with COLMAP parameters (principal point at W/2 = image centre).
- Pixel coordinates returned and accepted here use the OpenCV convention: the centre of
  the top-left pixel is (0, 0). COLMAP's convention is +0.5 of ours.
All functions are vectorised over N points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# COLMAP model name -> number of parameters.
CAMERA_MODELS: dict[str, int] = {
    "SIMPLE_PINHOLE": 3,
    "PINHOLE": 4,
    "SIMPLE_RADIAL": 4,
    "RADIAL": 5,
    "OPENCV": 8,
    "FULL_OPENCV": 12,
    "SIMPLE_RADIAL_FISHEYE": 4,
    "RADIAL_FISHEYE": 5,
    "OPENCV_FISHEYE": 8,
    "FOV": 5,
    "THIN_PRISM_FISHEYE": 12,
}
# models with one focal length (f, cx, cy, ...); the others start with fx, fy, cx, cy
SINGLE_FOCAL_MODELS = ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE")


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices (normalised first)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    r = np.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return r.reshape(q.shape[:-1] + (3, 3))


def rotmat_to_qvec(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> unit quaternion (w, x, y, z) with w >= 0."""
    r = np.asarray(r, dtype=np.float64)
    k = (
        np.array(
            [
                [r[0, 0] - r[1, 1] - r[2, 2], r[1, 0] + r[0, 1], r[2, 0] + r[0, 2], r[2, 1] - r[1, 2]],
                [r[1, 0] + r[0, 1], r[1, 1] - r[0, 0] - r[2, 2], r[2, 1] + r[1, 2], r[0, 2] - r[2, 0]],
                [r[2, 0] + r[0, 2], r[2, 1] + r[1, 2], r[2, 2] - r[0, 0] - r[1, 1], r[1, 0] - r[0, 1]],
                [r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], r[0, 0] + r[1, 1] + r[2, 2]],
            ]
        )
        / 3.0
    )
    vals, vecs = np.linalg.eigh(k)
    x, y, z, w = vecs[:, np.argmax(vals)]
    q = np.array([w, x, y, z])
    return q if q[0] >= 0 else -q


@dataclass(frozen=True)
class Pose:
    """World-to-camera rigid transform: x_cam = R @ x_world + t."""

    R: np.ndarray  # (3, 3)
    t: np.ndarray  # (3,)

    @classmethod
    def from_qt(cls, qvec, tvec) -> Pose:
        return cls(qvec_to_rotmat(np.asarray(qvec, float)), np.asarray(tvec, dtype=np.float64).reshape(3))

    @classmethod
    def from_cam_to_world(cls, matrix: np.ndarray) -> Pose:
        """From a 4x4 (or 3x4) camera-to-world matrix [R | c], as 7-Scenes and many datasets store.

        The rotation is projected onto the nearest rotation (via a unit quaternion), since stored
        matrices are rounded; the camera centre c is kept exactly.
        """
        m = np.asarray(matrix, dtype=np.float64)
        R = qvec_to_rotmat(rotmat_to_qvec(m[:3, :3])).T
        return cls(R, -R @ m[:3, 3])

    @property
    def qvec(self) -> np.ndarray:
        return rotmat_to_qvec(self.R)

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.R.T @ self.t

    def matrix(self) -> np.ndarray:
        """4x4 world-to-camera matrix."""
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.R, self.t
        return m

    def inverse(self) -> Pose:
        return Pose(self.R.T, -self.R.T @ self.t)

    def __matmul__(self, other: Pose) -> Pose:
        """Composition: (self @ other)(x) = self(other(x))."""
        return Pose(self.R @ other.R, self.R @ other.t + self.t)

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Apply to (N, 3) world points -> (N, 3) camera points."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t


@dataclass(frozen=True)
class Camera:
    """A COLMAP camera (model name, image size, COLMAP parameters)."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in CAMERA_MODELS:
            raise ValueError(f"unknown camera model {self.model!r}; known: {', '.join(CAMERA_MODELS)}")
        if len(self.params) != CAMERA_MODELS[self.model]:
            raise ValueError(
                f"camera model {self.model} takes {CAMERA_MODELS[self.model]} parameters, "
                f"got {len(self.params)}"
            )

    def to_pycolmap(self):
        import pycolmap  # only the distorted models need it

        return pycolmap.Camera(
            model=self.model, width=int(self.width), height=int(self.height), params=list(self.params)
        )

    def calibration_matrix(self) -> np.ndarray:
        """3x3 K in the OpenCV pixel convention (principal point shifted by -0.5)."""
        f, cx, cy = self._pinhole()
        return np.array([[f[0], 0, cx - 0.5], [0, f[1], cy - 0.5], [0, 0, 1.0]])

    def _pinhole(self) -> tuple[tuple[float, float], float, float]:
        p = self.params
        if self.model in SINGLE_FOCAL_MODELS:
            return (p[0], p[0]), p[1], p[2]
        return (p[0], p[1]), p[2], p[3]

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixels (OpenCV convention). Points behind give NaN."""
        pts = np.asarray(points_cam, dtype=np.float64)
        z = pts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = pts[:, :2] / z[:, None]
        uv[z <= 0] = np.nan
        if self.model in ("SIMPLE_PINHOLE", "PINHOLE"):
            f, cx, cy = self._pinhole()
            return uv * np.asarray(f) + np.array([cx, cy]) - 0.5
        # Distorted models: COLMAP's own implementation, exactly.
        front = np.where((z > 0)[:, None], pts, np.array([0.0, 0.0, 1.0]))
        out = np.asarray(
            self.to_pycolmap().img_from_cam(np.ascontiguousarray(front), False), dtype=np.float64
        )
        out -= 0.5
        out[z <= 0] = np.nan
        return out

    def unproject(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) pixels (OpenCV convention) -> (N, 3) rays in the camera frame with z = 1."""
        px = np.asarray(pixels, dtype=np.float64)
        if self.model in ("SIMPLE_PINHOLE", "PINHOLE"):
            f, cx, cy = self._pinhole()
            xy = (px + 0.5 - np.array([cx, cy])) / np.asarray(f)
        else:
            xy = np.asarray(self.to_pycolmap().cam_from_img(np.ascontiguousarray(px + 0.5)), dtype=np.float64)
        return np.concatenate([xy, np.ones((len(xy), 1))], axis=1)


def project_points(camera: Camera, pose: Pose, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points -> (pixels (N, 2) OpenCV convention, depth (N,)); behind-camera pixels are NaN."""
    cam = pose.transform(points_world)
    return camera.project(cam), cam[:, 2]


def in_image(camera: Camera, pixels: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of pixels inside the image, at least `margin` px from the border."""
    x, y = pixels[:, 0], pixels[:, 1]
    with np.errstate(invalid="ignore"):
        return (
            (x >= -0.5 + margin)
            & (x <= camera.width - 0.5 - margin)
            & (y >= -0.5 + margin)
            & (y <= camera.height - 0.5 - margin)
        )
