"""Procedural materials (albedo, emission) of world points, and the lighting of a condition.

Textures are functions of the world hit point `p`, the face normal `n`, the triangle's
kind/object and the pixel footprint `fp` (metres per pixel at that point, for analytic
anti-aliasing): the same surface looks the same from every camera. Detail spans several
scales: bricks or stone panels, windows with frames, curtains and lit rooms, shop windows
with random goods, fascia lettering, paving slabs, asphalt grain, road markings and a
zebra crossing, bark, per-leaf colours, sign pictograms; for the random layout also stone
blocks, cobbles, water, bronze, wood, dome slates, shelter glass with adverts, clothes, and a
texture-density knob (`World.detail`, `Buildings.detail`: contrast of the fine detail, 0 = plain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xseason.synth.conditions import Condition
from xseason.synth.noise import cell_random, fbm, hash_unit, octave_weight, pulse, smoothstep
from xseason.synth.world import (
    K_BRONZE,
    K_CAR,
    K_CLOTH,
    K_COBBLE,
    K_CURB,
    K_DOME,
    K_FACADE,
    K_GLASS,
    K_LAMP,
    K_LEAF,
    K_PANE,
    K_POLE,
    K_ROAD,
    K_ROOF,
    K_SIDEWALK,
    K_SIGN,
    K_SKIN,
    K_STONE,
    K_TRUNK,
    K_WATER,
    K_WHEEL,
    K_WOOD,
    Buildings,
    World,
)

WARM_LIGHT = np.array([1.0, 0.78, 0.5])


@dataclass
class Surface:
    """Shading inputs for N surface points."""

    p: np.ndarray  # (N, 3) world points
    n: np.ndarray  # (N, 3) unit normals facing the camera
    kind: np.ndarray  # (N,)
    obj: np.ndarray  # (N,)
    fp: np.ndarray  # (N,) footprint (m)
    view: np.ndarray  # (N, 3) unit direction from the camera to the point

    def subset(self, m: np.ndarray) -> Surface:
        return Surface(self.p[m], self.n[m], self.kind[m], self.obj[m], self.fp[m], self.view[m])


def _facade_uv(s: Surface) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal coordinate along a vertical face (p . its horizontal tangent, the tangent's larger
    component positive: x on faces along x, y on faces along y), and height. Horizontal faces: x."""
    along_y = np.abs(s.n[:, 0]) > np.abs(s.n[:, 1])
    u = np.where(along_y, s.p[:, 1], s.p[:, 0])
    turned = np.flatnonzero(np.minimum(np.abs(s.n[:, 0]), np.abs(s.n[:, 1])) > 1e-9)
    if len(turned):  # rotated and curved faces (axis-aligned ones keep the exact x or y above)
        t = np.stack([-s.n[turned, 1], s.n[turned, 0]], 1)
        t *= np.where(along_y[turned], np.sign(t[:, 1]), np.sign(t[:, 0]))[:, None] / np.linalg.norm(
            t, axis=1, keepdims=True
        )
        u[turned] = np.einsum("ij,ij->i", s.p[turned, :2], t)
    return u, s.p[:, 2]


def _building_uv(s: Surface, b: Buildings) -> tuple[np.ndarray, np.ndarray]:
    """`_facade_uv`, with arc length round the axis on curved facades (`Buildings.curve`)."""
    u, v = _facade_uv(s)
    if b.curve is not None:
        c = b.curve[s.obj]
        m = np.flatnonzero(c[:, 2] > 0)
        d = s.p[m, :2] - c[m, :2]
        u[m] = c[m, 2] * np.arctan2(d[:, 1], d[:, 0])
    return u, v


def _plain(alb: np.ndarray, base: np.ndarray, detail: float | np.ndarray) -> np.ndarray:
    """Blend albedo towards `base` (the surface's plain colour): detail 1 = unchanged, 0 = plain."""
    return base + np.reshape(detail, (-1, 1)) * (alb - base)


