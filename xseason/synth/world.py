"""Procedural street geometry: triangle meshes with a semantic label, a material kind and an object id
per triangle. This module builds the `street` layout (the demo and tiny presets) and holds the
shared pieces (classes, kinds, `MeshBuilder` primitives, `World`, leaves, parked cars); the
`random` layout is composed by `random_world`.

World frame: metres, z up, the street runs along +x, its centre line is y = 0. Layout across
the street (|y|): road up to `road_half_width`, a curb of `curb_height`, the sidewalk up to
`road_half_width + sidewalk_width`, then building facades (each building set back a little).
Street lamps and trees stand on the sidewalks, signs at the kerb, parked cars in parking
lanes just inside the road edge.

Static geometry (road, sidewalks, buildings, lamps, signs) is the same under every
condition. Trees change with the season (`leaves`: "summer" and "autumn" crowns, or bare
branches in "none"), and parked cars are drawn per sequence (`cars_for_sequence`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xseason.synth.config import WorldConfig

# Semantic classes (label PNG values); 255 = ignore. PERSON and BICYCLE (appended after SKY, so the
# ids of the street layout's classes stay) only occur in the random layout.
ROAD, SIDEWALK, BUILDING, VEGETATION, POLE, SIGN, CAR, SKY, PERSON, BICYCLE = range(10)
CLASS_NAMES: dict[int, str] = {
    ROAD: "road",
    SIDEWALK: "sidewalk",
    BUILDING: "building",
    VEGETATION: "vegetation",
    POLE: "pole",
    SIGN: "sign",
    CAR: "car",
    SKY: "sky",
    PERSON: "person",
    BICYCLE: "bicycle",
}
MOVING_CLASSES: frozenset[int] = frozenset({CAR, PERSON, BICYCLE})
IGNORE = 255

# Material kinds (select the texture function).
(
    K_ROAD,
    K_SIDEWALK,
    K_CURB,
    K_FACADE,
    K_ROOF,
    K_TRUNK,
    K_LEAF,
    K_POLE,
    K_LAMP,
    K_SIGN,
    K_CAR,
    K_GLASS,
    K_WHEEL,
    K_STONE,  # masonry and concrete: balconies, columns, stairs, fountains, pedestals, planters
    K_WATER,
    K_BRONZE,  # statues
    K_WOOD,  # benches
    K_DOME,  # dome and cone roofs (slate courses)
    K_PANE,  # shelter glass with adverts
    K_COBBLE,  # cobblestones (courtyards, squares)
    K_CLOTH,  # pedestrians' clothes (colour from the movers' colour table)
    K_SKIN,
) = range(22)


@dataclass
class Mesh:
    """Triangle soup with per-triangle label, kind and object id."""

    vertices: np.ndarray  # (V, 3) float64
    triangles: np.ndarray  # (T, 3) int64
    label: np.ndarray  # (T,) uint8
    kind: np.ndarray  # (T,) uint8
    obj: np.ndarray  # (T,) int64: index into the kind's parameter table, or a unique id for hashing

    @property
    def normals(self) -> np.ndarray:
        """Unit face normals (T, 3) (orientation by winding; the renderer faces them to the camera)."""
        v = self.vertices[self.triangles]
        n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    @staticmethod
    def concat(meshes: list[Mesh]) -> Mesh:
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        return Mesh(
            np.concatenate([m.vertices for m in meshes]),
            np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]),
            np.concatenate([m.label for m in meshes]),
            np.concatenate([m.kind for m in meshes]),
            np.concatenate([m.obj for m in meshes]),
        )


class MeshBuilder:
    """Accumulates primitives (boxes, prisms, triangles) into one Mesh."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._t: list[np.ndarray] = []
        self._a: list[tuple[int, int, np.ndarray]] = []
        self._n = 0
        self._nt = 0

    def add(self, verts: np.ndarray, tris: np.ndarray, label: int, kind: int, obj: int | np.ndarray) -> None:
        self._v.append(np.asarray(verts, float))
        self._t.append(np.asarray(tris, np.int64) + self._n)
        self._a.append((label, kind, np.broadcast_to(np.asarray(obj, np.int64), (len(tris),))))
        self._n += len(verts)
        self._nt += len(tris)

    def box(self, lo, hi, label: int, kind: int, obj: int = 0) -> None:
        """Axis-aligned box from corner `lo` to corner `hi`."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        c = np.array([[(hi if (i >> k) & 1 else lo)[k] for k in range(3)] for i in range(8)])
        self.hexahedron(c, label, kind, obj)

    def hexahedron(self, corners, label: int, kind: int, obj: int = 0) -> None:
        """Six-faced solid from 8 corners ordered like a box's: corner i has bit 0 = +x side, bit 1 =
        +y side, bit 2 = top (rotated boxes, sloped slabs, steps)."""
        quads = [(0, 2, 6, 4), (1, 5, 7, 3), (0, 4, 5, 1), (2, 3, 7, 6), (0, 1, 3, 2), (4, 6, 7, 5)]
        tris = [t for a, b, cc, d in quads for t in ((a, b, cc), (a, cc, d))]
        self.add(np.asarray(corners, float), np.array(tris), label, kind, obj)

    def oriented_box(
        self, centre, size, yaw: float, label: int, kind: int, obj: int = 0, z0: float = 0.0
    ) -> None:
        """Box of `size` (length, width, height) standing at z0 on xy `centre`, turned by `yaw` (rad)."""
        l, w, h = size
        c, s = np.cos(yaw), np.sin(yaw)
        i = np.arange(8)
        lx, ly = ((i & 1) - 0.5) * l, (((i >> 1) & 1) - 0.5) * w
        corners = np.stack([centre[0] + c * lx - s * ly, centre[1] + s * lx + c * ly, z0 + (i >> 2) * h], 1)
        self.hexahedron(corners, label, kind, obj)

    def prism(self, p0, p1, radius: float, label: int, kind: int, obj: int = 0, sides: int = 8) -> None:
        """Closed-side n-gon prism (a cylinder) from p0 to p1."""
        self.frustum(p0, p1, radius, radius, label, kind, obj, sides)

    def frustum(
        self, p0, p1, r0: float, r1: float, label: int, kind: int, obj: int = 0, sides: int = 8
    ) -> None:
        """Closed n-gon frustum from p0 (radius r0) to p1 (radius r1); r1 = 0 gives a cone."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        axis = (p1 - p0) / np.linalg.norm(p1 - p0)
        a = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
        a /= np.linalg.norm(a)
        b = np.cross(axis, a)
        ang = np.arange(sides) * 2 * np.pi / sides
        unit = np.cos(ang)[:, None] * a + np.sin(ang)[:, None] * b
        verts = np.concatenate([p0 + r0 * unit, p1 + r1 * unit, [p0, p1]])
        i = np.arange(sides)
        j = (i + 1) % sides
        side = np.concatenate([np.stack([i, j, j + sides], 1), np.stack([i, j + sides, i + sides], 1)])
        caps = np.concatenate(
            [
                np.stack([np.full(sides, 2 * sides), j, i], 1),
                np.stack([np.full(sides, 2 * sides + 1), i + sides, j + sides], 1),
            ]
        )
        self.add(verts, np.concatenate([side, caps]), label, kind, obj)

    def dome(
        self,
        centre,
        radius: float,
        label: int,
        kind: int,
        obj: int = 0,
        rings: int = 8,
        sides: int = 24,
        height: float | None = None,
    ) -> None:
        """Upper half of an ellipsoid (a dome) on xy circle `centre` (z = its base), `height` defaults to
        `radius` (a hemisphere); `rings` latitude bands, a closed base disc."""
        h = radius if height is None else height
        lat = np.arange(rings) * (np.pi / 2) / rings
        ang = np.arange(sides) * 2 * np.pi / sides
        r = radius * np.cos(lat)[:, None]
        ring = np.stack(
            [r * np.cos(ang), r * np.sin(ang), np.broadcast_to(h * np.sin(lat)[:, None], (rings, sides))], 2
        )
        verts = np.concatenate([ring.reshape(-1, 3), [[0, 0, h], [0, 0, 0]]]) + np.asarray(centre, float)
        i = np.arange(sides)
        j = (i + 1) % sides
        k = np.arange(rings - 1)[:, None] * sides
        bands = np.concatenate(
            [np.stack([k + i, k + j, k + j + sides], -1), np.stack([k + i, k + j + sides, k + i + sides], -1)]
        ).reshape(-1, 3)
        top, base = rings * sides, rings * sides + 1
        cap = np.stack([(rings - 1) * sides + i, (rings - 1) * sides + j, np.full(sides, top)], 1)
        floor = np.stack([np.full(sides, base), j, i], 1)
        self.add(verts, np.concatenate([bands, cap, floor]), label, kind, obj)

    def extrusion(self, polygon, z0: float, z1: float, label: int, kind: int, obj: int = 0) -> None:
        """Vertical prism over a convex xy `polygon` (n, 2) from z0 to z1 (curved fronts, towers)."""
        q = np.asarray(polygon, float)
        n = len(q)
        verts = np.concatenate([np.c_[q, np.full(n, z0)], np.c_[q, np.full(n, z1)]])
        i = np.arange(n)
        j = (i + 1) % n
        f = np.arange(1, n - 1)
        tris = np.concatenate(
            [
                np.stack([i, j, j + n], 1),
                np.stack([i, j + n, i + n], 1),
                np.stack([np.zeros(n - 2, np.int64), f + 1, f], 1),
                np.stack([np.full(n - 2, n), f + n, f + 1 + n], 1),
            ]
        )
        self.add(verts, tris, label, kind, obj)

    def posts(self, xy, z0, z1, radius: float, label: int, kind: int, obj: int = 0, sides: int = 6) -> None:
        """Many vertical n-gon posts at once: at xy (n, 2) from z0 to z1 (scalars or (n,))."""
        xy = np.asarray(xy, float).reshape(-1, 2)
        m = len(xy)
        if not m:
            return
        z0, z1 = np.broadcast_to(z0, (m,)), np.broadcast_to(z1, (m,))
        ang = np.arange(sides) * 2 * np.pi / sides
        ring = radius * np.stack([np.cos(ang), np.sin(ang)], 1)  # (sides, 2)
        pts = xy[:, None] + ring  # (m, sides, 2)
        verts = np.concatenate(
            [np.dstack([pts, np.broadcast_to(z[:, None], (m, sides))]) for z in (z0, z1)], 1
        )  # (m, 2 sides, 3)
        i = np.arange(sides)
        j = (i + 1) % sides
        one = np.concatenate(
            [
                np.stack([i, j, j + sides], 1),
                np.stack([i, j + sides, i + sides], 1),
                np.stack(
                    [
                        np.full(sides - 2, sides),
                        np.arange(sides + 1, 2 * sides - 1),
                        np.arange(sides + 2, 2 * sides),
                    ],
                    1,
                ),
            ]
        )
        tris = (one[None] + (np.arange(m) * 2 * sides)[:, None, None]).reshape(-1, 3)
        self.add(verts.reshape(-1, 3), tris, label, kind, obj)

    @property
    def n_triangles(self) -> int:
        """Triangles added so far (the index the next primitive's triangles start at)."""
        return self._nt

    def build(self) -> Mesh:
        if not self._v:
            z = np.zeros(0, np.int64)
            return Mesh(
                np.zeros((0, 3)), np.zeros((0, 3), np.int64), z.astype(np.uint8), z.astype(np.uint8), z
            )
        return Mesh(
            np.concatenate(self._v),
            np.concatenate(self._t),
            np.concatenate([np.full(len(o), lab, np.uint8) for lab, _, o in self._a]),
            np.concatenate([np.full(len(o), k, np.uint8) for _, k, o in self._a]),
            np.concatenate([o for _, _, o in self._a]),
        )


