"""Benchmark 1 (issue 6): correspondence generation at scale, vectorised vs a per-pair Python loop.

Scene, made without rendering: a straight street along +x, a ground plane (z = 0, |y| <= 7)
and two facades (|y| = 8, 10 or 12 m: each steps back every 15 m; z in [0, 15]). Cameras
(1024x768, f = 700 px) every `--step` metres in four sequences of two conditions (summer, the
reference, and winter), each sequence with its own lateral offset and heading. Every sequence
samples its own random points on these surfaces (3D noise `--point-noise`); a point is observed,
with 0.3 px keypoint noise, by every camera of its sequence that has it 1-45 m ahead, inside the
image and not hidden behind a nearer stretch of facade (analytic line of sight: the surface
model carves away cells that observation rays pass through, so seeing through walls would
destroy it). Ground and facades are what `build_surfaces` must find: the script prints the
regions it found (ground = normal along z, facade = normal along y) and their areas.
Cleaning (`clean_points` without outlier removal, min_tri_angle 0.5 deg: the points are clean,
and far points ahead of a forward-moving camera triangulate at small angles) and association
are done first and not timed. The surface points are the cleaned table itself: without outlier
removal the build's surface points (the well-measured raw points) are the cleaned points.

- ours: `make_correspondences(AssociatedPoints(table, [assoc], table), cfg)` with the default
  configuration except `max_pairs_per_image` (`--pairs-per-image`, 10 as in the pipelines'
  configs; the build's default is 40). That is the surface model (`build_surfaces`: RANSAC planes
  of the reference cloud, extent cells carved by every observation ray, clutter meshes, open3d
  ray-casting scenes), then, for every winter image and every candidate reference image (up to
  `max_candidates` = 60), point matches and surface (densified) matches, pair ranking and caps;
  then every match is streamed out as DataFrame chunks (`iter_matches`, what the build hands to
  the store writer).
- baseline: the loop peers write, one point / one sample / one ray at a time in Python, doing
  the same work for a pair (i, j). Per reference point of i: valid observation (projection into
  i, bounds, reprojection error, curvature), partner lookup in a dict of j's observations (built
  per pair), dist3d filter, projection into j with bounds, reprojection error, predicted error,
  on a surface (region by region: near its plane, on a remaining cell) and the visibility test
  (one ray from each camera against what that image sees: the regions and the reference's
  clutter, plus winter's clutter for j). Per surface sample
  of i, in ours' seeded order for the pair, until it has `max_surface_matches`: projection
  into j, bounds, centre + 4 neighbour rays in j, same region, same depth (it stops at exactly
  the cap; ours tries samples in batches and may overshoot it). Rays go to the same open3d scenes, one
  ray per `RaycastingScene.cast_rays` call. In its favour: i's own surface samples (centre + 4
  neighbour rays per grid pixel, strict) and valid points are computed once per reference
  image and cached, as ours does, rather than once per pair; it stops casting a sample's
  neighbour rays at the first failure (as ours does, batch-wise); it gets our chosen pairs, so
  its pair selection is free (ours evaluates every candidate image of a target, about 6x as
  many pairs as it keeps at 10 per image, trying `surface_probe` surface samples of each); and
  it gets our `SurfaceModel` (captured from our run, scenes built). Against it: it re-projects
  i's points, which ours takes from the point table (`obs_proj`, computed when the table is
  built; a few ms per image).
  It is timed on `--baseline-pairs` random pairs of ours and extrapolated linearly (said in the
  output): per-pair time / timed pairs x all pairs + per-reference-image time / timed reference
  images x the distinct reference images of all pairs. Its point and surface match counts on
  those pairs are printed next to ours, with how many of its matches are one of ours to
  0.01 px: the evidence that it does the same work.
- surface model: its construction (`build_surfaces` and the two ray-casting scenes ours
  uses, timed inside our run as `surface_model_s`) is part of ours_s. Two ratios are printed:
  construction timed on both sides ((baseline_s + surface_model_s) / ours_s, the headline: the
  baseline would have to build the same model) and on neither (baseline_s / (ours_s -
  surface_model_s)).

Memory: the process's peak RSS before ours (scene and point table), after ours, and at the end
(with the baseline). `--tracemalloc` also traces numpy and Python allocations during ours (not
open3d's C++ buffers such as its ray-casting scenes) and prints their peak; its hooks make ours
about 1.8x slower (measured on `--quick`: 19.7 s -> 35.6 s) and the baseline does not run under
them, so the speedups of such a run are not fair figures (the script says so).

    .venv/bin/python benchmarks/bench_generation.py               # 2,000 images, 1M points
    .venv/bin/python benchmarks/bench_generation.py --quick       # 400 images, 100k points
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd

import xseason.matching.correspondences as corr
from xseason.core.geometry import Camera, Pose
from xseason.matching.association import (
    AssociatedPoints,
    AssociationConfig,
    associate,
    build_point_table,
    clean_points,
)
from xseason.matching.correspondences import CorrespondenceConfig, make_correspondences, sample_grid
from xseason.matching.surfaces import SurfaceModel
from xseason.matching.views import ImageView

CAM = Camera("PINHOLE", 1024, 768, (700.0, 700.0, 512.0, 384.0))
SEQUENCES = [
    ("ref-a", "summer", 0.0),
    ("ref-b", "summer", 0.8),
    ("oth-a", "winter", -0.6),
    ("oth-b", "winter", 0.5),
]
SETBACKS = (8.0, 10.0, 12.0)


def _pose(x: float, y: float, yaw: float) -> Pose:
    a = np.radians(yaw)
    fwd, right = np.array([np.cos(a), np.sin(a), 0.0]), np.array([np.sin(a), -np.cos(a), 0.0])
    R = np.stack([right, [0.0, 0.0, -1.0], fwd])
    return Pose(R, -R @ np.array([x, y, 1.6]))


def _setback(x: np.ndarray) -> np.ndarray:
    return np.asarray(SETBACKS)[(np.floor(x / 15.0) % 3).astype(np.int64)]


def _hidden(centre: np.ndarray, pts: np.ndarray, facade: np.ndarray) -> np.ndarray:
    """Facade points whose line of sight from `centre` crosses a nearer stretch of facade."""
    out = np.zeros(len(pts), bool)
    side, depth = np.sign(pts[:, 1]), np.abs(pts[:, 1])
    for s in SETBACKS[:-1]:
        cand = facade & (depth > s + 1e-9)
        frac = (side[cand] * s - centre[1]) / (pts[cand, 1] - centre[1])
        x = centre[0] + (pts[cand, 0] - centre[0]) * frac
        out[np.flatnonzero(cand)[_setback(x) == s]] = True
    return out


def make_scene(n_images: int, n_points: int, step: float, noise: float, seed: int = 0):
    """Views and the (raw) point table of the synthetic street (see module doc)."""
    rng = np.random.default_rng(seed)
    per_seq = n_images // len(SEQUENCES)
    length = per_seq * step + 60.0
    views: list[ImageView] = []
    for seq, cond, lateral in SEQUENCES:
        yaw = rng.uniform(-8, 8)
        for k in range(per_seq):
            views.append(ImageView(f"{seq}/{k:05d}.png", seq, cond, CAM, _pose(k * step, lateral, yaw)))
    xyz, seq_name, local, o_img, o_pt, o_xy = [], [], [], [], [], []
    n = 0
    for s_idx, (seq, _, _) in enumerate(SEQUENCES):
        m = n_points // len(SEQUENCES)
        x = np.sort(rng.uniform(-5, length, m))
        kind = rng.integers(0, 3, m)  # 0 ground, 1 left facade, 2 right facade
        setback = _setback(x)
        pts = np.stack([x, rng.uniform(-7, 7, m), np.zeros(m)], 1)
        pts[kind == 1, 1], pts[kind == 2, 1] = setback[kind == 1], -setback[kind == 2]
        pts[kind > 0, 2] = rng.uniform(0, 15, (kind > 0).sum())
        ids = np.arange(n, n + m)
        for k in range(s_idx * per_seq, (s_idx + 1) * per_seq):
            v = views[k]
            c = v.pose.center
            lo, hi = np.searchsorted(x, [c[0] + 1.0, c[0] + 45.0])
            cam = v.pose.transform(pts[lo:hi])
            uv = CAM.project(cam)
            ok = (cam[:, 2] > 0.5) & (uv[:, 0] > 0) & (uv[:, 0] < 1023) & (uv[:, 1] > 0) & (uv[:, 1] < 767)
            ok &= ~_hidden(c, pts[lo:hi], kind[lo:hi] > 0)
            o_img.append(np.full(ok.sum(), k)), o_pt.append(ids[lo:hi][ok])
            o_xy.append(uv[ok] + rng.normal(0, 0.3, (ok.sum(), 2)))
        xyz.append(pts + rng.normal(0, noise, pts.shape)), seq_name.append(np.full(m, seq, object))
        local.append(np.arange(m))
        n += m
    c = np.concatenate
    return views, build_point_table(views, c(xyz), c(seq_name), c(local), c(o_img), c(o_pt), c(o_xy))


# ----------------------------------------------------------------------------- the peer-style loop


class LoopBaseline:
    """Correspondences of given pairs, one point / one sample / one ray at a time (module doc)."""

    def __init__(self, table, assoc, model: SurfaceModel, cfg: CorrespondenceConfig):
        self.t, self.assoc, self.model, self.cfg = table, assoc, model, cfg
        self.ref = table.condition_index(assoc.reference)
        self.ref_index = {int(p): k for k, p in enumerate(assoc.ref_points)}
        self.sides: dict[int, tuple[list, list]] = {}
        # on_surfaces: per region its plane, extent grid and which cells remain (SurfaceModel internals)
        self.grids = list(zip(model.regions, model._grids))
        self.alive = model._alive
        self.surface_tol = max(2 * model.cfg.plane_distance, model.cfg.clutter_radius) * model.scale
        self.scene_ref = model.scene((self.ref,))  # what a reference image sees (`_looking`)

    # --- one item at a time
    def project(self, view, X):
        xc = view.pose.R @ X + view.pose.t
        if xc[2] <= 0:
            return None
        fx, fy, cx, cy = view.camera.params
        return np.array([fx * xc[0] / xc[2] + cx - 0.5, fy * xc[1] / xc[2] + cy - 0.5])

    @staticmethod
    def inside(view, u, margin):
        return (
            -0.5 + margin <= u[0] <= view.camera.width - 0.5 - margin
            and -0.5 + margin <= u[1] <= view.camera.height - 0.5 - margin
        )

    @staticmethod
    def ray(view, u):
        fx, fy, cx, cy = view.camera.params
        d = view.pose.R.T @ np.array([(u[0] + 0.5 - cx) / fx, (u[1] + 0.5 - cy) / fy, 1.0])
        return d / np.linalg.norm(d)

    @staticmethod
    def cast(scene, origin, direction):
        """One ray, one call: (distance, owner or -2)."""
        import open3d as o3d

        ray = np.concatenate([origin - scene.shift, direction]).astype(np.float32)[None]
        ans = scene.scene.cast_rays(o3d.core.Tensor(ray))
        t = float(ans["t_hit"].numpy()[0])
        return (
            (t, int(scene.owner[int(ans["primitive_ids"].numpy()[0])]))
            if math.isfinite(t)
            else (math.inf, -2)
        )

    def sample(self, scene, view, u, strict):
        """Region and world point of a surface sample at pixel u, or None (surfaces.SurfaceModel.samples)."""
        c, d = view.pose.center, self.ray(view, u)
        t, what = self.cast(scene, c, d)
        if what < 0 or not self.inside(view, u, 1.0):
            return None
        r, tol = self.model.cfg.edge_px, self.model.cfg.edge_tolerance
        for du, dv in ((r, 0.0), (-r, 0.0), (0.0, r), (0.0, -r)):
            t2, what2 = self.cast(scene, c, self.ray(view, (u[0] + du, u[1] + dv)))
            if what2 != what and (strict or t2 < t * (1 - tol)):
                return None
        return what, c + d * t

    def visible(self, scene, view, X):
        """Nothing of the scene clearly before X on the ray from the camera (one ray)."""
        d = X - view.pose.center
        dist = float(np.linalg.norm(d))
        t, _ = self.cast(scene, view.pose.center, d / dist)
        return t >= dist * (1 - self.cfg.surface_depth_tol)

    def on_surface(self, X):
        """X within surface_tol of a region's plane, on one of its remaining cells (region by region)."""
        for region, grid in self.grids:
            d = X - region.origin
            if abs(d @ region.normal) > self.surface_tol:
                continue
            a = math.floor((d @ region.axes[0] - grid.low[0]) / grid.size)
            b = math.floor((d @ region.axes[1] - grid.low[1]) / grid.size)
            if 0 <= a < grid.cell_id.shape[0] and 0 <= b < grid.cell_id.shape[1]:
                c = grid.cell_id[a, b]
                if c >= 0 and self.alive[c]:
                    return True
        return False

    # --- per reference image (cached, as ours does)
    def reference_side(self, i: int):
        if i in self.sides:
            return self.sides[i]
        t, cfg, view = self.t, self.cfg, self.t.views[i]
        points, seen = [], set()
        for o in range(t.image_ptr[i], t.image_ptr[i + 1]):
            p = int(t.obs_point[o])
            if p in seen or p not in self.ref_index or t.curvature[p] > cfg.max_curvature:
                continue
            u = self.project(view, t.xyz[p])
            if u is None or not self.inside(view, u, cfg.image_margin):
                continue
            err = float(np.linalg.norm(u - t.obs_xy[o]))
            if err > cfg.max_reproj_error:
                continue
            seen.add(p)
            points.append((p, u, err))
        points.sort(key=lambda e: e[0])
        samples = []
        scene = self.scene_ref
        for u in sample_grid(view.camera, cfg.surface_stride, seed=(cfg.split_seed, i)):
            s = self.sample(scene, view, u, strict=True)
            if s is not None:
                samples.append((u, *s))
        self.sides[i] = points, samples
        return self.sides[i]

    # --- per pair
    def pair(self, i: int, j: int, condition: str) -> tuple[list, list, int]:
        """(point matches, surface matches, surface samples tried inside j)."""
        t, cfg, assoc = self.t, self.cfg, self.assoc
        vi, vj = t.views[i], t.views[j]
        points, samples = self.reference_side(i)
        j_obs = {}
        for o in range(t.image_ptr[j], t.image_ptr[j + 1]):
            j_obs.setdefault(int(t.obs_point[o]), o)
        part, pdist = assoc.partner[condition], assoc.partner_dist[condition]
        f_i = math.sqrt(vi.camera.params[0] * vi.camera.params[1])
        scene = self.model.scene((self.ref,), (t.condition_index(condition),))  # what j sees
        out_points = []
        for p, u0, err0 in points:
            k = self.ref_index[p]
            q, d3 = int(part[k]), float(pdist[k])
            if q < 0 or q not in j_obs or d3 > cfg.max_dist3d:
                continue
            X = t.xyz[p]
            u1 = self.project(vj, X)
            if u1 is None or not self.inside(vj, u1, cfg.image_margin):
                continue
            err1 = float(np.linalg.norm(u1 - t.obs_xy[j_obs[q]]))
            if err1 > cfg.max_reproj_error:
                continue
            ray = X - vi.pose.center
            depth = float(np.linalg.norm(ray))
            sigma = max(float(t.error[p]), cfg.keypoint_sigma)
            shift = (
                depth * sigma / (f_i * math.sin(math.radians(min(max(float(t.tri_angle[p]), 1e-3), 90.0))))
            )
            u2 = self.project(vj, X + ray / depth * shift)
            if u2 is None or np.linalg.norm(u2 - u1) > cfg.max_predicted_error:
                continue
            if self.grids and not (
                self.on_surface(X) and self.visible(self.scene_ref, vi, X) and self.visible(scene, vj, X)
            ):  # (no regions: no model to check with)
                continue
            out_points.append((u0, u1, p, d3, err0, err1))
        out_surface, tried = [], 0
        order = np.random.default_rng((cfg.split_seed, i)).permutation(len(samples))
        start = int(np.random.default_rng((cfg.split_seed, j, i)).integers(max(len(samples), 1)))
        for k in np.roll(order, -start):  # ours' order for the pair
            if len(out_surface) == cfg.max_surface_matches:
                break
            u0, region, X = samples[k]
            u1 = self.project(vj, X)
            if u1 is None or not self.inside(vj, u1, cfg.image_margin):
                continue
            tried += 1
            s = self.sample(scene, vj, u1, strict=False)
            if s is None or s[0] != region:
                continue
            if np.linalg.norm(s[1] - X) > cfg.surface_depth_tol * np.linalg.norm(X - vj.pose.center):
                continue
            out_surface.append((u0, u1))
        return out_points, out_surface, tried


