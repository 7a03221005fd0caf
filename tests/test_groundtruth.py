"""Ground-truth tools: exact sub-pixel depth, correspondences, occlusion and overlap."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from xseason.core.errors import DatasetFormatError
from xseason.core.geometry import Camera, Pose, in_image, project_points
from xseason.synth.groundtruth import (
    MATCH_CLASSES,
    classify_matches,
    exact_depth_known,
    load_truth,
    sample_depth,
    true_matches,
    true_overlap,
    world_points,
)
from xseason.synth.world import BUILDING, VEGETATION

CAM = Camera("PINHOLE", 64, 48, (50.0, 50.0, 32.0, 24.0))


def _grid(cam: Camera, stride: int = 1) -> np.ndarray:
    v, u = np.mgrid[0 : cam.height : stride, 0 : cam.width : stride]
    return np.stack([u.ravel(), v.ravel()], 1).astype(np.float64)


def _plane_depth(cam: Camera, pose: Pose, normal, offset: float) -> np.ndarray:
    """Exact z-depth of the world plane normal . X = offset seen by (cam, pose); 0 where missed."""
    rays = cam.unproject(_grid(cam))
    n_cam = pose.R @ np.asarray(normal, float)
    c_cam = offset - np.asarray(normal, float) @ pose.center
    z = c_cam / (rays @ n_cam)
    return np.where(z > 0, z, 0).reshape(cam.height, cam.width).astype(np.float32)


def _write_scene(root: Path, images: dict[str, tuple[Pose, np.ndarray, np.ndarray]]) -> Path:
    """A hand-made scene folder in the synth ground-truth format."""
    recs = {}
    for name, (pose, depth, label) in images.items():
        for sub in ("depth", "labels", "masks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        np.save(root / "depth" / f"{name}.npy", depth)
        cv2.imwrite(str(root / "labels" / f"{name}.png"), label)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), (label == 6).astype(np.uint8) * 255)
        recs[name] = {
            "sequence": name,
            "condition": "summer-day",
            "camera": {
                "model": CAM.model,
                "width": CAM.width,
                "height": CAM.height,
                "params": list(CAM.params),
            },
            "qvec": pose.qvec.tolist(),
            "tvec": pose.t.tolist(),
            "depth": f"depth/{name}.npy",
            "label": f"labels/{name}.png",
            "mask": f"masks/{name}.png",
        }
    (root / "truth.json").write_text(
        json.dumps({"format": "xseason-synth-truth", "version": 1, "images": recs})
    )
    return root


@pytest.fixture
def wall_scene(tmp_path: Path) -> Path:
    """Cameras a, b looking at a wall 10 m ahead (b 1 m to the right, a car-like occluder at 5 m
    covering its columns 20..29); camera c at a's place looking backwards at another wall."""
    a = Pose(np.eye(3), np.zeros(3))
    b = Pose(np.eye(3), np.array([-1.0, 0.0, 0.0]))
    back = np.diag([-1.0, 1.0, -1.0])  # 180 degrees about y
    c = Pose(back, np.zeros(3))
    da = _plane_depth(CAM, a, [0, 0, 1], 10.0)
    db = _plane_depth(CAM, b, [0, 0, 1], 10.0)
    lb = np.full(db.shape, 2, np.uint8)
    db[:, 20:30], lb[:, 20:30] = 5.0, 6
    dc = _plane_depth(CAM, c, [0, 0, 1], -10.0)
    full = np.full(da.shape, 2, np.uint8)
    return _write_scene(tmp_path / "wall", {"a": (a, da, full), "b": (b, db, lb), "c": (c, dc, full)})


def test_occluded_points_are_flagged(wall_scene: Path) -> None:
    truth = load_truth(wall_scene)
    px = _grid(CAM)
    pb, vis = true_matches(truth, "a", "b", px)
    # b is 1 m to the right of a at 10 m depth: everything shifts by f * 1 / 10 = 5 px to the left.
    np.testing.assert_allclose(pb[:, 0], px[:, 0] - 5.0, atol=1e-9)
    behind_car = (pb[:, 0] >= 19.5) & (pb[:, 0] <= 29.5)
    assert not vis[behind_car].any()
    in_frame = pb[:, 0] >= -0.5
    assert vis[in_frame & ~behind_car].all()
    assert not vis[~in_frame].any()