@dataclass
class Buildings:
    """Per-building parameters (row = the `obj` of its K_FACADE/K_ROOF triangles)."""

    colour: np.ndarray  # (B, 3) linear RGB albedo
    style: np.ndarray  # (B,) 0 brick, 1 plaster, 2 stone panels
    window_period: np.ndarray  # (B,) metres between window centres
    floor_height: np.ndarray  # (B,)
    window_size: np.ndarray  # (B, 2) fraction of period / floor
    shop: np.ndarray  # (B,) bool: ground floor with shop windows and posters
    height: np.ndarray  # (B,) metres
    seed: np.ndarray  # (B,) int
    # Random layout only (None: all 1 / False / planar):
    detail: np.ndarray | None = None  # (B,) texture contrast of the wall, 0 = plain .. 1 = full
    blank: np.ndarray | None = None  # (B,) bool: no windows, shop front or posters
    curve: np.ndarray | None = None  # (B, 3) centre x, y and radius of a curved facade (radius 0: planar)


@dataclass
class World:
    """The static street plus the parameters the shaders need."""

    static: Mesh
    buildings: Buildings
    lamps: np.ndarray  # (L, 3) light positions (under the lamp heads)
    trees: list[tuple[np.ndarray, float, int]] = field(default_factory=list)  # (base, height, seed)
    parking: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # (P, 3): x, y, heading sign
    # Random layout only:
    hedges: list[tuple[np.ndarray, np.ndarray, int]] = field(default_factory=list)  # (lo, hi, seed) boxes
    road_half_width: float | None = None  # of the road markings (None: the config's)
    detail: float = 1.0  # texture contrast of ground and stone (0 = plain .. 1 = full)
    movers: list[tuple[Mesh, np.ndarray]] | None = None  # per sequence: cars, people, bikes, and colours
    elements: dict[str, int] = field(default_factory=dict)  # what the random composer placed, by name


