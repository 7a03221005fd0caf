"""The random scene family (`world.layout: random`, preset `random`): a new layout per seed, with
exact ground truth from the same renderer.

The camera routes stay along +x (`cameras.make_views`, offsets drawn by `config.random_sequences`);
the world varies around them. Along x the scene is a run of segments between x_start and x_end:

- street: asphalt road (half width 3.6-5 m per seed, markings), kerbs of 8-22 cm, sidewalks of
  1.8-4.2 m (some rising along x as a ramp with a retaining wall, a railing and steps down at its
  end), a row of buildings; parking lanes where the road is wide enough;
- square: one or both sides set back 12-25 m; the open area paved (slabs or cobbles) with
  fountains (basin, water, stone pillar), turned kiosks, bus shelters, statues, planters, benches,
  trees, lamp posts, bollards, bike racks, sometimes a free-standing round tower and a raised
  terrace at the back with stairs, a ramp and railings;
- courtyard: narrow (walls 2.7-4 m from the centre line), cobbled, no kerb, often a gateway
  spanning the route (a building with a passage 3.8-4.6 m high).

Buildings are boxes, curved fronts (circular arcs, `Buildings.curve`) or boxes with a round corner
tower (dome or cone roof); facades get bays, balconies with railings, arcades (a recessed ground
floor behind columns), colonnades, cornices, domes on drums. Texture density: `World.detail` per
seed (0.15 plain .. 1 busy) scales ground and stone contrast, and x a per-building factor the wall
contrast (`Buildings.detail`); some buildings are blank (no windows). Runs of 2-4 buildings share
one parameter row and one width: identical windows. Street furniture: lamp posts, sign posts,
bollards (8-16 cm thick), railings and fences (2 cm bars), bike racks, benches, planters, hedges
(seasonal leaves like the trees: `World.hedges`), trees.

Per traversal (`World.movers`, seeded per sequence like `cars_for_sequence`, which it reuses for
the parked cars): cars, pedestrians and bicycles (CAR, PERSON, BICYCLE: all in MOVING_CLASSES).

Keep-out: nothing stands within |y| < CORRIDOR below GATE_CLEARANCE (the cameras ride at |y| <=
1.65 m, heights 1.3-2.3 m), so the layout does not depend on the routes. After composition every
camera centre is checked against the mesh (open3d closest points; summer leaves and every
traversal's moving objects included): clutter, trees and movers closer than CAMERA_CLEARANCE are
removed (a gateway too), a conflict with a building or the ground raises a ConfigError.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from xseason.core.errors import ConfigError
from xseason.synth import world as kinds
from xseason.synth.cameras import make_views
from xseason.synth.config import SynthConfig
from xseason.synth.world import (
    BICYCLE,
    BUILDING,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    VEGETATION,
    Buildings,
    Mesh,
    MeshBuilder,
    World,
    build_world,
    building_row,
    cars_for_sequence,
    leaves,
    trunk_and_branches,
)

log = logging.getLogger(__name__)

CORRIDOR = 2.2  # |y| kept free of everything below GATE_CLEARANCE
GATE_CLEARANCE = 3.6  # lowest structure spanning the routes
CAMERA_CLEARANCE = 0.5  # least distance of a camera centre to any geometry
BACK = 40.0  # building blocks reach |y| = road half width + BACK

_SKIN = np.array([[0.55, 0.38, 0.28], [0.42, 0.28, 0.2], [0.25, 0.16, 0.1], [0.62, 0.47, 0.38]])
_CLOTH = np.array(
    [
        [0.05, 0.05, 0.06],
        [0.1, 0.12, 0.3],
        [0.5, 0.06, 0.05],
        [0.6, 0.58, 0.55],
        [0.15, 0.3, 0.12],
        [0.55, 0.42, 0.15],
        [0.3, 0.3, 0.32],
        [0.7, 0.35, 0.5],
    ]
)


def scene_world(cfg: SynthConfig) -> World:
    """The world of a config: the demo street (`layout: street`) or a random composition."""
    if cfg.world.layout == "random":
        return build_random_world(cfg)
    return build_world(cfg.world, cfg.seed)


@dataclass
class _Item:
    """A placed thing: its triangles [start, stop) in its builder, and what else belongs to it."""

    name: str
    start: int
    stop: int
    droppable: bool
    tree: int = -1  # index into the trees / hedges whose leaves belong to it
    hedge: int = -1
    lamp: int = -1


class _Tracked:
    """A MeshBuilder whose primitives are grouped into named items (for counting and removal)."""

    def __init__(self) -> None:
        self.mb = MeshBuilder()
        self.items: list[_Item] = []

    @contextmanager
    def item(self, name: str, droppable: bool = True, **refs: int):
        start = self.mb.n_triangles
        yield self.mb
        self.items.append(_Item(name, start, self.mb.n_triangles, droppable, **refs))

    def item_of(self, tri: np.ndarray) -> np.ndarray:
        starts = np.array([it.start for it in self.items])
        return np.searchsorted(starts, tri, side="right") - 1


def _rot(yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Forward and left unit vectors (xy) of a heading."""
    return np.array([np.cos(yaw), np.sin(yaw)]), np.array([-np.sin(yaw), np.cos(yaw)])


def person(
    mb: MeshBuilder,
    foot,
    yaw: float,
    height: float,
    obj: tuple[int, int, int],
    label: int,
    phase: float = 0.0,
    kind: int | None = None,
) -> None:
    """A simple walking figure standing at `foot` (x, y, z) facing `yaw`: legs, torso, arms, head.
    `obj`: (shirt, trousers, skin) indices of the colour table; `kind` overrides all materials
    (a statue)."""
    f, l = _rot(yaw)
    s = height / 1.75
    x0 = np.asarray(foot, float)

    def at(fw: float, lf: float, up: float) -> np.ndarray:
        return x0 + np.r_[f * fw * s + l * lf * s, up * s]

    cloth, skin = (kinds.K_CLOTH, kinds.K_SKIN) if kind is None else (kind, kind)
    stride = 0.22 * np.sin(phase)
    for side in (-1, 1):
        mb.prism(
            at(0, 0.1 * side, 0.9), at(side * stride, 0.11 * side, 0.0), 0.075 * s, label, cloth, obj[1], 6
        )
        mb.prism(
            at(0, 0.24 * side, 1.42),
            at(-side * stride, 0.28 * side, 0.85),
            0.045 * s,
            label,
            cloth,
            obj[0],
            6,
        )
    mb.oriented_box(
        at(0, 0, 0)[:2], (0.24 * s, 0.42 * s, 0.58 * s), yaw, label, cloth, obj[0], z0=x0[2] + 0.88 * s
    )
    mb.prism(at(0, 0, 1.45), at(0, 0, 1.56), 0.05 * s, label, skin, obj[2], 6)
    mb.dome(at(0, 0, 1.54), 0.1 * s, label, skin, obj[2], rings=3, sides=8, height=0.14 * s)
    mb.frustum(at(0, 0, 1.46), at(0, 0, 1.54), 0.06 * s, 0.1 * s, label, skin, obj[2], 8)


