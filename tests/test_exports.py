"""Exports of a build: merged / per-sequence COLMAP models and the PLY coloured by condition.

`make_fake_build` (also used by test_report.py) writes a tiny consistent build: a world of 3D
points seen by three sequences under three conditions, their COLMAP models (all in one frame,
with clashing camera and image ids on purpose), a registration.json in the registration stage's
layout, and a correspondence dataset with small textured images and exact matches.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pycolmap
import pytest
from toy import CAMERA, H, W, match_frame

from xseason.core.geometry import Pose, in_image, project_points
from xseason.reports.exports import (
    CONDITION_PALETTE,
    ExportError,
    condition_colors,
    export_colmap,
    export_ply,
    load_models,
    model_points,
)
from xseason.sfm.paths import BuildPaths, sequence_folder
from xseason.sfm.results import Registration
from xseason.store import write_dataset

SEQUENCES = {  # sequence -> (condition, index of the image that its model did not register or None)
    "summer/run1": ("summer-day", None),
    "winter/run1": ("winter-snow", None),
    "night/run1": ("night", 2),
}


def world_points(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-4, 4, n), rng.uniform(-1.5, 1.5, n), rng.uniform(6, 9, n)], 1)


def camera_pose(k: int, i: int) -> Pose:
    """Camera i of sequence k: on a line along x, looking along +z, slightly turned."""
    yaw = 0.03 * (i - 1) + 0.01 * k
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    centre = np.array([i - 1.0 + 0.2 * k, 0.1 * k, 0.0])
    return Pose(R, -R @ centre)


def sequence_model(k: int, xyz: np.ndarray, skip: int | None) -> pycolmap.Reconstruction:
    """Sequence k's model: images 1..3 (ids as in every other model), camera id 1, its share of the points."""
    rec = pycolmap.Reconstruction()
    cam = CAMERA.to_pycolmap()
    cam.camera_id = 1
    rec.add_camera_with_trivial_rig(cam)
    mine = np.flatnonzero(np.arange(len(xyz)) % 3 != k)
    kept = [i for i in range(3) if i != skip]
    projected = {}
    for i in kept:
        px, _ = project_points(CAMERA, camera_pose(k, i), xyz[mine])
        projected[i] = (px, in_image(CAMERA, px, margin=1))
        image = pycolmap.Image(
            name=f"{list(SEQUENCES)[k]}/img{i}.png", keypoints=px + 0.5, camera_id=1, image_id=i + 1
        )
        pose = camera_pose(k, i)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(np.c_[pose.R, pose.t]))
    seen = np.stack([projected[i][1] for i in kept])
    for j in np.flatnonzero(seen.sum(0) >= 2):  # small fixture: one pycolmap call per point
        track = pycolmap.Track()
        track.add_elements([pycolmap.TrackElement(i + 1, int(j)) for n, i in enumerate(kept) if seen[n, j]])
        rec.add_point3D(xyz[mine[j]], track, np.array([90, 90, 90], np.uint8))
    return rec


