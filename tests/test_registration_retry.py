"""The registration's retries (sfm/registration.py `_retry`) on the tiny scene with poses hidden, from its
finished registration: frames placed wrong (as by a model broken in two) are taken out by the checks and
registered again, right, on their own; frames that a retry places wrong again stay unregistered; frames
left out of a sequence's model that incremental mapping split are retried and registered right."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pycolmap
import pytest

import xseason.sfm.registration as registration
from xseason.core.colmap import pose_arrays
from xseason.inputs.manifest import read_manifest
from xseason.sfm.config import SfMConfig
from xseason.sfm.features import extract
from xseason.sfm.paths import BuildPaths
from xseason.sfm.reconstruction import reconstruct
from xseason.sfm.results import PoseMethod
from xseason.sfm.sim3 import fit_to_poses, rotation_differences, rotation_residuals_deg
from xseason.synth.groundtruth import load_truth

SHIFT = 0.05  # of the extent, sideways: what a model broken in two does to its second part


@pytest.fixture(scope="module")
def tiny(tiny_scene_hidden: Path, tmp_path_factory):
    m = read_manifest(tiny_scene_hidden / "manifest.csv")
    cfg, paths = SfMConfig(), BuildPaths(tmp_path_factory.mktemp("tiny_retry"))
    index = extract(m, paths, cfg)
    models = reconstruct(m, index, paths, cfg)
    reg = registration.register(m, index, models, paths, cfg, [m.images[0].condition])
    truth = {name: t.pose for name, t in load_truth(tiny_scene_hidden).images.items()}
    return m, index, models, paths, cfg, reg, truth


def _state(tiny):
    """A fresh copy of the registration's end: the joint model of its final poses, those poses, the image
    and sequence results, the world, and a sequence outside it with every frame registered (time order)."""
    m, index, models, paths, cfg, reg, _ = tiny
    final = {
        im.name: im.cam_from_world()
        for model in reg.models.values()
        for im in model.images.values()
        if reg.images[im.name].registered
    }
    ctx = registration._Joint(m, index, paths.colmap, cfg, dict(models.models), fixed=set())
    images = {name: replace(result) for name, result in reg.images.items()}
    sequences = {seq: replace(result) for seq, result in reg.sequences.items()}
    seq = next(
        s for s, recs in m.sequences().items() if s not in reg.world and all(r.image in final for r in recs)
    )
    return ctx, final, images, sequences, reg.world, [r.image for r in m.sequences()[seq]]


def _moved(pose: pycolmap.Rigid3d, offset: np.ndarray) -> pycolmap.Rigid3d:
    """The same camera, its centre moved by `offset` (world)."""
    rotation = pose.rotation.matrix()
    return pycolmap.Rigid3d(pose.rotation, pose.translation - rotation @ offset)


def _errors(final: registration.Poses, truth: dict, names: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """Rotation (degrees) and centre errors of `names` after the similarity of all of `final` to the truth,
    and the extent of the truth's centres."""
    every = list(final)
    r, c = pose_arrays(final[n] for n in every)
    tr, tc = np.array([truth[n].R for n in every]), np.array([truth[n].center for n in every])
    differences = rotation_differences(tr, r)
    fit = fit_to_poses(differences, c, tc)
    pick = [every.index(n) for n in names]
    rotation = rotation_residuals_deg(differences[pick], fit.rotation)
    centre = np.linalg.norm(fit.apply(c[pick]) - tc[pick], axis=1)
    return rotation, centre, float(np.ptp(tc, axis=0).max())


def _break(ctx, final: registration.Poses, names: list[str]) -> tuple[list[str], np.ndarray]:
    """The last three frames of `names` moved sideways by SHIFT of the extent, the joint model made anew."""
    _, centres = pose_arrays(final.values())
    offset = np.array([SHIFT * float(np.ptp(centres, axis=0).max()), 0.0, 0.0])
    moved = names[-3:]
    final |= {n: _moved(final[n], offset) for n in moved}
    ctx.rebuild(final)
    return moved, offset