def bicycle(mb: MeshBuilder, ground, yaw: float, obj: int) -> None:
    """A bicycle standing on `ground` (x, y, z) along `yaw`: two tyres, frame, saddle, handlebar."""
    f, l = _rot(yaw)
    g = np.asarray(ground, float)

    def at(fw: float, lf: float, up: float) -> np.ndarray:
        return g + np.r_[f * fw + l * lf, up]

    r = 0.34
    ang = np.arange(15) * 2 * np.pi / 14
    for c in (-0.52, 0.52):
        ring = [at(c + r * np.cos(a), 0, r + r * np.sin(a)) for a in ang]
        for p, q in zip(ring[:-1], ring[1:]):
            mb.prism(p, q, 0.022, BICYCLE, kinds.K_WHEEL, obj, 5)
    hub_r, bb, seat, head, hub_f = (
        at(-0.52, 0, r),
        at(-0.05, 0, 0.3),
        at(-0.17, 0, 0.82),
        at(0.4, 0, 0.82),
        at(0.52, 0, r),
    )
    for p, q in ((hub_r, bb), (bb, seat), (seat, head), (bb, head), (hub_r, seat), (head, hub_f)):
        mb.prism(p, q, 0.018, BICYCLE, kinds.K_CAR, obj, 5)
    mb.prism(at(-0.3, 0, 0.88), at(-0.05, 0, 0.88), 0.045, BICYCLE, kinds.K_WHEEL, obj, 6)
    mb.prism(at(0.4, 0, 0.82), at(0.38, 0, 1.0), 0.016, BICYCLE, kinds.K_CAR, obj, 5)
    mb.prism(at(0.38, -0.26, 1.0), at(0.38, 0.26, 1.0), 0.016, BICYCLE, kinds.K_WHEEL, obj, 5)


