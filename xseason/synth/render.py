"""Exact ray casting (open3d RaycastingScene) and shading of one view.

Per pixel centre the renderer returns the exact z-depth (float32, 0 for sky), the semantic
class and whether the surface is a moving object (MOVING_CLASSES: cars, pedestrians, bicycles).
Rays go through pixel centres with `Camera.unproject` (top-left pixel centre = (0, 0)), with
directions scaled to z = 1 in the camera frame, so the hit distance is the z-depth itself.
Colour optionally averages s x s sub-pixel samples (`supersample`); geometry outputs always come
from the centre ray.
Day sun casts ray-traced shadows; street lamps light with inverse-square falloff.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from xseason.core.geometry import Camera
from xseason.synth.cameras import View
from xseason.synth.conditions import CONDITIONS, Condition
from xseason.synth.config import SynthConfig
from xseason.synth.shading import Surface, irradiance, materials, sky, weather
from xseason.synth.world import MOVING_CLASSES, SKY, Mesh, World, cars_for_sequence, leaves


@dataclass
class Rendered:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 z-depth, 0 = sky
    label: np.ndarray  # (H, W) uint8 class ids
    moving: np.ndarray  # (H, W) bool


class SequenceScene:
    """The ray-casting scene of one sequence: static world + its season's leaves + its moving objects
    (parked cars; in the random layout also pedestrians and bicycles, `World.movers`)."""

    def __init__(self, world: World, cfg: SynthConfig, seq_index: int) -> None:
        spec = cfg.sequences[seq_index]
        self.world = world
        self.condition: Condition = CONDITIONS[spec.condition]
        foliage = leaves(world, self.condition.leaves, cfg.world.leaves_per_tree, cfg.seed)
        if world.movers is not None:
            movers, self.colours = world.movers[seq_index]
        else:
            movers, self.colours = cars_for_sequence(world, cfg.world.car_occupancy, cfg.seed, seq_index)
        self.mesh = Mesh.concat([world.static, foliage, movers])
        self.normals = self.mesh.normals
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(
            o3d.core.Tensor(self.mesh.vertices.astype(np.float32)),
            o3d.core.Tensor(self.mesh.triangles.astype(np.uint32)),
        )
        self.road_half_width = world.road_half_width or cfg.world.road_half_width

    def cast(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hit distance (in units of |dir|; inf on a miss) and triangle index (-1 on a miss) per ray."""
        rays = np.concatenate([np.broadcast_to(origin, dirs.shape), dirs], axis=1).astype(np.float32)
        ans = self.scene.cast_rays(o3d.core.Tensor(rays))
        t = ans["t_hit"].numpy().astype(np.float64)
        prim = ans["primitive_ids"].numpy().astype(np.int64)
        prim[~np.isfinite(t)] = -1
        return t, prim

    def shade(
        self, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, prim: np.ndarray, fp_scale: float
    ) -> np.ndarray:
        """Linear radiance (N, 3) of the rays (dirs scaled to camera z = 1; fp_scale = metres per pixel
        per metre)."""
        cond = self.condition
        unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        hit = prim >= 0
        out = np.empty((len(dirs), 3))
        out[~hit] = sky(unit[~hit], cond)
        if hit.any():
            tri = prim[hit]
            p = origin + dirs[hit] * t[hit, None]
            n = self.normals[tri]
            n = np.where((np.einsum("ij,ij->i", n, unit[hit]) > 0)[:, None], -n, n)
            cos = np.abs(np.einsum("ij,ij->i", n, unit[hit]))
            s = Surface(
                p,
                n,
                self.mesh.kind[tri],
                self.mesh.obj[tri],
                t[hit] * fp_scale / np.sqrt(np.maximum(cos, 0.05)),
                unit[hit],
            )
            alb, emit = materials(s, self.world, self.colours, cond, self.road_half_width)
            alb = weather(s, alb, cond)
            shadow = None
            if any(cond.sun):
                rays = np.concatenate([p + n * 0.01, np.broadcast_to(cond.sun_dir, p.shape)], axis=1).astype(
                    np.float32
                )
                shadow = self.scene.test_occlusions(o3d.core.Tensor(rays)).numpy().astype(bool)
            e, spec = irradiance(s, cond, self.world.lamps, shadow)
            lights = max(cond.lamps, cond.windows > 0)
            c = alb * e + spec + emit * lights
            if cond.fog > 0:
                a = np.exp(-cond.fog * t[hit] * np.linalg.norm(dirs[hit], axis=1))[:, None]
                c = c * a + np.asarray(cond.fog_colour) * (1 - a)
            out[hit] = c
        return out


