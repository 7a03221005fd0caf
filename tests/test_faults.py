"""Faults a user can make (issue 16): outputs that are not ours or inside the inputs, two builds at once.

Each ends in a one-line error before any work (exit 2), with nothing of the user's touched, or in a
correct result. The end-to-end cases build the first 16 rows of the `tiny` scene (two conditions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xseason.cli import main
from xseason.core.errors import LockError, OutputError
from xseason.core.files import atomic_path, check_outside, check_replaceable, exclusive_lock
from xseason.inputs import read_manifest
from xseason.pipeline.build import check_outputs, dataset_lock, load_build_config, run_build
from xseason.sfm.paths import BuildPaths
from xseason.store import is_dataset, open_dataset, write_dataset
from xseason.store.digest import content_digests
from xseason.store.interop import import_mat
from xseason.synth import render_scene, synth_config

ROWS = 16  # the first two sequences of the tiny scene: two conditions


@pytest.fixture
def scene(two_condition_scene: Path) -> Path:
    """The tiny scene's copy with `m2.csv`, its first 16 rows (conftest)."""
    return two_condition_scene


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes (None for a folder) under `root`, by relative path."""
    return {
        p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def _build(scene: Path, out: Path, *extra: str) -> int:
    return main(["build", str(scene / "m2.csv"), "--out", str(out), "--quiet", *extra])


def _refused(capsys: pytest.CaptureFixture[str], rc: int, *words: str) -> str:
    """Assert exit status 2 with one error line (no traceback) holding `words`; return the line."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("xseason build: error: "), err
    for word in words:
        assert word in err, err
    return err


# ----------------------------------------------------------------------------- what --out may be


def test_a_user_folder_as_out_is_refused_before_any_work_and_left_intact(scene, tmp_path, capsys):
    user = tmp_path / "thesis"
    (user / "chapters").mkdir(parents=True)
    (user / "notes.txt").write_text("do not lose me\n")
    (user / "chapters" / "one.tex").write_bytes(bytes(range(256)))
    before = _snapshot(user)

    _refused(capsys, _build(scene, user), str(user), "not empty and not an xseason dataset")
    assert _snapshot(user) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # no work folder, no lock: no work


def test_the_input_scene_folder_as_out_is_refused(scene, tmp_path, capsys):
    before = _snapshot(scene)
    for out in (scene, scene / "images", scene / "images" / "00-summer-day", scene / "m2.csv"):
        _refused(capsys, _build(scene, out), "the dataset folder may not be or contain")
    # the work folder may not hold inputs either, and the dataset not hold its work folder
    _refused(capsys, _build(scene, tmp_path / "ds", "--work", str(scene)), "the work folder may not")
    _refused(capsys, _build(scene, tmp_path / "ds", "--work", str(tmp_path / "ds" / "w")), "work folder")
    assert _snapshot(scene) == before
    assert list(tmp_path.iterdir()) == []


def test_a_folder_inside_the_image_root_that_holds_no_input_may_be_written(scene, tmp_path):
    m = read_manifest(scene / "m2.csv")
    check_outputs(m, scene / "datasets" / "d", BuildPaths.beside(scene / "datasets" / "d"))  # no error
    with pytest.raises(OutputError, match="may not be or contain"):
        check_outputs(m, scene / "labels", BuildPaths.beside(tmp_path / "d"))


def test_a_regular_file_or_a_symlink_as_out_is_refused(scene, tmp_path, capsys):
    file = tmp_path / "results.csv"
    file.write_text("a,b\n1,2\n")
    _refused(capsys, _build(scene, file), "is a file, not a folder")
    assert file.read_text() == "a,b\n1,2\n"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    link = tmp_path / "link"
    link.symlink_to(elsewhere, target_is_directory=True)
    _refused(capsys, _build(scene, link), "symbolic link")
    assert link.is_symlink() and (elsewhere / "keep.txt").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "link", "results.csv"]