def test_frames_a_break_took_out_are_registered_again_right_on_their_own(tiny):
    truth = tiny[-1]
    ctx, final, images, sequences, world, names = _state(tiny)
    moved, _ = _break(ctx, final, names)
    registration._check_poses(ctx, final, images, sequences, world)
    assert all(n in final for n in names)  # all 8 frames registered again
    for name in moved:
        result = images[name]
        assert result.method is PoseMethod.ABSOLUTE_POSE and result.pnp_inliers >= 15
        assert (
            result.reason.startswith("registered on a retry by absolute pose")
            and "first: its" in result.reason
        )
        assert result.confidence > 0.85
    rotation, centre, extent = _errors(final, truth, moved)
    assert rotation.max() < 1.0 and centre.max() < 0.01 * extent, (rotation, centre / extent)


def test_frames_a_retry_places_wrong_again_stay_unregistered(tiny, monkeypatch):
    truth = tiny[-1]
    ctx, final, images, sequences, world, names = _state(tiny)
    moved, offset = _break(ctx, final, names)
    localize = registration._localize

    def wrong(*args, **kwargs):  # the retry's absolute poses of the moved frames as wrong as before
        found = localize(*args, **kwargs)
        for name, result in found.items():
            if name in moved and result.cam_from_world is not None:
                result.cam_from_world = _moved(result.cam_from_world, offset)
        return found

    monkeypatch.setattr(registration, "_localize", wrong)
    registration._check_poses(ctx, final, images, sequences, world)
    assert [n for n in names if n not in final] == moved  # the 5 right frames stay, the 3 moved ones not
    for name in moved:
        result = images[name]
        assert not result.registered
        assert "; retried: absolute pose (" in result.reason and "then the checks: its" in result.reason
    rotation, centre, extent = _errors(final, truth, names[:-3])
    assert rotation.max() < 1.0 and centre.max() < 0.01 * extent


def test_frames_left_out_of_a_split_model_are_retried_and_registered_right(tiny):
    truth = tiny[-1]
    ctx, final, images, sequences, world, names = _state(tiny)
    seq = images[names[0]].sequence
    left = names[-3:]
    sequences[seq] = replace(sequences[seq], model=replace(sequences[seq].model, other_models=[3]))
    split = registration._split(sequences[seq].model)
    for name in left:
        del final[name]
        images[name] = registration.ImageResult(seq, reason="not registered by its sequence's model" + split)
    ctx.rebuild(final)
    registration._check_poses(ctx, final, images, sequences, world)
    assert all(n in final for n in names)
    for name in left:
        assert (
            images[name].reason.startswith("registered on a retry")
            and "split the sequence" in images[name].reason
        )
    rotation, centre, extent = _errors(final, truth, left)
    assert rotation.max() < 1.0 and centre.max() < 0.01 * extent, (rotation, centre / extent)


@pytest.mark.parametrize("inliers, kept", [(20, False), (40, True)])
def test_the_only_registered_frame_of_a_sequence_needs_lone_min_inliers(tiny, inliers, kept):
    ctx, final, images, sequences, world, names = _state(tiny)
    lone, others = names[len(names) // 2], [n for n in names if n != names[len(names) // 2]]
    for name in others:
        del final[name]
        images[name] = registration.ImageResult(images[name].sequence, reason="no pose")
    images[lone] = replace(images[lone], method=PoseMethod.ABSOLUTE_POSE, pnp_inliers=inliers, pnp_matches=50)
    rest = set(final) - {lone}
    ctx.rebuild(final)
    assert ctx.cfg.registration.lone_min_inliers == 30
    registration._check_poses(ctx, final, images, sequences, world)
    assert (lone in final) is kept and images[lone].registered is kept
    assert rest <= set(final)  # the frames of other sequences stay
    if not kept:
        assert images[lone].reason == (
            f"the only registered frame of its sequence, by absolute pose on {inliers} inliers "
            "(< registration.lone_min_inliers 30): no neighbour confirms its pose"
        )
        assert sequences[images[lone].sequence].status is registration.SequenceStatus.FAILED