def _grain(s: Surface, freq: float, octaves: int, seed: int) -> np.ndarray:
    return fbm(s.p, s.fp, freq, octaves, seed)


def _random_colours(u, v, fp, sizes, seed) -> np.ndarray:
    """Multi-scale random colour blocks (posters, shop goods, pictograms), faded below ~2 px."""
    out = np.zeros((len(u), 3))
    amp = 1.0
    for k, size in enumerate(sizes):
        w = octave_weight(1.0 / size, fp)[:, None]
        iu, iv, _ = cell_random(u, v, size, seed + k)
        rgb = np.stack([hash_unit(iu, iv, seed=seed + 17 * k + c) for c in range(3)], 1)
        out += amp * (w * rgb + (1 - w) * 0.5)
        amp *= 0.6
    return out / sum(0.6**k for k in range(len(sizes)))


def _road(s: Surface, rw: float) -> np.ndarray:
    x, y = s.p[:, 0], s.p[:, 1]
    g = (
        0.11
        + 0.035 * _grain(s, 4.0, 5, 11)
        + 0.02 * smoothstep(0.55, 0.75, fbm(s.p, s.fp, 0.15, 2, 12) * 0.5 + 0.5)
    )
    paint = pulse(y + 0.06, 1e4, 0.12, s.fp) * pulse(x, 6.0, 3.0, s.fp)
    paint = paint + pulse(np.abs(y) - (rw - 0.35), 1e4, 0.12, s.fp)
    zebra = pulse(x - 24.0, 1e4, 3.0, s.fp) * pulse(y + 0.25, 1.0, 0.5, s.fp) * (np.abs(y) < rw - 0.6)
    paint = np.clip(paint + zebra, 0, 1)
    return np.repeat(g[:, None], 3, 1) * [1.0, 1.0, 1.05] * (1 - paint[:, None]) + 0.7 * paint[:, None]


def _sidewalk(s: Surface) -> np.ndarray:
    x, y = s.p[:, 0], s.p[:, 1]
    ys = y + 0.25 * np.floor(x / 0.5)
    joints = 1 - (1 - pulse(x, 0.5, 0.015, s.fp)) * (1 - pulse(ys, 0.5, 0.015, s.fp))
    _, _, tint = cell_random(x, ys, 0.5, 21)
    base = 0.36 * (1 + octave_weight(2.0, s.fp) * 0.25 * (tint - 0.5)) * (1 + 0.12 * _grain(s, 4.0, 4, 22))
    return (base * (1 - 0.55 * joints))[:, None] * [1.0, 0.96, 0.9]


def _curb(s: Surface) -> np.ndarray:
    j = pulse(s.p[:, 0], 1.0, 0.01, s.fp)
    v = 0.5 * (1 + 0.15 * _grain(s, 5.0, 3, 31)) * (1 - 0.5 * j)
    return v[:, None] * [1.0, 1.0, 0.97]