def building_row(rng: np.random.Generator, height: float) -> dict:
    """Random facade parameters of one building (a row of `Buildings`)."""
    style = int(rng.integers(3))
    base = {0: [0.45, 0.17, 0.10], 1: [0.60, 0.52, 0.38], 2: [0.42, 0.42, 0.40]}[style]
    colour = np.clip(np.array(base) * rng.uniform(0.6, 1.4, 3) * rng.uniform(0.7, 1.2), 0.03, 0.85)
    return dict(
        colour=colour,
        style=style,
        window_period=rng.uniform(2.2, 3.6),
        floor_height=rng.uniform(2.8, 3.5),
        window_size=(rng.uniform(0.35, 0.6), rng.uniform(0.4, 0.6)),
        shop=bool(rng.random() < 0.6),
        height=height,
        seed=int(rng.integers(1 << 30)),
    )


def build_world(cfg: WorldConfig, seed: int) -> World:
    """The static street (deterministic in `seed`)."""
    rng = np.random.default_rng([seed, 1])
    mb = MeshBuilder()
    x0, x1 = cfg.x_start, cfg.x_end
    rw, sw, ch = cfg.road_half_width, cfg.sidewalk_width, cfg.curb_height
    far = rw + sw + 40.0
    mb.box([x0 - 40, -rw, -1.0], [x1 + 40, rw, 0.0], 0, K_ROAD)
    for s in (-1, 1):
        ylo, yhi = sorted((s * rw, s * (rw + sw + 3.0)))
        # The curb: a 15 cm kerbstone strip between the road and the sidewalk slab.
        c0, c1 = sorted((s * rw, s * (rw + 0.15)))
        mb.box([x0 - 40, c0, -1.0], [x1 + 40, c1, ch], SIDEWALK, K_CURB)
        ylo, yhi = sorted((s * (rw + 0.15), s * (rw + sw + 3.0)))
        mb.box([x0 - 40, ylo, -1.0], [x1 + 40, yhi, ch], SIDEWALK, K_SIDEWALK)
    buildings: list[dict] = []

    def add_building(lo, hi) -> None:
        b = len(buildings)
        buildings.append(building_row(rng, hi[2]))
        mb.box(lo, hi, BUILDING, K_FACADE, b)
        mb.box([lo[0], lo[1], hi[2]], [hi[0], hi[1], hi[2] + 0.01], BUILDING, K_ROOF, b)

    for s in (-1, 1):
        x = x0
        while x < x1:
            w = rng.uniform(*cfg.building_width)
            h = rng.uniform(*cfg.building_height)
            front = rw + sw + rng.uniform(0.0, 0.8)
            ylo, yhi = sorted((s * front, s * (front + 12.0)))
            add_building([x, ylo, 0.0], [x + w, yhi, h])
            x += w
    # Cross buildings closing both ends of the street, so views along it end on facades.
    add_building([x1, -far, 0.0], [x1 + 12.0, far, rng.uniform(*cfg.building_height)])
    add_building([x0 - 12.0, -far, 0.0], [x0, far, rng.uniform(*cfg.building_height)])

    lamps = []
    for k, x in enumerate(np.arange(x0 + 4.0, x1 - 2.0, cfg.lamp_spacing)):
        s = 1 if k % 2 == 0 else -1
        y = s * (rw + 0.4)
        mb.prism([x, y, ch], [x, y, 6.0], 0.08, POLE, K_POLE)
        mb.prism([x, y, 5.9], [x, y - s * 1.3, 5.9], 0.05, POLE, K_POLE)
        mb.box([x - 0.3, y - s * 1.3 - 0.2, 5.7], [x + 0.3, y - s * 1.3 + 0.2, 5.85], POLE, K_LAMP)
        lamps.append([x, y - s * 1.3, 5.6])
    for k, x in enumerate(np.arange(x0 + 9.0, x1 - 2.0, cfg.sign_spacing)):
        s = -1 if k % 2 == 0 else 1
        y = s * (rw + 0.35) + rng.uniform(-0.1, 0.1)
        top = rng.uniform(2.3, 2.9)
        mb.prism([x, y, ch], [x, y, top], 0.04, POLE, K_POLE)
        if rng.random() < 0.5:  # facing traffic (normal along -x)
            mb.box([x - 0.02, y - 0.35, top - 0.7], [x + 0.02, y + 0.35, top], SIGN, K_SIGN, k)
        else:  # facing the street (normal along y)
            mb.box([x - 0.4, y - 0.02, top - 0.8], [x + 0.4, y + 0.02, top], SIGN, K_SIGN, k)
    trees = []
    for s in (-1, 1):
        for x in np.arange(x0 + 7.0 + (s > 0) * cfg.tree_spacing / 2, x1 - 3.0, cfg.tree_spacing):
            xt = x + rng.uniform(-1.0, 1.0)
            trees.append(
                (np.array([xt, s * (rw + sw * 0.55), ch]), rng.uniform(3.5, 5.0), int(rng.integers(1 << 30)))
            )
    for base, h, tseed in trees:
        trunk_and_branches(mb, base, h, tseed)
    parking = np.array(
        [[x, s * (rw - 1.1), s] for s in (-1, 1) for x in np.arange(x0 + 3.0, x1 - 5.0, cfg.parking_spacing)]
    )
    tables = {k: np.array([b[k] for b in buildings]) for k in buildings[0]}
    return World(mb.build(), Buildings(**tables), np.array(lamps).reshape(-1, 3), trees, parking)


