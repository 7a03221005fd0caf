"""Benchmark 1 (issue 6): correspondence generation at scale, vectorised vs a per-pair Python loop.

A synthetic reconstruction is made without rendering: a straight street (ground plane and two
facades with random setbacks), cameras every `--step` metres along it in several sequences of
two conditions, random surface points, each observed (with 0.3 px keypoint noise) by every
camera of its own sequence that sees it. Both methods get the same cleaned point table and
associations; only generation is timed:

- ours: `make_correspondences` (pair selection, surfel z-buffer visibility, densification,
  filters) and streaming every match out as DataFrame chunks (`iter_matches`, what the build
  hands to the store writer), so the full match table is never held;
- baseline: the loop peers write, doing the same work per pair one point at a time
  (`baseline_pair`: candidates, partner/support lookup, projection and bounds, a dict z-buffer
  of tangent-plane discs for occlusion and free space, predicted error). It is timed on
  `--baseline-pairs` of our pairs and extrapolated linearly to all of them (said in the
  output); its pair selection is not counted (it is given our pairs), which favours it, and
  it skips our reference-side occlusion test, curvature and err1 filters.

Peak memory: tracemalloc's peak during our generation and streaming, and the process's peak
RSS (which includes the synthetic scene and the point table).

    .venv/bin/python benchmarks/bench_generation.py               # 2,000 images, 1M points
    .venv/bin/python benchmarks/bench_generation.py --quick       # 400 images, 100k points
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc

import numpy as np

from xseason.association import AssociationConfig, ImageView, associate, build_point_table, clean_points
from xseason.correspondences import CorrespondenceConfig, make_correspondences
from xseason.geometry import Camera, Pose

CAM = Camera("PINHOLE", 1024, 768, (700.0, 700.0, 512.0, 384.0))
SEQUENCES = [("ref-a", "summer", 0.0), ("ref-b", "summer", 0.8), ("oth-a", "winter", -0.6), ("oth-b", "winter", 0.5)]


def _pose(x: float, y: float, yaw: float) -> Pose:
    a = np.radians(yaw)
    fwd, right = np.array([np.cos(a), np.sin(a), 0.0]), np.array([np.sin(a), -np.cos(a), 0.0])
    R = np.stack([right, [0.0, 0.0, -1.0], fwd])
    return Pose(R, -R @ np.array([x, y, 1.6]))


def make_scene(n_images: int, n_points: int, step: float, seed: int = 0):
    """Views and a point table of the synthetic street (see module doc)."""
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
        setback = 8.0 + 2.0 * (np.floor(x / 15.0) % 3)  # facades step back every 15 m
        pts = np.stack([x, rng.uniform(-7, 7, m), np.zeros(m)], 1)
        pts[kind == 1, 1], pts[kind == 2, 1] = setback[kind == 1], -setback[kind == 2]
        pts[kind > 0, 2] = rng.uniform(0, 15, (kind > 0).sum())
        ids = np.arange(n, n + m)
        for k in range(s_idx * per_seq, (s_idx + 1) * per_seq):
            v = views[k]
            cx = v.pose.center[0]
            lo, hi = np.searchsorted(x, [cx + 1.0, cx + 45.0])
            cam = v.pose.transform(pts[lo:hi])
            uv = CAM.project(cam)
            ok = (cam[:, 2] > 0.5) & (uv[:, 0] > 0) & (uv[:, 0] < 1023) & (uv[:, 1] > 0) & (uv[:, 1] < 767)
            o_img.append(np.full(ok.sum(), k)), o_pt.append(ids[lo:hi][ok])
            o_xy.append(uv[ok] + rng.normal(0, 0.3, (ok.sum(), 2)))
        xyz.append(pts), seq_name.append(np.full(m, seq, object)), local.append(np.arange(m))
        n += m
    c = np.concatenate
    return views, build_point_table(views, c(xyz), c(seq_name), c(local), c(o_img), c(o_pt), c(o_xy))


def baseline_pair(table, assoc, condition: str, i: int, j: int, cfg: CorrespondenceConfig, reach: float) -> list[tuple]:
    """The peer-style loop for one pair, one point at a time, doing the same work as ours:
    candidate points (seen by i or its reference neighbours), support / partner lookup and
    dist3d filter, projection into both images with bounds, a z-buffer of j (min depth per
    cell, each occluder splatted as a square of its projected radius) for the occlusion test,
    the free-space test against the other condition's points near j, and the predicted error."""
    views = table.views
    vi, vj = views[i], views[j]
    pos = {int(p): k for k, p in enumerate(assoc.ref_points)}
    part, pdist, sdist = assoc.partner[condition], assoc.partner_dist[condition], assoc.support_dist[condition]
    ref_cond = assoc.reference

    def near(k: int, cond: str) -> list[int]:
        return [m for m, v in enumerate(views) if v.condition == cond
                and np.linalg.norm(v.pose.center - views[k].pose.center) <= reach]

    def points_of(images: list[int]) -> set[int]:
        return {int(table.obs_point[o]) for m in images for o in range(table.image_ptr[m], table.image_ptr[m + 1])}

    def project(view, X):
        xc = view.pose.R @ X + view.pose.t
        if xc[2] <= 0:
            return None, xc[2]
        u = view.camera.calibration_matrix() @ (xc / xc[2])
        m = cfg.image_margin
        if not (m <= u[0] <= view.camera.width - 1 - m and m <= u[1] <= view.camera.height - 1 - m):
            return None, xc[2]
        return u[:2], xc[2]

    def zbuffer(view, points, factor, cell):
        """Min depth per cell; each point a disc of radius factor * spacing on its tangent plane."""
        buf = {}
        f = view.camera.calibration_matrix()[0, 0]
        for p in points:
            u, z = project(view, table.xyz[p])
            if u is None:
                continue
            rad = factor * (table.spacing[p] if np.isfinite(table.spacing[p]) else 0.0)
            r = int(np.clip(np.ceil(f * rad / z / cell - 0.5), 0, cfg.splat_max))
            xc = view.pose.R @ table.xyz[p] + view.pose.t
            n = view.pose.R @ table.normal[p] if np.isfinite(table.normal[p]).all() else np.array([0.0, 0.0, 1.0])
            cx, cy = int((u[0] + 0.5) // cell), int((u[1] + 0.5) // cell)
            for dx in range(-r, r + 1):
                for dy in range(-r, r + 1):
                    if dx * dx + dy * dy > r * r + r:
                        continue
                    ray = view.camera.unproject(np.array([[(cx + dx + 0.5) * cell - 0.5, (cy + dy + 0.5) * cell - 0.5]]))[0]
                    den = n @ ray
                    d = (n @ xc) / den if den != 0 else -1.0
                    if (dx or dy) and (d <= 0 or np.linalg.norm(ray * d - xc) > rad):
                        continue
                    d = d if d > 0 and np.linalg.norm(ray * d - xc) <= rad else z
                    if d < buf.get((cx + dx, cy + dy), np.inf):
                        buf[(cx + dx, cy + dy)] = d
        return buf

    cands = points_of(near(i, ref_cond)) | points_of([i])
    own = [p for p in points_of(near(j, condition)) if p not in pos]
    occluders = list(cands) + own
    radii = []
    for p in occluders:  # z-buffer cell: the median projected splat radius, 1..16 px
        z = (vj.pose.R @ table.xyz[p] + vj.pose.t)[2]
        if z > 0 and np.isfinite(table.spacing[p]):
            radii.append(cfg.splat_factor * vj.camera.calibration_matrix()[0, 0] * table.spacing[p] / z)
    cell = int(np.clip(np.round(np.median(radii)), 1, 16)) if radii else 1
    occ = zbuffer(vj, occluders, cfg.splat_factor, cell)
    free = zbuffer(vj, own, cfg.free_space_splat, cell)
    f_i = vi.camera.calibration_matrix()[0, 0]
    out = []
    for p in cands:
        k = pos.get(p)
        if k is None or not np.isfinite(sdist[k]):
            continue
        d3 = pdist[k] if part[k] >= 0 else sdist[k]
        if d3 > cfg.max_dist3d:
            continue
        X = table.xyz[p]
        u0, _ = project(vi, X)
        u1, z1 = project(vj, X)
        if u0 is None or u1 is None:
            continue
        key = (int((u1[0] + 0.5) // cell), int((u1[1] + 0.5) // cell))
        if z1 > occ.get(key, np.inf) * (1 + cfg.depth_tol) or free.get(key, 0.0) > z1 * (1 + cfg.depth_tol):
            continue
        ray = X - vi.pose.center
        depth = float(np.linalg.norm(ray))
        shift = depth * max(table.error[p], cfg.keypoint_sigma) / (f_i * np.sin(np.radians(max(table.tri_angle[p], 1e-3))))
        u2, _ = project(vj, X + ray / depth * shift)
        if u2 is None or np.linalg.norm(u2 - u1) > cfg.max_predicted_error:
            continue
        out.append((u0[0], u0[1], u1[0], u1[1], float(np.exp(-d3 / cfg.weight_scale))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--step", type=float, default=1.0, help="metres between images of a sequence")
    ap.add_argument("--baseline-pairs", type=int, default=40)
    ap.add_argument("--pairs-per-image", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="400 images, 100k points")
    args = ap.parse_args()
    if args.quick:
        args.images, args.points = 400, 100_000
    t0 = time.perf_counter()
    views, table = make_scene(args.images, args.points, args.step)
    acfg = AssociationConfig(outlier_neighbors=0, min_tri_angle=0.5)
    table = clean_points(table, acfg)
    assoc = associate(table, "summer", acfg)
    t_setup = time.perf_counter() - t0
    cfg = CorrespondenceConfig(max_pairs_per_image=args.pairs_per_image)
    tracemalloc.start()
    t0 = time.perf_counter()
    out = make_correspondences(table, [assoc], cfg, progress=False)
    n_matches = n_dense = 0
    for chunk in out.iter_matches():
        n_matches, n_dense = n_matches + len(chunk), n_dense + int(chunk["densified"].sum())
    t_ours = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pairs = out.pairs
    rng = np.random.default_rng(1)
    sample = pairs.iloc[rng.choice(len(pairs), min(args.baseline_pairs, len(pairs)), replace=False)]
    t0 = time.perf_counter()
    depth = table.depth[np.isfinite(table.depth) & (table.track_length > 0)]
    reach = cfg.pair_distance * float(np.median(depth))
    n_base = sum(len(baseline_pair(table, assoc, "winter", int(r.image_id0), int(r.image_id1), cfg, reach))
                 for r in sample.itertuples())
    t_base_sample = time.perf_counter() - t0
    t_base = t_base_sample / len(sample) * len(pairs)
    report = {
        "images": len(views),
        "points_after_cleaning": table.num_points,
        "observations": int(table.image_ptr[-1]),
        "setup_s (scene, cleaning, association)": round(t_setup, 1),
        "pairs": len(pairs),
        "matches": n_matches,
        "densified_share": round(n_dense / max(n_matches, 1), 3),
        "ours_s": round(t_ours, 2),
        "baseline_s (extrapolated)": round(t_base, 1),
        "baseline_timed_pairs": len(sample),
        "baseline_timed_s": round(t_base_sample, 2),
        "baseline_matches_in_timed_pairs": n_base,
        "ours_matches_in_timed_pairs": int(sample.num_matches.sum()),
        "speedup": round(t_base / t_ours, 1),
        "ours_tracemalloc_peak_MiB": round(peak / 2**20, 1),
        "process_peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
