"""Cameras and trajectories: one PINHOLE camera, traversals along +x through the street.

Camera frame as in docs/FORMAT.md §1: x right, y down, z forward. A camera with heading
0 and pitch 0 looks along world +x with world +z up in the image. Each sequence rides at
its own lateral offset, height, heading and pitch, with small seeded sinusoidal wobbles in
lateral position and heading, so traversals never repeat each other's viewpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xseason.core.geometry import Camera, Pose
from xseason.synth.config import SynthConfig


@dataclass(frozen=True)
class View:
    """One image to render: its manifest name, sequence, condition and exact camera."""

    image: str  # manifest `image` path, e.g. "images/00-summer-day/0003.png"
    sequence: str
    seq_index: int
    index: int
    condition: str
    camera: Camera
    pose: Pose
    timestamp: float


def synth_camera(cfg: SynthConfig) -> Camera:
    """PINHOLE camera with fx = fy = focal * width and the principal point at the image centre."""
    f = cfg.focal * cfg.width
    return Camera("PINHOLE", cfg.width, cfg.height, (f, f, cfg.width / 2, cfg.height / 2))


def look_pose(centre: np.ndarray, yaw: float, pitch: float) -> Pose:
    """World-to-camera pose of a camera at `centre` with heading `yaw` and `pitch` (radians), no roll."""
    fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    r_c2w = np.stack([right, down, fwd], axis=1)
    return Pose(r_c2w.T, -r_c2w.T @ np.asarray(centre, float))


def make_views(cfg: SynthConfig) -> list[View]:
    """All views of the scene, sequence by sequence, in capture order."""
    camera = synth_camera(cfg)
    out = []
    for si, (spec, name) in enumerate(zip(cfg.sequences, cfg.sequence_names())):
        rng = np.random.default_rng([cfg.seed, 6, si])
        ph = rng.uniform(0, 2 * np.pi, 2)
        for j in range(cfg.images_per_sequence):
            centre = np.array(
                [
                    spec.start_x + j * cfg.spacing,
                    spec.lateral + 0.15 * np.sin(ph[0] + 0.35 * j),
                    spec.height,
                ]
            )
            yaw = np.radians(spec.heading_deg + cfg.yaw_wobble_deg * np.sin(ph[1] + 0.25 * j))
            out.append(
                View(
                    image=f"images/{name}/{j:04d}.png",
                    sequence=name,
                    seq_index=si,
                    index=j,
                    condition=spec.condition,
                    camera=camera,
                    pose=look_pose(centre, yaw, np.radians(spec.pitch_deg)),
                    timestamp=round(si * 86400.0 + j * cfg.spacing / 5.0, 3),
                )
            )
    return out
