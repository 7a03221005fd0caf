"""7-Scenes `stairs` sample: agreement of the built matches with the depth-warped Kinect ground truth.

    .venv/bin/python benchmarks/bench_sevenscenes.py [--data ../shared/data/7scenes-stairs]
        [--out build/bench_sevenscenes] [--only VARIANT ...] [--keep]

What it does:
1. Manifests, with the project's own command: `xseason manifest 7scenes ROOT --out OUT/manifest.csv`
   (the layout gives every sequence the condition `indoor`) and, with `--condition seq-0k=seq-0k`
   for each sequence, `OUT/manifest_per_sequence.csv` (every sequence its own condition; the first,
   seq-01, is the reference). The sample folder is read-only and a manifest must lie in or above its
   image folder, so ROOT is `OUT/stairs`, a symbolic link to the sample. A third manifest,
   `OUT/manifest_one_traversal.csv`, is manifest.csv with every row's `sequence` set to `stairs`:
   the layout the project's own test uses (tests/test_reconstruction.py,
   test_sevenscenes_points_agree_with_kinect_depth), the only one in which frames of different
   7-Scenes sequences are feature-matched at all (posed sequences are triangulated one by one,
   `reconstruction.candidate_pairs`). No command writes it; it is derived here and said so.
2. Builds, one per variant (VARIANTS below: the defaults first, then what a user would try when the
   defaults give nothing: the overrides LOOSE and RELAXED, each commented), with `xseason build
   MANIFEST --out OUT/<variant> --quiet [--reference R] [--set KEY=VALUE ...]`, run as a subprocess
   on all CPUs (surfaces.py's plane RANSAC is seeded numpy: two runs give the same datasets). After
   each build, what its stages left (`stages`, recomputed from the work folder with the variant's
   config): 3D points per sequence folder, triangulated / well measured ("mixed": tracks joining
   frames of two sequences), points after cleaning, reference points with a partner, planar regions.
3. For every match (x0 in image 0, x1 in image 1) the depth-warped ground truth: the Kinect depth of
   image 0 at x0, lifted to 3D with image 0's RGB pose, projected into image 1 with its RGB pose and
   intrinsics; error = |projection - x1| in pixels. Matches without valid depth at x0 are counted
   apart (`valid GT` column); the error statistics are over the matches with valid depth. Printed
   per condition pair, per pair of 7-Scenes sequence folders (in the one-traversal variants there
   is one condition only), and overall, each for all / point (`densified` False) / surface
   (`densified` True) matches. `depth ratio`: median over the matches with valid depth of (the depth
   along x0's ray whose projection lands nearest x1, i.e. the depth the match stands for) / (the
   Kinect depth at x0); 1 when the build's geometry is right (ill-conditioned for frames a few mm
   apart, but a ratio of 0.1 there is unambiguous). A build match is the projection of one 3D point
   (or surface hit) into both images with the same given poses the warp uses, so this error measures
   the build's depth only; how well images and poses agree is what the SIFT reference (4.) shows.
4. A reference that is not the build: plain OpenCV SIFT matches (ratio test, mutual, fundamental-
   matrix RANSAC) of all 66 image pairs, scored with the same ground truth. It measures the floor
   of the ground truth itself: within a 7-Scenes sequence the RGB images of consecutive frames are
   often nearly the same picture (SIFT inliers move by 0.01-0.6 px) while their poses and depth imply
   0.2-2.3 px of motion, so even a perfect match is 0.3-2.3 px off the warp there.

Ground truth and its approximations. The Kinect depth maps are not registered to the RGB images:
they come from the depth camera (SIMPLE_PINHOLE f = 585, principal point (320, 240) in COLMAP's
convention), whose world-to-camera pose is the `.pose.txt` file (`read_pose_file`, as the tests read
it); the RGB pose of the dataset (images.parquet, from the manifest) is that pose composed with the
LIRIS depth-to-RGB extrinsics (`xseason.layouts.sevenscenes.RGB_FROM_DEPTH`, a 2.6 cm baseline).
The depth at an RGB pixel is read from the depth map *registered* into the RGB camera: every valid
depth pixel is lifted with the depth intrinsics and pose, projected into the RGB camera (f = 525),
and z-buffered at the nearest RGB pixel (nearest surface wins); an RGB pixel no depth sample lands
on takes the nearest surface among its 8 neighbours, else has no depth. The depth at x0 is that of
the nearest RGB pixel (no interpolation across depth edges). Approximations: the depth-to-RGB
extrinsics are a generic Kinect calibration, not this sensor's; RGB and depth frames are not
exactly synchronous; the Kinect depth is noisy (~1-2 % at 1-2 m) and missing on dark, shiny and
grazing surfaces; no lens distortion is modelled (the dataset gives none); poses (KinectFusion)
are off by a few tenths of a degree between frames (above). For comparison the script also prints
the median error under the simpler warp ("intrinsics only"): the RGB pixel mapped to the depth
pixel by the two intrinsics alone, (x + 0.5 - 320) * 585 / 525 +
320 - 0.5, as if both cameras sat at the RGB camera's pose (ignores the 2.6 cm baseline, i.e. reads
the depth up to ~9 px beside the right pixel at 1.6 m).

A match's ground-truth projection is also checked against image 1's own registered depth: `visible`
is the share of valid-GT matches whose warped point has image 1's depth within 5 % there (not
occluded nor off image 1's depth map); the others have no true partner pixel at all.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xseason.core.geometry import Camera, Pose  # noqa: E402
from xseason.inputs.layouts.sevenscenes import read_pose_file  # noqa: E402
from xseason.store import open_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "7scenes-stairs"
DEPTH_CAMERA = Camera("SIMPLE_PINHOLE", 640, 480, (585.0, 320.0, 240.0))
SEQUENCES = ("seq-01", "seq-02", "seq-03", "seq-04")
# The CLI beside this interpreter (the venv's), else the one on PATH.
_BESIDE = Path(sys.executable).parent / "xseason"
XSEASON = str(_BESIDE) if _BESIDE.is_file() else (shutil.which("xseason") or "xseason")

# What a user would loosen when the defaults give no pairs, each for the stage that thinned the build
# (measured on this sample; see benchmarks/README.md). LOOSE keeps the test's 1 degree and loosens
# what comes after triangulation; RELAXED also triangulates down to 0.5 degree.
LOOSE = (
    "reconstruction.min_tri_angle=1.0",  # the test's value (default 2 deg leaves ~30 points)
    "association.min_tri_angle=1.0",  # default 1.5 deg: the cleaning would drop most of them again
    "association.max_point_error=4",  # default 2 px: 2.5 KB JPEGs, keypoints off by 1-2 px
    "surfaces.min_points=10",  # default 50: no plane has 50 points here, and without planes no surface match
    "surfaces.plane_distance=0.01",  # default 0.002 x the median depth: triangulation noise is ~15 %
)
RELAXED = (
    "reconstruction.min_tri_angle=0.5",  # default 2 deg: the frames of a sequence are 1-40 mm apart
    "association.min_tri_angle=0.5",  # default 1.5 deg: the cleaning drops the same points again
    "association.max_point_error=4",  # default 2 px: 2.5 KB JPEGs, keypoints off by 1-2 px
    "association.radius_depth=0.05",  # default 0.005: points of different sequences lie cm apart
    "surfaces.min_points=10",  # default 50: no plane has 50 points here, and without planes no surface match
    "surfaces.plane_distance=0.01",  # default 0.002 x the median depth: triangulation noise is ~15 %
)


SELF = (
    "correspondences.self_pairs=true",
    "correspondences.same_sequence=true",
)  # one condition, one sequence


@dataclass
class Variant:
    name: str
    manifest: str  # manifest.csv / manifest_per_sequence.csv / manifest_one_traversal.csv
    sets: tuple[str, ...] = ()
    reference: str | None = None
    note: str = ""


VARIANTS = [
    Variant("default", "manifest.csv", note="the manifest as written (all `indoor`), default build"),
    Variant(
        "self-pairs",
        "manifest.csv",
        ("correspondences.self_pairs=true",),
        note="one condition: pairs across its sequences",
    ),
    Variant(
        "per-sequence",
        "manifest_per_sequence.csv",
        ("reconstruction.min_tri_angle=1.0",),
        "seq-01",
        note="each sequence its own condition, the test's 1 degree",
    ),
    Variant(
        "per-sequence-relaxed",
        "manifest_per_sequence.csv",
        RELAXED,
        "seq-01",
        note="... and every filter that emptied the build loosened",
    ),
    Variant(
        "one-traversal-defaults",
        "manifest_one_traversal.csv",
        SELF,
        note="the test's layout (one sequence), pairs inside it, default filters",
    ),
    Variant(
        "one-traversal",
        "manifest_one_traversal.csv",
        ("reconstruction.min_tri_angle=1.0",) + SELF,
        note="... and the test's 1 degree",
    ),
    Variant(
        "one-traversal-loose",
        "manifest_one_traversal.csv",
        LOOSE + SELF,
        note="... and the filters after triangulation loosened (LOOSE)",
    ),
    Variant(
        "one-traversal-relaxed",
        "manifest_one_traversal.csv",
        RELAXED + SELF,
        note="... and triangulation down to 0.5 degree too (RELAXED)",
    ),
    Variant(
        "one-traversal-relaxed-planes",
        "manifest_one_traversal.csv",
        tuple(
            "surfaces.plane_distance=0.03" if o.startswith("surfaces.plane_distance=") else o for o in RELAXED
        )
        + SELF,
        note="... and planes 3x thicker",
    ),
]


# ----------------------------------------------------------------------------------------- manifests
def write_manifests(data: Path, out: Path, env: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    link = out / "stairs"
    if link.is_symlink() or link.exists():
        if not (link.is_symlink() and link.resolve() == data.resolve()):
            raise SystemExit(f"{link} exists and is not a link to {data}")
    else:
        link.symlink_to(data.resolve(), target_is_directory=True)
    xseason = [XSEASON]
    cmds = [
        [*xseason, "manifest", "7scenes", str(link), "--out", str(out / "manifest.csv")],
        [
            *xseason,
            "manifest",
            "7scenes",
            str(link),
            "--out",
            str(out / "manifest_per_sequence.csv"),
            *[a for s in SEQUENCES for a in ("--condition", f"{s}={s}")],
        ],
    ]
    for cmd in cmds:
        print("$", " ".join(_short(c) for c in cmd))
        subprocess.run(cmd, check=True, env=env, cwd=REPO)
    rows = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    rows.assign(sequence="stairs").to_csv(out / "manifest_one_traversal.csv", index=False)
    print(
        f"wrote {out / 'manifest_one_traversal.csv'}: manifest.csv with sequence = stairs "
        f"for all {len(rows)} rows"
    )


def _short(arg: str) -> str:
    return os.path.relpath(arg, REPO) if arg.startswith("/") else arg


def build(variant: Variant, out: Path, env: dict) -> tuple[Path, float, str]:
    dataset = out / variant.name
    cmd = [XSEASON, "build", str(out / variant.manifest), "--out", str(dataset), "--quiet"]
    if variant.reference:
        cmd += ["--reference", variant.reference]
    for s in variant.sets:
        cmd += ["--set", s]
    print("$", " ".join(_short(c) for c in cmd))
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"build {variant.name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return dataset, seconds, done.stdout


def stages(dataset: Path, variant: Variant, manifest: Path) -> tuple[str, dict]:
    """What each stage left of the build (recomputed from its work folder with the variant's config,
    as the build's association stage does): 3D points per 7-Scenes sequence folder (triangulated / well
    measured), points after cleaning, reference points with a partner in each other condition, and
    the planar regions of the reference's surface model (with each region's sequence folders)."""
    from xseason.inputs.manifest import read_manifest
    from xseason.matching.association import (
        associate,
        clean_points,
        point_table_from_reconstructions,
        well_measured,
    )
    from xseason.matching.surfaces import build_surfaces
    from xseason.matching.views import views_from_manifest
    from xseason.pipeline.build import load_build_config
    from xseason.sfm.paths import BuildPaths
    from xseason.sfm.registration import load_registered

    cfg = load_build_config(None, list(variant.sets))
    man = read_manifest(manifest)
    recs = load_registered(BuildPaths.beside(dataset))
    views = views_from_manifest(man, recs, cfg.features.default_focal_factor)
    raw = point_table_from_reconstructions(recs, views, cfg.association.spacing_k)
    names = [Path(v.name).parent.name for v in raw.views]
    folders = sorted(set(names))
    code = np.array([folders.index(n) for n in names])[raw.obs_image]
    low, high = np.full(raw.num_points, len(folders)), np.full(raw.num_points, -1)
    np.minimum.at(low, raw.obs_point, code)
    np.maximum.at(high, raw.obs_point, code)
    # a track's sequence folder; "mixed" for a track across folders (COLMAP matches across sequences)
    point_folder = np.array([*folders, "mixed"], dtype=object)[np.where(low == high, low, len(folders))]
    good = well_measured(raw, cfg.association)
    table = clean_points(raw, cfg.association)
    reference = variant.reference or man.images[0].condition
    partners = (
        {
            c: int((p >= 0).sum())
            for c, p in associate(table, reference, cfg.association).partner.items()
            if c != reference
        }
        if np.any(table.point_condition == table.condition_index(reference))
        else {}
    )
    surf = raw.subset(good)
    regions = build_surfaces(surf, reference, cfg.surfaces).regions
    surf_folder = point_folder[good]
    where = [",".join(sorted(set(surf_folder[r.points]))) for r in regions]

    def depth(
        k: np.ndarray,
    ) -> str:  # median over well-measured points of their mean distance to their cameras
        return f" ({np.nanmedian(raw.depth[k]):.2f} m)" if k.any() else ""

    line = (
        "3D points (triangulated / well measured (their median distance to their cameras)): "
        + ", ".join(
            f"{f} {np.sum(point_folder == f)}/{np.sum(good & (point_folder == f))}"
            + depth(good & (point_folder == f))
            for f in [*SEQUENCES, "mixed"]
            if f in SEQUENCES or np.any(point_folder == f)
        )
        + f"; after cleaning {table.num_points}"
        + (f"; reference points with a partner: {partners}" if partners else "")
        + f"; planar regions of {reference}: {len(regions)}"
        + (
            " (" + ", ".join(f"{len(r.points)} pts {w}" for r, w in zip(regions, where)) + ")"
            if regions
            else ""
        )
    )
    return line, {"points": int(good.sum()), "regions": len(regions)}


# ------------------------------------------------------------------------------------- ground truth
@dataclass
class Frame:
    """One image: its RGB camera and pose (dataset), its depth pose, its depth registered to RGB."""

    camera: Camera
    pose: Pose  # RGB camera, world-to-camera (images.parquet)
    depth_pose: Pose  # depth camera, world-to-camera (.pose.txt)
    raw: np.ndarray  # (480, 640) metres, NaN invalid: the depth camera's map
    depth: np.ndarray  # (H, W) metres, NaN where unknown: registered into the RGB camera


def load_frame(image_file: Path, camera: Camera, pose: Pose) -> Frame:
    stem = str(image_file).removesuffix(".color.jpg").removesuffix(".color.png")
    depth_pose = read_pose_file(Path(stem + ".pose.txt"))
    raw_u16 = cv2.imread(stem + ".depth.png", cv2.IMREAD_UNCHANGED)
    if raw_u16 is None:
        raise SystemExit(f"{stem}.depth.png: cannot be read")
    raw = np.where((raw_u16 > 0) & (raw_u16 < 65535), raw_u16 / 1000.0, np.nan)
    return Frame(camera, pose, depth_pose, raw, register_depth(raw, depth_pose, camera, pose))


def register_depth(raw: np.ndarray, depth_pose: Pose, camera: Camera, pose: Pose) -> np.ndarray:
    """The depth map seen from the RGB camera: depth pixels lifted, moved, projected, z-buffered."""
    v, u = np.nonzero(np.isfinite(raw))
    pts = DEPTH_CAMERA.unproject(np.stack([u, v], 1).astype(float)) * raw[v, u, None]
    rgb = (pose @ depth_pose.inverse()).transform(pts)
    px = camera.project(rgb)
    ij = np.rint(px[:, ::-1])
    ok = np.isfinite(ij).all(1) & (rgb[:, 2] > 0)
    ij, z = ij[ok].astype(np.int64), rgb[ok, 2]
    h, w = camera.height, camera.width
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
    flat = np.full(h * w, np.inf)
    np.minimum.at(flat, ij[inside, 0] * w + ij[inside, 1], z[inside])
    depth = flat.reshape(h, w)
    holes = ~np.isfinite(depth)
    filled = cv2.erode(np.where(holes, np.float32(1e9), depth).astype(np.float32), np.ones((3, 3), np.uint8))
    depth = np.where(holes, filled, depth).astype(np.float64)
    depth[depth >= 1e8] = np.nan
    return depth


def lookup(depth: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Depth at the nearest pixel; NaN outside the image or where unknown."""
    h, w = depth.shape
    ij = np.rint(np.nan_to_num(px[:, ::-1], nan=-1e6)).astype(np.int64)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
    out = np.full(len(px), np.nan)
    out[inside] = depth[ij[inside, 0], ij[inside, 1]]
    return out


