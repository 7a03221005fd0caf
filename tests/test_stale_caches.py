"""Cache keys (issue 16): a stage's cached result is reused only for the inputs it was made from.

The end-to-end case rebuilds the first 16 rows of the `tiny` scene (two conditions) with another
feature setting and after an image file changed, and compares with a fresh build.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from xseason.cli import main
from xseason.inputs import read_manifest
from xseason.sfm.cachekeys import StageKey, stage_keys
from xseason.sfm.config import FeatureConfig, ReconstructionConfig, SfMConfig
from xseason.sfm.paths import BuildPaths
from xseason.store.digest import content_digests

ROWS = 16


@pytest.fixture
def scene(two_condition_scene: Path) -> Path:
    """The tiny scene's copy with `m2.csv`, its first 16 rows (conftest)."""
    return two_condition_scene


def test_a_key_names_the_parts_that_changed():
    old = StageKey({"a": "1", "b": "2"})
    assert old.reason(old.to_json()) is None
    assert StageKey({"a": "1", "b": "3"}).reason(old.to_json()) == "its b changed"
    assert "older version" in old.reason(None) and "older version" in old.reason({"manifest": "x"})


def test_keys_follow_the_config_sections_the_image_files_and_the_stage_before(scene):
    m = read_manifest(scene / "m2.csv")
    cfg = SfMConfig()
    base = stage_keys(m, cfg, ["x"])
    assert stage_keys(m, SfMConfig(), ["x"]) == base  # deterministic

    fewer = stage_keys(m, replace(cfg, features=FeatureConfig(max_num_features=300)), ["x"])
    assert fewer.database.reason(base.database.to_json()) == "its features config changed"
    # every later stage reruns: its key holds the one before
    assert fewer.reconstruction.reason(base.reconstruction.to_json()) == "its database changed"
    assert fewer.registration.reason(base.registration.to_json()) == "its reconstruction changed"

    mapper = stage_keys(m, replace(cfg, reconstruction=ReconstructionConfig(min_tri_angle=5.0)), ["x"])
    assert mapper.database == base.database
    assert mapper.reconstruction.reason(base.reconstruction.to_json()) == "its reconstruction config changed"
    assert (
        stage_keys(m, cfg, ["y"]).registration.reason(base.registration.to_json()) == "its references changed"
    )

    image = m.images[3].path
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        touched = stage_keys(read_manifest(scene / "m2.csv"), cfg, ["x"])
        assert touched.database.reason(base.database.to_json()) == "its image files changed"
    finally:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))


def _build(scene: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "build",
            str(scene / "m2.csv"),
            "--out",
            str(out),
            "--quiet",
            "--set",
            "matching.num_threads=1",
            "--set",
            "reconstruction.num_threads=1",
            *extra,
        ]
    )


def test_a_changed_setting_reruns_its_stage_and_the_later_ones_and_says_so(scene, tmp_path, capsys):
    out = tmp_path / "ds"
    assert _build(scene, out) == 0, capsys.readouterr().err
    stages = json.loads(BuildPaths.beside(out).summary.read_text())["stages"]
    assert all(v.endswith("made (no cached result)") for v in stages.values()), stages
    first = json.loads((out / "dataset.json").read_text())["counts"]

    setting = ("--set", "features.max_num_features=300")
    capsys.readouterr()
    assert _build(scene, out, *setting) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    stages = json.loads(BuildPaths.beside(out).summary.read_text())["stages"]
    assert stages["features"] == "made anew (its features config changed)", stages
    assert stages["reconstruction"].endswith("made anew (its database changed)"), stages
    assert stages["registration"] == "made anew (its reconstruction changed)", stages
    assert "features: made anew (its features config changed)" in printed

    fresh = tmp_path / "fresh"
    assert _build(scene, fresh, *setting) == 0, capsys.readouterr().err
    assert content_digests(out) == content_digests(fresh)  # the same as a build from scratch
    assert json.loads((out / "dataset.json").read_text())["counts"] != first  # and not the stale one

    # an image file replaced under the same manifest: everything is made again
    image = read_manifest(scene / "m2.csv").images[5].path
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        assert _build(scene, out, *setting) == 0, capsys.readouterr().err
        stages = json.loads(BuildPaths.beside(out).summary.read_text())["stages"]
        assert stages["features"] == "made anew (its image files changed)", stages
        assert content_digests(out) == content_digests(fresh)
    finally:
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
