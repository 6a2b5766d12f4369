"""Atomic file writes: a file is either absent, its old version, or its complete new version.

A sweep can die at any instant (Ctrl-C, SIGKILL, out of memory, a pre-empted cluster job), and a
reader (the app, a notebook) may open a run while it is being written. Writing a file in place
would let either of them see half of it. So every write here goes to a temporary file in the *same
directory*, is fsync'ed, and is then moved over the target with :func:`os.replace`, which POSIX and
Windows both perform atomically within one filesystem (the reason the temporary file must not live
in ``/tmp``, which is often another filesystem). The directory is fsync'ed afterwards so that the
rename itself survives a power cut, which also keeps the order of two renames: a shard's
done-marker is never on disk without the payload renamed before it. A reader holding the old file
open keeps reading the old bytes; it never sees a mixture.

Temporary files are named ``.<target>.<pid>-<hex>.tmp``: hidden, unique per writer, and never
matching a real artifact's name, so listings ignore them. A writer that fails removes its own
temporary file; one that is killed leaves it behind, and :func:`remove_temporaries` (called when a
run is resumed) clears those.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

TEMP_SUFFIX = ".tmp"


def temporary_name(target: Path) -> Path:
    """A fresh hidden temporary path next to ``target``."""
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; NTFS journals its renames
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (e.g. certain network mounts) refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "r+b") as f:  # Windows needs write access to flush a file to disk
        os.fsync(f.fileno())


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Have ``write`` create a temporary file (it is given the path), then move it to ``target``.

    The writer gets a path rather than a handle because Parquet and safetensors write best to a
    path (safetensors streams from Rust without building the file in memory). If ``write``, or
    anything up to the rename, raises, the temporary file is removed and ``target`` is left
    exactly as it was. The directory must exist: creating it here would quietly resurrect a run
    that was deleted while something still held it.
    """
    tmp = temporary_name(target)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Atomically replace ``target``'s content by ``data``."""
    atomic_write(target, lambda tmp: tmp.write_bytes(data))


def remove_temporaries(directory: Path) -> list[Path]:
    """Delete temporary files left anywhere under ``directory`` by killed writers; return them."""
    stale = [p for p in directory.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