def _brick(s: Surface, colour: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """0.075 m courses, 0.227 m stretchers in half-bond, light mortar, per-brick tone."""
    row = np.floor(v / 0.087)
    ub = u + 0.1135 * (row % 2)
    mortar = 1 - (1 - pulse(v, 0.087, 0.012, s.fp)) * (1 - pulse(ub, 0.227, 0.012, s.fp))
    bh = hash_unit(np.floor(ub / 0.227).astype(np.int64), row.astype(np.int64), seed=43)
    brick = colour * (1 + octave_weight(1 / 0.227, s.fp) * 0.45 * (bh - 0.5))[:, None]
    return brick * (1 - mortar[:, None]) + 0.45 * mortar[:, None]


def _panels(s: Surface, colour: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Stone panels 1.2 x 0.6 m with dark joints and per-panel tone."""
    us = u + 0.6 * (np.floor(v / 0.6) % 2)
    joint = 1 - (1 - pulse(v, 0.6, 0.02, s.fp)) * (1 - pulse(us, 1.2, 0.02, s.fp))
    _, _, ph = cell_random(us, v, 0.6, 44)
    return (
        colour * (1 + 0.3 * octave_weight(1 / 0.6, s.fp) * (ph - 0.5))[:, None] * (1 - 0.6 * joint[:, None])
    )


def _plaster(s: Surface, colour: np.ndarray, v: np.ndarray, floor_height: np.ndarray) -> np.ndarray:
    """Plaster with floor cornices and large stains."""
    cornice = pulse(v - floor_height + 0.1, floor_height, 0.18, s.fp)
    return colour * ((1 + 0.25 * cornice) * (1 + 0.2 * fbm(s.p, s.fp, 0.5, 3, 45)))[:, None]


def _wall(s: Surface, b: Buildings, i: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Wall albedo by building style (0 brick, 1 plaster, 2 stone panels), with fine grain."""
    # Fine grain, plus non-periodic weathering (0.3 - 2.5 m) that keeps repeated patterns distinctive.
    weathering = 0.3 * fbm(s.p, s.fp, 0.4, 4, 46)
    colour = b.colour[i] * ((1 + 0.15 * _grain(s, 3.0, 5, 41)) * (1 + weathering))[:, None]
    out = np.empty_like(colour)
    for style in range(3):
        m = b.style[i] == style
        if not m.any():
            continue
        if style == 0:
            out[m] = _brick(s.subset(m), colour[m], u[m], v[m])
        elif style == 1:
            out[m] = _plaster(s.subset(m), colour[m], v[m], b.floor_height[i[m]])
        else:
            out[m] = _panels(s.subset(m), colour[m], u[m], v[m])
    if b.detail is not None:
        out = _plain(out, b.colour[i], b.detail[i])
    return out


def _facade(s: Surface, b: Buildings, cond: Condition) -> tuple[np.ndarray, np.ndarray]:
    i = s.obj
    u, v = _building_uv(s, b)
    alb = _wall(s, b, i, u, v)
    emit = np.zeros_like(alb)
    per, fh = b.window_period[i], b.floor_height[i]
    ww, wh = b.window_size[i, 0] * per, b.window_size[i, 1] * fh
    iu, iv = np.floor(u / per).astype(np.int64), np.floor(v / fh).astype(np.int64)
    floors = np.floor((b.height[i] - 0.6) / fh)
    upper = (iv >= 1) & (iv < floors)
    if b.blank is not None:
        upper &= ~b.blank[i]
    # Upper-floor windows with frames (0.08 m), glass, curtains; some lit at night.
    ou, ov = (per - ww) / 2, fh * 0.35
    frame = pulse(u - ou + 0.08, per, ww + 0.16, s.fp) * pulse(v - ov + 0.08, fh, wh + 0.16, s.fp)
    glass = pulse(u - ou, per, ww, s.fp) * pulse(v - ov, fh, wh, s.fp)
    frame, glass = (frame - glass) * upper, glass * upper
    key = hash_unit(iu, iv, b.seed[i], seed=51)
    curtain = (hash_unit(iu, iv, b.seed[i], seed=52) < 0.45) * pulse(v - ov - 0.55 * wh, fh, 0.45 * wh, s.fp)
    glass_col = (0.04 + 0.06 * key)[:, None] * [0.8, 0.9, 1.0] + 0.05 * (fbm(s.p, s.fp, 1.0, 2, 53) + 1)[
        :, None
    ]
    glass_col = glass_col * (1 - curtain[:, None]) + curtain[:, None] * (0.35 + 0.3 * key)[:, None] * [
        1,
        0.9,
        0.8,
    ]
    frame_col = np.where((b.seed[i] % 2 == 0)[:, None], 0.75, 0.08) * np.ones(3)
    alb = alb * (1 - frame - glass)[:, None] + frame[:, None] * frame_col + glass[:, None] * glass_col
    lit = (hash_unit(iu, iv, b.seed[i], seed=54) < cond.windows)[:, None]
    emit += glass[:, None] * lit * WARM_LIGHT * (0.25 + 0.35 * key)[:, None] * (1 - 0.5 * curtain[:, None])
    # Shop fronts on the ground floor: a fascia with lettering and a window full of goods.
    g = b.shop[i] & (iv == 0)
    if b.blank is not None:
        g &= ~b.blank[i]
    fascia = g * pulse(v - 2.45, 1e4, 0.5, s.fp)
    letters = (cell_random(u, v * 0.5, 0.11, 55)[2] < 0.45) * pulse(v - 2.55, 1e4, 0.3, s.fp)
    fcol = np.stack([hash_unit(b.seed[i], seed=56 + c) for c in range(3)], 1) * 0.6
    fcol = fcol * (1 - letters[:, None]) + 0.85 * letters[:, None]
    shopwin = g * pulse(u - 0.3, per, per - 0.6, s.fp) * pulse(v - 0.5, 1e4, 1.8, s.fp)
    goods = _random_colours(u, v, s.fp, (0.5, 0.16, 0.06), 57) * 0.55
    alb = alb * (1 - fascia - shopwin)[:, None] + fascia[:, None] * fcol + shopwin[:, None] * goods
    # Posters on the ground floor of the other buildings: one in about half of the bays.
    has = ~b.shop[i] & (iv == 0) & (hash_unit(iu, b.seed[i], seed=59) < 0.5)
    if b.blank is not None:
        has &= ~b.blank[i]
    poster = has * pulse(u - 0.25 * per, per, 0.5 * per, s.fp) * pulse(v - 0.8, 1e4, 1.2, s.fp)
    art = _random_colours(u * 1.3, v, s.fp, (0.3, 0.1, 0.04), 60) * 0.8
    alb = alb * (1 - poster)[:, None] + poster[:, None] * art
    emit += shopwin[:, None] * goods * 1.2 * (cond.windows > 0)
    return alb, emit


def _sign(s: Surface) -> np.ndarray:
    u, v = _facade_uv(s)
    side = (s.n[:, 0] + s.n[:, 1] > 0).astype(np.int64)
    base = np.stack([hash_unit(s.obj, side, seed=61 + c) for c in range(3)], 1) * 0.8
    pict = _random_colours(u, v, s.fp, (0.2, 0.07, 0.025), 62) * 0.9
    mix = (
        hash_unit(np.floor(u / 0.07).astype(np.int64), np.floor(v / 0.07).astype(np.int64), s.obj, seed=63)
        < 0.5
    )
    return np.where(mix[:, None], pict, base)


def _leaf(s: Surface, season: str) -> np.ndarray:
    h = hash_unit(s.obj, seed=71)
    if season == "autumn":
        pal = np.array(
            [[0.55, 0.2, 0.03], [0.45, 0.06, 0.03], [0.6, 0.42, 0.04], [0.28, 0.14, 0.05], [0.3, 0.3, 0.05]]
        )
        return (
            pal[np.minimum((h * len(pal)).astype(int), len(pal) - 1)]
            * (0.7 + 0.6 * hash_unit(s.obj, seed=72))[:, None]
        )
    return np.array([0.07, 0.2, 0.035]) * (0.55 + 0.9 * h)[:, None]


def _planar_coords(s: Surface) -> tuple[np.ndarray, np.ndarray]:
    """In-surface coordinates: (x, y) on upward or downward faces, `_facade_uv` on the others."""
    u, v = _facade_uv(s)
    flat = np.abs(s.n[:, 2]) > 0.7
    return np.where(flat, s.p[:, 0], u), np.where(flat, s.p[:, 1], v)


def _stone(s: Surface, detail: float) -> np.ndarray:
    """Dressed stone: 0.6 x 0.3 m blocks in half-bond, per-block tone, a tint per object."""
    u, v = _planar_coords(s)
    us = u + 0.3 * (np.floor(v / 0.3) % 2)
    joint = 1 - (1 - pulse(v, 0.3, 0.015, s.fp)) * (1 - pulse(us, 0.6, 0.015, s.fp))
    _, _, tone = cell_random(us, v, 0.3, 101)
    tint = np.stack([hash_unit(s.obj, seed=102 + c) for c in range(3)], 1)
    base = 0.42 + 0.1 * tint
    g = (1 + 0.3 * octave_weight(1 / 0.6, s.fp) * (tone - 0.5)) * (1 + 0.15 * _grain(s, 3.0, 4, 103))
    return _plain(base * (g * (1 - 0.5 * joint))[:, None], base, detail)


def _cobble(s: Surface, detail: float) -> np.ndarray:
    """Cobblestones 0.14 m in staggered rows, dark joints, per-stone tone."""
    u, v = _planar_coords(s)
    us = u + 0.07 * (np.floor(v / 0.14) % 2)
    joint = 1 - (1 - pulse(v, 0.14, 0.02, s.fp)) * (1 - pulse(us, 0.14, 0.02, s.fp))
    _, _, tone = cell_random(us, v, 0.14, 111)
    base = np.array([0.3, 0.28, 0.26])
    g = (1 + 0.5 * octave_weight(1 / 0.14, s.fp) * (tone - 0.5)) * (1 + 0.1 * _grain(s, 6.0, 3, 112))
    return _plain(base * (g * (1 - 0.6 * joint))[:, None], base, detail)


def _dome(s: Surface) -> np.ndarray:
    """Slate or copper courses (by object parity) with per-tile tone."""
    z = s.p[:, 2]
    h = s.p[:, 0] + s.p[:, 1] + 0.15 * (np.floor(z / 0.25) % 2)
    course = pulse(z, 0.25, 0.03, s.fp)
    _, _, tone = cell_random(h, z, 0.3, 121)
    base = np.where((s.obj % 2 == 0)[:, None], [0.16, 0.17, 0.2], [0.17, 0.34, 0.27])
    g = (1 + 0.35 * octave_weight(1 / 0.3, s.fp) * (tone - 0.5)) * (1 + 0.2 * fbm(s.p, s.fp, 0.7, 3, 122))
    return base * (g * (1 - 0.45 * course))[:, None]


def _pane(s: Surface) -> np.ndarray:
    """Shelter glass (dark, faintly blue) with an advert on about half of the 1.2 m panels."""
    u, v = _facade_uv(s)
    glass = (0.06 + 0.03 * fbm(s.p, s.fp, 1.0, 2, 131))[:, None] * [0.8, 0.9, 1.0]
    panel = np.floor(u / 1.2).astype(np.int64)
    ad = (
        (hash_unit(panel, s.obj, seed=132) < 0.5)
        * pulse(v - 0.4, 1e4, 1.6, s.fp)
        * pulse(u - 0.1, 1.2, 1.0, s.fp)
    )
    art = _random_colours(u, v, s.fp, (0.4, 0.12, 0.04), 133) * 0.8
    return glass * (1 - ad[:, None]) + art * ad[:, None]


def materials(s: Surface, world: World, colours: np.ndarray, cond: Condition, rw: float):
    """Albedo (N, 3) and emission (N, 3, before the condition's light levels) of surface points.

    `colours`: the colour table of the moving objects (indexed by `obj` of cars, clothes, bicycles).
    """
    alb = np.zeros((len(s.p), 3))
    emit = np.zeros((len(s.p), 3))
    for kind in np.unique(s.kind):
        m = s.kind == kind
        sub = s.subset(m)
        if kind == K_ROAD:
            alb[m] = _road(sub, rw)
            if world.detail != 1.0:
                alb[m] = _plain(alb[m], np.array([0.11, 0.11, 0.115]), world.detail)
        elif kind == K_SIDEWALK:
            alb[m] = _sidewalk(sub)
            if world.detail != 1.0:
                alb[m] = _plain(alb[m], np.array([0.3, 0.29, 0.27]), world.detail)
        elif kind == K_CURB:
            alb[m] = _curb(sub)
        elif kind == K_FACADE:
            alb[m], emit[m] = _facade(sub, world.buildings, cond)
        elif kind == K_ROOF:
            alb[m] = (0.25 * (1 + 0.2 * _grain(sub, 2.0, 3, 81)))[:, None]
        elif kind == K_TRUNK:
            bark = 0.16 * (1 + 0.35 * fbm(sub.p * [4, 4, 0.5], sub.fp * 4, 3.0, 3, 82))
            alb[m] = bark[:, None] * [1.0, 0.72, 0.5]
        elif kind == K_LEAF:
            alb[m] = _leaf(sub, cond.leaves)
        elif kind == K_POLE:
            alb[m] = (0.28 * (1 + 0.15 * _grain(sub, 6.0, 2, 83)))[:, None] * [1, 1, 1.05]
        elif kind == K_LAMP:
            alb[m] = 0.7
            emit[m] = WARM_LIGHT * 4.0 * (sub.n[:, 2] < -0.5)[:, None] * (cond.lamps > 0)
        elif kind == K_SIGN:
            alb[m] = _sign(sub)
        elif kind == K_CAR:
            c = colours[sub.obj] * (1 + 0.05 * _grain(sub, 4.0, 2, 84))[:, None]
            alb[m] = np.where((sub.p[:, 2] < 0.45)[:, None], c * 0.3, c)
        elif kind == K_GLASS:
            roof = (sub.n[:, 2] > 0.7)[:, None]
            alb[m] = np.where(
                roof,
                colours[sub.obj],
                (0.1 + 0.04 * _grain(sub, 2.0, 2, 85))[:, None] * [0.85, 0.95, 1.1],
            )
        elif kind == K_WHEEL:
            alb[m] = 0.035
        elif kind == K_STONE:
            alb[m] = _stone(sub, world.detail)
        elif kind == K_COBBLE:
            alb[m] = _cobble(sub, world.detail)
        elif kind == K_WATER:
            ripple = 1 + 0.25 * fbm(sub.p * [1, 1, 0], sub.fp, 2.0, 3, 141)
            alb[m] = ripple[:, None] * [0.04, 0.07, 0.08]
        elif kind == K_BRONZE:
            alb[m] = (1 + 0.4 * fbm(sub.p, sub.fp, 2.0, 4, 142))[:, None] * [0.16, 0.2, 0.13]
        elif kind == K_WOOD:
            u, v = _planar_coords(sub)
            plank = 1 - 0.6 * pulse(v, 0.12, 0.015, sub.fp)
            alb[m] = (plank * (1 + 0.25 * fbm(sub.p * [0.3, 0.3, 3], sub.fp, 3.0, 3, 143)))[:, None] * [
                0.36,
                0.21,
                0.1,
            ]
        elif kind == K_DOME:
            alb[m] = _dome(sub)
        elif kind == K_PANE:
            alb[m] = _pane(sub)
        elif kind in (K_CLOTH, K_SKIN):
            folds = 1 + (0.15 if kind == K_CLOTH else 0.05) * _grain(sub, 5.0, 3, 144)
            alb[m] = colours[sub.obj] * folds[:, None]
    return alb, emit


def weather(s: Surface, alb: np.ndarray, cond: Condition) -> np.ndarray:
    """Snow cover and wetness on upward-facing surfaces (only those are evaluated)."""
    up = smoothstep(0.55, 0.85, s.n[:, 2])
    m = np.flatnonzero(up > 0)
    if not len(m) or (cond.snow <= 0 and cond.wet <= 0):
        return alb
    alb = alb.copy()
    u, a = s.subset(m), alb[m]
    if cond.snow > 0:
        patch = np.clip(0.75 + 1.2 * fbm(u.p, u.fp, 0.8, 4, 91), 0, 1)
        y = np.abs(u.p[:, 1])
        tracks = 1 - 0.75 * (pulse(np.abs(y - 1.75) - 0.55, 1e4, 0.3, u.fp) * (u.kind == K_ROAD))
        cover = cond.snow * up[m] * patch * tracks
        snow = 0.8 * (1 + 0.12 * fbm(u.p, u.fp, 3.0, 4, 92))[:, None] * [0.97, 0.99, 1.0]
        slush = (1 - tracks) * (0.3 + 0.4 * fbm(u.p, u.fp, 1.5, 4, 94))
        a = (a * (1 - cover[:, None]) + snow * cover[:, None]) * (1 - 0.5 * slush)[:, None]
    if cond.wet > 0:
        puddle = smoothstep(0.55, 0.7, fbm(u.p, u.fp, 0.4, 2, 93) * 0.5 + 0.5)
        a = a * (1 - cond.wet * up[m] * (0.35 + 0.4 * puddle))[:, None]
    alb[m] = a
    return alb


def irradiance(
    s: Surface, cond: Condition, lamps: np.ndarray, shadow: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse irradiance (N, 3) and specular highlight (N, 3) from sky, sun and street lamps."""
    nz = s.n[:, 2]
    e = np.asarray(cond.ambient) * (0.55 + 0.45 * nz)[:, None]
    if any(cond.sun):
        ndl = np.clip(s.n @ np.asarray(cond.sun_dir), 0, None)
        if shadow is not None:
            ndl = ndl * ~shadow
        e = e + ndl[:, None] * np.asarray(cond.sun)
    spec = np.zeros_like(e)
    if cond.lamps > 0:
        p32, n32, v32 = s.p.astype(np.float32), s.n.astype(np.float32), s.view.astype(np.float32)
        for lamp in lamps.astype(np.float32):
            near = np.flatnonzero(np.abs(p32[:, 0] - lamp[0]) < 30.0)
            d = lamp - p32[near]
            dist2 = np.einsum("ij,ij->i", d, d)
            ld = d / np.sqrt(dist2)[:, None]
            n = n32[near]
            ndl = np.clip(np.einsum("ij,ij->i", n, ld), 0, None)
            # Lamps light downwards; their reach is cut smoothly between 20 and 30 m along the street.
            gain = (
                np.sqrt(np.clip(-ld[:, 2], 0, None)) * smoothstep(30.0, 20.0, np.abs(d[:, 0])) / (dist2 + 1.0)
            )
            e[near] += (cond.lamps * 9.0 * ndl * gain)[:, None] * WARM_LIGHT
            if cond.wet > 0:
                h = ld - v32[near]
                h /= np.linalg.norm(h, axis=1, keepdims=True)
                nh = np.clip(np.einsum("ij,ij->i", n, h), 0, None)
                spec[near] += (cond.wet * cond.lamps * 6.0 * nh**60 * (n[:, 2] > 0.7) * gain)[
                    :, None
                ] * WARM_LIGHT
    return e, spec


def sky(dirs: np.ndarray, cond: Condition) -> np.ndarray:
    """Sky radiance (N, 3) for unit view directions (world frame)."""
    el = np.clip(dirs[:, 2], -0.2, 1.0)
    t = smoothstep(0.0, 0.45, el)[:, None]
    c = np.asarray(cond.sky_horizon) * (1 - t) + np.asarray(cond.sky_top) * t
    if cond.clouds > 0:
        plane = dirs / np.maximum(dirs[:, 2:3], 0.05) * 100.0
        cl = fbm(plane, np.full(len(dirs), 2.0), 0.01, 5, 95) * 0.5 + 0.5
        cover = cond.clouds * smoothstep(0.45, 0.75, cl)[:, None] * (el > 0)[:, None]
        c = c * (1 - cover) + cover * np.asarray(cond.sky_horizon) * 1.15
    if any(cond.sun):
        glow = np.clip(dirs @ np.asarray(cond.sun_dir), 0, 1) ** 64
        c = c + glow[:, None] * np.asarray(cond.sun) * 0.8
    return c