def test_names_with_a_path_prefix_resolve(wall_scene: Path) -> None:
    """A manifest beside the scene folder names its images `data/demo/<name>`: same truth."""
    truth = load_truth(wall_scene)
    px = _grid(CAM, 4)
    plain = true_matches(truth, "a", "b", px)
    prefixed = true_matches(truth, "data/scene/a", "some/where/b", px)
    np.testing.assert_array_equal(plain[0], prefixed[0])
    np.testing.assert_array_equal(plain[1], prefixed[1])
    assert truth.image("x/c").pose.center[2] == 0.0
    with pytest.raises(DatasetFormatError, match="not an image of the scene"):
        truth.resolve("xa")  # a suffix match must start at a path separator


def test_subpixel_depth_is_exact_on_planes_and_rejected_at_edges(tmp_path: Path) -> None:
    pose = Pose(np.eye(3), np.zeros(3))
    normal = np.array([0.3, -0.5, 1.0])
    depth = _plane_depth(CAM, pose, normal, 8.0)
    label = np.full(depth.shape, 1, np.uint8)
    rng = np.random.default_rng(0)
    q = rng.uniform([3, 3], [60, 44], (2000, 2))
    z = sample_depth(depth, label, q)
    exact = 8.0 / (CAM.unproject(q) @ normal)
    assert np.isfinite(z).all()
    assert np.max(np.abs(z / exact - 1)) < 1e-6
    # A crease (two planes meeting at column 32) is not interpolated across.
    depth2 = depth.copy()
    depth2[:, 32:] = _plane_depth(CAM, pose, [-0.4, 0.0, 1.0], 8.0 + 0.0)[:, 32:]
    z2 = sample_depth(depth2, label, np.array([[31.5, 20.3], [32.5, 20.3], [10.25, 20.5]]))
    assert np.isnan(z2[0]) and np.isnan(z2[1]) and np.isfinite(z2[2])


def test_overlap_self_one_and_opposite_zero(wall_scene: Path) -> None:
    truth = load_truth(wall_scene)
    assert true_overlap(truth, "a", "a", stride=1) == 1.0
    assert true_overlap(truth, "a", "c", stride=1) == 0.0
    # a -> b: 5 of 64 columns leave the frame, 10 are behind the occluder (+ sub-pixel edge rules).
    assert true_overlap(truth, "a", "b", stride=1) == pytest.approx(1 - 15 / 64, abs=0.02)


def test_round_trip_on_rendered_scene(tiny_scene: Path) -> None:
    truth = load_truth(tiny_scene)
    names = sorted(truth.images)
    seq = {}
    for n in names:
        seq.setdefault(truth.images[n].sequence, []).append(n)
    s0, s2 = seq["00-summer-day"], seq["02-winter-snow"]
    rng = np.random.default_rng(1)
    cam = truth.images[s0[0]].camera
    for a, b in [(s0[0], s0[1]), (s0[2], s2[2]), (s0[1], seq["03-night"][3])]:
        for sub in (0.0, 0.5):  # integer and sub-pixel queries
            px = rng.integers(0, [cam.width, cam.height], (4000, 2)) + rng.uniform(-sub, sub, (4000, 2))
            pb, vis_ab = true_matches(truth, a, b, px)
            pa, vis_ba = true_matches(truth, b, a, pb)
            ok = vis_ab & vis_ba
            assert ok.sum() > 600, (a, b, ok.sum())
            err = np.linalg.norm(pa[ok] - px[ok], axis=1)
            assert err.max() < 0.01, (a, b, err.max())
            # visible points are really on the same surface: their 3D positions agree.
            d = np.linalg.norm(world_points(truth, a, px[ok]) - world_points(truth, b, pb[ok]), axis=1)
            assert np.median(d) < 1e-3