def warp(f0: Frame, f1: Frame, x0: np.ndarray, z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels x0 of frame 0 at RGB-camera depth z0 -> (pixels in frame 1, their depth in frame 1)."""
    world = f0.pose.inverse().transform(f0.camera.unproject(x0) * z0[:, None])
    cam1 = f1.pose.transform(world)
    return f1.camera.project(cam1), cam1[:, 2]


def ground_truth(f0: Frame, f1: Frame, x0: np.ndarray, x1: np.ndarray) -> dict[str, np.ndarray]:
    """Per match: error of x1 against the registered-depth warp, its visibility, and the
    intrinsics-only error."""
    z0 = lookup(f0.depth, x0)
    gt, z1 = warp(f0, f1, x0, z0)
    err = np.linalg.norm(gt - x1, axis=1)
    with np.errstate(invalid="ignore"):
        visible = np.abs(lookup(f1.depth, gt) / z1 - 1) <= 0.05
    # Intrinsics only: the depth pixel from the RGB pixel by the focal ratio, both cameras at the RGB pose.
    fr, cx, cy = f0.camera.params[0], f0.camera.params[1], f0.camera.params[2]
    fd, dx, dy = DEPTH_CAMERA.params
    xd = np.stack([(x0[:, 0] + 0.5 - cx) * fd / fr + dx - 0.5, (x0[:, 1] + 0.5 - cy) * fd / fr + dy - 0.5], 1)
    zs = lookup(f0.raw, xd)
    gt_s, _ = warp(f0, f1, x0, zs)
    return {
        "err": err,
        "valid": np.isfinite(err),
        "visible": visible & np.isfinite(err),
        "err_simple": np.linalg.norm(gt_s - x1, axis=1),
        "z_kinect": z0,
        "z_match": implied_depth(f0, f1, x0, x1),
    }


def implied_depth(f0: Frame, f1: Frame, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """The depth along x0's ray (RGB camera 0, 5 cm - 20 m) whose projection lands nearest x1: the depth
    the match stands for (ill-conditioned when the cameras are a few mm apart and the point is far)."""
    zs = np.geomspace(0.05, 20.0, 300)
    best, out = np.full(len(x0), np.inf), np.full(len(x0), np.nan)
    for z in zs:
        d = np.linalg.norm(warp(f0, f1, x0, np.full(len(x0), z))[0] - x1, axis=1)
        better = d < best
        best[better], out[better] = d[better], z
    return out


def evaluate(dataset: Path) -> pd.DataFrame:
    """One row per match: pair, condition pair, sequence-folder pair, densified, GT error and flags."""
    store = open_dataset(dataset)
    images = store.images.set_index("image_id")
    frames: dict[int, Frame] = {}

    def frame(k: int) -> Frame:
        if k not in frames:
            r = images.loc[k]
            cam = Camera(
                r["camera_model"], int(r["width"]), int(r["height"]), tuple(float(p) for p in r["params"])
            )
            pose = Pose.from_qt([r[c] for c in ("qw", "qx", "qy", "qz")], [r[c] for c in ("tx", "ty", "tz")])
            frames[k] = load_frame(store.image_path(k), cam, pose)
        return frames[k]

    pairs = store.pairs.set_index("pair_id")
    parts = []
    for chunk in store.iter_matches(columns=["x0", "y0", "x1", "y1", "densified"]):
        for pid in np.unique(chunk["pair_id"]):
            k = chunk["pair_id"] == pid
            i0, i1 = int(pairs.at[pid, "image_id0"]), int(pairs.at[pid, "image_id1"])
            x0 = np.stack([chunk["x0"][k], chunk["y0"][k]], 1).astype(np.float64)
            x1 = np.stack([chunk["x1"][k], chunk["y1"][k]], 1).astype(np.float64)
            g = ground_truth(frame(i0), frame(i1), x0, x1)
            seq = [Path(images.at[i, "image"]).parent.name for i in (i0, i1)]
            parts.append(
                pd.DataFrame(
                    {
                        "pair_id": pid,
                        "condition_pair": f"{images.at[i0, 'condition']} -> {images.at[i1, 'condition']}",
                        "sequence_pair": f"{seq[0]} -> {seq[1]}",
                        "densified": chunk["densified"][k].astype(bool),
                        **g,
                    }
                )
            )
    columns = [
        "pair_id",
        "condition_pair",
        "sequence_pair",
        "densified",
        "err",
        "valid",
        "visible",
        "err_simple",
        "z_kinect",
        "z_match",
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# ------------------------------------------------------------------ reference: plain OpenCV matches
def reference_matches(
    manifest: Path, ratio: float = 0.75, ransac_px: float = 1.0, min_inliers: int = 15
) -> pd.DataFrame:
    """Plain OpenCV SIFT matches of every image pair (i < j) of the manifest, scored like the build's.

    Not the build's matcher: Lowe's ratio test, mutual nearest neighbours, fundamental-matrix RANSAC
    at `ransac_px`, pairs with at least `min_inliers` inliers. What it shows is the floor of this
    ground truth: frames whose images are identical while their poses differ (within a sequence)
    and real, verified matches, scored with the same warp.
    """
    from xseason.inputs.manifest import read_manifest

    recs = read_manifest(manifest).images
    sift = cv2.SIFT_create()
    feats, frames = [], []
    for r in recs:
        gray = cv2.imread(str(r.path), cv2.IMREAD_GRAYSCALE)
        kp, desc = sift.detectAndCompute(gray, None)
        feats.append((np.array([k.pt for k in kp], np.float64).reshape(-1, 2), desc))
        cam = Camera(r.camera_model, gray.shape[1], gray.shape[0], tuple(r.camera_params))
        frames.append(load_frame(r.path, cam, r.pose))
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    parts = []
    for i in range(len(recs)):
        for j in range(i + 1, len(recs)):
            (p0, d0), (p1, d1) = feats[i], feats[j]
            if d0 is None or d1 is None or len(p0) < 2 or len(p1) < 2:
                continue
            fwd = matcher.knnMatch(d0, d1, k=2)
            back = {m.queryIdx: m.trainIdx for m in matcher.match(d1, d0)}
            good = [
                (m.queryIdx, m.trainIdx)
                for m, n in fwd
                if m.distance < ratio * n.distance and back.get(m.trainIdx) == m.queryIdx
            ]
            if len(good) < min_inliers:
                continue
            a, b = (np.array(x) for x in zip(*good))
            x0, x1 = p0[a], p1[b]
            _, inl = cv2.findFundamentalMat(x0, x1, cv2.FM_RANSAC, ransac_px, 0.999)
            if inl is None or inl.sum() < min_inliers:
                continue
            keep = inl.ravel().astype(bool)
            g = ground_truth(frames[i], frames[j], x0[keep], x1[keep])
            within = recs[i].path.parent == recs[j].path.parent
            parts.append(
                pd.DataFrame(
                    {
                        "pair_id": i * len(recs) + j,
                        "condition_pair": "within a sequence" if within else "across sequences",
                        "sequence_pair": f"{recs[i].path.parent.name} -> {recs[j].path.parent.name}",
                        "densified": False,
                        **g,
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------------------- report
def summarise(m: pd.DataFrame) -> dict[str, object]:
    """Counts, error statistics over the matches with valid depth, and the median of (depth the match
    stands for) / (Kinect depth) over the same matches (`depth ratio`, 1 = the match's geometry is right)."""
    e_all = m["err"].to_numpy(float)
    e = e_all[np.isfinite(e_all)]
    ratio = (m["z_match"] / m["z_kinect"]).to_numpy(float)[np.isfinite(e_all)]
    s = m["err_simple"].to_numpy(float)
    s = s[np.isfinite(s)]
    pct = (lambda x: f"{100 * x:.1f}") if len(e) else (lambda x: "-")
    px = (lambda x: f"{x:.2f}") if len(e) else (lambda x: "-")
    return {
        "pairs": m["pair_id"].nunique(),
        "matches": len(m),
        "valid GT %": f"{100 * m['valid'].mean():.1f}" if len(m) else "-",
        "visible %": pct(m["visible"].sum() / max(len(e), 1)),
        "median px": px(np.median(e) if len(e) else 0),
        "p90 px": px(np.percentile(e, 90) if len(e) else 0),
        "<=1 px %": pct(np.mean(e <= 1) if len(e) else 0),
        "<=3 px %": pct(np.mean(e <= 3) if len(e) else 0),
        "<=5 px %": pct(np.mean(e <= 5) if len(e) else 0),
        "median px (intrinsics only)": f"{np.median(s):.2f}" if len(s) else "-",
        "depth ratio": f"{np.nanmedian(ratio):.3f}" if len(ratio) else "-",
    }


def depth_line(m: pd.DataFrame) -> str:
    ok = m[np.isfinite(m["z_kinect"])]
    if not len(ok):
        return "depth implied by the matches: no match with Kinect depth"
    zm, zk = ok["z_match"].to_numpy(float), ok["z_kinect"].to_numpy(float)

    def spread(z: np.ndarray) -> str:
        return f"median {np.median(z):.2f} m (p10-p90 {np.percentile(z, 10):.2f}-{np.percentile(z, 90):.2f})"

    return (
        f"depth implied by the matches (the depth along x0's ray that lands nearest x1), {len(ok)} matches "
        f"with Kinect depth: {spread(zm)}; Kinect at x0: {spread(zk)}; "
        f"median ratio implied / Kinect {np.median(zm / zk):.3f}"
    )


def report(m: pd.DataFrame) -> str:
    rows = []
    for key in ("condition_pair", "sequence_pair"):
        for value, g in m.groupby(key, sort=True):
            for dens, h in [("all", g), *((d, h) for d, h in g.groupby("densified"))]:
                rows.append(
                    {"group": key.replace("_", " "), "pair": value, "densified": dens, **summarise(h)}
                )
    for dens, h in [("all", m), *((d, h) for d, h in m.groupby("densified"))]:
        rows.append({"group": "overall", "pair": "", "densified": dens, **summarise(h)})
    return pd.DataFrame(rows).to_string(index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="the 7-Scenes stairs sample (default: %(default)s)"
    )
    ap.add_argument("--out", type=Path, default=REPO / "build" / "bench_sevenscenes", help="output folder")
    ap.add_argument(
        "--only", action="append", choices=[v.name for v in VARIANTS], help="variant(s) to run (default: all)"
    )
    ap.add_argument(
        "--keep", action="store_true", help="reuse the output folder's builds (default: start afresh)"
    )
    args = ap.parse_args()
    if not (args.data / "seq-01").is_dir():
        raise SystemExit(f"{args.data}: not the 7-Scenes stairs sample (no seq-01/)")
    out = args.out.absolute()
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO)}
    t_all = time.perf_counter()
    print(f"7-Scenes stairs: {args.data.resolve()}  ({datetime.date.today()}, {os.cpu_count()} CPUs)\n")
    write_manifests(args.data, out, env)
    summary = []
    for v in VARIANTS:
        if args.only and v.name not in args.only:
            continue
        print(f"\n=== {v.name}: {v.note}")
        dataset, seconds, log = build(v, out, env)
        t = time.perf_counter()
        m = evaluate(dataset)
        t_eval = time.perf_counter() - t
        store = open_dataset(dataset)
        print(f"build {seconds:.1f} s, evaluation {t_eval:.1f} s; {len(store.pairs)} pairs, {len(m)} matches")
        line, counts = stages(dataset, v, out / v.manifest)
        print(line)
        if len(m):
            print(report(m))
            print(depth_line(m))
        else:
            tail = log.strip().splitlines()
            print(
                "no matches; the build's summary:\n  "
                + "\n  ".join(
                    tail[tail.index(next((s for s in tail if s.startswith("images registered")), tail[0])) :]
                )
            )
        summary.append({"variant": v.name, "build s": f"{seconds:.1f}", **counts, **summarise(m)})
    t = time.perf_counter()
    ref = reference_matches(out / "manifest.csv")
    print(
        "\n=== reference, not the build: plain OpenCV SIFT (ratio 0.75, mutual, F-RANSAC 1 px, "
        f">= 15 inliers) on all 66 image pairs, same ground truth ({time.perf_counter() - t:.1f} s)"
    )
    rows = [
        {"pairs of images": k, **summarise(ref[ref["condition_pair"] == k])}
        for k in ("within a sequence", "across sequences")
    ]
    # (no depth ratio: for identical images the depth a match stands for is undetermined)
    print(
        pd.DataFrame(rows + [{"pairs of images": "all", **summarise(ref)}])
        .drop(columns="depth ratio")
        .to_string(index=False)
    )
    print("\n=== all variants (overall)")
    print(pd.DataFrame(summary).to_string(index=False))
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
