"""Vectorised, seeded procedural noise and band-limited patterns, evaluated at world points.

Everything here is a pure function of its inputs (no global random state), so a surface
point has the same texture from every camera. Anti-aliasing is analytic: every function
takes the pixel footprint `fp` (metres covered by one pixel at that point) and fades out
detail finer than about two footprints (value noise octaves) or box-filters it exactly
(periodic lines and pulses), so textures stay stable under view changes.
"""

from __future__ import annotations

import numpy as np

_M1, _M2, _M3 = np.uint32(0x9E3779B1), np.uint32(0x85EBCA77), np.uint32(0xC2B2AE3D)


def hash_u32(*keys: np.ndarray, seed: int = 0) -> np.ndarray:
    """Mix integer arrays (broadcast together) into well-scrambled uint32 hashes."""
    h = np.full(np.broadcast(*keys).shape, np.uint32(seed * 2654435761 % 2**32), dtype=np.uint32)
    for k in keys:
        h = h ^ (np.asarray(k).astype(np.int64).astype(np.uint32) * _M1)
        h = (h ^ (h >> np.uint32(15))) * _M2
        h = (h ^ (h >> np.uint32(13))) * _M3
        h = h ^ (h >> np.uint32(16))
    return h


def hash_unit(*keys: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hashes as floats uniform in [0, 1)."""
    return hash_u32(*keys, seed=seed).astype(np.float64) * (1.0 / 2**32)


_P = np.array([0x8DA6B343, 0xD8163841, 0xCB1AB31F], dtype=np.uint32)
_CORNERS = np.array([[dx, dy, dz] for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)], dtype=np.uint32)
_CORNER_KEYS = (_CORNERS * _P).sum(axis=1, dtype=np.uint32)  # (8,)


def _mix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint32(16))) * _M2
    h = (h ^ (h >> np.uint32(13))) * _M3
    return h ^ (h >> np.uint32(16))


def value_noise(p: np.ndarray, freq: float, seed: int = 0) -> np.ndarray:
    """Trilinear value noise in [0, 1] of (N, 3) points at `freq` cells per metre."""
    q = p.astype(np.float32) * np.float32(freq)  # float32: ample for |p| < 1 km and freq < 100 / m
    i = np.floor(q)
    f = q - i
    w = f * f * (3.0 - 2.0 * f)
    k = i.astype(np.int32).view(np.uint32)
    base = k[:, 0] * _P[0] + k[:, 1] * _P[1] + k[:, 2] * _P[2] + np.uint32(seed * 0x9E3779B1 % 2**32)
    vals = _mix(base[:, None] + _CORNER_KEYS).astype(np.float32) * np.float32(
        1.0 / 2**32
    )  # (N, 8), corner order x, y, z
    wx, wy, wz = w[:, 0:1], w[:, 1:2], w[:, 2:3]
    v = vals.reshape(-1, 2, 4)
    vx = v[:, 0] * (1 - wx) + v[:, 1] * wx  # (N, 4): (y, z)
    vy = vx[:, :2] * (1 - wy) + vx[:, 2:] * wy  # (N, 2): z
    return (vy[:, 0] * (1 - wz[:, 0]) + vy[:, 1] * wz[:, 0]).astype(np.float64)


def octave_weight(freq: float, fp: np.ndarray) -> np.ndarray:
    """How much of a pattern with `freq` cycles per metre survives a footprint fp (1 -> 0 near Nyquist)."""
    return np.clip(2.0 - 4.0 * freq * fp, 0.0, 1.0)


def fbm(
    p: np.ndarray, fp: np.ndarray, freq: float, octaves: int, seed: int = 0, gain: float = 0.5
) -> np.ndarray:
    """Band-limited fractal noise, zero mean, roughly in [-1, 1]; octaves above Nyquist fade to 0.

    Each octave is evaluated only at the points where it is not faded out.
    """
    out = np.zeros(len(p))
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        f = freq * 2.0**o
        w = octave_weight(f, fp)
        live = np.flatnonzero(w > 0)
        if len(live) == len(p):
            out += amp * w * (value_noise(p, f, seed + 101 * o) - 0.5) * 2.0
        elif len(live):
            out[live] += amp * w[live] * (value_noise(p[live], f, seed + 101 * o) - 0.5) * 2.0
        norm += amp
        amp *= gain
    return out / norm


def pulse(x: np.ndarray, period: float | np.ndarray, width: float | np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Box-filtered coverage in [0, 1] of a pulse train (pulses [0, width) every `period`)
    over [x-fp/2, x+fp/2]."""
    fp = np.maximum(fp, 1e-6)

    def integral(t: np.ndarray) -> np.ndarray:
        n = np.floor(t / period)
        return n * width + np.minimum(t - n * period, width)

    return np.clip((integral(x + fp / 2) - integral(x - fp / 2)) / fp, 0.0, 1.0)


def cell_random(
    u: np.ndarray, v: np.ndarray, size: float | np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer cell ids (iu, iv) of a `size` grid and a uniform random value per cell."""
    iu, iv = np.floor(u / size).astype(np.int64), np.floor(v / size).astype(np.int64)
    return iu, iv, hash_unit(iu, iv, seed=seed)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
