"""The registration's checks of itself (sfm/checks.py in sfm/registration.py) on the tiny scene with
poses hidden: right registrations stay registered with a high confidence; the same poses made wrong
(a sequence moved off its place, a sequence broken in two) are caught by the checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xseason.core.colmap import pose_arrays
from xseason.inputs.manifest import Manifest, read_manifest
from xseason.sfm.checks import continuity, prior_offsets
from xseason.sfm.config import SfMConfig
from xseason.sfm.features import extract
from xseason.sfm.paths import BuildPaths
from xseason.sfm.reconstruction import reconstruct
from xseason.sfm.registration import register
from xseason.sfm.results import Registration
from xseason.sfm.sim3 import pose_errors
from xseason.synth.groundtruth import load_truth


@pytest.fixture(scope="module")
def tiny_registered(tiny_scene_hidden: Path, tmp_path_factory) -> tuple[Manifest, Registration]:
    m = read_manifest(tiny_scene_hidden / "manifest.csv")
    cfg, paths = SfMConfig(), BuildPaths(tmp_path_factory.mktemp("tiny_checks"))
    index = extract(m, paths, cfg)
    return m, register(m, index, reconstruct(m, index, paths, cfg), paths, cfg, [m.images[0].condition])


def _tracks(
    m: Manifest, reg: Registration
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per sequence with 3+ registered images, in time order: timestamps, rotations, centres, priors."""
    poses = {im.name: im.cam_from_world() for model in reg.models.values() for im in model.images.values()}
    out = {}
    for seq, recs in m.sequences().items():
        recs = [r for r in recs if r.image in poses and reg.images[r.image].registered]
        if len(recs) >= 3:
            rotations, centres = pose_arrays(poses[r.image] for r in recs)
            out[seq] = (
                np.array([r.timestamp for r in recs]),
                rotations,
                centres,
                np.array([r.prior for r in recs]),
            )
    return out


def test_right_registrations_of_the_tiny_scene_stay_registered_with_a_high_confidence(
    tiny_registered, tiny_scene_hidden
):
    m, reg = tiny_registered
    registered = [v for v in reg.images.values() if v.registered]
    assert len(registered) >= 0.9 * len(m.images)  # measured: all
    assert min(v.confidence for v in registered if v.confidence is not None) > 0.85
    rejected = [v.reason for v in reg.images.values() if v.reason and "its sequence's" in v.reason]
    assert not rejected  # no continuity break, offset from the priors or conflict with the world's free space
    truth = load_truth(tiny_scene_hidden)
    _, angle, centre = pose_errors(reg.models, {n: t.pose for n, t in truth.images.items()})
    extent = float(np.ptp(np.array([t.pose.center for t in truth.images.values()]), axis=0).max())
    assert angle.max() < 1.0 and centre.max() < 0.01 * extent  # what stays registered is right


def test_wrong_registrations_of_the_tiny_scene_are_caught(tiny_registered):
    m, reg = tiny_registered
    cfg = SfMConfig().registration
    tracks = _tracks(m, reg)
    centres = {seq: t[2] for seq, t in tracks.items()}
    priors = {seq: t[3] for seq, t in tracks.items()}
    right = prior_offsets(centres, priors, cfg.prior_max_z, cfg.prior_min_offset)
    assert len(right) >= 4 and all(r.consistent for r in right.values()), right
    every = np.concatenate(list(centres.values()))
    extent = float(2 * np.median(np.linalg.norm(every - np.median(every, 0), axis=1)))
    # each sequence in turn moved by 40 % of the extent: tiny's priors are noisy (0.5 m per axis, on a
    # 4 m extent), their mean over a sequence of 8 images and the fit of the others leave ~0.2 m
    for seq in centres:
        moved = centres | {seq: centres[seq] + [0.4 * extent, 0.0, 0.0]}
        found = prior_offsets(moved, priors, cfg.prior_max_z, cfg.prior_min_offset)
        assert not found[seq].consistent, (seq, found[seq])
        assert all(found[s].consistent for s in centres if s != seq), (seq, found)
    for seq, (times, rotations, centres_, _) in tracks.items():
        smooth = continuity(
            times, rotations, centres_, cfg.continuity_max_ratio, cfg.continuity_min_turn, 0.0
        )
        assert not smooth.breaks.any(), (seq, smooth)
        half = len(times) // 2  # the second half 5 % of the extent sideways: broken in two
        broken = centres_.copy()
        broken[half:] += [0.05 * extent, 0.0, 0.0]
        found = continuity(times, rotations, broken, cfg.continuity_max_ratio, cfg.continuity_min_turn, 0.0)
        assert half - 1 in np.flatnonzero(found.breaks), (seq, found)