class _Composer:
    """Composes one random world (see the module docstring); `compose()` returns the World."""

    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, 101])
        self.t = _Tracked()
        self.rows: list[dict] = []
        self.lamps: list[list[float]] = []
        self.trees: list[tuple[np.ndarray, float, int]] = []
        self.hedges: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.spots = np.zeros((0, 3))  # footprints of static clutter: x, y, radius
        self.pads: list[tuple[float, float, float, float, float]] = []  # walkable: x0, x1, y0, y1, z
        self.racks: list[tuple[float, float, float]] = []  # bike racks: x, y, z
        self.parking: list[list[float]] = []
        self.count: Counter[str] = Counter()  # segments and building features
        rng = self.rng
        self.rw = float(rng.uniform(3.6, 5.0))
        self.detail = float(rng.choice([0.15, 0.4, 0.7, 1.0, 1.0]))

    # -- helpers -------------------------------------------------------------------------------
    def sbox(self, s: int, x0, x1, o0, o1, z0, z1, label: int, kind: int, obj: int = 0) -> None:
        """Box on side s (y = s * o) between distances o0 < o1 from the centre line."""
        y0, y1 = sorted((s * o0, s * o1))
        self.t.mb.box([x0, y0, z0], [x1, y1, z1], label, kind, obj)

    def free(self, x: float, y: float, r: float, corridor: float = CORRIDOR) -> bool:
        """Whether a footprint circle is off the corridor and clear of the static clutter so far."""
        if abs(y) - r < corridor:
            return False
        d = np.hypot(self.spots[:, 0] - x, self.spots[:, 1] - y)
        return bool(np.all(d >= self.spots[:, 2] + r))

    def claim(self, x: float, y: float, r: float) -> None:
        self.spots = np.vstack([self.spots, [x, y, r]])

    def row(self, height: float, **extra) -> int:
        """A new building parameter row (texture detail: the scene's x a random factor)."""
        rng = self.rng
        row = building_row(rng, height)
        plain = rng.random() < 0.2
        row |= dict(
            shop=row["shop"] and bool(rng.random() < 0.3 + 0.7 * self.detail),  # plain scenes: fewer shops
            detail=0.1 if plain else float(np.clip(self.detail * rng.uniform(0.6, 1.4), 0.05, 1.0)),
            blank=bool(rng.random() < (0.3 if self.detail < 0.3 else 0.12)),
            curve=np.zeros(3),
        )
        row |= extra
        self.rows.append(row)
        return len(self.rows) - 1

    def variant(self, b: int, **extra) -> int:
        """A copy of row b with other values (e.g. a planar block behind a curved front)."""
        self.rows.append(self.rows[b] | extra)
        return len(self.rows) - 1

    # -- segments ------------------------------------------------------------------------------
    def segments(self) -> list[tuple[str, float, float]]:
        w = self.cfg.world
        rng = self.rng
        x = float(rng.uniform(-8, 3))  # behind the cameras: a street
        out = [("street", w.x_start, x)]
        lengths = {"street": (12, 28), "square": (16, 30), "court": (10, 20)}
        while x < w.x_end - 6:
            prev = out[-1][0] if out else "street"
            kinds = ["street", "square", "court"] if prev == "street" else ["street"]
            kind = str(rng.choice(kinds, p=[0.4, 0.38, 0.22] if len(kinds) == 3 else None))
            length = rng.uniform(*lengths[kind])
            x1 = w.x_end if w.x_end - (x + length) < 8 else x + length
            out.append((kind, x, x1))
            x = x1
        if all(k != "square" for k, a, b in out if 5 < b and a < 45):  # a square in view of the route
            i = next(i for i, (k, a, b) in enumerate(out) if b > 12 and k == "street")
            out[i] = ("square", out[i][1], out[i][2])
        return out

    def compose(self) -> World:
        rng = self.rng
        w = self.cfg.world
        for kind, x0, x1 in self.segments():
            self.count["courtyard" if kind == "court" else kind] += 1
            if kind == "court":
                self.court(x0, x1)
                continue
            with self.t.item("road", droppable=False) as mb:
                mb.box([x0, -self.rw, -1.0], [x1, self.rw, 0.0], ROAD, kinds.K_ROAD)
            square_sides = [s for s in (-1, 1) if rng.random() < 0.6] if kind == "square" else []
            if kind == "square" and not square_sides:
                square_sides = [int(rng.choice([-1, 1]))]
            for s in (-1, 1):
                if s in square_sides:
                    self.square_side(s, x0, x1)
                else:
                    self.street_side(s, x0, x1)
            if self.rw >= 4.2:
                self.parking += [
                    [x, s * (self.rw - 1.05), s] for s in (-1, 1) for x in np.arange(x0 + 3.5, x1 - 3.5, 6.0)
                ]
        self.street_lamps()
        far = self.rw + BACK
        for x0, x1 in ((w.x_end, w.x_end + 12.0), (w.x_start - 12.0, w.x_start)):
            b = self.row(float(rng.uniform(8, 22)))
            with self.t.item("building", droppable=False) as mb:
                mb.box([x0, -far, 0.0], [x1, far, self.rows[b]["height"]], BUILDING, kinds.K_FACADE, b)
                mb.box(
                    [x0, -far, self.rows[b]["height"]],
                    [x1, far, self.rows[b]["height"] + 0.01],
                    BUILDING,
                    kinds.K_ROOF,
                    b,
                )
        return self.finish()

    # -- sides ---------------------------------------------------------------------------------
    def street_side(self, s: int, x0: float, x1: float) -> None:
        rng = self.rng
        rw = self.rw
        sw, kerb = rng.uniform(1.8, 4.2), rng.uniform(0.08, 0.22)
        front = rw + sw
        if rng.random() < 0.25 and x1 - x0 >= 14:
            self.ramp(s, x0, x1, front, kerb, rng.uniform(0.4, 1.0))
        else:
            with self.t.item("kerb", droppable=False):
                self.sbox(s, x0, x1, rw, rw + 0.15, -1.0, kerb, SIDEWALK, kinds.K_CURB)
                self.sbox(s, x0, x1, rw + 0.15, front + 0.6, -1.0, kerb, SIDEWALK, kinds.K_SIDEWALK)
            self.pads.append((x0 + 0.3, x1 - 0.3, *sorted((s * (rw + 0.5), s * (front - 0.3))), kerb))
            self.furniture(s, x0, x1, front, kerb)
        self.facade_row(s, x0, x1, front, kerb, wide=sw >= 3.6)

    def ramp(self, s: int, x0: float, x1: float, front: float, kerb: float, rise: float) -> None:
        """A sidewalk rising along x by `rise`, with a retaining wall and railing at the kerb and steps
        down at its end."""
        n = int(np.ceil(rise / 0.16))
        xs = x1 - n * 0.32
        rw = self.rw
        y = np.array(sorted((s * (rw + 0.2), s * (front + 0.6))))
        yw = np.array(sorted((s * rw, s * (rw + 0.2))))

        def slab(yy, za, zb, kind, label=SIDEWALK):
            c = [
                [(x0, xs)[i & 1], yy[(i >> 1) & 1], (-1.0 if not i >> 2 else (za, zb)[i & 1])]
                for i in range(8)
            ]
            self.t.mb.hexahedron(c, label, kind)

        with self.t.item("slope", droppable=False):
            slab(y, kerb, kerb + rise, kinds.K_SIDEWALK)
            slab(yw, kerb + 0.1, kerb + rise + 0.1, kinds.K_STONE)
        with self.t.item("stairs", droppable=False) as mb:
            for k in range(n):
                top = kerb + rise * (n - k - 0.5) / n
                mb.box(
                    [xs + k * 0.32, min(y[0], yw[0]), -1.0],
                    [xs + (k + 1) * 0.32, max(y[1], yw[1]), top],
                    SIDEWALK,
                    kinds.K_STONE,
                )
        with self.t.item("railing") as mb:
            yr = s * (rw + 0.1)
            posts = np.arange(x0 + 0.2, xs, 0.14)
            z = kerb + 0.1 + rise * (posts - x0) / (xs - x0)
            mb.posts(np.c_[posts, np.full(len(posts), yr)], z, z + 1.0, 0.012, POLE, kinds.K_POLE, sides=4)
            mb.prism([x0, yr, kerb + 1.1], [xs, yr, kerb + rise + 1.1], 0.03, POLE, kinds.K_POLE)
        self.pads.append(
            (x0 + 0.3, x0 + 0.3 + (xs - x0) * 0.1, *sorted((s * (rw + 0.6), s * (front - 0.3))), kerb + 0.02)
        )

    def square_side(self, s: int, x0: float, x1: float) -> None:
        rng = self.rng
        rw = self.rw
        kerb = rng.uniform(0.08, 0.2)
        front = rw + rng.uniform(12, 25)
        paving = kinds.K_COBBLE if rng.random() < 0.5 else kinds.K_SIDEWALK
        with self.t.item("kerb", droppable=False):
            self.sbox(s, x0, x1, rw, rw + 0.15, -1.0, kerb, SIDEWALK, kinds.K_CURB)
            self.sbox(s, x0, x1, rw + 0.15, front + 0.6, -1.0, kerb, SIDEWALK, paving)
        edge = front
        if rng.random() < 0.45:
            edge = self.terrace(s, x0, x1, front, kerb, rng.uniform(0.45, 1.2), rng.uniform(3, 5))
        self.pads.append((x0 + 0.5, x1 - 0.5, *sorted((s * (rw + 0.5), s * (edge - 0.5))), kerb))
        self.square_clutter(s, x0, x1, edge, kerb)
        self.facade_row(s, x0, x1, front, kerb, wide=True)

    def terrace(
        self, s: int, x0: float, x1: float, front: float, kerb: float, th: float, depth: float
    ) -> float:
        """A raised terrace in front of the back buildings with central stairs, railings and maybe a
        ramp; returns the distance of its front edge."""
        rng = self.rng
        fo = front - depth
        top = kerb + th
        n = int(np.ceil(th / 0.16))
        xm, half = (x0 + x1) / 2, rng.uniform(1.5, 3.0)
        with self.t.item("terrace", droppable=False) as mb:
            self.sbox(s, x0, x1, fo, front + 0.6, -1.0, top, SIDEWALK, kinds.K_STONE)
        with self.t.item("stairs", droppable=False) as mb:
            for k in range(1, n + 1):
                self.sbox(
                    s,
                    xm - half,
                    xm + half,
                    fo - k * 0.32,
                    fo - (k - 1) * 0.32,
                    -1.0,
                    kerb + th * (n + 1 - k) / (n + 1),
                    SIDEWALK,
                    kinds.K_STONE,
                )
        with self.t.item("railing") as mb:
            for a, b in ((x0 + 0.2, xm - half - 0.2), (xm + half + 0.2, x1 - 0.2)):
                if b - a < 1:
                    continue
                xs = np.arange(a, b, 0.13)
                mb.posts(
                    np.c_[xs, np.full(len(xs), s * (fo + 0.1))],
                    top,
                    top + 0.95,
                    0.011,
                    POLE,
                    kinds.K_POLE,
                    sides=4,
                )
                mb.prism(
                    [a, s * (fo + 0.1), top + 1.0], [b, s * (fo + 0.1), top + 1.0], 0.03, POLE, kinds.K_POLE
                )
        edge = fo - n * 0.32
        length = th / 0.08
        if rng.random() < 0.5 and length < (x1 - x0) / 2 - half - 1:
            xa = x0 + 0.5
            yy = np.array(sorted((s * (fo - 1.6), s * fo)))
            c = [
                [(xa, xa + length)[i & 1], yy[(i >> 1) & 1], -1.0 if not i >> 2 else (kerb, top)[i & 1]]
                for i in range(8)
            ]
            with self.t.item("slope", droppable=False) as mb:
                mb.hexahedron(c, SIDEWALK, kinds.K_STONE)
            with self.t.item("railing") as mb:
                yr = s * (fo - 1.55)
                xs = np.arange(xa + 0.2, xa + length, 0.13)
                z = kerb + th * (xs - xa) / length
                mb.posts(np.c_[xs, np.full(len(xs), yr)], z, z + 0.95, 0.011, POLE, kinds.K_POLE, sides=4)
                mb.prism([xa, yr, kerb + 1.0], [xa + length, yr, top + 1.0], 0.03, POLE, kinds.K_POLE)
            edge = min(edge, fo - 1.6)
        self.pads.append((x0 + 0.5, x1 - 0.5, *sorted((s * (fo + 0.4), s * (front - 0.4))), top))
        return edge

    def court(self, x0: float, x1: float) -> None:
        rng = self.rng
        fronts = {s: rng.uniform(2.7, 4.0) for s in (-1, 1)}
        with self.t.item("cobbled ground", droppable=False) as mb:
            mb.box([x0, -fronts[-1] - 0.6, -1.0], [x1, fronts[1] + 0.6, 0.0], ROAD, kinds.K_COBBLE)
        heights = []
        for s in (-1, 1):
            heights.append(self.facade_row(s, x0, x1, fronts[s], 0.0, court=True))
            if fronts[s] - 0.3 - (CORRIDOR + 0.45) > 0.4:
                self.pads.append(
                    (x0 + 0.5, x1 - 0.5, *sorted((s * (CORRIDOR + 0.45), s * (fronts[s] - 0.3))), 0.0)
                )
            for x in np.arange(x0 + rng.uniform(2, 5), x1 - 2, rng.uniform(6, 9)):  # wall lamps
                o = fronts[s]
                y0, y1 = sorted((s * (o - 0.75), s * (o - 0.45)))
                with self.t.item("lamp post", lamp=len(self.lamps)) as mb:
                    mb.prism([x, s * o, 3.6], [x, s * (o - 0.6), 3.6], 0.03, POLE, kinds.K_POLE)
                    mb.box([x - 0.15, y0, 3.4], [x + 0.15, y1, 3.55], POLE, kinds.K_LAMP)
                self.lamps.append([x, s * (o - 0.6), 3.3])
        if rng.random() < 0.6:  # a gateway over the route
            zg = rng.uniform(3.8, 4.6)
            depth = rng.uniform(4, 8)
            xg = x0 if rng.random() < 0.5 else x1 - depth
            top = max(zg + 3.0, min(heights))
            b = self.row(top)
            with self.t.item("gateway") as mb:
                mb.box(
                    [xg, -fronts[-1] - 1.0, zg + 0.3],
                    [xg + depth, fronts[1] + 1.0, top],
                    BUILDING,
                    kinds.K_FACADE,
                    b,
                )
                mb.box(
                    [xg, -fronts[-1] - 1.0, zg],
                    [xg + depth, fronts[1] + 1.0, zg + 0.3],
                    BUILDING,
                    kinds.K_STONE,
                    b,
                )
                mb.box(
                    [xg, -fronts[-1] - 1.0, top],
                    [xg + depth, fronts[1] + 1.0, top + 0.01],
                    BUILDING,
                    kinds.K_ROOF,
                    b,
                )

    # -- buildings -----------------------------------------------------------------------------
    def facade_row(
        self,
        s: int,
        x0: float,
        x1: float,
        front: float,
        ground: float,
        wide: bool = False,
        court: bool = False,
    ) -> float:
        """Buildings on side s from x0 to x1 with their street face at |y| = front; returns the
        lowest height."""
        rng = self.rng
        x = x0
        lowest = np.inf
        while x < x1 - 0.5:
            if rng.random() < 0.22 and x1 - x > 12:  # a run of identical buildings
                b = self.row(float(rng.uniform(8, 20)))
                width = self.rows[b]["window_period"] * int(rng.integers(2, 4))
                count = int(min(rng.integers(2, 5), (x1 - x - 4) // width))
                if count < 2:
                    continue
                self.count["identical facades"] += count
                for _ in range(count):
                    self.building(s, x, x + width, front, ground, b, wide, court)
                    x += width
                lowest = min(lowest, self.rows[b]["height"])
                continue
            width = rng.uniform(5, 14)
            xe = x1 if x1 - (x + width) < 4 else x + width
            b = self.row(float(rng.uniform(7, 22)))
            self.building(s, x, xe, front, ground, b, wide, court)
            lowest = min(lowest, self.rows[b]["height"])
            x = xe
        return float(lowest)

    def building(
        self, s: int, x0: float, x1: float, front: float, ground: float, b: int, wide: bool, court: bool
    ) -> None:
        """One building; its features come from its row's seed, so buildings of one row are alike."""
        r = self.rows[b]
        f = np.random.default_rng([r["seed"], 7])
        h, fh, _per = r["height"], r["floor_height"], r["window_period"]
        back = self.rw + BACK
        w = x1 - x0
        shape = f.choice(["box", "curved", "tower"], p=[0.7, 0.15, 0.15]) if w >= 6 else "box"
        bay = 0.0 if court or shape != "box" or f.random() > 0.3 else f.uniform(0.5, 0.9)
        face = front + bay
        arcade = shape == "box" and f.random() < (0.45 if court else 0.18)
        colonnade = shape == "box" and not arcade and wide and f.random() < 0.25 and h > 8
        name = {"box": "building", "curved": "curved front", "tower": "tower"}[str(shape)]
        o_box = face
        with self.t.item(name, droppable=False) as mb:
            if shape == "curved":
                sag = f.uniform(0.6, min(1.6, w / 4))
                R = (w * w / 4 + sag * sag) / (2 * sag)
                cx, co = (x0 + x1) / 2, front + R
                half = np.arcsin(w / 2 / R)
                ang = np.linspace(-half, half, max(8, int(w / 0.5)))
                arc = np.c_[cx + R * np.sin(ang), s * (co - R * np.cos(ang))]
                chord = s * (front + sag)
                poly = np.vstack([arc, [[x1, chord], [x0, chord]]])
                if s < 0:
                    poly = poly[::-1]
                bc = self.variant(b, curve=np.array([cx, s * co, R]))
                mb.extrusion(poly, 0.0, h, BUILDING, kinds.K_FACADE, bc)
                mb.extrusion(poly, h, h + 0.01, BUILDING, kinds.K_ROOF, bc)
                o_box = front + sag
                self.sbox(s, x0, x1, o_box, back, 0.0, h, BUILDING, kinds.K_FACADE, b)
            elif shape == "tower":
                rt = min(w / 2 - 0.2, f.uniform(2.5, 4.5))
                cx = x0 + rt if f.random() < 0.5 else x1 - rt
                ht = h + f.uniform(3, 8)
                bt = self.variant(b, curve=np.array([cx, s * (front + rt), rt]), height=ht)
                centre = np.array([cx, s * (front + rt)])
                mb.prism([*centre, 0.0], [*centre, ht], rt, BUILDING, kinds.K_FACADE, bt, sides=40)
                if f.random() < 0.5:
                    mb.dome([*centre, ht], rt + 0.25, BUILDING, kinds.K_DOME, bt, rings=8, sides=40)
                else:
                    mb.frustum(
                        [*centre, ht],
                        [*centre, ht + rt * f.uniform(1.0, 1.8)],
                        rt + 0.3,
                        0.0,
                        BUILDING,
                        kinds.K_DOME,
                        bt,
                        sides=40,
                    )
                o_box = front + rt
                self.sbox(s, x0, x1, o_box, back, 0.0, h, BUILDING, kinds.K_FACADE, b)
            elif arcade:
                self.count["arcade"] += 1
                ah, depth = f.uniform(3.4, 4.4), f.uniform(2.2, 3.2)
                self.sbox(s, x0, x1, face + depth, back, 0.0, ah, BUILDING, kinds.K_FACADE, b)
                self.sbox(s, x0, x1, face, back, ah, ah + 0.35, BUILDING, kinds.K_STONE, b)
                self.sbox(s, x0, x1, face, back, ah + 0.35, h, BUILDING, kinds.K_FACADE, b)
                self.sbox(
                    s, x0, x1, max(face, front + 0.6), face + depth, -1.0, ground, SIDEWALK, kinds.K_SIDEWALK
                )
                n = max(2, int(round(w / f.uniform(3, 4.5))) + 1)
                xs = np.linspace(x0 + 0.4, x1 - 0.4, n)
                if f.random() < 0.5:
                    mb.posts(
                        np.c_[xs, np.full(n, s * (face + 0.35))],
                        ground,
                        ah,
                        f.uniform(0.22, 0.32),
                        BUILDING,
                        kinds.K_STONE,
                        sides=16,
                    )
                else:
                    for xc in xs:
                        self.sbox(
                            s,
                            xc - 0.28,
                            xc + 0.28,
                            face + 0.07,
                            face + 0.63,
                            ground,
                            ah,
                            BUILDING,
                            kinds.K_STONE,
                        )
                self.pads.append(
                    (x0 + 0.5, x1 - 0.5, *sorted((s * (face + 0.8), s * (face + depth - 0.3))), ground)
                )
            else:
                self.sbox(s, x0, x1, face, back, 0.0, h, BUILDING, kinds.K_FACADE, b)
            self.sbox(s, x0, x1, o_box, back, h, h + 0.01, BUILDING, kinds.K_ROOF, b)
            if o_box > front + 0.6 and not arcade:  # ground in front of a set-back face
                self.sbox(s, x0, x1, front + 0.6, o_box + 0.1, -1.0, ground, SIDEWALK, kinds.K_SIDEWALK)
            if bay:
                self.count["bay"] += 1
                n = int(f.integers(1, 4))
                bw = f.uniform(2.0, 3.5)
                for xc in np.linspace(x0, x1, n + 2)[1:-1]:
                    if xc - bw / 2 > x0 + 0.3 and xc + bw / 2 < x1 - 0.3:
                        self.sbox(
                            s, xc - bw / 2, xc + bw / 2, front, face, fh, h - 0.4, BUILDING, kinds.K_FACADE, b
                        )
            if f.random() < 0.5:  # cornice
                self.count["cornice"] += 1
                out = f.uniform(0.3, 0.5)
                self.sbox(
                    s,
                    x0,
                    x1,
                    o_box - out,
                    o_box + 1.0,
                    h - 0.3,
                    h + 0.05,
                    BUILDING,
                    kinds.K_STONE,
                    int(r["seed"]),
                )
            if shape == "box" and f.random() < 0.12 and h < 18:  # dome on a drum
                rd = min(w / 2 - 0.5, f.uniform(2.5, 4.0))
                if rd > 1.5:
                    self.count["dome"] += 1
                    c = [(x0 + x1) / 2, s * (face + rd + 2.0)]
                    hd = f.uniform(1.5, 3.0)
                    mb.prism([*c, h], [*c, h + hd], rd, BUILDING, kinds.K_STONE, int(r["seed"]), sides=32)
                    mb.dome([*c, h + hd], rd + 0.2, BUILDING, kinds.K_DOME, int(r["seed"]), rings=8, sides=32)
        floors = int((h - 0.6) // fh)
        if shape == "box" and not court and f.random() < 0.35 and floors >= 2:
            self.balconies(s, x0, x1, face, b, f, floors)
        if colonnade:
            self.colonnade(s, x0, x1, front, ground, h, f)

    def balconies(
        self, s: int, x0: float, x1: float, face: float, b: int, f: np.random.Generator, floors: int
    ) -> None:
        r = self.rows[b]
        per, fh = r["window_period"], r["floor_height"]
        depth, bw = f.uniform(0.8, 1.2), min(per - 0.3, f.uniform(1.4, 2.6))
        cols = np.arange(np.ceil(x0 / per - 0.5), np.floor(x1 / per - 0.5) + 1)
        with self.t.item("balcony", droppable=False) as mb:
            for k in range(1, floors):
                for j in cols[f.random(len(cols)) < 0.6]:
                    xc = (j + 0.5) * per
                    if xc - bw / 2 < x0 + 0.2 or xc + bw / 2 > x1 - 0.2:
                        continue
                    z = k * fh
                    self.sbox(
                        s,
                        xc - bw / 2,
                        xc + bw / 2,
                        face - depth,
                        face,
                        z - 0.02,
                        z + 0.14,
                        BUILDING,
                        kinds.K_STONE,
                        int(r["seed"]),
                    )
                    xs = np.arange(xc - bw / 2 + 0.05, xc + bw / 2, 0.12)
                    yo = s * (face - depth + 0.05)
                    mb.posts(
                        np.c_[xs, np.full(len(xs), yo)],
                        z + 0.14,
                        z + 1.0,
                        0.012,
                        BUILDING,
                        kinds.K_POLE,
                        sides=4,
                    )
                    mb.prism(
                        [xc - bw / 2 + 0.03, yo, z + 1.02],
                        [xc + bw / 2 - 0.03, yo, z + 1.02],
                        0.025,
                        BUILDING,
                        kinds.K_POLE,
                    )

    def colonnade(
        self, s: int, x0: float, x1: float, front: float, ground: float, h: float, f: np.random.Generator
    ) -> None:
        oc = front - f.uniform(1.8, 2.4)
        rc, hc = f.uniform(0.3, 0.45), min(h - 1.0, f.uniform(5, 8))
        n = max(2, int(round((x1 - x0) / f.uniform(2.5, 3.5))) + 1)
        xs = np.linspace(x0 + 0.6, x1 - 0.6, n)
        with self.t.item("colonnade", droppable=False) as mb:
            mb.posts(
                np.c_[xs, np.full(n, s * oc)],
                ground + 0.25,
                ground + hc,
                rc,
                BUILDING,
                kinds.K_STONE,
                sides=16,
            )
            self.sbox(s, x0, x1, oc - 0.7, front, ground + hc, ground + hc + 0.8, BUILDING, kinds.K_STONE, 3)
            self.sbox(s, x0, x1, oc - 0.7, front, ground - 0.5, ground + 0.25, BUILDING, kinds.K_STONE, 3)
        self.spots = np.vstack([self.spots, np.c_[xs, np.full(n, s * oc), np.full(n, rc + 0.3)]])

    # -- furniture and clutter -----------------------------------------------------------------
    def furniture(self, s: int, x0: float, x1: float, front: float, kerb: float) -> None:
        """Street furniture along a sidewalk: trees, benches, racks, signs, bollards, fences,
        planters, hedges, shelters."""
        rng = self.rng
        rw = self.rw
        sw = front - rw
        x = x0 + rng.uniform(1.0, 3.0)
        kinds = ["tree", "bench", "rack", "sign", "bollards", "fence", "planter", "hedge", "shelter", "none"]
        p = np.array([3, 1.2, 1, 1.5, 1.2, 1, 1, 1.2, 0.6, 1.0])
        while x < x1 - 1.5:
            kind = rng.choice(kinds, p=p / p.sum())
            if kind == "tree" and sw >= 2.4:
                self.tree(x, s * max(rw + 0.55 * sw, CORRIDOR + 2.4), kerb)
            elif kind == "bench":
                self.bench(x, s * (front - 0.6), 0.0 if rng.random() < 0.7 else rng.uniform(-0.5, 0.5), kerb)
            elif kind == "rack":
                self.rack(x, s * (front - 0.7), kerb)
            elif kind == "sign":
                self.sign_post(x, s * (rw + 0.35), kerb)
            elif kind == "bollards":
                self.bollards(x, min(x + rng.uniform(3, 8), x1 - 0.5), s * (rw + 0.35), kerb)
            elif kind == "fence":
                self.fence(x, min(x + rng.uniform(4, 10), x1 - 0.5), s * (rw + 0.3), kerb)
            elif kind == "planter":
                self.planter(x, s * (front - 0.9), kerb)
            elif kind == "hedge" and sw >= 2.8:
                self.hedge(
                    x, min(x + rng.uniform(3, 8), x1 - 0.5), s * (front - 0.95), s * (front - 0.15), kerb
                )
            elif kind == "shelter" and sw >= 2.8:
                self.shelter(x, s * (rw + 1.5), s, kerb)
            x += rng.uniform(2.5, 5.0)

    def square_clutter(self, s: int, x0: float, x1: float, edge: float, kerb: float) -> None:
        rng = self.rng
        rw = self.rw
        lo, hi = rw + 1.5, edge - 1.0

        def spot(r: float) -> tuple[float, float] | None:
            if x1 - x0 - 3.0 < 2 * r or hi - lo < 2 * r:
                return None
            for _ in range(30):
                x, o = rng.uniform(x0 + 1.5 + r, x1 - 1.5 - r), rng.uniform(lo + r, hi - r)
                if self.free(x, s * o, r):
                    return x, s * o
            return None

        plan = [
            ("fountain", 0.55, 3.4),
            ("tower", 0.2, 4.5),
            ("statue", 0.45, 1.3),
            ("kiosk", 0.5, 2.0),
            ("tree", 0.6, 3.2),
            ("tree", 0.4, 3.2),
            ("planter", 0.6, 1.0),
            ("planter", 0.4, 1.0),
            ("bench", 0.7, 1.1),
            ("bench", 0.5, 1.1),
            ("rack", 0.4, 1.5),
            ("lamp", 0.8, 0.5),
            ("lamp", 0.5, 0.5),
        ]
        for name, prob, r in plan:
            if rng.random() > prob:
                continue
            at = spot(r)
            if at is None:
                continue
            x, y = at
            if name == "fountain":
                self.fountain(x, y, rng.uniform(1.8, 3.2), kerb)
            elif name == "tower":
                self.free_tower(x, y, kerb)
            elif name == "statue":
                self.statue(x, y, kerb)
            elif name == "kiosk":
                self.kiosk(x, y, kerb)
            elif name == "tree":
                self.tree(x, y, kerb)
            elif name == "planter":
                self.planter(x, y, kerb)
            elif name == "bench":
                self.bench(x, y, rng.uniform(-np.pi, np.pi), kerb)
            elif name == "rack":
                self.rack(x, y, kerb)
            else:
                self.lamp_post(x, y, kerb, globe=True)
        if rng.random() < 0.6:
            self.bollards(x0 + 1.0, x1 - 1.0, s * (rw + 0.35), kerb)
        if rng.random() < 0.5:
            self.shelter(rng.uniform(x0 + 3, x1 - 3), s * (rw + 1.5), s, kerb)

    def tree(self, x: float, y: float, z: float) -> None:
        if not self.free(x, y, 1.2, corridor=CORRIDOR + 1.2):
            return
        rng = self.rng
        t = (np.array([x, y, z]), float(rng.uniform(3.8, 6.5)), int(rng.integers(1 << 30)))
        with self.t.item("tree", tree=len(self.trees)) as mb:
            trunk_and_branches(mb, *t)
        self.trees.append(t)
        self.claim(x, y, 1.0)

    def hedge(self, xa: float, xb: float, ya: float, yb: float, z: float) -> None:
        y0, y1 = sorted((ya, yb))
        if xb - xa < 1.5 or not self.free((xa + xb) / 2, (y0 + y1) / 2, 0.0):
            return
        rng = self.rng
        hh = rng.uniform(0.8, 1.4)
        seed = int(rng.integers(1 << 30))
        with self.t.item("hedge", hedge=len(self.hedges)) as mb:
            xs = np.arange(xa + 0.3, xb - 0.2, 0.6)
            mb.posts(
                np.c_[xs, np.full(len(xs), (y0 + y1) / 2)],
                z,
                z + hh * 0.8,
                0.03,
                VEGETATION,
                kinds.K_TRUNK,
                seed,
                sides=5,
            )
            mb.box(
                [xa, (3 * y0 + y1) / 4, z], [xb, (y0 + 3 * y1) / 4, z + 0.15], VEGETATION, kinds.K_TRUNK, seed
            )
        self.hedges.append((np.array([xa, y0, z + 0.1]), np.array([xb, y1, z + hh]), seed))
        xs = np.arange(xa, xb, 0.5)
        self.spots = np.vstack(
            [self.spots, np.c_[xs, np.full(len(xs), (y0 + y1) / 2), np.full(len(xs), 0.6)]]
        )

    def bench(self, x: float, y: float, yaw: float, z: float) -> None:
        if not self.free(x, y, 1.0):
            return
        f, l = _rot(yaw)
        with self.t.item("bench") as mb:
            mb.oriented_box([x, y], (1.7, 0.45, 0.06), yaw, BUILDING, kinds.K_WOOD, z0=z + 0.42)
            back = np.array([x, y]) + l * 0.22
            mb.oriented_box(back, (1.7, 0.05, 0.4), yaw, BUILDING, kinds.K_WOOD, z0=z + 0.5)
            for d in (-0.7, 0.7):
                mb.oriented_box(
                    np.array([x, y]) + f * d, (0.08, 0.45, 0.42), yaw, BUILDING, kinds.K_STONE, z0=z
                )
        self.claim(x, y, 1.0)

    def rack(self, x: float, y: float, z: float) -> None:
        if not self.free(x, y, 1.4):
            return
        with self.t.item("bike rack") as mb:
            for d in (-0.9, 0.0, 0.9):
                for e in (-0.3, 0.3):
                    mb.prism([x + d, y + e, z], [x + d, y + e, z + 0.8], 0.025, POLE, kinds.K_POLE, sides=6)
                mb.prism(
                    [x + d, y - 0.3, z + 0.8], [x + d, y + 0.3, z + 0.8], 0.025, POLE, kinds.K_POLE, sides=6
                )
        self.racks.append((x, y, z))
        self.claim(x, y, 1.4)

    def sign_post(self, x: float, y: float, z: float) -> None:
        if not self.free(x, y, 0.45):
            return
        rng = self.rng
        top = z + rng.uniform(2.3, 2.9)
        with self.t.item("sign post") as mb:
            mb.prism([x, y, z], [x, y, top], rng.uniform(0.04, 0.06), POLE, kinds.K_POLE)
            k = int(rng.integers(1 << 20))
            if rng.random() < 0.5:
                mb.box([x - 0.02, y - 0.35, top - 0.7], [x + 0.02, y + 0.35, top], SIGN, kinds.K_SIGN, k)
            else:
                mb.box([x - 0.4, y - 0.02, top - 0.8], [x + 0.4, y + 0.02, top], SIGN, kinds.K_SIGN, k)
        self.claim(x, y, 0.45)

    def bollards(self, xa: float, xb: float, y: float, z: float) -> None:
        rng = self.rng
        xs = np.arange(xa, xb, rng.uniform(1.2, 2.0))
        xs = np.array([x for x in xs if self.free(x, y, 0.15)])
        if not len(xs):
            return
        with self.t.item("bollards") as mb:
            mb.posts(
                np.c_[xs, np.full(len(xs), y)],
                z,
                z + rng.uniform(0.8, 1.1),
                rng.uniform(0.04, 0.08),
                POLE,
                kinds.K_POLE,
                sides=10,
            )
        self.spots = np.vstack([self.spots, np.c_[xs, np.full(len(xs), y), np.full(len(xs), 0.2)]])

    def fence(self, xa: float, xb: float, y: float, z: float) -> None:
        xs = np.arange(xa, xb, 0.13)
        if len(xs) < 8 or not all(self.free(x, y, 0.1) for x in xs[::8]):
            return
        hf = self.rng.uniform(0.9, 1.2)
        with self.t.item("fence") as mb:
            mb.posts(np.c_[xs, np.full(len(xs), y)], z, z + hf, 0.01, POLE, kinds.K_POLE, sides=4)
            main = np.arange(xa, xb, 2.0)
            mb.posts(np.c_[main, np.full(len(main), y)], z, z + hf + 0.05, 0.04, POLE, kinds.K_POLE, sides=8)
            for zz in (z + 0.15, z + hf):
                mb.prism([xa, y, zz], [xs[-1], y, zz], 0.02, POLE, kinds.K_POLE, sides=6)
        self.spots = np.vstack(
            [self.spots, np.c_[xs[::4], np.full(len(xs[::4]), y), np.full(len(xs[::4]), 0.3)]]
        )

    def planter(self, x: float, y: float, z: float) -> None:
        if not self.free(x, y, 1.0):
            return
        rng = self.rng
        hp = rng.uniform(0.45, 0.8)
        seed = int(rng.integers(1 << 30))
        with self.t.item("planter", hedge=len(self.hedges)) as mb:
            if rng.random() < 0.5:
                mb.box([x - 0.8, y - 0.45, z], [x + 0.8, y + 0.45, z + hp], BUILDING, kinds.K_STONE, seed)
                lo, hi = [x - 0.75, y - 0.4, z + hp], [x + 0.75, y + 0.4, z + hp + rng.uniform(0.4, 0.8)]
            else:
                mb.prism([x, y, z], [x, y, z + hp], 0.6, BUILDING, kinds.K_STONE, seed, sides=20)
                lo, hi = [x - 0.45, y - 0.45, z + hp], [x + 0.45, y + 0.45, z + hp + rng.uniform(0.4, 0.9)]
            mb.posts(
                [[x, y], [x + 0.2, y + 0.1]],
                z + hp,
                hi[2] - 0.1,
                0.02,
                VEGETATION,
                kinds.K_TRUNK,
                seed,
                sides=4,
            )
        self.hedges.append((np.array(lo), np.array(hi), seed))
        self.claim(x, y, 1.0)

    def shelter(self, x: float, y: float, s: int, z: float) -> None:
        if not self.free(x, y, 2.2):
            return
        k = int(self.rng.integers(1 << 20))
        yb = y + s * 0.7
        with self.t.item("bus shelter") as mb:
            for dx in (-1.9, 1.9):
                for dy in (-0.7, 0.7):
                    mb.prism([x + dx, y + dy, z], [x + dx, y + dy, z + 2.4], 0.04, POLE, kinds.K_POLE)
            mb.box([x - 2.1, y - 0.85, z + 2.4], [x + 2.1, y + 0.85, z + 2.52], BUILDING, kinds.K_STONE, k)
            mb.box(
                [x - 1.9, min(yb, yb + s * 0.03), z + 0.15],
                [x + 1.9, max(yb, yb + s * 0.03), z + 2.3],
                BUILDING,
                kinds.K_PANE,
                k,
            )
            for dx in (-1.9, 1.9):
                mb.box(
                    [x + dx - 0.015, y - 0.05 - 0.6 * (s < 0), z + 0.15],
                    [x + dx + 0.015, y + 0.05 + 0.6 * (s > 0), z + 2.3],
                    BUILDING,
                    kinds.K_PANE,
                    k + 1,
                )
            mb.box(
                [x - 1.2, y + s * 0.35 - 0.2, z + 0.4],
                [x + 1.2, y + s * 0.35 + 0.2, z + 0.46],
                BUILDING,
                kinds.K_WOOD,
            )
        self.claim(x, y, 2.2)

    def fountain(self, x: float, y: float, R: float, z: float) -> None:
        rng = self.rng
        n = 32
        a = np.arange(n + 1) * 2 * np.pi / n
        hw = rng.uniform(0.45, 0.6)
        k = int(rng.integers(1 << 20))
        with self.t.item("fountain") as mb:
            for a0, a1 in zip(a[:-1], a[1:]):
                c = []
                for i in range(8):
                    ang, rad = (a0, a1)[i & 1], (R - 0.28, R)[(i >> 1) & 1]
                    c.append([x + rad * np.cos(ang), y + rad * np.sin(ang), (z, z + hw)[i >> 2]])
                mb.hexahedron(c, BUILDING, kinds.K_STONE, k)
            mb.prism([x, y, z], [x, y, z + hw - 0.12], R - 0.27, BUILDING, kinds.K_WATER, k, sides=n)
            rp, hp = rng.uniform(0.25, 0.45), rng.uniform(1.8, 3.2)
            mb.prism([x, y, z], [x, y, z + hp], rp, BUILDING, kinds.K_STONE, k, sides=16)
            mb.frustum(
                [x, y, z + hp], [x, y, z + hp + 0.25], rp, rp + 0.35, BUILDING, kinds.K_STONE, k, sides=16
            )
            mb.dome([x, y, z + hp + 0.25], rp * 0.8, BUILDING, kinds.K_STONE, k, rings=5, sides=16)
        self.claim(x, y, R + 0.3)

    def statue(self, x: float, y: float, z: float) -> None:
        rng = self.rng
        yaw = rng.uniform(-np.pi, np.pi)
        hp = rng.uniform(1.2, 2.0)
        with self.t.item("statue") as mb:
            mb.oriented_box(
                [x, y], (1.2, 1.2, hp), yaw, BUILDING, kinds.K_STONE, int(rng.integers(1 << 20)), z0=z
            )
            person(
                mb,
                [x, y, z + hp],
                yaw,
                rng.uniform(1.9, 2.4),
                (0, 0, 0),
                BUILDING,
                rng.uniform(-1, 1),
                kinds.K_BRONZE,
            )
        self.claim(x, y, 1.2)

    def kiosk(self, x: float, y: float, z: float) -> None:
        rng = self.rng
        yaw = rng.uniform(-np.pi, np.pi)
        h = rng.uniform(2.6, 3.1)
        b = self.row(h, shop=True, blank=False)
        size = (rng.uniform(2.2, 3.0), rng.uniform(1.8, 2.4))
        with self.t.item("kiosk") as mb:
            mb.oriented_box([x, y], (*size, h), yaw, BUILDING, kinds.K_FACADE, b, z0=z)
            mb.oriented_box(
                [x, y], (size[0] + 0.5, size[1] + 0.5, 0.15), yaw, BUILDING, kinds.K_ROOF, b, z0=z + h
            )
        self.claim(x, y, 2.0)

    def free_tower(self, x: float, y: float, z: float) -> None:
        rng = self.rng
        rt = rng.uniform(2.5, 4.0)
        ht = rng.uniform(9, 18)
        b = self.row(ht)
        self.rows[b]["curve"] = np.array([x, y, rt])
        with self.t.item("tower", droppable=False) as mb:
            mb.prism([x, y, 0.0], [x, y, ht], rt, BUILDING, kinds.K_FACADE, b, sides=40)
            mb.dome(
                [x, y, ht],
                rt + 0.2,
                BUILDING,
                kinds.K_DOME,
                b,
                rings=8,
                sides=40,
                height=rt * rng.uniform(0.6, 1.2),
            )
        self.claim(x, y, rt + 0.8)

    def lamp_post(self, x: float, y: float, z: float, globe: bool, towards: float = 0.0) -> None:
        """A lamp post: a globe on top, or an arm reaching `towards` (+-1: along y) with a lamp box."""
        if not self.free(x, y, 0.4):
            return
        rng = self.rng
        hl = rng.uniform(3.8, 6.0)
        with self.t.item("lamp post", lamp=len(self.lamps)) as mb:
            mb.prism([x, y, z], [x, y, z + hl], rng.uniform(0.05, 0.08), POLE, kinds.K_POLE, sides=10)
            if globe:
                mb.frustum([x, y, z + hl], [x, y, z + hl + 0.25], 0.06, 0.22, POLE, kinds.K_POLE, sides=12)
                mb.box(
                    [x - 0.2, y - 0.2, z + hl + 0.25], [x + 0.2, y + 0.2, z + hl + 0.6], POLE, kinds.K_LAMP
                )
                self.lamps.append([x, y, z + hl + 0.1])
            else:
                ya = y + towards * 1.3
                mb.prism([x, y, z + hl - 0.1], [x, ya, z + hl - 0.1], 0.05, POLE, kinds.K_POLE)
                mb.box(
                    [x - 0.3, ya - 0.2, z + hl - 0.3], [x + 0.3, ya + 0.2, z + hl - 0.15], POLE, kinds.K_LAMP
                )
                self.lamps.append([x, ya, z + hl - 0.4])
        self.claim(x, y, 0.4)

    def street_lamps(self) -> None:
        """Lamp posts with arms over the road, alternating sides along streets (where there is a kerb)."""
        w = self.cfg.world
        rng = self.rng
        x, side = w.x_start + rng.uniform(2, 8), 1
        while x < w.x_end - 2:
            y = side * (self.rw + 0.55)
            z = self.ground_at(x, y)
            if z is not None:
                self.lamp_post(x, y, z, globe=False, towards=-side)
            x += rng.uniform(11, 17)
            side = -side

    def ground_at(self, x: float, y: float) -> float | None:
        """Height of the flat walkable pad under (x, y), or None."""
        for x0, x1, y0, y1, z in self.pads:
            if x0 <= x <= x1 and y0 <= y <= y1:
                return z
        return None

    # -- moving objects and the final check ------------------------------------------------------
    def movers(self, world: World, si: int) -> tuple[Mesh, np.ndarray, _Tracked]:
        """Parked cars (`cars_for_sequence`), pedestrians and bicycles of traversal si."""
        cfg = self.cfg
        cars, colours = cars_for_sequence(world, cfg.world.car_occupancy, cfg.seed, si)
        rng = np.random.default_rng([cfg.seed, 5, si, 1])
        t = _Tracked()
        spots = self.spots.copy()
        pads = np.array(self.pads)
        area = (pads[:, 1] - pads[:, 0]) * (pads[:, 3] - pads[:, 2])
        extra: list[np.ndarray] = []

        def place(r: float) -> tuple[float, float, float] | None:
            nonlocal spots
            for _ in range(40):
                p = pads[rng.choice(len(pads), p=area / area.sum())]
                x, y = rng.uniform(p[0], p[1]), rng.uniform(p[2], p[3])
                if abs(y) - r < CORRIDOR or np.any(
                    np.hypot(spots[:, 0] - x, spots[:, 1] - y) < spots[:, 2] + r
                ):
                    continue
                spots = np.vstack([spots, [x, y, r]])
                return x, y, p[4]
            return None

        n_col = len(colours)
        for _ in range(int(rng.integers(6, 17))):
            at = place(0.45)
            if at is None:
                continue
            ids = (n_col, n_col + 1, n_col + 2)
            extra += [
                _CLOTH[rng.integers(len(_CLOTH))] * rng.uniform(0.8, 1.2),
                _CLOTH[rng.integers(len(_CLOTH))] * 0.6,
                _SKIN[rng.integers(len(_SKIN))],
            ]
            n_col += 3
            with t.item("person") as mb:
                person(
                    mb,
                    at,
                    rng.uniform(-np.pi, np.pi),
                    rng.uniform(1.55, 1.9),
                    ids,
                    PERSON,
                    rng.uniform(0, 2 * np.pi),
                )
        racks = list(self.racks)
        for _ in range(int(rng.integers(3, 9))):
            if racks and rng.random() < 0.6:
                x, y, z = racks[int(rng.integers(len(racks)))]
                x, yaw = x + rng.choice([-0.45, 0.45, 1.35, -1.35]), np.pi / 2 * rng.choice([-1, 1])
                if np.any(np.hypot(spots[:, 0] - x, spots[:, 1] - y) < spots[:, 2] + 0.2):
                    continue
                spots = np.vstack([spots, [x, y, 0.25]])
                at = (x, y, z)
            else:
                at, yaw = place(0.9), rng.choice([0.0, np.pi]) + rng.uniform(-0.3, 0.3)
                if at is None:
                    continue
            extra.append(_CLOTH[rng.integers(len(_CLOTH))] * rng.uniform(0.8, 1.3))
            with t.item("bicycle") as mb:
                bicycle(mb, at, yaw, n_col)
            n_col += 1
        colours = np.vstack([colours.reshape(-1, 3), *extra]) if extra else colours.reshape(-1, 3)
        return cars, colours, t

    def finish(self) -> World:
        cfg = self.cfg
        rows = {k: np.array([r[k] for r in self.rows]) for k in self.rows[0]}
        buildings = Buildings(**rows)
        world = World(
            self.t.mb.build(),
            buildings,
            np.array(self.lamps).reshape(-1, 3),
            list(self.trees),
            np.array(self.parking).reshape(-1, 3),
            hedges=list(self.hedges),
            road_half_width=self.rw,
            detail=self.detail,
        )
        cams = np.array([v.pose.center for v in make_views(cfg)], np.float32)
        dropped = self.clear_static(world, cams)
        movers, counts = [], Counter()
        for si in range(len(cfg.sequences)):
            cars, colours, t = self.movers(world, si)
            mesh = t.mb.build()
            drop = _too_close(Mesh.concat([cars, mesh]), cams)
            car_drop = drop[: len(cars.triangles)]
            keep_car = ~np.isin(cars.obj, cars.obj[car_drop])
            bad_items = set(t.item_of(np.flatnonzero(drop[len(cars.triangles) :])))
            keep = np.ones(len(mesh.triangles), bool)
            for i in bad_items:
                keep[t.items[i].start : t.items[i].stop] = False
            movers.append((Mesh.concat([_subset(cars, keep_car), _subset(mesh, keep)]), colours))
            counts["cars"] += len(np.unique(cars.obj[keep_car]))
            counts.update(it.name for i, it in enumerate(t.items) if i not in bad_items)
        world.movers = movers
        elements = Counter(it.name for i, it in enumerate(self.t.items) if i not in dropped)
        world.elements = dict(sorted((elements + counts + self.count).items()))
        if dropped:
            log.info("random world %d: removed %d item(s) too close to the cameras", cfg.seed, len(dropped))
        return world

    def clear_static(self, world: World, cams: np.ndarray) -> set[int]:
        """Remove clutter (and its trees' leaves, hedges, lamps) closer than CAMERA_CLEARANCE to a camera;
        raise if a building or the ground is. Updates `world` in place; returns the removed items."""
        items = self.t.items
        dropped: set[int] = set()
        tree_item = {it.tree: i for i, it in enumerate(items) if it.name == "tree"}
        hedge_item = {it.hedge: i for i, it in enumerate(items) if it.hedge >= 0}
        static = world.static
        tri_item = self.t.item_of(np.arange(len(static.triangles)))
        for _ in range(8):
            keep = ~np.isin(tri_item, list(dropped))
            world.static = _subset(static, keep)
            world.trees = [t for k, t in enumerate(self.trees) if tree_item[k] not in dropped]
            world.hedges = [h for k, h in enumerate(self.hedges) if hedge_item[k] not in dropped]
            lamps = [it.lamp for k, it in enumerate(items) if it.lamp >= 0 and k not in dropped]
            world.lamps = np.array([self.lamps[k] for k in lamps]).reshape(-1, 3)
            foliage = leaves(world, "summer", self.cfg.world.leaves_per_tree, self.cfg.seed)
            kept = np.flatnonzero(keep)
            both = Mesh.concat([world.static, foliage])
            close = np.flatnonzero(_too_close(both, cams))
            if not len(close):
                return dropped
            new = set(tri_item[kept[close[close < len(kept)]]].tolist())
            for key in set((both.obj[close[close >= len(kept)]] // 10000).tolist()):
                new |= {tree_item[k] for k, t in enumerate(self.trees) if t[2] % 100000 == key}
                new |= {hedge_item[k] for k, h in enumerate(self.hedges) if h[2] % 100000 == key}
            fixed = sorted({items[i].name for i in new if not items[i].droppable})
            if fixed:
                raise ConfigError(
                    f"random world {self.cfg.seed}: cameras within {CAMERA_CLEARANCE} m of "
                    f"{', '.join(fixed)}; keep the traversals' |lateral| <= 1.5 m and heights 1.3-3 m"
                )
            dropped |= new
        raise ConfigError(f"random world {self.cfg.seed}: could not clear the camera routes")


def _subset(mesh: Mesh, keep: np.ndarray) -> Mesh:
    """The triangles of `mesh` where `keep` (vertices unchanged)."""
    return Mesh(mesh.vertices, mesh.triangles[keep], mesh.label[keep], mesh.kind[keep], mesh.obj[keep])


def _too_close(mesh: Mesh, points: np.ndarray, clearance: float = CAMERA_CLEARANCE) -> np.ndarray:
    """Per triangle of `mesh`: whether it is the closest triangle to one of `points` and within
    `clearance` of it."""
    out = np.zeros(len(mesh.triangles), bool)
    if not len(mesh.triangles):
        return out
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.triangles.astype(np.uint32))
    )
    ans = scene.compute_closest_points(o3d.core.Tensor(points))
    d = np.linalg.norm(ans["points"].numpy() - points, axis=1)
    out[ans["primitive_ids"].numpy()[d < clearance].astype(np.int64)] = True
    return out


def build_random_world(cfg: SynthConfig) -> World:
    """A random world for `cfg` (deterministic in cfg.seed and the world settings; see the module
    docstring), with every traversal's moving objects in `World.movers`."""
    return _Composer(cfg).compose()