def test_overlap_on_rendered_scene(tiny_scene: Path) -> None:
    truth = load_truth(tiny_scene)
    s0 = sorted(n for n in truth.images if truth.images[n].sequence == "00-summer-day")
    assert true_overlap(truth, s0[0], s0[0]) == 1.0
    # Driving forward, the overlap with the first image shrinks steadily (near content leaves the view).
    overlaps = np.array([true_overlap(truth, s0[0], b) for b in s0[1:]])
    assert 0.35 < overlaps[0] < 1.0 and 0.05 < overlaps[-1]
    assert np.all(np.diff(overlaps) < 0)


def test_changed_geometry_is_not_visible(tiny_scene: Path) -> None:
    """Cars are re-parked per traversal: car pixels of one sequence are rarely visible in another."""
    truth = load_truth(tiny_scene)
    a = "images/00-summer-day/0002.png"
    b = "images/01-autumn-overcast/0002.png"
    cam = truth.images[a].camera
    v, u = np.mgrid[0 : cam.height : 2, 0 : cam.width : 2]
    px = np.stack([u.ravel(), v.ravel()], 1).astype(float)
    vis = true_matches(truth, a, b, px)[1]
    moving = truth.moving(a)[v.ravel(), u.ravel()]
    building = truth.labels(a)[v.ravel(), u.ravel()] == 2
    assert moving.sum() > 100 and building.sum() > 1000
    assert vis[moving].mean() < 0.2 < 0.5 < vis[building].mean()


def test_load_truth_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="not found"):
        load_truth(tmp_path)
    (tmp_path / "truth.json").write_text(json.dumps({"format": "other", "version": 1, "images": {}}))
    with pytest.raises(DatasetFormatError, match="unsupported format"):
        load_truth(tmp_path)


def test_fallback_depth_covers_edges_within_a_pixel_of_surface(tmp_path: Path) -> None:
    """Off planar neighbourhoods the exact depth is NaN; the fallback gives the nearest pixel's
    depth, and default calls keep the exact answer (NaN) there."""
    pose = Pose(np.eye(3), np.zeros(3))
    depth = _plane_depth(CAM, pose, [0.3, -0.5, 1.0], 8.0)
    depth[:, 32:] = _plane_depth(CAM, pose, [-0.4, 0.0, 1.0], 8.0)[:, 32:]
    label = np.full(depth.shape, 1, np.uint8)
    q = np.array([[31.3, 20.3], [32.4, 20.3], [10.25, 20.5]])
    exact = sample_depth(depth, label, q)
    assert np.isnan(exact[:2]).all() and np.isfinite(exact[2])
    fb = sample_depth(depth, label, q, fallback=True)
    assert fb[2] == exact[2]  # exact where defined
    assert fb[0] == pytest.approx(depth[20, 31]) and fb[1] == pytest.approx(depth[20, 32])
    # Outside the image or on sky: still unknown.
    depth[0, 0] = 0
    assert np.isnan(sample_depth(depth, label, np.array([[0.2, 0.1], [-3.0, 5.0]]), fallback=True)).all()


def test_fallback_true_matches_on_rendered_scene(tiny_scene: Path) -> None:
    """With the fallback nearly every non-sky pixel gets an answer, off by well under 5 px where
    the exact one is defined too; the exact default is unchanged."""
    truth = load_truth(tiny_scene)
    a, b = "images/00-summer-day/0002.png", "images/00-summer-day/0003.png"
    cam = truth.images[a].camera
    rng = np.random.default_rng(2)
    px = rng.uniform([0, 0], [cam.width - 1, cam.height - 1], (5000, 2))
    pb, vis = true_matches(truth, a, b, px)
    pf, vis_f = true_matches(truth, a, b, px, fallback=True)
    exact = exact_depth_known(truth, a, px)
    sky = truth.depth(a)[np.rint(px[:, 1]).astype(int), np.rint(px[:, 0]).astype(int)] == 0
    assert 0.1 < exact.mean() < 0.95  # rendered scenes have many non-planar neighbourhoods
    assert np.isfinite(world_points(truth, a, px[~sky], fallback=True)).all()
    np.testing.assert_allclose(pf[exact], pb[exact])
    assert np.all(vis_f[vis])  # the fallback never hides what the exact test sees
    fb = vis_f & ~exact
    assert fb.sum() > 200
    # Fallback positions vs the exact answer at the nearest exactly-known sample of a dense grid.
    back, vis_back = true_matches(truth, b, a, pf[fb], fallback=True)
    err = np.linalg.norm(back[vis_back] - px[fb][vis_back], axis=1)
    assert np.median(err) < 0.5 and np.quantile(err, 0.99) < 5.0