def test_an_empty_folder_is_used_and_an_existing_dataset_replaced(scene, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert _build(scene, out) == 0, capsys.readouterr().err
    assert is_dataset(out)
    first = json.loads((out / "dataset.json").read_text())
    assert first["counts"]["images"] == ROWS and first["counts"]["pairs"] > 0

    # another config: the dataset there is rebuilt and replaced (the SfM stages reused)
    assert _build(scene, out, "--set", "correspondences.densify=false") == 0, capsys.readouterr().err
    second = json.loads((out / "dataset.json").read_text())
    assert first["config"]["correspondences"]["densify"] is True
    assert second["config"]["correspondences"]["densify"] is False
    assert len(open_dataset(out).pairs) == second["counts"]["pairs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "empty.work"]  # no .tmp-, .old-, .lock


# ----------------------------------------------------------------------------- the one rule, every writer


def test_files_replace_files_and_folders_replace_only_their_own(tmp_path):
    file = tmp_path / "report.md"
    file.write_text("old")
    with atomic_path(file) as tmp:  # a file replaces a file, as always
        tmp.write_text("new")
    assert file.read_text() == "new"

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x").write_text("x")
    with (
        pytest.raises(OutputError, match="is a folder"),
        atomic_path(folder) as tmp,
    ):  # never a folder by a file
        tmp.write_text("oops")
    with pytest.raises(OutputError, match="is a file"), atomic_path(file, "folder") as tmp:  # nor the reverse
        tmp.mkdir()
    with pytest.raises(OutputError, match="not empty and not a thing"):
        check_replaceable(folder, "folder", replace_only_if=lambda p: False, what="a thing")
    check_replaceable(folder, "folder", replace_only_if=lambda p: (p / "sub").is_dir())
    assert file.read_text() == "new" and (folder / "sub" / "x").read_text() == "x"

    with pytest.raises(OutputError, match="not a folder"):  # a file where a parent folder should be
        check_replaceable(file / "below", "folder")
    check_outside(tmp_path / "out", [folder / "sub" / "x"], "inputs")
    with pytest.raises(OutputError, match="may not be or contain"):
        check_outside(folder, [folder / "sub" / "x"], "inputs")


def test_every_folder_writer_refuses_a_user_folder(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("keep")
    mats = tmp_path / "mats"
    mats.mkdir()
    with pytest.raises(OutputError, match="not an xseason dataset"):
        import_mat(mats, user, tmp_path)
    with pytest.raises(OutputError, match="may not be or contain"):
        import_mat(mats, tmp_path, tmp_path / "images")
    with pytest.raises(OutputError, match="not an xseason dataset"):
        _tiny_dataset(user)
    with pytest.raises(OutputError, match="not a rendered scene"):
        render_scene(user, synth_config("tiny"), progress=False)
    assert _snapshot(user) == {"keep.txt": b"keep"}

    _tiny_dataset(tmp_path / "ds")  # a dataset replaces a dataset
    _tiny_dataset(tmp_path / "ds")
    assert is_dataset(tmp_path / "ds")


def _tiny_dataset(out: Path) -> Path:
    """A dataset of one pair and one match at `out` (written by `write_dataset`)."""
    images = pd.DataFrame(
        {
            "image_id": np.array([0, 1], dtype=np.int32),
            "image": ["a.png", "b.png"],
            "sequence": ["s0", "s1"],
            "condition": ["c0", "c1"],
            "camera_model": ["PINHOLE"] * 2,
            "width": np.array([8, 8], dtype=np.int32),
            "height": np.array([8, 8], dtype=np.int32),
            "params": [[8.0, 8.0, 4.0, 4.0]] * 2,
            "registered": [False, False],
            **{k: [np.nan] * 2 for k in ("qw", "qx", "qy", "qz", "tx", "ty", "tz")},
        }
    )
    for tag in ("season", "daytime", "weather"):
        images.insert(4, tag, pd.Series([None, None], dtype=object))
    pairs = pd.DataFrame(
        {
            "pair_id": np.array([0], dtype=np.int64),
            "image_id0": np.array([0], dtype=np.int32),
            "image_id1": np.array([1], dtype=np.int32),
            "num_matches": np.array([1], dtype=np.int32),
            "overlap": np.array([0.5], dtype=np.float32),
            "split": ["train"],
        }
    )
    one = np.ones(1, dtype=np.float32)
    matches = {"pair_id": np.zeros(1, dtype=np.int64), "point3d_id": np.zeros(1, dtype=np.int64)}
    matches |= {k: one * 0.5 for k in ("x0", "y0", "x1", "y1", "weight", "dist3d", "err0", "err1")}
    return write_dataset(
        out, images, pairs, matches, config={}, manifest_checksum=None, image_root=out.parent
    )


# ----------------------------------------------------------------------------- the lock


def test_a_second_build_into_a_locked_output_or_work_folder_fails_fast(scene, tmp_path):
    out = tmp_path / "ds"
    cfg = load_build_config()
    for lock, message in (
        (dataset_lock(out), "the dataset"),
        (BuildPaths.beside(out).lock, "the work folder"),
    ):
        with exclusive_lock(lock, "held by this test"):
            start = time.monotonic()
            with pytest.raises(LockError, match=message) as caught:
                run_build(scene / "m2.csv", out, cfg, progress=False)
            assert time.monotonic() - start < 10
        text = str(caught.value)
        assert f"PID {os.getpid()}" in text and "started" in text and "host" in text, text
        assert "\n" not in text
        assert not out.exists()
    # another dataset, the same work folder: refused too
    with exclusive_lock(tmp_path / "w" / "build.lock", "held by this test"), pytest.raises(LockError):
        run_build(scene / "m2.csv", tmp_path / "other", cfg, work_dir=tmp_path / "w", progress=False)


def test_a_killed_holder_releases_the_lock(scene, tmp_path):
    out = tmp_path / "ds"
    lock = BuildPaths.beside(out).lock
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from xseason.core.files import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1], 'x'):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match=f"PID {holder.pid} "):
            run_build(scene / "m2.csv", out, load_build_config(), progress=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert lock.exists()  # a killed holder leaves its file behind, but no lock
    summary = run_build(scene / "m2.csv", out, load_build_config(), progress=False)
    assert is_dataset(out) and len(summary.pairs)
    assert not lock.exists() and not dataset_lock(out).exists()  # released and removed on a normal exit


# ----------------------------------------------------------------------------- kill -9, determinism

ONE_THREAD = ("--set", "matching.num_threads=1", "--set", "reconstruction.num_threads=1")


@pytest.mark.parametrize("stage", ["reconstruction", "correspondences"])
def test_a_build_killed_mid_stage_reruns_to_the_uninterrupted_result(scene, tmp_path, stage):
    whole = tmp_path / "whole"
    assert _build(scene, whole, *ONE_THREAD) == 0
    out = tmp_path / "ds"
    log = BuildPaths.beside(out).log
    cmd = [sys.executable, "-m", "xseason.cli", "build", str(scene / "m2.csv"), "--out", str(out), "--quiet"]
    victim = subprocess.Popen([*cmd, *ONE_THREAD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (log.is_file() and f"{stage}: started" in log.read_text()):
            assert victim.poll() is None and time.monotonic() < deadline, "the build ended before the stage"
            time.sleep(0.005)
        victim.kill()  # SIGKILL: no cleanup of any kind
    finally:
        victim.wait()
    assert victim.returncode == -9 and not is_dataset(out)
    assert _build(scene, out, *ONE_THREAD) == 0
    assert content_digests(out) == content_digests(whole)


def test_a_deterministic_unposed_build_is_the_same_run_to_run(tiny_scene_hidden, tmp_path):
    lines = (tiny_scene_hidden / "manifest.csv").read_text().splitlines(keepends=True)
    manifest = tmp_path / "m2.csv"
    manifest.write_text("".join(lines[: ROWS + 1]))
    digests = []
    for name in ("a", "b"):
        rc = main(
            [
                "build",
                str(manifest),
                "--image-root",
                str(tiny_scene_hidden),
                "--out",
                str(tmp_path / name),
                "--quiet",
                "--set",
                "build.deterministic=true",
            ]
        )
        assert rc == 0
        meta = json.loads((tmp_path / name / "dataset.json").read_text())
        assert (
            meta["config"]["matching"]["num_threads"] == meta["config"]["reconstruction"]["num_threads"] == 1
        )
        assert meta["counts"]["pairs"] > 0
        digests.append(content_digests(tmp_path / name))
    assert digests[0] == digests[1]
