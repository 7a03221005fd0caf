"""The generation on Ray: the same dataset content as in one process, whatever the shards, a killed
worker or an interrupted run (issue 19). A local Ray instance of 2 CPUs is started by the tests."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'xseason[ray]')")

import xseason.matching.correspondences as correspondences  # noqa: E402
from xseason.core.executor import LocalExecutor, RayExecutor  # noqa: E402
from xseason.pipeline.build import load_build_config, run_build  # noqa: E402
from xseason.store import content_digests  # noqa: E402

pytestmark = pytest.mark.slow
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this module's task functions, by value


@pytest.fixture(scope="module")
def builds(tiny_scene: Path, tmp_path_factory: pytest.TempPathFactory):
    """`build(name, *overrides)`: the posed tiny scene built into `<tmp>/<name>` with one shared work
    folder (its SfM stages made once); returns the dataset's folder."""
    root = tmp_path_factory.mktemp("ray_builds")

    def build(name: str, *overrides: str) -> Path:
        cfg = load_build_config(None, list(overrides))
        run_build(tiny_scene / "manifest.csv", root / name, cfg, work_dir=root / "work", progress=False)
        return root / name

    return build


@pytest.fixture(scope="module")
def local(builds) -> Path:
    return builds("local")


def _parts(dataset: Path) -> int:
    return len(list((dataset / "matches").glob("part-*.parquet")))


def test_shards_and_executors_give_the_same_content(builds, local, ray_instance):
    """One shard, a shard per target image and Ray with 2 workers: the same tables as the default."""
    want = content_digests(local)
    one = builds("one_shard", "build.shard_targets=1000")
    many = builds("many_shards", "build.shard_targets=1")
    on_ray = builds("ray", "build.executor=ray", "build.shard_targets=2")
    assert _parts(one) == 1 and _parts(many) > 10 and _parts(on_ray) > 5
    for dataset in (one, many, on_ray):
        assert content_digests(dataset) == want
    assert len(want) == 4  # images, pairs, matches, points3d


def test_killed_worker_is_retried_with_the_same_result(builds, local, ray_instance):
    """A Ray worker SIGKILLed while it runs a generation shard: Ray runs the shard again."""
    killed: list[int] = []
    done = threading.Event()

    def kill_one() -> None:
        while not done.is_set() and not killed:
            for proc in psutil.Process().children(recursive=True):  # the tests' Ray instance only
                with contextlib.suppress(psutil.Error):
                    if proc.cmdline()[:1] == ["ray::_run_task"]:  # the title of a worker running a task
                        proc.send_signal(signal.SIGKILL)
                        killed.append(proc.pid)
                        break
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        dataset = builds("ray_killed", "build.executor=ray", "build.shard_targets=1")
    finally:
        done.set()
        killer.join()
    assert killed, "no worker was seen running a task"
    assert content_digests(dataset) == content_digests(local)


def test_interrupted_run_reuses_its_finished_shards(builds, local, monkeypatch, caplog):
    """The driver dies after 3 shards: a rerun makes only the others and gives the same dataset."""
    run_shard = correspondences._run_shard
    calls: list[Path] = []

    def crash_after_three(task, shared):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the driver stops here
        calls.append(task.path)
        return run_shard(task, shared)

    monkeypatch.setattr(correspondences, "_run_shard", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        builds("resumed", "build.shard_targets=4")
    assert all(path.is_file() for path in calls)
    assert len(list(calls[0].parent.glob("shard-*.parquet"))) == 3
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(
        correspondences, "_run_shard", lambda task, shared: calls.append(task.path) or run_shard(task, shared)
    )
    with caplog.at_level(logging.INFO, logger="xseason.matching.correspondences"):
        dataset = builds("resumed", "build.shard_targets=4")
    reused = re.search(r"(\d+) of (\d+) shard\(s\) reused", caplog.text)
    assert reused and int(reused[1]) == 3 and len(calls) == int(reused[2]) - 3 > 3
    assert set(calls).isdisjoint(first)  # the finished shards were read, not made again
    assert content_digests(dataset) == content_digests(local)
    assert not calls[0].parent.exists()  # committed: the shards are gone


def _scaled(item: int, shared: np.ndarray) -> tuple[int, float]:
    time.sleep(0.02 * (8 - item))  # the first items finish last
    return item, float(shared.sum()) * item


def test_executors_keep_order_and_put_the_shared_input_once(ray_instance, monkeypatch):
    shared = np.arange(1000.0)
    want = [(k, shared.sum() * k) for k in range(8)]
    assert list(LocalExecutor().map(_scaled, range(8), shared)) == want
    puts = []
    real_put = ray.put
    monkeypatch.setattr(ray, "put", lambda value: puts.append(value) or real_put(value))
    executor = RayExecutor()
    assert not executor.started  # the tests' instance: not started, so not shut down, by the executor
    assert list(executor.map(_scaled, range(8), shared)) == want
    assert len(puts) == 1 and puts[0] is shared
    executor.close()
    assert ray.is_initialized()


def _waits_for_others(item: tuple[int, str], shared: None) -> int:
    """Item 0 runs until 8 of the others have finished (at most 60 s) and returns how many had."""
    k, folder = item
    if k:
        Path(folder, str(k)).touch()
        return k
    deadline = time.monotonic() + 60
    while len(list(Path(folder).iterdir())) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(list(Path(folder).iterdir()))


def test_a_slow_task_does_not_hold_back_the_next_ones(ray_instance, tmp_path):
    """While the first task runs, the other worker goes on with more tasks than the window of tasks
    in flight (4 on 2 CPUs); the results still come in the items' order."""
    executor = RayExecutor()
    out = list(executor.map(_waits_for_others, [(k, str(tmp_path)) for k in range(12)]))
    assert out[0] >= 8 and out[1:] == list(range(1, 12))