def _branch_ends(base: np.ndarray, h: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end points (n, 3) of a tree's main branches."""
    rng = np.random.default_rng([seed, 2])
    n = 7
    az = np.arange(n) * 2 * np.pi / n + rng.uniform(0, 2 * np.pi)
    start = base + np.stack([np.zeros(n), np.zeros(n), h * rng.uniform(0.55, 0.95, n)], 1)
    length = rng.uniform(1.2, 2.2, n)
    up = rng.uniform(0.5, 1.1, n)
    d = np.stack([np.cos(az), np.sin(az), up], 1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return start, start + d * length[:, None]


def trunk_and_branches(mb: MeshBuilder, base: np.ndarray, h: float, seed: int) -> None:
    mb.prism(base, base + [0, 0, h], 0.16, VEGETATION, K_TRUNK, seed)
    start, end = _branch_ends(base, h, seed)
    rng = np.random.default_rng([seed, 3])
    for p, q in zip(start, end):
        mb.prism(p, q, 0.06, VEGETATION, K_TRUNK, seed, sides=6)
        for _ in range(2):  # twigs
            t = rng.uniform(0.4, 0.9)
            a = p + t * (q - p)
            mb.prism(a, a + rng.normal(0, 0.5, 3) + [0, 0, 0.5], 0.025, VEGETATION, K_TRUNK, seed, sides=5)


def leaves(world: World, season: str, count: int, seed: int) -> Mesh:
    """Leaf clusters (one small triangle per leaf) around the branch ends, and filling the hedge boxes
    (`count` x volume / 10 m^3 leaves each); empty for 'none'.

    The same leaves exist in summer and autumn (autumn drops `autumn_keep` of them); their colour
    comes from the shader. `obj` is a unique leaf id used to hash per-leaf colour variation.
    """
    mb = MeshBuilder()
    if season == "none" or count <= 0:
        return mb.build()
    for base, h, tseed in world.trees:
        rng = np.random.default_rng([tseed, 4])
        _, ends = _branch_ends(base, h, tseed)
        centre = ends[rng.integers(len(ends), size=count)]
        offs = rng.normal(0, 1, (count, 3))
        offs *= (rng.uniform(0, 1, count) ** (1 / 3) * 1.2 / np.linalg.norm(offs, axis=1))[:, None]
        _leaf_soup(mb, rng, centre + offs, season, tseed)
    for lo, hi, hseed in world.hedges:
        rng = np.random.default_rng([hseed, 4])
        n = int(count * np.prod(hi - lo) / 10.0)
        _leaf_soup(mb, rng, rng.uniform(lo, hi, (n, 3)), season, hseed)
    return mb.build()


def _leaf_soup(mb: MeshBuilder, rng: np.random.Generator, c: np.ndarray, season: str, seed: int) -> None:
    """One small random triangle per leaf centre `c` (n, 3); autumn keeps 70 % of them."""
    count = len(c)
    e1 = rng.normal(0, 1, (count, 3))
    e2 = rng.normal(0, 1, (count, 3))
    size = rng.uniform(0.14, 0.28, count)[:, None]
    v = np.stack(
        [
            c,
            c + e1 / np.linalg.norm(e1, axis=1, keepdims=True) * size,
            c + e2 / np.linalg.norm(e2, axis=1, keepdims=True) * size,
        ],
        1,
    )
    keep = np.ones(count, bool) if season == "summer" else rng.random(count) < 0.7
    ids = seed % 100000 * 10000 + np.arange(count)
    v, ids = v[keep], ids[keep]
    mb.add(v.reshape(-1, 3), np.arange(len(v) * 3).reshape(-1, 3), VEGETATION, K_LEAF, ids)


def cars_for_sequence(world: World, occupancy: float, seed: int, seq_index: int) -> tuple[Mesh, np.ndarray]:
    """Parked cars of one traversal: a seeded subset of the parking slots. Returns mesh and car colours."""
    rng = np.random.default_rng([seed, 5, seq_index])
    slots = world.parking[rng.random(len(world.parking)) < occupancy]
    mb = MeshBuilder()
    palette = np.array(
        [
            [0.6, 0.02, 0.02],
            [0.02, 0.06, 0.3],
            [0.7, 0.7, 0.7],
            [0.05, 0.05, 0.05],
            [0.8, 0.8, 0.75],
            [0.1, 0.25, 0.1],
            [0.5, 0.35, 0.05],
            [0.25, 0.25, 0.3],
        ]
    )
    colours = palette[rng.integers(len(palette), size=len(slots))] * rng.uniform(0.8, 1.2, (len(slots), 1))
    for k, (x, y, _) in enumerate(slots):
        x = x + rng.uniform(-0.6, 0.6)
        L, W = rng.uniform(3.8, 4.6), rng.uniform(1.7, 1.9)
        mb.box([x - L / 2, y - W / 2, 0.3], [x + L / 2, y + W / 2, 1.0], CAR, K_CAR, k)
        c0 = x - L * rng.uniform(0.05, 0.2)
        mb.box([c0 - L * 0.27, y - W / 2 + 0.1, 1.0], [c0 + L * 0.27, y + W / 2 - 0.1, 1.45], CAR, K_GLASS, k)
        for dx in (-0.32 * L, 0.32 * L):
            for dy in (-W / 2 + 0.05, W / 2 - 0.25):
                mb.prism(
                    [x + dx, y + dy, 0.33], [x + dx, y + dy + 0.2, 0.33], 0.33, CAR, K_WHEEL, k, sides=10
                )
    return mb.build(), colours