def pixel_grid(width: int, height: int, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(H*W, 2) pixel coordinates (contract convention), row-major, shifted by `offset`."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([u.ravel() + offset[0], v.ravel() + offset[1]], axis=1)


@functools.lru_cache(maxsize=16)
def _camera_rays(cam: Camera, offset: tuple[float, float]) -> np.ndarray:
    """Camera-frame rays (z = 1) through every pixel (+ offset), row-major; cached per camera."""
    return cam.unproject(pixel_grid(cam.width, cam.height, offset))


def render_view(scene: SequenceScene, view: View, supersample: int, seed: int) -> Rendered:
    """Render one view: colour (with the condition's exposure, gamma, noise, rain) and exact geometry."""
    cam, pose = view.camera, view.pose
    h, w = cam.height, cam.width
    r_c2w, origin = pose.R.T, pose.center

    def rays(offset: tuple[float, float]) -> np.ndarray:
        xy = _camera_rays(cam, offset)  # (N, 3) with z = 1
        return xy[:, 0:1] * r_c2w[:, 0] + xy[:, 1:2] * r_c2w[:, 1] + r_c2w[:, 2]

    dirs = rays((0.0, 0.0))
    t, prim = scene.cast(origin, dirs)
    fp_scale = 1.0 / cam.params[0]
    label = np.where(prim >= 0, scene.mesh.label[np.maximum(prim, 0)], SKY).astype(np.uint8)
    depth = np.where(prim >= 0, t, 0.0).astype(np.float32)
    if supersample == 1:
        colour = scene.shade(origin, dirs, t, prim, fp_scale)
    else:
        offs = (np.arange(supersample) + 0.5) / supersample - 0.5
        colour = np.zeros((h * w, 3))
        for dy in offs:
            for dx in offs:
                d = rays((dx, dy))
                colour += scene.shade(origin, d, *scene.cast(origin, d), fp_scale / supersample)
        colour /= supersample**2
    rgb = _develop(
        colour.reshape(h, w, 3), scene.condition, np.random.default_rng([seed, 7, view.seq_index, view.index])
    )
    moving = np.isin(label, list(MOVING_CLASSES))
    return Rendered(rgb, depth.reshape(h, w), label.reshape(h, w), moving.reshape(h, w))


def _develop(linear: np.ndarray, cond: Condition, rng: np.random.Generator) -> np.ndarray:
    """Exposure, gamma 2.2, rain streaks and sensor noise -> uint8 RGB."""
    img = np.clip(linear * cond.exposure, 0, None) ** (1 / 2.2)
    h, w = img.shape[:2]
    if cond.rain > 0:
        import cv2

        drops = (rng.random((h, w)) < 0.002).astype(np.float32)
        k = max(5, h // 25)
        kernel = np.zeros((k, k), np.float32)
        kernel[np.arange(k), np.clip(np.arange(k) // 4 + k // 2 - k // 8, 0, k - 1)] = 1.0 / k
        streaks = cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        img = img + cond.rain * 4.0 * streaks[..., None] * np.array([0.9, 0.92, 1.0])
    if cond.noise > 0:
        sigma = cond.noise * (0.4 + 0.6 * np.sqrt(np.clip(img, 0, 1)))
        img = img + rng.normal(0, 1, img.shape) * sigma
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
