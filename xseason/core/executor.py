"""Where a stage's independent tasks run: in this process (`local`) or on a Ray cluster (`ray`).

An executor maps a picklable module-level function over items, ``fn(item, shared)``, and yields
the results in the order of the items. `shared` is the large input every task reads (a point
table, a surface model): `RayExecutor` puts it once into Ray's object store and each worker
process deserialises it once (`_shared_value`), never once per task; the same object passed to
consecutive maps is shipped once, and the workers keep what they deserialised and cached of it (it
must not change in between). Both executors run the same task code, so a stage gives the same
result on either.

Ray is optional (``pip install 'xseason[ray]'``) and imported only by `RayExecutor`. It starts a
local Ray instance of `workers` CPUs (address None) or connects to a running cluster (``"auto"``
or ``HOST:PORT``), and shuts down only an instance it started. Tasks are retried when their
worker dies (`max_retries`); an exception raised by the task itself is not retried but raised
here. At most a bounded window of tasks is in flight, so that a long list of items is neither
submitted nor held at once; a task that finishes frees its place at once, even while an earlier
one still runs (its result waits for its turn).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from xseason.core.errors import ConfigError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Runs ``fn(item, shared)`` for every item; results in the items' order."""

    kind: str

    def map(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any = None
    ) -> Iterator[Any]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Every task in this process, one after the other."""

    kind = "local"

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any = None) -> Iterator[Any]:
        return (fn(item, shared) for item in items)

    def close(self) -> None:
        pass


class RayExecutor:
    """Tasks on Ray (module doc): `address` None starts a local instance of `workers` CPUs (None: all
    cores), ``"auto"`` or ``HOST:PORT`` connects to a running cluster, where `workers` caps the tasks
    in flight. A task whose worker dies is retried up to `max_retries` times."""

    kind = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, max_retries: int = 3):
        self._ray = _import_ray()
        ray = self._ray
        self.started = not ray.is_initialized()
        if self.started:
            local = {"num_cpus": workers, "include_dashboard": False} if address is None else {}
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True, **local)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.window = workers if address is not None and workers else 2 * cpus
        log.info(
            "ray: %s (%d CPUs); at most %d tasks in flight",
            "started a local instance"
            if self.started
            else f"connected to {address or 'the running instance'}",
            cpus,
            self.window,
        )
        self._remote = ray.remote(max_retries=max_retries, retry_exceptions=False)(_run_task)
        self._shipped: tuple[Any, list] = (_DONE, [])  # the last shared input and its reference

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any = None) -> Iterator[Any]:
        ray = self._ray
        if shared is not self._shipped[0]:  # the same object again (unchanged): shipped once
            self._shipped = shared, [ray.put(shared)]  # in a list: passed on as the reference
        box = self._shipped[1]  # resolved in the workers by `_shared_value`
        pending: deque = deque()  # submitted, in the items' order, not yet yielded
        finished: set = set()  # those of them that are done
        items = iter(items)

        def submit() -> None:  # `window` tasks running, and at most 4 x window results held back
            while len(pending) - len(finished) < self.window and len(pending) < 4 * self.window:
                item = next(items, _DONE)
                if item is _DONE:
                    return
                pending.append(self._remote.remote(fn, item, box))

        submit()
        while pending:
            if pending[0] not in finished:  # a slow task holds back the results, not the next tasks
                ready, _ = ray.wait([ref for ref in pending if ref not in finished], num_returns=1)
                finished.update(ready)
            else:
                finished.discard(pending[0])
                yield ray.get(pending.popleft())
            submit()

    def close(self) -> None:
        self._shipped = (_DONE, [])
        if self.started and self._ray.is_initialized():
            self._ray.shutdown()
            self.started = False


_DONE = object()
_SHARED: dict[str, Any] = {}  # in a Ray worker: the last shared input it deserialised, by object id


def _run_task(fn: Callable[[Any, Any], Any], item: Any, box: list) -> Any:
    """A Ray task: `fn` on `item` and the shared input behind the reference in `box`."""
    return fn(item, _shared_value(box[0]))


def _shared_value(ref: Any) -> Any:
    """The object behind `ref`, deserialised once per worker process (the last one is kept, with
    whatever caches it builds, for the next task of the same map)."""
    key = ref.hex()
    if key not in _SHARED:
        import ray

        _SHARED.clear()
        _SHARED[key] = ray.get(ref)
    return _SHARED[key]


def task_threads() -> int:
    """Threads a task may use: `OMP_NUM_THREADS` when set (Ray sets it to a task's CPUs), else every
    core (a task in this process, or the driver's own work)."""
    return int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("build.executor: ray needs Ray: pip install 'xseason[ray]'") from None
    return ray


def make_executor(kind: str = "local", address: str | None = None, workers: int | None = None) -> Executor:
    """The executor named `kind` (`EXECUTORS`); `address` and `workers` are Ray's (`RayExecutor`)."""
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address, workers)
    raise ConfigError(f"build.executor: {kind!r} is not one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "make_executor", "task_threads"]
