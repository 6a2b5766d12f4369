"""The on-disk cache: one directory per key holding raw memory-mapped arrays and a ``meta.json``.

Layout of ``<root>/<digest>/`` (the digest of the key, see :mod:`interp.activations.keys`):

* ``acts.bin``: the selected vectors, ``(n_vectors, *site_shape)``, in the key's dtype (float16
  by default), raw little-endian values read with :class:`numpy.memmap`;
* ``grads.bin``: the same for LM-loss gradients, when the key asks for them;
* ``meta.json``: the full key, the shape, the dtype, ``n_rows`` (prompts) and ``rows_done``.

Nothing is pickled. **Atomicity**: a cache is built in a hidden sibling directory
``.<digest>.partial/`` and becomes visible under ``<digest>/`` only by a rename once every row is
written and flushed, so a reader either finds a complete cache or none: a crash, a kill or an
exception while writing leaves at most the partial directory, which is never read as a cache.
The partial directory is also what makes a long build resumable: rows are written in prompt order,
the array is flushed, and only then is ``rows_done`` advanced in ``meta.json`` (itself replaced
atomically), so every row below ``rows_done`` holds its final values and a later build continues
from there. One writer per key at a time: two processes building the same key concurrently are
not coordinated.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from interp.activations.errors import ActivationCacheError
from interp.runs.atomic import atomic_write_bytes, fsync_directory

ACTS, GRADS, META = "acts.bin", "grads.bin", "meta.json"


def _write_meta(directory: Path, meta: dict) -> None:
    atomic_write_bytes(directory / META, json.dumps(meta, indent=2).encode())


def _read_meta(directory: Path, key: dict) -> dict:
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ActivationCacheError(f"activation cache {directory} has no readable meta.json ({error}); delete the directory") from None
    if meta.get("key") != key:
        raise ActivationCacheError(f"activation cache {directory} holds another key than its name says; delete the directory")
    return meta


class CacheEntry:
    """A complete cache: read-only views of its arrays (copy-on-write: edits never reach the disk)."""

    def __init__(self, directory: Path, meta: dict) -> None:
        self.directory = directory
        self.meta = meta
        shape = tuple(meta["shape"])
        self.acts = np.memmap(directory / ACTS, dtype=meta["dtype"], mode="c", shape=shape)
        self.grads = np.memmap(directory / GRADS, dtype=meta["dtype"], mode="c", shape=shape) if meta["key"]["grads"] else None

    @classmethod
    def find(cls, root: Path, digest: str, key: dict) -> CacheEntry | None:
        """The complete cache of ``key`` under ``root``, or None when there is none."""
        directory = root / digest
        if not directory.is_dir():
            return None
        return cls(directory, _read_meta(directory, key))


class CacheWriter:
    """Builds one key's cache in its partial directory, resuming a previous build of the same key."""

    def __init__(self, root: Path, digest: str, key: dict, shape: tuple[int, ...], n_rows: int) -> None:
        self.final = root / digest
        self.directory = root / f".{digest}.partial"
        meta = {"key": key, "shape": list(shape), "dtype": key["dtype"], "n_rows": n_rows, "rows_done": 0}
        if (self.directory / META).is_file():
            old = _read_meta(self.directory, key)
            if old["shape"] == meta["shape"] and old["n_rows"] == n_rows:
                meta = old
            else:
                shutil.rmtree(self.directory)
        if meta["rows_done"] == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            for name in [ACTS] + ([GRADS] if key["grads"] else []):
                np.memmap(self.directory / name, dtype=key["dtype"], mode="w+", shape=shape).flush()
            _write_meta(self.directory, meta)
        self.meta = meta
        self.acts = np.memmap(self.directory / ACTS, dtype=key["dtype"], mode="r+", shape=shape)
        self.grads = np.memmap(self.directory / GRADS, dtype=key["dtype"], mode="r+", shape=shape) if key["grads"] else None

    @property
    def rows_done(self) -> int:
        return int(self.meta["rows_done"])

    def write(self, rows_stop: int, vec_start: int, acts: np.ndarray, grads: np.ndarray | None) -> None:
        """Store vectors from ``vec_start`` and record every prompt below ``rows_stop`` as done."""
        stop = vec_start + acts.shape[0]
        self.acts[vec_start:stop] = acts
        self.acts.flush()
        if self.grads is not None and grads is not None:
            self.grads[vec_start:stop] = grads
            self.grads.flush()
        if rows_stop > self.rows_done:
            self.meta["rows_done"] = rows_stop
            _write_meta(self.directory, self.meta)

    def commit(self) -> CacheEntry:
        """Make the finished cache visible under its final name (one rename) and open it."""
        if self.rows_done != self.meta["n_rows"]:
            raise ActivationCacheError(f"cache {self.directory} is incomplete ({self.rows_done}/{self.meta['n_rows']} rows)")
        for array in (self.acts, self.grads):
            if array is not None:
                array.flush()
                with open(array.filename, "r+b") as f:
                    os.fsync(f.fileno())
        del self.acts, self.grads
        try:
            os.replace(self.directory, self.final)
        except OSError:  # another writer committed the same key first: keep theirs
            if not self.final.is_dir():
                raise
            shutil.rmtree(self.directory, ignore_errors=True)
        fsync_directory(self.final.parent)
        return CacheEntry(self.final, self.meta)
