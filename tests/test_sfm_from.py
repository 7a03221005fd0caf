"""`reconstruction.sfm_from`: a sequence's own COLMAP model instead of triangulation / incremental mapping.

- maupertuis (real sample, skipped when ../shared/data is absent): its model split into one model per
  sequence (ids shifted, one text and one binary), both imported: the build's sequence models hold
  exactly those points, observations and poses, and neither triangulation nor mapping runs for them.
- `tiny` (two of its sequences), poses hidden: a SIFT build's sequence models, copied out and fed back,
  give the same dataset (content digests); with the poses given, such a model (its own frame)
  disagrees with them and stops the build, as does a model lacking one of the sequence's images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from test_real_samples import _maupertuis_manifest

from xseason.cli import main
from xseason.inputs.manifest import read_manifest
from xseason.sfm import reconstruction
from xseason.sfm.paths import BuildPaths
from xseason.store.digest import content_digests

SERIAL = ["--set", "matching.num_threads=1", "--set", "reconstruction.num_threads=1"]


def _sub_model(
    model: pycolmap.Reconstruction, names: set[str], shift: int, out: Path
) -> pycolmap.Reconstruction:
    """`model`'s images `names` (image and camera ids + `shift`) with the points they observe at least twice,
    written to `out` (text for an odd `shift`, else binary)."""
    sub = pycolmap.Reconstruction()
    for camera in model.cameras.values():
        sub.add_camera_with_trivial_rig(
            pycolmap.Camera(**{**camera.todict(), "camera_id": camera.camera_id + shift})
        )
    kept = {im.image_id for im in model.images.values() if im.name in names}
    for image_id in kept:
        image = model.image(image_id)
        xy = np.array([p.xy for p in image.points2D])
        new = pycolmap.Image(
            name=image.name, keypoints=xy, camera_id=image.camera_id + shift, image_id=image_id + shift
        )
        sub.add_image_with_trivial_frame(new, image.cam_from_world())
    for point in model.points3D.values():
        track = [
            pycolmap.TrackElement(e.image_id + shift, e.point2D_idx)
            for e in point.track.elements
            if e.image_id in kept
        ]
        if len(track) >= 2:
            sub.add_point3D(point.xyz, pycolmap.Track(track), point.color)
    out.mkdir(parents=True)
    (sub.write_text if shift % 2 else sub.write_binary)(out)
    return sub


def _tracks(model: pycolmap.Reconstruction) -> dict[tuple, tuple]:
    """Per 3D point (rounded xyz): its observations as sorted (image name, point2D index, x, y)."""
    out = {}
    for point in model.points3D.values():
        seen = []
        for e in point.track.elements:
            image = model.image(e.image_id)
            seen.append((image.name, e.point2D_idx, *np.round(image.points2D[e.point2D_idx].xy, 6)))
        out[tuple(np.round(point.xyz, 9))] = tuple(sorted(seen))
    return out


def _no_sfm(monkeypatch):
    """Fail the test if a sequence model is triangulated or mapped."""

    def refuse(*args, **kwargs):
        raise AssertionError("a sequence model was triangulated or mapped")

    monkeypatch.setattr(reconstruction, "_triangulate", refuse)
    monkeypatch.setattr(reconstruction, "_map", refuse)


def test_maupertuis_sequences_from_their_own_models(shared_data, tmp_path, monkeypatch, capsys):
    sample = shared_data / "maupertuis"
    manifest = _maupertuis_manifest(sample, tmp_path)
    model = pycolmap.Reconstruction(sample / "reconstruction")
    given = {
        "a": _sub_model(model, {"00.jpg", "01.jpg"}, 101, tmp_path / "a"),
        "b": _sub_model(model, {"02.jpg", "03.jpg"}, 200, tmp_path / "b"),
    }
    _no_sfm(monkeypatch)
    out = tmp_path / "ds"
    fast = ["features.first_octave=0", "features.max_image_size=1000", "correspondences.split_blocks=1"]
    sfm_from = f"reconstruction.sfm_from={{a: {tmp_path / 'a'}, b: {tmp_path / 'b'}}}"
    args = ["build", str(manifest), "--out", str(out), "--quiet", "--allow-partial", *SERIAL]
    assert main([*args, *[a for o in [*fast, sfm_from] for a in ("--set", o)]]) == 0
    capsys.readouterr()
    paths = BuildPaths.beside(out)
    ids = {r.image: k + 1 for k, r in enumerate(read_manifest(manifest).images)}  # the database's
    for seq, sub in given.items():
        built = pycolmap.Reconstruction(paths.sequence_model(seq))
        status = json.loads((paths.sequence_model(seq) / "status.json").read_text())
        assert status["source"] == str(tmp_path / seq) and status["posed"]
        assert built.num_points3D() == sub.num_points3D() == status["points"] > 500
        assert sum(p.track.length() for p in built.points3D.values()) == sum(
            p.track.length() for p in sub.points3D.values()
        )
        assert _tracks(built) == _tracks(sub)  # same points, observations and keypoint indices
        for image in sub.images.values():
            mine = next(im for im in built.images.values() if im.name == image.name)
            assert mine.image_id == ids[image.name] and mine.num_points2D() >= image.num_points2D()
            diff = mine.cam_from_world().matrix() - image.cam_from_world().matrix()
            assert np.abs(diff).max() <= 1e-9
    assert "model imported from" in paths.log.read_text()


@pytest.fixture(scope="module")
def two_sequences(tiny_scene: Path, tiny_scene_hidden: Path, tmp_path_factory) -> Path:
    """The tiny scene's first two sequences (16 images): `posed.csv` and `hidden.csv`, and `sift/`, their
    SIFT build from `hidden.csv`."""
    out = tmp_path_factory.mktemp("sfm_from") / "scene"
    out.mkdir()
    for item in tiny_scene.iterdir():
        if item.suffix != ".csv":
            (out / item.name).symlink_to(item, target_is_directory=item.is_dir())
    for name, scene in (("posed.csv", tiny_scene), ("hidden.csv", tiny_scene_hidden)):
        lines = (scene / "manifest.csv").read_text().splitlines(keepends=True)
        (out / name).write_text("".join(lines[:17]))
    assert main(["build", str(out / "hidden.csv"), "--out", str(out / "sift"), "--quiet", *SERIAL]) == 0
    return out


def _copied_models(scene: Path, to: Path) -> dict[str, Path]:
    """The SIFT build's sequence models, copied (model files only) under `to`: sequence -> folder."""
    paths, out = BuildPaths.beside(scene / "sift"), {}
    for seq in ("00-summer-day", "01-autumn-overcast"):
        out[seq] = to / seq
        shutil.copytree(paths.sequence_model(seq), out[seq], ignore=shutil.ignore_patterns("status.json"))
    return out


