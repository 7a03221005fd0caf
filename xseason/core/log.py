"""Logging and progress: one `xseason` logger, stage timings, a log file per build, quiet bars.

- `logger` is the package's logger; modules log through `logging.getLogger(__name__)` (children of
  it). Library code never prints. The CLI calls `configure()` once: INFO to stderr (`-v` for DEBUG,
  `--quiet` for WARNING). Without it the library follows the usual rule: WARNING and up reach stderr.
- `stage(name)` logs a stage's start, end and duration at INFO (and its failure at ERROR).
- `log_file(path)` also writes everything logged while it is open into `path` (DEBUG and up).
- `progress(iterable, ...)` is tqdm, shown only when stderr is a terminal and bars are not
  turned off (`set_progress(False)`, the CLI's `--quiet`). Every bar of the package goes through it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

logger = logging.getLogger("xseason")
T = TypeVar("T")

_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(message)s"
_show_progress = True


class _ConsoleHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is when a record comes (tests swap it), through `tqdm.write`
    so that a record does not break a progress bar that is on screen."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's rule: a failing handler reports, never raises
            self.handleError(record)


def configure(level: int = logging.INFO) -> None:
    """Send the `xseason` logger's records to stderr, at `level` and up (once; later calls set the level)."""
    handler = next((h for h in logger.handlers if isinstance(h, _ConsoleHandler)), None)
    if handler is None:
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter(_CONSOLE_FORMAT, datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    handler.setLevel(level)
    logger.setLevel(level)


def set_progress(enabled: bool) -> None:
    """Turn every progress bar on (still only on a terminal) or off."""
    global _show_progress
    _show_progress = enabled


def progress_enabled(requested: bool = True) -> bool:
    """Whether a bar would be shown: requested, not turned off, and stderr is a terminal."""
    return requested and _show_progress and sys.stderr is not None and sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, *, enabled: bool = True, **tqdm_kwargs) -> tqdm:
    """`tqdm(iterable, **tqdm_kwargs)`, hidden unless `progress_enabled(enabled)`."""
    return tqdm(iterable, disable=not progress_enabled(enabled), **tqdm_kwargs)


@contextlib.contextmanager
def stage(name: str, log: logging.Logger = logger) -> Iterator[None]:
    """Log the start, end and duration of the stage `name` at INFO (a failure at ERROR, then re-raised)."""
    log.info("%s: started", name)
    start = time.perf_counter()
    try:
        yield
    except BaseException:
        log.error("%s: failed after %.1f s", name, time.perf_counter() - start)
        raise
    log.info("%s: done in %.1f s", name, time.perf_counter() - start)


@contextlib.contextmanager
def log_file(path: Path) -> Iterator[Path]:
    """Append everything the `xseason` logger records (DEBUG and up) to `path` while open.

    The logger's level is lowered to DEBUG meanwhile; the console handler keeps its own level.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(_FILE_FORMAT))
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(previous)
