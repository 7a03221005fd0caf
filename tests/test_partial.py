"""No silent loss (issue 16): every image, sequence and condition a build drops is listed with its cause
in the summary and in dataset.json; an incomplete result fails (exit 2) naming the stage and the causes,
unless `--allow-partial` accepts it.

The builds use copies of the `tiny` scene: its first sequence (one condition), its first two (two
conditions, as tests/test_faults.py), those with two unreadable images, and those plus two night images
without poses (a sequence below `reconstruction.min_model_size`, which cannot register).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from xseason.cli import main
from xseason.inputs import read_manifest
from xseason.pipeline.build import run_build
from xseason.pipeline.dropped import PartialBuildError, dropped_of, lost_conditions, no_cross_pair
from xseason.sfm import results
from xseason.sfm.config import SfMConfig
from xseason.sfm.features import FeatureIndex
from xseason.sfm.paths import BuildPaths
from xseason.sfm.reconstruction import ModelStatus, SequenceModels
from xseason.store import is_dataset, open_dataset

POSE = ["qw", "qx", "qy", "qz", "tx", "ty", "tz", "prior_x", "prior_y", "prior_z"]
BAD = {"images/bad/empty.png": b"", "images/bad/text.png": b"this is text, not a PNG\n"}
LOST_SEQUENCE = "03-night"


@pytest.fixture(scope="module")
def scene(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny scene with the module doc's manifests: m1.csv, m2.csv, corrupt.csv, lost.csv."""
    out = tmp_path_factory.mktemp("partial") / "scene"
    shutil.copytree(tiny_scene, out)
    rows = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    m2 = rows.iloc[:16]
    rows.iloc[:8].to_csv(out / "m1.csv", index=False)
    m2.to_csv(out / "m2.csv", index=False)
    (out / "images" / "bad").mkdir()
    for name, data in BAD.items():
        (out / name).write_bytes(data)
    corrupt = m2.copy()
    corrupt.loc[corrupt.index[[3, 13]], "image"] = list(BAD)  # one image of each condition
    corrupt.to_csv(out / "corrupt.csv", index=False)
    night = rows[rows["sequence"] == LOST_SEQUENCE].iloc[[4, 6]].assign(**dict.fromkeys(POSE, ""))
    pd.concat([m2, night]).to_csv(out / "lost.csv", index=False)
    return out


def _cli(manifest: Path, out: Path, *extra: str) -> int:
    return main(["build", str(manifest), "--out", str(out), "--quiet", *extra])


