"""Benchmark 1 (issue 6): correspondence generation at scale, vectorised vs a per-pair Python loop.

A synthetic reconstruction is made without rendering: a straight street (ground plane and two
facades with random setbacks), cameras every `--step` metres along it in several sequences of
two conditions, random surface points, each observed (with 0.3 px keypoint noise) by every
camera of its own sequence that sees it. Both methods get the same cleaned point table and
associations; only generation is timed:

- ours: `make_correspondences` (pair selection, z-buffer visibility, densification, tables);
- baseline: the loop peers write (for each pair, for each point the reference image observes:
  look its partner up in a dict, project it with numpy into the other image, check the
  bounds, append a match). It is timed on `--baseline-pairs` of our pairs and extrapolated
  linearly to all of them (said in the output).

Peak memory: tracemalloc's peak during our generation, and the process's peak RSS.

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


def baseline_pair(table, assoc, condition: str, i: int, j: int, margin: float) -> list[tuple]:
    """The peer-style loop: one pair, one point at a time."""
    partner = {int(p): int(q) for p, q in zip(assoc.ref_points, assoc.partner[condition]) if q >= 0}
    vi, vj = table.views[i], table.views[j]
    K = vj.camera.calibration_matrix()
    out = []
    for o in range(table.image_ptr[i], table.image_ptr[i + 1]):
        p = int(table.obs_point[o])
        if p not in partner:
            continue
        X = table.xyz[p]
        xc = vj.pose.R @ X + vj.pose.t
        if xc[2] <= 0:
            continue
        u = K @ (xc / xc[2])
        if margin <= u[0] <= vj.camera.width - 1 - margin and margin <= u[1] <= vj.camera.height - 1 - margin:
            xi = vi.pose.R @ X + vi.pose.t
            u0 = vi.camera.calibration_matrix() @ (xi / xi[2])
            out.append((u0[0], u0[1], u[0], u[1], float(np.exp(-np.linalg.norm(X - table.xyz[partner[p]])))))
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
    t_ours = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pairs = out.pairs
    rng = np.random.default_rng(1)
    sample = pairs.iloc[rng.choice(len(pairs), min(args.baseline_pairs, len(pairs)), replace=False)]
    t0 = time.perf_counter()
    n_base = sum(len(baseline_pair(table, assoc, "winter", int(r.image_id0), int(r.image_id1), 2.0)) for r in sample.itertuples())
    t_base_sample = time.perf_counter() - t0
    t_base = t_base_sample / len(sample) * len(pairs)
    report = {
        "images": len(views),
        "points_after_cleaning": table.num_points,
        "observations": int(table.image_ptr[-1]),
        "setup_s (scene, cleaning, association)": round(t_setup, 1),
        "pairs": len(pairs),
        "matches": len(out.matches),
        "densified_share": round(float(out.matches.densified.mean()), 3),
        "ours_s": round(t_ours, 2),
        "baseline_s (extrapolated)": round(t_base, 1),
        "baseline_timed_pairs": len(sample),
        "baseline_timed_s": round(t_base_sample, 2),
        "baseline_matches_in_timed_pairs (associated only, no visibility)": n_base,
        "speedup": round(t_base / t_ours, 1),
        "ours_tracemalloc_peak_MiB": round(peak / 2**20, 1),
        "process_peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
