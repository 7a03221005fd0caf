"""`ensure_default_scene`: the built-in demo scene is rendered (and data_manifest.csv written) only
when data_manifest.csv is missing or is the built-in demo's own manifest, never over a user's file
(issue 16). `render_scene` is replaced by a stub: the real demo scene takes minutes to render."""

from __future__ import annotations

from pathlib import Path

import pytest

import xseason.synth
from xseason.core.errors import XSeasonError
from xseason.inputs.manifest import read_manifest
from xseason.pipeline.build import DEFAULT_MANIFEST, DEFAULT_SCENE, ensure_default_scene

DEMO_MANIFEST = (
    Path(__file__).resolve().parents[1] / "data_manifest.csv"
)  # tracked: what render_scene(..., root_manifest=...) writes

USER_MANIFEST = (
    "image,sequence,condition,timestamp\n"
    "photos/spring/0001.jpg,spring,spring-day,0\n"
    "photos/spring/0002.jpg,spring,spring-day,1\n"
)


@pytest.fixture
def renders(monkeypatch, tmp_path) -> list[tuple[Path, object]]:
    """Work in an empty folder; every call of the stubbed render_scene is recorded as (out, root_manifest)."""
    calls: list[tuple[Path, object]] = []

    def fake_render(out, cfg="demo", hide_poses=False, *, root_manifest=None, **kwargs):
        calls.append((Path(out), root_manifest))
        return Path(out) / "manifest.csv"

    monkeypatch.setattr(xseason.synth, "render_scene", fake_render)
    monkeypatch.chdir(tmp_path)
    return calls


def test_a_users_own_manifest_is_left_alone(renders):
    DEFAULT_MANIFEST.write_text(USER_MANIFEST)
    ensure_default_scene()
    assert renders == [] and not DEFAULT_SCENE.exists()
    assert DEFAULT_MANIFEST.read_text() == USER_MANIFEST
    with pytest.raises(XSeasonError, match="0001.jpg"):  # its missing images: the usual manifest error
        read_manifest(DEFAULT_MANIFEST)


def test_an_edited_demo_manifest_is_a_users_file(renders):
    """Paths under data/demo/ are not enough: a changed pose, or a row left out, makes it the user's."""
    lines = DEMO_MANIFEST.read_bytes().splitlines(keepends=True)
    moved = lines[1].replace(b",1.6,", b",1.7,", 1)
    assert moved != lines[1]
    for edited in (b"".join([lines[0], moved, *lines[2:]]), b"".join(lines[:-1])):
        DEFAULT_MANIFEST.write_bytes(edited)
        ensure_default_scene()
        assert renders == [] and DEFAULT_MANIFEST.read_bytes() == edited


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_the_builtin_manifest_without_its_scene_is_rendered(renders, newline):
    DEFAULT_MANIFEST.write_bytes(DEMO_MANIFEST.read_bytes().replace(b"\n", newline))
    ensure_default_scene()
    assert renders == [(DEFAULT_SCENE, DEFAULT_MANIFEST)]


def test_a_missing_manifest_is_rendered_and_a_present_scene_is_kept(renders):
    ensure_default_scene()
    assert renders == [(DEFAULT_SCENE, DEFAULT_MANIFEST)]
    DEFAULT_SCENE.mkdir(parents=True)
    (DEFAULT_SCENE / "manifest.csv").write_text("")
    DEFAULT_MANIFEST.write_text(USER_MANIFEST)
    ensure_default_scene()
    assert len(renders) == 1 and DEFAULT_MANIFEST.read_text() == USER_MANIFEST


def test_the_builtin_manifest_is_recognised_beside_a_scene_elsewhere(renders, tmp_path):
    """Paths are relative to the manifest's folder, as render_scene writes them."""
    manifest, scene = tmp_path / "repo" / "data_manifest.csv", tmp_path / "repo" / "data" / "demo"
    manifest.parent.mkdir()
    manifest.write_bytes(DEMO_MANIFEST.read_bytes())
    ensure_default_scene(manifest, scene)
    assert renders == [(scene, manifest)]
    ensure_default_scene(manifest, tmp_path / "elsewhere")  # paths not under that scene: not the demo's
    assert len(renders) == 1