def _error(capsys: pytest.CaptureFixture[str], rc: int, *words: str) -> str:
    """Assert exit status 2 ending in one error line holding `words` (log lines may precede it)."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    line = err.splitlines()[-1]
    assert line.startswith("xseason build: error: incomplete build (stage "), err
    for word in words:
        assert word in line, line
    assert "do the image names" not in err
    return line


def _dropped(out: Path) -> dict:
    return json.loads((out / "dataset.json").read_text())["dropped"]


def test_one_condition_fails_before_any_work_unless_allowed(scene, tmp_path, capsys):
    out = tmp_path / "ds"
    with pytest.raises(PartialBuildError, match="one condition") as caught:
        run_build(scene / "m1.csv", out, progress=False)
    assert caught.value.stage == "manifest"
    _error(capsys, _cli(scene / "m1.csv", out), "stage manifest", "'summer-day'", "--allow-partial")
    assert not BuildPaths.beside(out).database.exists()  # before the SfM: no COLMAP database
    assert list(tmp_path.iterdir()) == []  # nothing at all

    summary = run_build(scene / "m1.csv", out, progress=False, allow_partial=True)
    assert is_dataset(out) and len(summary.pairs) == 0
    assert [f["stage"] for f in _dropped(out)["accepted"]] == ["manifest", "correspondences"]
    assert "accepted with --allow-partial" in summary.format()
    with pytest.raises(PartialBuildError, match="one condition"):  # still incomplete without the flag
        run_build(scene / "m1.csv", out, progress=False)
    assert is_dataset(out)


def test_unreadable_images_are_listed_with_their_reason(scene, tmp_path, capsys):
    out = tmp_path / "ds"
    assert _cli(scene / "corrupt.csv", out) == 0
    printed = capsys.readouterr().out
    dropped = _dropped(out)
    assert sorted(d["image"] for d in dropped["images"]) == sorted(BAD)
    reasons = {
        "images/bad/empty.png": "empty file (0 bytes)",
        "images/bad/text.png": "OpenCV cannot decode it",
    }
    for d in dropped["images"]:
        assert d["stage"] == "features" and reasons[d["image"]] in d["reason"], d
        assert any(d["image"] in line and reasons[d["image"]] in line for line in printed.splitlines())
    assert dropped["sequences"] == dropped["conditions"] == dropped["accepted"] == []
    images = open_dataset(out).images.set_index("image")
    assert not images.loc[list(BAD), "registered"].any() and images["registered"].sum() == 14
    assert json.loads(BuildPaths.beside(out).summary.read_text())["dropped"] == dropped


def test_a_condition_that_lost_all_its_images_fails_naming_the_cause(scene, tmp_path, capsys):
    out = tmp_path / "ds"
    line = _error(
        capsys,
        _cli(scene / "lost.csv", out),
        "stage registration",
        "condition 'night' lost all its 2 images",
        f"sequence '{LOST_SEQUENCE}'",
        "no model: incremental mapping found no initial pair",
        "hint: too few images",
        "reconstruction.min_model_size = 3",
        "No dataset was written",
    )
    assert "\n" not in line
    paths = BuildPaths.beside(out)
    assert not out.exists() and paths.registration.is_file()  # no dataset; the stages' caches are kept
    failed = json.loads(paths.summary.read_text())
    assert failed["dataset"] is None and failed["failed"][0]["stage"] == "registration"

    features = paths.features.stat().st_mtime_ns
    assert _cli(scene / "lost.csv", out, "--allow-partial") == 0
    assert paths.features.stat().st_mtime_ns == features  # the rerun reused the features
    printed = capsys.readouterr().out
    assert "night: none of its 2 images registered" in printed
    assert f"[reconstruction] sequence '{LOST_SEQUENCE}'" in printed
    dropped = _dropped(out)
    assert [c["condition"] for c in dropped["conditions"]] == ["night"]
    (seq,) = dropped["sequences"]
    assert seq["sequence"] == LOST_SEQUENCE and seq["stage"] == "reconstruction" and seq["registered"] == 0
    assert "min_model_size" in seq["hint"]
    assert len(dropped["images"]) == 2 and [f["stage"] for f in dropped["accepted"]] == ["registration"]
    pairs = open_dataset(out).pair_conditions()
    assert len(pairs) and set(pairs["condition"]) == {"autumn-overcast"}

    _error(capsys, _cli(scene / "lost.csv", out), "stage registration", "written with --allow-partial")
    assert is_dataset(out)


def test_a_sequence_not_brought_into_the_world_frame_is_named_with_both_attempts(scene):
    """`dropped_of` on results made up for m2.csv: the second sequence has a model but was not aligned."""
    manifest = read_manifest(scene / "m2.csv")
    first, second = manifest.sequences()
    ids = {r.image: k + 1 for k, r in enumerate(manifest.images)}
    index = FeatureIndex(Path("unused.db"), ids, {})
    made = ModelStatus(ok=True, points=100, images=8)
    models = SequenceModels({first: made, second: made}, {})
    failed = results.SequenceResult(
        results.SequenceStatus.FAILED,
        results.PoseFit(1, reason="1 image(s) registered by absolute pose (< 3)"),
        results.PointFit(4, False, reason="4 3D-3D correspondences (< 12)"),
    )
    images = {
        r.image: results.ImageResult(r.sequence, results.PoseMethod.SEQUENCE)
        if r.sequence == first
        else results.ImageResult(r.sequence, reason="not registered by its sequence's model")
        for r in manifest.images
    }
    registration = results.Registration(
        "x", [first], {first: results.SequenceResult(results.SequenceStatus.WORLD), second: failed}, images
    )
    losses = dropped_of(manifest, index, models, registration, SfMConfig())
    (seq,) = losses.sequences
    assert seq.sequence == second and seq.stage == "registration" and seq.registered == 0
    assert "by absolute pose: 1 image(s)" in seq.reason and "by 3D-3D matches: 4 3D-3D" in seq.reason
    assert "registration.min_inliers" in seq.hint and "prior" in seq.hint
    assert [c.condition for c in losses.conditions] == ["autumn-overcast"] and len(losses.images) == 8
    message = str(PartialBuildError(lost_conditions(losses), losses))
    assert "\n" not in message and f"sequence '{second}'" in message and "by 3D-3D matches" in message

    table = pd.DataFrame(
        {"image_id": [0, 1, 2], "condition": ["a", "a", "b"], "registered": [True, True, True]}
    )
    same = pd.DataFrame({"image_id0": [0], "image_id1": [1]})
    assert "share no 3D points" in no_cross_pair(table, same).reason
    assert no_cross_pair(table, pd.DataFrame({"image_id0": [0], "image_id1": [2]})) is None