def test_a_builds_own_models_fed_back_give_the_same_dataset(two_sequences, tmp_path, monkeypatch, capsys):
    given = _copied_models(two_sequences, tmp_path / "models")
    _no_sfm(monkeypatch)
    out = tmp_path / "ds"
    sfm_from = "reconstruction.sfm_from=" + json.dumps({k: str(v) for k, v in given.items()})
    args = ["build", str(two_sequences / "hidden.csv"), "--out", str(out), "--quiet", *SERIAL]
    assert main([*args, "--set", sfm_from]) == 0
    capsys.readouterr()
    first = content_digests(two_sequences / "sift")
    assert content_digests(out) == first and len(first) == 4
    sift, mine = BuildPaths.beside(two_sequences / "sift"), BuildPaths.beside(out)
    for seq in given:
        a, b = (pycolmap.Reconstruction(p.sequence_model(seq)) for p in (sift, mine))
        assert list(a.images) == list(b.images) and _tracks(a) == _tracks(b) and a.num_points3D() > 100


def test_a_model_off_the_manifests_poses_or_lacking_an_image_stops_the_build(two_sequences, tmp_path, capsys):
    given = _copied_models(two_sequences, tmp_path / "models")
    seq = "01-autumn-overcast"
    lacking = pycolmap.Reconstruction(given[seq])
    dropped = sorted(im.name for im in lacking.images.values())[3]
    _sub_model(lacking, {im.name for im in lacking.images.values()} - {dropped}, 0, tmp_path / "lacking")
    cases = {
        "hidden.csv": (
            tmp_path / "lacking",
            f"has no posed image named {dropped} (1 of the sequence's 8 images",
        ),
        "posed.csv": (given[seq], "disagree with the manifest's for 8 of 8 images"),
    }
    for manifest, (model, said) in cases.items():
        out = tmp_path / manifest
        args = ["build", str(two_sequences / manifest), "--out", str(out), "--quiet", *SERIAL]
        assert main([*args, "--set", f"reconstruction.sfm_from={{{seq}: {model}}}"]) == 2
        err = capsys.readouterr().err
        assert f"reconstruction.sfm_from.{seq}: " in err
        assert said in err and not out.exists()