def _sequences(truth) -> dict[str, list[str]]:
    seq: dict[str, list[str]] = {}
    for n in sorted(truth.images):
        seq.setdefault(truth.images[n].sequence, []).append(n)
    return seq


def _at(image: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Value of the pixel each (N, 2) position inside the image falls in."""
    ij = np.rint(px).astype(int)
    return image[ij[:, 1], ij[:, 0]]


def _seen_from(truth, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of a (stride-2 grid, on a surface) with their projection into b and its depth there,
    computed here from the depth map and poses (independently of classify_matches)."""
    px = _grid(truth.images[a].camera, 2)
    px = px[_at(truth.depth(a), px) > 0]
    img = truth.image(b)
    pb, z = project_points(img.camera, img.pose, world_points(truth, a, px))
    return px, pb, z


def _inside(truth, b: str, pb: np.ndarray, z: np.ndarray) -> np.ndarray:
    return (z > 0) & in_image(truth.images[b].camera, np.nan_to_num(pb, nan=-1e9))


def _classes(truth, a: str, b: str, p0: np.ndarray, p1: np.ndarray | None = None) -> list[str]:
    """Classes of matches p0 (a) <-> p1 (b); p1 defaults to pixels of b that a sees, so that the
    other direction (b -> a) has no cause of its own and the class comes from p0's side."""
    if p1 is None:
        px = _grid(truth.images[b].camera, 2)
        seen = px[true_matches(truth, b, a, px, fallback=True)[1]]
        p1 = seen[np.random.default_rng(0).integers(0, len(seen), len(p0))]
    return [MATCH_CLASSES[c] for c in classify_matches(truth, a, b, p0, p1)[1]]


def test_classify_correct_and_misplaced(tiny_scene: Path) -> None:
    truth = load_truth(tiny_scene)
    s0 = _sequences(truth)["00-summer-day"]
    a, b = s0[2], s0[3]
    px = _grid(truth.images[a].camera, 2)
    pb, vis = true_matches(truth, a, b, px)
    p0, p1 = px[vis], pb[vis]
    err, code = classify_matches(truth, a, b, p0, p1)
    assert len(p0) > 3000 and np.all(code == 0) and err.max() < 0.01
    # 8 px off, the other end still on a surface that a sees: misplaced (checked both ways).
    shifted = p1 + [0.0, 8.0]
    keep = true_matches(truth, b, a, shifted, fallback=True)[1]
    err, code = classify_matches(truth, a, b, p0[keep], shifted[keep])
    assert keep.sum() > 1000
    np.testing.assert_allclose(err, 8.0, atol=1e-6)
    assert set(MATCH_CLASSES[c] for c in code) == {"misplaced"}
    # Within off_px the same matches are correct.
    assert np.all(classify_matches(truth, a, b, p0[keep], shifted[keep], off_px=9.0)[1] == 0)


def test_classify_sky_behind_outside(tiny_scene: Path) -> None:
    truth = load_truth(tiny_scene)
    s0 = _sequences(truth)["00-summer-day"]
    a, b = s0[0], s0[7]  # 7 m further along the street: the road near a is behind b
    grid = _grid(truth.images[a].camera, 2)
    sky_a = grid[_at(truth.depth(a), grid) == 0]
    sky_b = grid[_at(truth.depth(b), grid) == 0]
    assert len(sky_a) > 100 and len(sky_b) > 100
    assert set(_classes(truth, a, b, sky_a)) == {"sky"}
    # The other end on sky: the match is sky, whatever its image-0 end.
    seen = grid[true_matches(truth, a, b, grid)[1]][: len(sky_b)]
    assert set(_classes(truth, a, b, seen, sky_b[: len(seen)])) == {"sky"}
    px, pb, z = _seen_from(truth, a, b)
    behind = z < 0
    outside = (z > 0) & ~_inside(truth, b, pb, z)
    assert behind.sum() > 100 and outside.sum() > 100
    assert set(_classes(truth, a, b, px[behind])) == {"behind"}
    assert set(_classes(truth, a, b, px[outside])) == {"outside"}


def test_classify_hidden_moving(tiny_scene: Path) -> None:
    """Parked cars differ between traversals: points on a car, and points a car hides in the other
    image, are hidden_moving."""
    truth = load_truth(tiny_scene)
    seq = _sequences(truth)
    a, b = seq["00-summer-day"][3], seq["01-autumn-overcast"][3]
    px, pb, z = _seen_from(truth, a, b)
    inside = _inside(truth, b, pb, z)
    on_car = inside & _at(truth.moving(a), px)
    pbc = np.where(inside[:, None], pb, 0)
    behind_car = inside & ~_at(truth.moving(a), px) & _at(truth.moving(b), pbc)
    behind_car &= _at(truth.depth(b), pbc) < 0.9 * z
    assert on_car.sum() > 100 and behind_car.sum() > 20
    assert set(_classes(truth, a, b, px[on_car])) == {"hidden_moving"}
    assert set(_classes(truth, a, b, px[behind_car])) == {"hidden_moving"}


def test_classify_changed_vegetation_and_hidden_static(tiny_scene: Path) -> None:
    """Leaves of summer are gone in winter (changed_vegetation); at night they are the same, so
    what hides a point there is static (hidden_static), as are facades hidden by poles and signs."""
    truth = load_truth(tiny_scene)
    seq = _sequences(truth)
    a = seq["00-summer-day"][3]
    winter, night = seq["02-winter-snow"][3], seq["03-night"][3]
    # Leaves of a, not seen in winter.
    px, pb, z = _seen_from(truth, a, winter)
    inside = _inside(truth, winter, pb, z)
    pbc = np.where(inside[:, None], pb, 0)
    leaf = inside & (_at(truth.labels(a), px) == VEGETATION) & ~_at(truth.moving(winter), pbc)
    leaf &= ~true_matches(truth, a, winter, px, fallback=True)[1]
    assert leaf.sum() > 100
    assert set(_classes(truth, a, winter, px[leaf])) == {"changed_vegetation"}
    # Facades of the winter image behind summer leaves.
    px, pb, z = _seen_from(truth, winter, a)
    inside = _inside(truth, a, pb, z)
    pbc = np.where(inside[:, None], pb, 0)
    hidden = inside & (_at(truth.labels(winter), px) == BUILDING) & ~_at(truth.moving(a), pbc)
    hidden &= (_at(truth.labels(a), pbc) == VEGETATION) & (_at(truth.depth(a), pbc) < 0.9 * z)
    hidden &= ~true_matches(truth, winter, a, px, fallback=True)[1]  # not seen between leaves either
    assert hidden.sum() > 20
    assert set(_classes(truth, winter, a, px[hidden])) == {"changed_vegetation"}
    # The same kind of points between summer-day and night (same leaves): hidden_static.
    px, pb, z = _seen_from(truth, night, a)
    inside = _inside(truth, a, pb, z)
    pbc = np.where(inside[:, None], pb, 0)
    hidden = inside & ~_at(truth.moving(night), px) & ~_at(truth.moving(a), pbc)
    hidden &= (_at(truth.depth(a), pbc) < 0.9 * z) & ~true_matches(truth, night, a, px, fallback=True)[1]
    by_leaves = hidden & (_at(truth.labels(a), pbc) == VEGETATION)
    assert hidden.sum() > 100 and by_leaves.sum() > 20
    assert set(_classes(truth, night, a, px[hidden])) == {"hidden_static"}