def make_fake_build(root: Path, night_reason: str = "too dark: <2% of the SIFT budget> & blurry") -> dict:
    """Write build/ (sfm models + registration.json), images/ and dataset/ under `root`."""
    xyz = world_points()
    build, images_dir = root / "build", root / "images"
    paths = BuildPaths(build)
    sequences, image_status, rows = {}, {}, []
    identity = {"scale": 1.0, "R": np.eye(3).tolist(), "t": [0.0, 0.0, 0.0]}
    too_few = {
        "status": "failed",
        "method": "absolute_pose",
        "located_images": 0,
        "reason": "0 image(s) registered by absolute pose (< 3)",
    }
    for k, (seq, (cond, skip)) in enumerate(SEQUENCES.items()):
        rec = sequence_model(k, xyz, skip)
        folder = seq.replace("/", "__")
        paths.registered_model(folder).mkdir(parents=True)
        rec.write_binary(str(paths.registered_model(folder)))
        if k == 0:
            entry = {"status": "world", **identity}
        else:  # aligned on 3D-3D matches, too few of its images registered by absolute pose
            entry = {
                "status": "aligned",
                "correspondences": 120 + k,
                "prior_check": False,
                "inliers": 100 + k,
                "inlier_ratio": 0.8,
                "inlier_threshold": 0.05,
                **identity,
                "residual_median": 0.01 * k,
                "residual_rmse": 0.02 * k,
                "absolute_pose": too_few,
                "located_images": 0,
            }
        sequences[seq] = entry | {"folder": folder, "registered_images": 3 - (skip is not None)}
        for i in range(3):
            name = f"{seq}/img{i}.png"
            reg = i != skip
            image_status[name] = {
                "sequence": seq,
                "registered": reg,
                "method": "sequence" if reg else None,
                "reason": None if reg else night_reason,
            }
            pose = camera_pose(k, i)
            rows.append(
                {
                    "image_id": 10 * k + i,
                    "image": name,
                    "sequence": seq,
                    "condition": cond,
                    "registered": reg,
                    **dict(zip(("qw", "qx", "qy", "qz"), pose.qvec, strict=True)),
                    **dict(zip(("tx", "ty", "tz"), pose.t, strict=True)),
                }
            )
            (images_dir / seq).mkdir(parents=True, exist_ok=True)
            texture = np.random.default_rng(10 * k + i).integers(0, 255, (H // 4, W // 4, 3), dtype=np.uint8)
            cv2.imwrite(str(images_dir / name), cv2.resize(texture, (W, H), interpolation=cv2.INTER_LINEAR))
    paths.registration.write_text(
        json.dumps(
            {"manifest": "0" * 64, "world": ["summer/run1"], "sequences": sequences, "images": image_status}
        )
    )
    images = pd.DataFrame(rows).assign(
        season=None,
        daytime=None,
        weather=None,
        camera_model=CAMERA.model,
        width=W,
        height=H,
        params=[list(CAMERA.params)] * len(rows),
    )
    for col in ("qw", "qx", "qy", "qz", "tx", "ty", "tz"):
        images.loc[~images["registered"], col] = np.nan
    pairs, matches = _pairs_and_matches(images, xyz)
    dataset = write_dataset(
        root / "dataset",
        images,
        pairs,
        matches,
        config={"fixture": True},
        manifest_checksum="0" * 64,
        image_root=images_dir,
    )
    return {
        "build": build,
        "dataset": dataset,
        "images": images,
        "pairs": pairs,
        "matches": matches,
        "xyz": xyz,
    }


def _pairs_and_matches(images: pd.DataFrame, xyz: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference (summer) image i with image i of the other registered sequences; exact matches of shared
    points."""
    rng = np.random.default_rng(1)
    reg = images[images["registered"]]
    ref = reg[reg["condition"] == "summer-day"]
    pairs, chunks = [], []
    for r in ref.itertuples():
        for o in reg[(reg["condition"] != "summer-day") & (reg["image"].str[-5] == r.image[-5])].itertuples():
            pose0, pose1 = (Pose.from_qt([x.qw, x.qx, x.qy, x.qz], [x.tx, x.ty, x.tz]) for x in (r, o))
            p0, _ = project_points(CAMERA, pose0, xyz)
            p1, _ = project_points(CAMERA, pose1, xyz)
            ok = in_image(CAMERA, p0) & in_image(CAMERA, p1)
            n, pid = int(ok.sum()), len(pairs) + 1
            d = rng.exponential(0.02, n)
            chunks.append(
                match_frame(
                    pid,
                    p0[ok],
                    p1[ok],
                    np.flatnonzero(ok),
                    weight=np.exp(-d),
                    dist3d=d,
                    err0=rng.gamma(2, 0.15, n),
                    err1=rng.gamma(2, 0.25, n),
                )
            )
            pairs.append(
                {
                    "pair_id": pid,
                    "image_id0": r.image_id,
                    "image_id1": o.image_id,
                    "num_matches": n,
                    "overlap": 0.5,
                    "split": "train" if pid % 2 else "val",
                }
            )
    return pd.DataFrame(pairs), pd.concat(chunks, ignore_index=True)


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict:
    return make_fake_build(tmp_path_factory.mktemp("exports"))


def _centres(rec: pycolmap.Reconstruction) -> dict[str, np.ndarray]:
    return {rec.image(i).name: np.asarray(rec.image(i).projection_center()) for i in rec.reg_image_ids()}


def test_fake_build_registration_is_in_the_stage_layout(fake):
    data = json.loads(BuildPaths(fake["build"]).registration.read_text())
    assert Registration.from_json(data).to_json() == data


def test_merged_colmap_model_keeps_every_pose_point_and_observation(fake, tmp_path):
    sources = load_models(fake["build"])
    assert sorted(sources) == sorted(SEQUENCES)
    out = export_colmap(fake["build"], tmp_path / "colmap")
    merged = pycolmap.Reconstruction(str(out))
    stored_error = merged.compute_mean_reprojection_error()
    merged.update_point_3d_errors()
    assert merged.num_cameras() == 3 and merged.num_reg_images() == 8  # 3 + 3 + 2 (a night image is not)
    assert merged.num_points3D() == sum(r.num_points3D() for r in sources.values())
    assert merged.compute_num_observations() == sum(r.compute_num_observations() for r in sources.values())
    # tracks still point at the right keypoints: reprojection is exact after renumbering ids
    assert merged.compute_mean_reprojection_error() < 1e-6 and stored_error < 1e-6
    want = {k: v for r in sources.values() for k, v in _centres(r).items()}
    got = _centres(merged)
    assert got.keys() == want.keys()
    assert max(np.abs(got[k] - want[k]).max() for k in want) < 1e-9
    a = np.sort(np.concatenate([model_points(r) for r in sources.values()]), axis=0)
    assert np.abs(np.sort(model_points(merged), axis=0) - a).max() < 1e-12


def test_per_sequence_text_export(fake, tmp_path):
    out = export_colmap(fake["build"], tmp_path / "per_seq", merged=False, text=True)
    sources = load_models(fake["build"])
    for seq, rec in sources.items():
        folder = out / sequence_folder(seq)
        assert (folder / "images.txt").is_file()
        back = pycolmap.Reconstruction(str(folder))
        assert back.num_points3D() == rec.num_points3D() and back.num_reg_images() == rec.num_reg_images()


def test_text_export_refuses_image_names_with_whitespace(tmp_path):
    """COLMAP's text format cuts a name at its first space: refused before writing; binary keeps it."""
    xyz = world_points()
    models = {seq: sequence_model(k, xyz, skip) for k, (seq, (_, skip)) in enumerate(SEQUENCES.items())}
    odd = "dir x/a b ü.png"
    models["winter/run1"].images[2].name = odd
    for merged in (True, False):
        with pytest.raises(ExportError, match=r"'dir x/a b ü\.png'.*whitespace.*binary format"):
            export_colmap(models, tmp_path / "text", merged=merged, text=True)
        assert not (tmp_path / "text").exists()
    back = pycolmap.Reconstruction(str(export_colmap(models, tmp_path / "binary")))
    assert odd in {img.name for img in back.images.values()}


def test_ply_is_coloured_by_condition_with_legend(fake, tmp_path):
    import open3d as o3d

    conditions = {seq: cond for seq, (cond, _) in SEQUENCES.items()}
    legend = export_ply(fake["build"], tmp_path / "clouds.ply", conditions)
    cloud = o3d.t.io.read_point_cloud(str(tmp_path / "clouds.ply"))
    xyz, rgb = cloud.point.positions.numpy(), cloud.point.colors.numpy()
    cond = cloud.point.condition.numpy().ravel()
    sources = load_models(fake["build"])
    assert len(xyz) == sum(r.num_points3D() for r in sources.values())
    colors = condition_colors(conditions.values())
    assert [c["name"] for c in legend["conditions"]] == sorted(conditions.values())  # palette by sorted name
    for entry in legend["conditions"]:
        mask = cond == entry["index"]
        assert mask.sum() == entry["points"] > 0
        assert (rgb[mask] == np.array(colors[entry["name"]])).all()
        assert tuple(entry["rgb"]) == colors[entry["name"]] == CONDITION_PALETTE[entry["index"]]
    for entry in legend["sequences"]:
        mask = cloud.point.sequence.numpy().ravel() == entry["index"]
        expected = model_points(sources[entry["name"]])
        assert np.abs(np.sort(xyz[mask], 0) - np.sort(expected, 0)).max() < 1e-5  # float32 in the PLY
    assert json.loads((tmp_path / "clouds.legend.json").read_text()) == legend


def test_export_errors_are_clear(fake, tmp_path):
    with pytest.raises(ExportError, match="build folder not found"):
        export_colmap(tmp_path / "nope", tmp_path / "out")
    with pytest.raises(ExportError, match="no condition known for sequence.*night/run1"):
        export_ply(
            fake["build"], tmp_path / "a.ply", {"summer/run1": "summer-day", "winter/run1": "winter-snow"}
        )
    with pytest.raises(ExportError, match="must end in .ply"):
        export_ply(fake["build"], tmp_path / "a.txt", {s: c for s, (c, _) in SEQUENCES.items()})
    assert not (tmp_path / "out").exists() and not (tmp_path / "a.ply").exists()


def test_find_build_dir_uses_dataset_json_then_the_sibling_work_folder(fake, tmp_path):
    from xseason.reports.exports import find_build_dir

    assert find_build_dir(fake["dataset"]) is None  # neither dataset.json's work_dir nor dataset.work exists
    sibling = fake["dataset"].parent / "dataset.work"
    sibling.symlink_to(fake["build"], target_is_directory=True)
    try:
        assert find_build_dir(fake["dataset"]) == sibling
    finally:
        sibling.unlink()
    images, pairs = fake["images"], fake["pairs"]
    ds = write_dataset(
        tmp_path / "ds",
        images,
        pairs,
        fake["matches"],
        config={},
        manifest_checksum=None,
        image_root=tmp_path,
        extra_meta={"work_dir": str(fake["build"])},
    )
    assert find_build_dir(ds) == fake["build"]
