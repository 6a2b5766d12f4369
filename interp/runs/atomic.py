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

import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from interp.runs.errors import StoreWriteError

TEMP_SUFFIX = ".tmp"

_HINTS = {
    errno.ENOSPC: "the disk is full: free some space, then resume the run (--resume)",
    errno.EDQUOT: "the disk quota is exceeded: free some space, then resume the run (--resume)",
    errno.EROFS: "the filesystem is read-only: choose a writable store with --runs or $INTERP_RUNS_DIR",
    errno.EACCES: "permission denied: choose a writable store with --runs or $INTERP_RUNS_DIR",
    errno.EPERM: "permission denied: choose a writable store with --runs or $INTERP_RUNS_DIR",
    errno.ENOTDIR: "a file stands where a directory should be: point --runs at a directory",
    errno.EEXIST: "a file stands where a directory should be: point --runs at a directory",
}


def write_error(path: Path, error: OSError, doing: str = "write") -> StoreWriteError:
    """A :class:`StoreWriteError` for ``error`` (raised doing ``doing`` to ``path``) that names both and the fix."""
    if isinstance(error, StoreWriteError):
        return error
    reason = error.strerror or str(error) or type(error).__name__
    hint = _HINTS.get(error.errno or 0, "check that the store's disk is writable and has space")
    failure = StoreWriteError(f"cannot {doing} {path}: {reason} (errno {error.errno}); {hint}")
    failure.errno = error.errno
    return failure


def file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0o644 under umask 022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it (and put it straight back)
    os.umask(mask)
    return 0o666 & ~mask


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
    exactly as it was; an :class:`OSError` (a full disk, a read-only store) is raised as a
    :class:`~interp.runs.errors.StoreWriteError` naming ``target`` and the fix. The file gets the mode
    a plain ``open()`` would give it (0o666 less the umask). The directory must exist: creating it here would quietly resurrect a run
    that was deleted while something still held it.
    """
    tmp = temporary_name(target)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())  # some writers (safetensors) create 0600 files; give all the same mode
        _fsync_file(tmp)
        os.replace(tmp, target)
    except FileNotFoundError:  # the directory is gone (a deleted run): not a disk problem, say it as it is
        tmp.unlink(missing_ok=True)
        raise
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise write_error(target, error) from error
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
