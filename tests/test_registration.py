"""Registration into one frame: Sim3 maths, the tiny scene with poses hidden, resume, corrupt images."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from xseason.geometry import Pose, qvec_to_rotmat
from xseason.manifest import read_manifest
from xseason.reconstruction import reconstruct
from xseason.registration import SfMConfig, apply_sim3, load_registered, register, umeyama


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    rot = qvec_to_rotmat(np.array([0.9, 0.1, -0.3, 0.2]))
    dst = apply_sim3(2.5, rot, np.array([1.0, -2.0, 3.0]), src)
    s, r, t = umeyama(src, dst)
    assert abs(s - 2.5) < 1e-9 and np.abs(r - rot).max() < 1e-9 and np.abs(t - [1, -2, 3]).max() < 1e-9


@pytest.fixture(scope="module")
def tiny_hidden(tmp_path_factory) -> Path:
    synth = pytest.importorskip("xseason.synth")
    out = tmp_path_factory.mktemp("tiny_hidden")
    synth.render_scene(out / "scene", synth.synth_config("tiny"), hide_poses=True, progress=False)
    return out


def _build(scene: Path, build: Path):
    m = read_manifest(scene / "manifest.csv")
    ref = [m.images[0].condition]
    cfg = SfMConfig()
    return m, register(m, reconstruct(m, build, cfg, ref), build, cfg, ref)


def _pose_errors(build: Path, truth: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation (deg) and centre errors of registered images after one Sim3 to the truth; truth extent."""
    est_c, gt_c, est_r, gt_r = [], [], [], []
    for model in load_registered(build).values():
        for img in model.images.values():
            pose = img.cam_from_world()
            rot = np.asarray(pose.rotation.matrix())
            gt = Pose.from_qt(truth[img.name]["qvec"], truth[img.name]["tvec"])
            est_c.append(-rot.T @ np.asarray(pose.translation))
            est_r.append(rot)
            gt_c.append(gt.center)
            gt_r.append(gt.R)
    est_c, gt_c = np.array(est_c), np.array(gt_c)
    s, r, t = umeyama(est_c, gt_c)
    centre = np.linalg.norm(apply_sim3(s, r, t, est_c) - gt_c, axis=1)
    rel = np.einsum("nij,nkj->nik", np.array(gt_r), np.array(est_r) @ r.T)
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return angle, centre, float(np.ptp(gt_c, axis=0).max())


def test_tiny_hidden_registration_and_resume(tiny_hidden):
    build = tiny_hidden / "build"
    m, reg = _build(tiny_hidden / "scene", build)
    cond = {s: recs[0].condition for s, recs in m.sequences().items()}
    rates = reg.rate(cond)
    print("registration rate per condition:", rates)
    for condition in ("summer-day", "autumn-overcast", "winter-snow"):
        assert rates[condition] >= 0.95, (condition, rates)
    # Resume: nothing is redone, the result is identical.
    before = (build / "registration.json").read_bytes()
    t0 = time.perf_counter()
    _, again = _build(tiny_hidden / "scene", build)
    assert time.perf_counter() - t0 < 3.0
    assert (build / "registration.json").read_bytes() == before
    assert again.images == reg.images


@pytest.mark.xfail(reason="known weak: cross-condition Sim3 from few 3D-3D matches; errors 1-10% of extent", strict=False)
def test_tiny_hidden_pose_accuracy(tiny_hidden):
    build = tiny_hidden / "build"
    _build(tiny_hidden / "scene", build)
    truth = json.loads((tiny_hidden / "scene" / "truth.json").read_text())["images"]
    angle, centre, extent = _pose_errors(build, truth)
    print(f"median rotation error {np.median(angle):.2f} deg, centre error {100 * np.median(centre) / extent:.2f}% of extent")
    assert np.median(centre) < 0.03 * extent
    assert np.median(angle) < 2.0


def test_corrupt_image_is_a_recorded_skip(tiny_hidden, tmp_path):
    scene = tmp_path / "scene"
    shutil.copytree(tiny_hidden / "scene", scene)
    m = read_manifest(scene / "manifest.csv")
    bad = m.images[3]
    bad.path.write_bytes(b"not an image")
    _, reg = _build(scene, tmp_path / "build")
    info = reg.images[bad.image]
    assert info["registered"] is False and "unreadable image" in info["reason"]
    assert sum(v["registered"] for v in reg.images.values()) >= 20
