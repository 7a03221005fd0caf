"""Output safety: atomic file and folder writes that never replace what is not theirs (a crash never
leaves a half-written output that looks whole), checks that an output stays outside the inputs, and
an exclusive lock on an output against a second writer."""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from xseason.core.errors import LockError, OutputError

try:  # POSIX; elsewhere `exclusive_lock` locks nothing
    import fcntl
except ImportError:  # pragma: no cover - not Linux
    fcntl = None  # type: ignore[assignment]

Kind = Literal["file", "folder"]


def check_replaceable(
    target: str | os.PathLike,
    kind: Kind = "file",
    *,
    replace_only_if: Callable[[Path], bool] | None = None,
    what: str | None = None,
) -> None:
    """Raise `OutputError` unless writing a `kind` at `target`, replacing what is there, loses nothing.

    The one rule of every output: a new path is fine. A file may replace a file (or a symbolic link,
    which is replaced, not followed), never a folder. A folder may replace an empty folder, or a
    non-empty one that `replace_only_if` recognises as an earlier output of the same writer (`what`
    names that output in the message); never a file, a symbolic link or any other folder.
    """
    target = Path(target)
    what = what or f"a {kind}"
    for parent in target.parents:  # the nearest existing folder above must be a folder
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise OutputError(f"{target}: {parent} is not a folder")
            break
    if not os.path.lexists(target):
        return
    if kind == "file":
        if target.is_dir():
            raise OutputError(f"{target}: is a folder; refusing to replace it by {what}")
        return
    if target.is_symlink():
        raise OutputError(
            f"{target}: is a symbolic link (to {os.readlink(target)}); refusing to replace it by {what}: "
            "give a new path, or the folder it points to"
        )
    if not target.is_dir():
        raise OutputError(f"{target}: is a file, not a folder; refusing to replace it by {what}")
    if not any(target.iterdir()) or (replace_only_if is not None and replace_only_if(target)):
        return
    raise OutputError(
        f"{target}: is a folder that is not empty and not {what}; refusing to replace it: "
        "give a new path or an empty folder"
    )


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike,
    kind: Kind = "file",
    *,
    replace_only_if: Callable[[Path], bool] | None = None,
    what: str | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success.

    Write a `kind` (a file, or a folder: create it) at the yielded path. What is at `target` is
    checked before anything is written and again just before it is replaced, by
    `check_replaceable(target, kind, replace_only_if=..., what=...)`: it is replaced only once
    the new one is complete, and only when that loses nothing of the user's.
    """
    target = Path(target)
    check_replaceable(target, kind, replace_only_if=replace_only_if, what=what)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    work = tmp / target.name
    try:
        yield work
        if not work.exists():
            raise RuntimeError(f"nothing was written for {target}")
        if work.is_dir() != (kind == "folder"):
            raise RuntimeError(
                f"{target}: a {'folder' if work.is_dir() else 'file'} was written, not a {kind}"
            )
        check_replaceable(target, kind, replace_only_if=replace_only_if, what=what)  # anything new there?
        if os.path.lexists(target):
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(work, target)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.replace(work, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_outside(
    folder: str | os.PathLike, paths: Iterable[str | os.PathLike], what: str, role: str = "the output"
) -> None:
    """Raise `OutputError` when `folder` (`role`: which output) is, or contains, one of `paths`
    (`what` names those).

    Compared by real location: `folder` and each path's parent folder are resolved (symbolic links
    followed), a path's last component is not (replacing a link does not touch what it points to).
    """
    resolved = os.path.realpath(folder)
    inside = resolved.rstrip(os.sep) + os.sep
    real_parents: dict[str, str] = {}  # few distinct folders, many files: resolve each folder once
    for path in paths:
        head, tail = os.path.split(os.fspath(path))
        if head not in real_parents:
            real_parents[head] = os.path.realpath(head or os.curdir)
        real = os.path.join(real_parents[head], tail)
        if real == resolved or real.startswith(inside):
            raise OutputError(
                f"{folder}: {role} may not be or contain {path} ({what}); choose another folder"
            )


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive OS lock (`flock`) on the lock file `path` while the block runs.

    A second holder fails at once with a `LockError` naming `what` and the holder (PID, host,
    start time, command), which is written into the file. The OS releases the lock when its
    process ends, so a killed holder leaves no stale lock; the file is removed on a normal exit.
    Without `fcntl` (not POSIX) nothing is locked.
    """
    path = Path(path)
    if fcntl is None:  # pragma: no cover - not Linux
        yield
        return
    with contextlib.suppress(OSError):  # else os.open below says why
        path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the lock file of {what} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise LockError(
                f"{what} is in use by another xseason process ({_lock_holder(path)}); "
                "wait for it to finish, or stop it"
            ) from None
        try:  # locked the file still at `path`, not one its previous holder removed meanwhile?
            here = os.stat(path)
            mine = os.fstat(fd)
            if (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        holder = {
            "pid": os.getpid(),
            "host": platform.node(),
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still locked: a waiter that opened it re-checks the inode
        os.close(fd)


def _lock_holder(path: Path) -> str:
    """Who holds the lock file `path`, in words, from what the holder wrote into it."""
    try:
        holder = json.loads(path.read_text())
        command = " ".join(str(holder["command"]).split())
        return f"PID {holder['pid']} on host {holder['host']}, started {holder['started']}: {command}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"see {path}"


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (indent 2, keys in insertion order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def user_cache_dir() -> Path:
    """xseason's folder in the user's cache: ``$XDG_CACHE_HOME/xseason``, else ``~/.cache/xseason``."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xseason"
