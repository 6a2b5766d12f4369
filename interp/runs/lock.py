"""One writer per run: an exclusive OS file lock on ``<run>/writer.lock`` while a process writes the run.

Two processes resuming one run at once would each rewrite the other's shards (removing a done-marker
the other is reading). So creating or resuming a run takes a non-blocking exclusive
:func:`fcntl.flock` on a lock file inside the run directory; a second process is refused at once
with :class:`~interp.runs.errors.RunLockedError` naming the holder's pid and host. The OS drops the
lock when its holder exits or is killed, so a crash never leaves a run locked. Readers (listing,
the app, notebooks) take no lock.

Within one process the lock is shared: every :class:`WriteLock` of a run directory holds the same
open file, and the lock is released when the last of them is released (or garbage collected).
Where :mod:`fcntl` does not exist (Windows) locking is a no-op.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from pathlib import Path

from interp.runs.errors import RunLockedError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "writer.lock"

_held: dict[str, list[int]] = {}  # real path of the run directory -> [fd, number of holders]
_mutex = threading.Lock()


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").split()
    except OSError:
        text = []
    pid = text[0] if text else "?"
    host = text[1] if len(text) > 1 else "?"
    return f"process {pid} (host {host})"


def _release(key: str) -> None:
    with _mutex:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _held[key]
            os.close(entry[0])  # closing the only descriptor drops the flock


class WriteLock:
    """This process's claim to write one run directory; release with :meth:`release` (idempotent)."""

    def __init__(self, run_dir: Path, run_id: str | None = None) -> None:
        self.key = os.path.realpath(run_dir)
        self._finalizer = None
        if fcntl is None:
            return
        with _mutex:
            entry = _held.get(self.key)
            if entry is not None:
                entry[1] += 1
            else:
                path = Path(run_dir) / LOCK_NAME
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise RunLockedError(
                        f"run {run_id or Path(run_dir).name!r} is being written by {_holder(path)}; wait for it "
                        "to finish, or stop that process, then resume the run (the lock goes when its holder exits)"
                    ) from None
                except OSError:  # a filesystem without flock (some network mounts): do without the lock
                    os.close(fd)
                    return
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
                _held[self.key] = [fd, 1]
        self._finalizer = weakref.finalize(self, _release, self.key)

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
