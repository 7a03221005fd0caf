"""Correspondence generation on an exact little street of boxes (analytic ray casting).

Clouds are made by lifting grid pixels with the exact depth, so every generated match must
agree with the ray-cast ground truth to ~0.01 px; the scene has an occluding box (present in
both conditions), a "foliage" box that exists only in the reference condition, and a mask.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from toy import CAMERA, H, W

from xseason.core.geometry import Pose, in_image
from xseason.matching.association import (
    AssociatedPoints,
    AssociationConfig,
    associate,
    build_point_table,
    clean_points,
)
from xseason.matching.correspondences import CorrespondenceConfig, make_correspondences, sample_grid
from xseason.matching.surfaces import SurfaceConfig
from xseason.matching.views import ImageView

# Boxes (min corner, max corner). Ground is the plane z = 0.
FACADES = [((-10, 7, 0), (40, 9, 12)), ((-10, -9, 0), (40, -7, 12))]
POLE = ((9.6, 2.5, 0), (10.4, 3.3, 6))  # occluder, both conditions
FOLIAGE = ((14, -4.5, 2), (17, -2.5, 5))  # reference condition only


def _raycast(origin: np.ndarray, dirs: np.ndarray, boxes) -> np.ndarray:
    """Distance along unit rays to the first hit (ground z=0 and boxes); inf when none."""
    t = np.full(len(dirs), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = -origin[2] / dirs[:, 2]
    t = np.where((tg > 0), tg, t)
    for lo, hi in boxes:
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (lo - origin) / dirs, (hi - origin) / dirs
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (tmax >= tmin) & (tmax > 0)
        t = np.where(hit & (tmin > 0) & (tmin < t), tmin, t)
    return t


def _look_pose(center, yaw_deg: float) -> Pose:
    """Camera at `center` looking along +x rotated by yaw about z; image y points down (-z)."""
    a = np.radians(yaw_deg)
    fwd = np.array([np.cos(a), np.sin(a), 0.0])
    right = np.array([np.sin(a), -np.cos(a), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    R = np.stack([right, down, fwd])
    return Pose(R, -R @ np.asarray(center, float))


class Scene:
    """Views of two conditions plus the exact geometry of each condition."""

    def __init__(self, tmp: Path):
        self.boxes = {"summer": FACADES + [POLE, FOLIAGE], "winter": FACADES + [POLE]}
        specs = [("s1", "summer", 0.0, 0.0), ("s2", "summer", 0.8, 4.0), ("w1", "winter", -0.6, -5.0)]
        self.views: list[ImageView] = []
        for seq, cond, lateral, yaw in specs:
            for k in range(6):
                mask = None
                if seq == "w1" and k == 2:
                    m = np.zeros((H, W), np.uint8)
                    m[40:90, 20:70] = 255
                    mask = tmp / "mask.png"
                    cv2.imwrite(str(mask), m)
                pose = _look_pose((2.0 * k, lateral, 1.6), yaw)
                self.views.append(ImageView(f"{seq}/{k}.png", seq, cond, CAMERA, pose, mask))

    def depth(self, k: int, pixels: np.ndarray) -> np.ndarray:
        """Exact z-depth of pixels of view k in its own condition's geometry."""
        v = self.views[k]
        rays = v.camera.unproject(pixels)
        dirs_w = rays @ v.pose.R
        norm = np.linalg.norm(dirs_w, axis=1)
        t = _raycast(v.pose.center, dirs_w / norm[:, None], self.boxes[v.condition])
        return t / norm

    def lift(self, k: int, pixels: np.ndarray) -> np.ndarray:
        v = self.views[k]
        z = self.depth(k, pixels)
        z[~np.isfinite(z)] = np.nan  # sky
        cam = v.camera.unproject(pixels) * z[:, None]
        return (cam - v.pose.t) @ v.pose.R

    def true_match(self, a: int, b: int, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of b seeing the surface seen at `pixels` in a, and whether b really sees it."""
        X = self.lift(a, pixels)
        vb = self.views[b]
        cam = vb.pose.transform(X)
        uv = vb.camera.project(cam)
        inside = (cam[:, 2] > 0) & np.isfinite(uv).all(axis=1)
        zb = np.full(len(X), np.nan)
        zb[inside] = self.depth(b, uv[inside])
        visible = inside & (np.abs(zb - cam[:, 2]) < 1e-6 * np.maximum(cam[:, 2], 1))
        return uv, visible

    def table(self, step: dict[str, int]):
        """Per-sequence clouds: grid pixels of each image lifted with exact depth, observed in
        every image of the same sequence that sees them."""
        xyz, seqs, local, o_img, o_pt, o_xy = [], [], [], [], [], []
        n = 0
        for k, v in enumerate(self.views):
            s = step[v.condition]
            g = np.stack(np.meshgrid(np.arange(3, W - 3, s), np.arange(3, H - 3, s)), -1)
            g = g.reshape(-1, 2).astype(float)
            X = self.lift(k, g)
            ok = np.isfinite(X).all(axis=1)
            X = X[ok]
            idx = np.arange(n, n + len(X))
            for m, u in enumerate(self.views):
                if u.sequence != v.sequence:
                    continue
                uv, vis = self.true_match(k, m, g[ok])
                vis &= np.isfinite(uv).all(axis=1) & (uv[:, 0] > 0) & (uv[:, 0] < W - 1)
                vis &= (uv[:, 1] > 0) & (uv[:, 1] < H - 1)
                o_img.append(np.full(vis.sum(), m))
                o_pt.append(idx[vis])
                o_xy.append(uv[vis])
            xyz.append(X)
            seqs.append(np.full(len(X), v.sequence, object))
            local.append(np.arange(len(X)) + 1000 * k)
            n += len(X)
        c = np.concatenate
        return build_point_table(self.views, c(xyz), c(seqs), c(local), c(o_img), c(o_pt), c(o_xy))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Scene:
    return Scene(tmp_path_factory.mktemp("scene"))


ASSOC = AssociationConfig(min_tri_angle=0.5, outlier_neighbors=0, radius_max=0.6)


def _generate(scene: Scene, surfaces: SurfaceConfig | None = None, **kw):
    table = clean_points(scene.table({"summer": 6, "winter": 10}), ASSOC)
    assoc = associate(table, "summer", ASSOC)
    cfg = CorrespondenceConfig(**{"min_matches": 5, **kw})
    return table, make_correspondences(AssociatedPoints(table, [assoc], table), cfg, surfaces, progress=False)


def _errors(scene: Scene, tables) -> tuple[np.ndarray, np.ndarray]:
    """Per match: pixel error against the ray-cast truth and whether the truth is visible."""
    m, p = tables.matches, tables.pairs.set_index("pair_id")
    err, vis = np.zeros(len(m)), np.zeros(len(m), bool)
    for pid, rows in m.groupby("pair_id").indices.items():
        a, b = int(p.at[pid, "image_id0"]), int(p.at[pid, "image_id1"])
        sub = m.iloc[rows]
        uv, v = scene.true_match(a, b, sub[["x0", "y0"]].to_numpy(float))
        err[rows] = np.linalg.norm(uv - sub[["x1", "y1"]].to_numpy(float), axis=1)
        vis[rows] = v
    return err, vis


def test_matches_agree_with_exact_geometry(scene):
    table, out = _generate(scene)
    m, pairs = out.matches, out.pairs
    assert len(pairs) >= 20
    cond = np.array([v.condition for v in scene.views])
    assert (cond[pairs.image_id0] == "summer").all() and (cond[pairs.image_id1] == "winter").all()
    err, vis = _errors(scene, out)
    assert vis.all(), f"{(~vis).sum()} matches whose true correspondence is occluded or absent"
    assert np.max(err) < 0.01
    assert m.densified.mean() > 0.5  # the sparse winter cloud alone gives far fewer matches
    assert (m.err0 < 1e-3).all() and (m.err1 <= 2.0).all() and (m.err1[m.densified] == 0).all()
    assert m.point3d_id[m.densified].isna().all() and m.point3d_id[~m.densified].notna().all()
    assert ((m.weight > 0) & (m.weight <= 1)).all()
    np.testing.assert_allclose(m.weight, np.exp(-m.dist3d), rtol=1e-5)
    assert (pairs.num_matches >= 5).all() and pairs.groupby("image_id1").size().max() <= 40


def test_densify_adds_coverage_without_losing_accuracy(scene):
    _, sparse = _generate(scene, densify=False)
    _, dense = _generate(scene)
    assert not sparse.matches.densified.any()
    assert len(dense.matches) > 2 * len(sparse.matches)
    err, vis = _errors(scene, sparse)
    assert vis.all() and err.max() < 0.01


def test_occluded_and_foliage_points_never_match(scene):
    """Without occluders and free-space carving, wrong matches appear; with them, none, and
    none lies on the summer-only foliage box."""
    loose = SurfaceConfig(clutter_radius=1e-6, clutter_join=0.0, free_space_margin=0.999, edge_px=0.01)
    _, unsafe = _generate(scene, loose)
    _, vis = _errors(scene, unsafe)
    assert (~vis).sum() > 20  # the test below is not vacuous
    _, strict = _generate(scene)
    _, vis = _errors(scene, strict)
    assert vis.all()
    m, p = strict.matches, strict.pairs.set_index("pair_id")
    lo, hi = np.array(FOLIAGE[0]), np.array(FOLIAGE[1])
    for pid, rows in m.groupby("pair_id").indices.items():
        X = scene.lift(int(p.at[pid, "image_id0"]), m.iloc[rows][["x0", "y0"]].to_numpy(float))
        assert not ((X >= lo - 1e-6) & (X <= hi + 1e-6)).all(axis=1).any()


def test_mask_excludes_matches(scene):
    _, out = _generate(scene)
    masked = next(k for k, v in enumerate(scene.views) if v.mask is not None)
    m = out.matches.merge(out.pairs[["pair_id", "image_id1"]], on="pair_id")
    m = m[m.image_id1 == masked]
    assert len(m) > 20
    inside = (m.x1.between(19.5, 69.5)) & (m.y1.between(39.5, 89.5))
    assert not inside.any()


def test_pair_selection_cap_and_overlap(scene):
    _, out = _generate(scene, max_pairs_per_image=2, min_overlap=0.3)
    per_image = out.pairs.groupby("image_id1").size()
    assert per_image.max() == 2
    assert (out.pairs.overlap >= 0.3).all()
    _, same = _generate(scene, self_pairs=True)
    seq = np.array([v.sequence for v in scene.views])
    both_ref = seq[same.pairs.image_id1] != "w1"
    assert both_ref.any()
    assert (seq[same.pairs.image_id0][both_ref] != seq[same.pairs.image_id1][both_ref]).all()


def test_surface_samples_cover_the_facades_at_exact_positions(scene):
    """Every reference image gets surface samples (a jittered grid, seeded per image) on the planes
    of the street, and each one is the exact surface point its pixel sees."""
    _, out = _generate(scene)
    dens = out.matches[out.matches.densified].merge(out.pairs[["pair_id", "image_id0"]], on="pair_id")
    assert dens.image_id0.nunique() >= 10
    for _, sub in dens.groupby("image_id0"):
        assert np.ptp(sub.x0) > W / 3 and (sub.x0 % 1 != 0).mean() > 0.9  # spread, not on integer pixels
    grid = sample_grid(CAMERA, 4.0, seed=(0, 3))
    assert len(grid) == (W // 4) * (H // 4) and in_image(CAMERA, grid).all()
    np.testing.assert_array_equal(grid, sample_grid(CAMERA, 4.0, seed=(0, 3)))


def test_streamed_chunks_are_the_match_table(scene):
    """iter_matches yields whole pairs in pair_id order, about chunk_rows rows each, and
    together exactly the `matches` table."""
    _, out = _generate(scene)
    chunks = list(out.iter_matches(chunk_rows=300))
    assert len(chunks) > 3 and out.num_matches == len(out.matches)
    sizes = np.array([len(c) for c in chunks])
    biggest_pair = int(out.pairs.num_matches.max())
    assert (sizes[:-1] <= max(300, biggest_pair)).all()
    ids = [c.pair_id.to_numpy() for c in chunks]
    assert all(a[-1] < b[0] for a, b in zip(ids[:-1], ids[1:], strict=True))  # no pair split across chunks
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), out.matches)


def test_surface_probe_changes_the_estimate_not_the_matches(scene):
    """A pair's surface matches are the first `max_surface_matches` hits in its seeded order: the
    same whether its candidates were probed with a few samples or with every one (exact overlap)."""
    _, exact = _generate(scene, surface_probe=10**6, max_surface_matches=50)
    _, probed = _generate(scene, surface_probe=32, max_surface_matches=50)
    both = exact.pairs.merge(probed.pairs, on=["image_id0", "image_id1"], suffixes=("", "_probed"))
    assert len(both) >= 0.8 * len(exact.pairs) and len(both) > 20
    cols = ["x0", "y0", "x1", "y1"]
    dense = {
        name: out.matches[out.matches.densified].groupby("pair_id")
        for name, out in (("exact", exact), ("probed", probed))
    }
    capped = 0
    for r in both.itertuples():
        a = dense["exact"].get_group(r.pair_id)[cols].to_numpy()
        b = dense["probed"].get_group(r.pair_id_probed)[cols].to_numpy()
        np.testing.assert_array_equal(a, b)
        capped += len(a) == 50
    assert capped >= len(both) / 2  # most pairs have more surface matches than they keep
    # the probed overlap is a binomial estimate from 32 samples: standard error <= 0.09
    assert np.median(np.abs(both.overlap - both.overlap_probed)) < 0.09


def test_each_reference_side_is_made_once_and_reused(scene, tmp_path, monkeypatch):
    """A reference image's side (its points and surface samples) is made once per build, in its own
    file, however many target images and shards use it; a rerun on the same shard folder makes none
    and gives the same matches."""
    from xseason.matching import correspondences

    table = clean_points(scene.table({"summer": 6, "winter": 10}), ASSOC)
    associated = AssociatedPoints(table, [associate(table, "summer", ASSOC)], table)
    cfg = CorrespondenceConfig(min_matches=5)
    made: list[int] = []
    compute = correspondences._computed_side
    monkeypatch.setattr(correspondences, "_computed_side", lambda ctx, i: made.append(i) or compute(ctx, i))
    first = make_correspondences(associated, cfg, progress=False, shard_root=tmp_path, shard_targets=2)
    summer = [k for k, v in enumerate(table.views) if v.condition == "summer"]
    assert len(made) == len(set(made)) and set(made) <= set(summer) and len(made) >= 4
    assert len(first.pairs) > 10 and set(first.pairs.image_id0) <= set(made)
    made.clear()
    again = make_correspondences(associated, cfg, progress=False, shard_root=tmp_path, shard_targets=2)
    assert made == []
    pd.testing.assert_frame_equal(again.matches, first.matches)
