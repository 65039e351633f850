"""One writer per folder: an exclusive lock file that names its owner.

Every folder the project writes (an index or shard, a feature cache, a training run, an asset
folder) is held with :func:`folder_lock` while it is written, so a second ``index build``,
``index add``, ``features cache`` or ``sets train`` on the same folder stops at once with a
message naming the process that holds it, instead of interleaving files.

The lock is ``fcntl.flock`` on ``<folder>/<name>``: the kernel drops it when its process dies
(SIGKILL included), so a killed run never leaves a lock behind that needs manual removal, and
a pid reused by another process cannot fake an owner. The file also records the owner's pid,
host and start time for the message. Where ``fcntl`` is missing (Windows) an ``O_EXCL`` file
with the pid is used, and a lock whose pid no longer runs is taken over as stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from beyondvis.errors import BeyondvisError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".beyondvis.lock"


class FolderLockedError(BeyondvisError, RuntimeError):
    """Another process is writing the folder."""


def _owner() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})


def _describe(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    since = info.get("since")
    when = time.strftime(" since %H:%M:%S", time.localtime(since)) if since else ""
    return f"process {info.get('pid', '?')} on {info.get('host', '?')}{when}"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, name: str = LOCK_NAME) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for writing; a second holder gets
    :class:`FolderLockedError` at once (no waiting). Re-entrant within one process is *not*
    supported: nest only different folders."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    if fcntl is None:  # pragma: no cover - Windows
        with _exclusive_file(lock, folder):
            yield lock
        return
    fd = _acquire(lock, folder)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, _owner().encode("utf-8"))
        try:
            yield lock
        finally:
            # unlink while still holding the lock, so a waiting writer never locks a
            # file that is about to disappear
            with contextlib.suppress(OSError):
                lock.unlink()
    finally:
        os.close(fd)


def _acquire(lock: Path, folder: Path) -> int:
    """An fd of ``lock`` holding its flock. Retried when the file was unlinked by its
    previous holder between our open and our flock (we would hold a lock nobody sees)."""
    for _ in range(10):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderLockedError(
                f"{folder} is being written by {_describe(lock)}; wait for it to finish "
                "(or write to another folder)"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise FolderLockedError(f"{folder}: could not take {lock} (it keeps being replaced)")


@contextlib.contextmanager
def _exclusive_file(lock: Path, folder: Path) -> Iterator[None]:  # pragma: no cover - Windows
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(json.loads(lock.read_text(encoding="utf-8"))["pid"])
                os.kill(pid, 0)
            except (ValueError, KeyError, ProcessLookupError, FileNotFoundError, OSError):
                lock.unlink(missing_ok=True)  # stale: its writer is gone
                continue
            raise FolderLockedError(f"{folder} is being written by {_describe(lock)}") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(_owner())
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
