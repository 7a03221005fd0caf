"""The SfM stages on Ray (issue 19): feature extraction in blocks of images, matching in blocks of pairs and
one model per sequence as tasks on a local Ray instance of 2 CPUs started by the tests, with the same work,
database matches and dataset as in one process, for posed and unposed sequences; a sequence that cannot be
reconstructed stays a status with its reason, as in one process. COLMAP single-threaded
(`build.deterministic`), so that runs can be compared."""

from __future__ import annotations

import collections
import json
import os
import shutil
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pycolmap
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xseason[ray]')")

import xseason.sfm.features as features  # noqa: E402
from xseason.core.executor import LocalExecutor, RayExecutor  # noqa: E402
from xseason.inputs.manifest import read_manifest  # noqa: E402
from xseason.pipeline.build import BuildSummary, load_build_config, run_build  # noqa: E402
from xseason.sfm.config import MatchingConfig, SfMConfig  # noqa: E402
from xseason.sfm.pairs import candidate_pairs  # noqa: E402
from xseason.sfm.paths import BuildPaths  # noqa: E402
from xseason.store import content_digests  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hidden_with_failures(tiny_scene_hidden: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unposed tiny scene's first 3 sequences, plus an unreadable image in the second one and a
    sequence `blank` of three uniform images (no features: it cannot be mapped)."""
    out = tmp_path_factory.mktemp("ray_sfm_scene") / "tiny"
    out.mkdir()
    for item in tiny_scene_hidden.iterdir():
        if item.name != "manifest.csv":
            (out / item.name).symlink_to(item.resolve(), target_is_directory=item.is_dir())
    rows = pd.read_csv(tiny_scene_hidden / "manifest.csv", dtype=str, keep_default_na=False)
    rows = rows[rows["sequence"].isin(rows["sequence"].unique()[:3])]
    second = rows[rows["sequence"] == rows["sequence"].unique()[1]]
    bad = second.iloc[:1].assign(image="extra/bad.png", mask="", label="")
    blank = rows.iloc[:3].assign(
        image=[f"extra/blank{k}.png" for k in range(3)], sequence="blank", camera="blank", mask="", label=""
    )
    (out / "extra").mkdir()
    (out / "extra" / "bad.png").write_bytes(b"not an image")
    for name in blank["image"]:
        cv2.imwrite(str(out / name), np.full((240, 320), 128, np.uint8))
    pd.concat([rows, bad, blank]).to_csv(out / "manifest.csv", index=False)
    return out


def _build(manifest: Path, out: Path, executor: str) -> BuildSummary:
    cfg = load_build_config(None, ["build.deterministic=true", f"build.executor={executor}"])
    return run_build(manifest, out / "ds", cfg, work_dir=out / "work", progress=False)


def _sfm_records(work: Path) -> dict[str, dict]:
    """The SfM stages' records in a work folder: the feature index and each sequence's model status
    (points, images, mean reprojection error: equal only for the same models)."""
    paths = BuildPaths(work)
    records = {"features": json.loads(paths.features.read_text())}
    for status in sorted((paths.colmap / "models").glob("*/status.json")):
        records[status.parent.name] = json.loads(status.read_text())
    return records


@pytest.mark.parametrize("posed", [True, False], ids=["posed", "hidden"])
def test_sfm_on_ray_gives_the_local_build(
    posed, tiny_scene, hidden_with_failures, ray_instance, tmp_path, monkeypatch
):
    manifest = (tiny_scene if posed else hidden_with_failures) / "manifest.csv"
    local = _build(manifest, tmp_path / "local", "local")
    mapped: list[str] = []
    ray_map = RayExecutor.map

    def spied(executor, fn, *args):
        mapped.append(fn.__name__)
        return ray_map(executor, fn, *args)

    monkeypatch.setattr(RayExecutor, "map", spied)
    on_ray = _build(manifest, tmp_path / "ray", "ray")
    assert {"_extract_block", "_match_block", "_sequence_task"} <= set(mapped)  # SfM stages as Ray tasks
    assert _sfm_records(tmp_path / "ray" / "work") == _sfm_records(tmp_path / "local" / "work")
    databases = [BuildPaths(tmp_path / run / "work").database for run in ("ray", "local")]
    assert _pair_rows(databases[0]) == _pair_rows(databases[1])  # every pair, its matches and geometry
    assert content_digests(on_ray.dataset) == content_digests(local.dataset)
    assert on_ray.dropped == local.dropped
    records = _sfm_records(tmp_path / "ray" / "work")
    assert len(records) == (6 if posed else 5)  # the feature index, 5 sequences or 3 + blank
    if posed:
        assert not local.dropped.images and not local.dropped.sequences
        return
    assert "cannot decode" in records["features"]["skipped"]["extra/bad.png"]  # found by the pre-flight
    assert records["blank"]["ok"] is False and "incremental mapping" in records["blank"]["reason"]
    (blank,) = [s for s in on_ray.dropped.sequences if s.sequence == "blank"]
    assert blank.stage == "reconstruction" and blank.registered == 0


def _database(path: Path) -> dict:
    """A feature database's cameras and, per image, its name, keypoints and descriptors."""
    db = pycolmap.Database.open(path)
    try:
        cameras = {c.camera_id: (c.width, c.height, list(c.params)) for c in db.read_all_cameras()}
        images = {
            im.image_id: (
                im.name,
                im.camera_id,
                np.asarray(db.read_keypoints(im.image_id)).tobytes(),
                np.asarray(db.read_descriptors(im.image_id).data).tobytes(),
            )
            for im in db.read_all_images()
        }
    finally:
        db.close()
    return {"cameras": cameras, "images": images}


def test_extraction_tasks_resume_and_skip_as_in_one_process(tiny_scene, ray_instance, tmp_path, monkeypatch):
    """`extract` alone (no pre-flight), in blocks of 3 images: an unreadable image, a mask of another size
    and an image of another size than its camera are skipped with their reasons by Ray tasks as in this
    process, and a run interrupted after 4 images resumed on Ray stores the same database."""
    scene = tmp_path / "scene"
    (scene / "odd").mkdir(parents=True)
    for item in tiny_scene.iterdir():
        if item.name != "manifest.csv":
            (scene / item.name).symlink_to(item, target_is_directory=item.is_dir())
    rows = pd.read_csv(tiny_scene / "manifest.csv", dtype=str, keep_default_na=False).iloc[:8]
    first = rows.iloc[0]
    (scene / "odd" / "bad.png").write_bytes(b"not an image")
    (scene / "odd" / "masked.png").symlink_to(tiny_scene / first["image"])
    cv2.imwrite(str(scene / "odd" / "mask.png"), np.zeros((10, 10), np.uint8))
    cv2.imwrite(str(scene / "odd" / "small.png"), cv2.imread(str(tiny_scene / first["image"]))[::2, ::2])
    odd = pd.DataFrame([first] * 3).assign(
        image=["odd/bad.png", "odd/masked.png", "odd/small.png"],
        mask=["", "odd/mask.png", ""],
        label="",
        timestamp=["100", "101", "102"],
    )
    pd.concat([rows, odd]).to_csv(scene / "manifest.csv", index=False)
    m = read_manifest(scene / "manifest.csv")
    monkeypatch.setattr(features, "_BLOCK", 3)
    local = features.extract(m, BuildPaths(tmp_path / "local"), SfMConfig(), executor=LocalExecutor())

    write = features._write_features
    written: list[str] = []

    def interrupted(db, rec, *args):
        if len(written) == 4:
            raise KeyboardInterrupt
        written.append(rec.image)
        return write(db, rec, *args)

    monkeypatch.setattr(features, "_write_features", interrupted)
    paths = BuildPaths(tmp_path / "ray")
    with pytest.raises(KeyboardInterrupt):
        features.extract(m, paths, SfMConfig(), executor=LocalExecutor())
    monkeypatch.setattr(features, "_write_features", write)
    assert len(_database(paths.database)["images"]) == 4
    on_ray = features.extract(m, paths, SfMConfig(), executor=RayExecutor())
    assert on_ray.image_ids == local.image_ids and len(local.image_ids) == 8
    assert on_ray.skipped == local.skipped
    reasons = [local.skipped[name] for name in odd["image"]]
    assert "unreadable image file" in reasons[0]
    assert "is unreadable or not 320x240" in reasons[1]
    assert "image is 160x120 but camera" in reasons[2]
    assert _database(paths.database) == _database(local.db_path)


def _pair_rows(db_path: Path) -> dict[str, list[tuple]]:
    """The database's matches and two-view geometries (inlier matches, config, F, E, H, relative pose), as
    SQLite holds them, by pair id."""
    with closing(sqlite3.connect(db_path)) as con:
        return {
            table: con.execute(f"SELECT * FROM {table} ORDER BY pair_id").fetchall()
            for table in ("matches", "two_view_geometries")
        }


@pytest.mark.parametrize("guided", [False, True], ids=["colmap", "epipolar"])
def test_matching_tasks_write_the_local_matches(guided, tiny_scene, ray_instance, tmp_path, monkeypatch):
    """`match` of the posed scene's candidate pairs (within and across sequences) on Ray, in blocks of 7
    pairs (each pair verified in a database with other neighbours than in the build's), writes for every
    pair the raw matches and two-view geometry that COLMAP's matcher writes in one process; with
    `epipolar_guided`, the cross-sequence pairs are matched along their epipolar lines in tasks too."""
    m = read_manifest(tiny_scene / "manifest.csv")
    cfg = SfMConfig()
    cfg.matching.epipolar_guided = guided
    index = features.extract(m, BuildPaths(tmp_path / "local"), cfg)
    ray_paths = BuildPaths(tmp_path / "ray")
    ray_paths.colmap.mkdir(parents=True)
    shutil.copy(index.db_path, ray_paths.database)
    on_ray = replace(index, db_path=ray_paths.database)
    poses = {r.image: r.pose for r in m.images}
    sequence_of = {r.image: r.sequence for r in m.images}
    pairs = candidate_pairs(m, index, cfg.matching)
    local_path = BuildPaths(tmp_path / "local").pair_list("sequences")
    n = features.match(index, pairs, local_path, cfg.matching, poses, sequence_of, LocalExecutor())
    monkeypatch.setattr(features, "_MATCH_BLOCK", 7)
    mapped: list[str] = []
    ray_map = RayExecutor.map

    def spied(executor, fn, items, shared=None):
        items = list(items)
        mapped.extend(fn.__name__ for _ in items)
        return ray_map(executor, fn, items, shared)

    monkeypatch.setattr(RayExecutor, "map", spied)
    executor = RayExecutor()
    ray_list = ray_paths.pair_list("sequences")
    assert features.match(on_ray, pairs, ray_list, cfg.matching, poses, sequence_of, executor) == n
    assert set(mapped) == {"_match_block"} and len(mapped) >= n / 7
    rows, expected = _pair_rows(on_ray.db_path), _pair_rows(index.db_path)
    assert len(expected["matches"]) == n > 200
    assert rows == expected
    configs = collections.Counter(row[4] for row in expected["two_view_geometries"])
    assert configs[int(pycolmap.TwoViewGeometryConfiguration.CALIBRATED)] > 100  # with a relative pose
    assert features.match(on_ray, pairs, ray_list, cfg.matching, poses, sequence_of, executor) == 0


def test_a_matching_task_names_what_it_cannot_read(tiny_scene, ray_instance, tmp_path):
    """A matching task whose database is missing (a work folder not on a filesystem the node sees) or
    lacks an image of its pairs raises a `FeatureError` saying so, through Ray."""
    m = read_manifest(tiny_scene / "manifest.csv")
    rows = m.images[:2]
    small = replace(m, images=rows)
    index = features.extract(small, BuildPaths(tmp_path / "w"), SfMConfig())
    executor = RayExecutor()
    missing = features._MatchJob(tmp_path / "elsewhere" / "database.db", MatchingConfig())
    with pytest.raises(features.FeatureError, match="every node sees"):
        list(executor.map(features._match_block, [features._MatchBlock([(1, 2)])], missing))
    job = features._MatchJob(index.db_path, MatchingConfig())
    with pytest.raises(features.FeatureError, match="no image or keypoints with id 3"):
        list(executor.map(features._match_block, [features._MatchBlock([(1, 3)])], job))


def test_colmap_threads_in_a_ray_task_are_its_cpus(ray_instance):
    """`num_threads: -1` (all cores) is, in a Ray task (matching, sequence models), the CPUs Ray gave the
    task (`OMP_NUM_THREADS`: 1 here, unless the driver's environment sets it), not every core of the node;
    a number given stays."""
    given = int(os.environ.get("OMP_NUM_THREADS") or 1)
    assert list(RayExecutor().map(lambda n, _: features.colmap_threads(n), [-1, 3])) == [given, 3]
