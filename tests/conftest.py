"""Shared fixtures: the rendered `tiny` scene (with and without poses) and the real sample data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the `tiny` preset (seed 0) rendered once per session; <dir>/manifest.csv has the poses."""
    from xseason.synth import render_scene, synth_config

    out = tmp_path_factory.mktemp("synth") / "tiny"
    render_scene(out, synth_config("tiny"), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_scene_hidden(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same scene with a manifest without poses (image, label, mask, depth: links to tiny_scene's)."""
    from xseason.synth import make_views, synth_config, write_manifest

    out = tmp_path_factory.mktemp("synth_hidden") / "tiny"
    out.mkdir()
    for item in tiny_scene.iterdir():
        if item.name != "manifest.csv":
            (out / item.name).symlink_to(item, target_is_directory=item.is_dir())
    cfg = synth_config("tiny")
    write_manifest(out / "manifest.csv", make_views(cfg), cfg, hide_poses=True)
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample data folder (../shared/data from the repository root), or skip."""
    path = REPO.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real sample data not available: {path} does not exist")
    return path


@pytest.fixture(scope="session")
def two_condition_scene(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny scene (tests may aim builds at it) with `m2.csv`: its first 16 rows, two
    conditions."""
    import shutil

    out = tmp_path_factory.mktemp("two_conditions") / "scene"
    shutil.copytree(tiny_scene, out)
    lines = (out / "manifest.csv").read_text().splitlines(keepends=True)
    (out / "m2.csv").write_text("".join(lines[:17]))
    return out


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance of 2 CPUs for the module's tests of the Ray executor, shut down after them."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xseason[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