def _same(ours: np.ndarray, theirs: list, tol: float = 0.01) -> int:
    """How many of `theirs` (x0, x1) are a match of `ours` ((N, 4) x0 y0 x1 y1) to `tol` px."""
    if not theirs or not len(ours):
        return 0
    from scipy.spatial import cKDTree

    q = np.array([np.r_[a, b] for a, b in theirs], np.float64)
    d, _ = cKDTree(ours).query(q, k=1, p=np.inf)
    return int((d <= tol).sum())


def _fingerprint() -> str:
    """sha256 (12 hex digits) of the two modules measured, to tell which version the figures are of."""
    import hashlib
    from pathlib import Path

    import xseason.matching.surfaces as surf

    return " ".join(
        f"{Path(m.__file__).name}:{hashlib.sha256(Path(m.__file__).read_bytes()).hexdigest()[:12]}"
        for m in (corr, surf)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--step", type=float, default=1.0, help="metres between images of a sequence")
    ap.add_argument("--point-noise", type=float, default=0.005, help="metres, 3D noise of the points")
    ap.add_argument("--baseline-pairs", type=int, default=20)
    ap.add_argument("--pairs-per-image", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="400 images, 100k points")
    ap.add_argument(
        "--tracemalloc", action="store_true", help="also trace ours' allocations (slows ours ~1.8x)"
    )
    args = ap.parse_args()
    if args.quick:
        args.images, args.points = 400, 100_000
    version = _fingerprint()
    t0 = time.perf_counter()
    views, raw = make_scene(args.images, args.points, args.step, args.point_noise)
    acfg = AssociationConfig(outlier_neighbors=0, min_tri_angle=0.5)
    table = clean_points(raw, acfg)
    n_raw = raw.num_points
    del raw
    assoc = associate(table, "summer", acfg)
    t_setup = time.perf_counter() - t0
    cfg = CorrespondenceConfig(max_pairs_per_image=args.pairs_per_image)

    built: dict = {}
    real_build = corr.build_surfaces

    def build_surfaces(*a, **k):
        """The same call; its model and time are kept for the report and the baseline. The two
        ray-casting scenes ours uses (regions + reference clutter; + winter clutter) are built
        here rather than on first use, so that their time counts as construction too."""
        t1 = time.perf_counter()
        model = real_build(*a, **k)
        ref, other = table.condition_index("summer"), table.condition_index("winter")
        model.scene((ref,)), model.scene((ref,), (other,))
        built["model"], built["s"] = model, time.perf_counter() - t1
        return model

    corr.build_surfaces = build_surfaces
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.tracemalloc:
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = make_correspondences(AssociatedPoints(table, [assoc], table), cfg, progress=False)
    pairs = out.pairs
    rng = np.random.default_rng(1)
    sample = pairs.iloc[np.sort(rng.choice(len(pairs), min(args.baseline_pairs, len(pairs)), replace=False))]
    n_matches = n_dense = 0
    kept = []  # the sampled pairs' matches, for the check against the baseline (a few ms, counted in ours)
    for chunk in out.iter_matches():
        n_matches, n_dense = n_matches + len(chunk), n_dense + int(chunk["densified"].sum())
        kept.append(chunk[chunk["pair_id"].isin(sample["pair_id"])])
    t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
    if args.tracemalloc:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    corr.build_surfaces = real_build
    rss_ours = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model: SurfaceModel = built["model"]
    print(
        f"ours: {t_ours:.1f} s ({c_ours:.1f} CPU s), surface model {built['s']:.1f} s, "
        f"{len(out.pairs)} pairs, {n_matches} matches; baseline on {len(sample)} pairs ...",
        file=sys.stderr,
        flush=True,
    )

    kinds, area_kind = {"ground": 0, "facade": 0, "other": 0}, {"ground": 0.0, "facade": 0.0, "other": 0.0}
    for r, a in zip(
        model.regions, model.areas()
    ):  # the surfaces found: ground (normal z), facades (normal y)
        n = np.abs(r.normal)
        kind = "ground" if n[2] > 0.99 else "facade" if n[1] > 0.99 else "other"
        kinds[kind], area_kind[kind] = kinds[kind] + 1, area_kind[kind] + float(a)

    kept = pd.concat(kept)
    base = LoopBaseline(table, assoc, model, cfg)
    counts = {
        "ours_point": 0,
        "ours_surface": 0,
        "base_point": 0,
        "base_surface": 0,
        "base_tried": 0,
        "base_point_in_ours": 0,
        "base_surface_in_ours": 0,
    }
    t_side = t_pair = 0.0
    c0 = time.process_time()
    for r in sample.itertuples():
        i, j = int(r.image_id0), int(r.image_id1)
        t1 = time.perf_counter()
        base.reference_side(i)
        t2 = time.perf_counter()
        pts, surf, n_tried = base.pair(i, j, "winter")
        t3 = time.perf_counter()
        t_side, t_pair = t_side + t2 - t1, t_pair + t3 - t2
        print(
            f"  baseline pair {i}-{j}: {t2 - t1:.1f} s reference side, {t3 - t2:.1f} s pair",
            file=sys.stderr,
            flush=True,
        )
        ours = kept[kept["pair_id"] == r.pair_id]
        dense = ours["densified"].to_numpy()
        xy = ours[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
        counts["ours_point"] += int((~dense).sum())
        counts["ours_surface"] += int(dense.sum())
        counts["base_point"] += len(pts)
        counts["base_surface"] += len(surf)
        counts["base_tried"] += n_tried
        counts["base_point_in_ours"] += _same(xy[~dense], [(a, b) for a, b, *_ in pts])
        counts["base_surface_in_ours"] += _same(xy[dense], surf)
    c_base_sample = time.process_time() - c0
    n_ref = int(pairs["image_id0"].nunique())
    n_side = len(base.sides)
    t_base = t_pair / len(sample) * len(pairs) + t_side / n_side * n_ref
    t_model = built["s"]
    report = {
        "measured": version + ("" if _fingerprint() == version else " (CHANGED ON DISK DURING THE RUN)"),
        "images": len(views),
        "points (raw / after cleaning)": f"{n_raw} / {table.num_points}",
        "observations": int(table.image_ptr[-1]),
        "setup_s (scene, cleaning, association; not timed)": round(t_setup, 1),
        "surface regions (ground / facade / other)": (
            f"{kinds['ground']} / {kinds['facade']} / {kinds['other']}"
        ),
        "surface area m2 (ground / facade / other)": (
            f"{area_kind['ground']:.0f} / {area_kind['facade']:.0f} / {area_kind['other']:.0f}"
        ),
        "pairs": len(pairs),
        "reference images in pairs": n_ref,
        "matches": n_matches,
        "point matches": n_matches - n_dense,
        "surface (densified) matches": n_dense,
        "densified_share": round(n_dense / max(n_matches, 1), 3),
        "ours_s (make_correspondences + iter_matches, surface model included)": round(t_ours, 1),
        "surface_model_s (build_surfaces + its 2 ray-casting scenes; part of ours_s)": round(t_model, 1),
        "baseline: timed pairs / their reference images": f"{len(sample)} / {n_side}",
        "baseline: timed s, per-pair part / per-reference-image part": f"{t_pair:.1f} / {t_side:.1f}",
        "baseline_s, loop extrapolated linearly "
        "(pair part x pairs + reference part x reference images)": round(t_base, 1),
        "speedup, surface model timed on both sides ((baseline_s + surface_model_s) / ours_s)": round(
            (t_base + t_model) / t_ours, 1
        ),
        "speedup, surface model timed on neither side (baseline_s / (ours_s - surface_model_s))": round(
            t_base / (t_ours - t_model), 1
        ),
        "CPU s (process time, both cores): ours / baseline's timed pairs (their wall s)": (
            f"{c_ours:.1f} / {c_base_sample:.1f} ({t_pair + t_side:.1f})"
        ),
        "speedup in CPU time (baseline_s x its CPU/wall ratio, + surface model, / ours' CPU s)": round(
            (t_base * c_base_sample / (t_pair + t_side) + t_model) / c_ours, 1
        ),
        "timed pairs, point matches: ours / baseline / baseline's found in ours": (
            f"{counts['ours_point']} / {counts['base_point']} / {counts['base_point_in_ours']}"
        ),
        "timed pairs, surface matches: ours / baseline / baseline's found in ours "
        "(samples the baseline tried)": (
            f"{counts['ours_surface']} / {counts['base_surface']} / {counts['base_surface_in_ours']}"
            f" ({counts['base_tried']})"
        ),
        "process_peak_rss_MiB (before ours / after ours / end)": (
            f"{rss_before:.0f} / {rss_ours:.0f} / "
            f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
        ),
    }
    if args.tracemalloc:
        report[
            "ours_tracemalloc_peak_MiB (ours ran under tracemalloc: its time and the speedups are inflated)"
        ] = round(peak / 2**20, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
