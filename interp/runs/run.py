"""A run: one directory holding a manifest and the tables, tensors, JSON values and shards it produced.

::

    run = store.create("patching", config, model="smollm2-135m", dataset="ioi")
    for i in range(n_shards):
        if i in run.finished_shards("cells"):
            continue                           # done before an interruption
        run.write_shard("cells", i, tensors={"effect": effect}, frame=rows)
    effects = [t["effect"] for _, t, _ in run.read_shards("cells")]
    run.write_table("results", frame)
    run.finish(summary={"max_effect": 0.93})

Files are named after what they hold: ``<name>.parquet`` (:meth:`Run.write_table`),
``<name>.safetensors`` (:meth:`Run.write_tensors`), ``<name>.json`` (:meth:`Run.write_json`) and
``shards/<group>/`` (:meth:`Run.write_shard`, see :mod:`interp.runs.shards`). Names are checked
identifiers (:mod:`interp.runs.names`), every write is atomic (:mod:`interp.runs.atomic`), and
nothing is cached: each property reads the manifest afresh, so a :class:`Run` opened by a reader
(the app, a notebook) sees a running sweep's progress and never writes anything itself.

A run has one writer at a time. Used as a context manager, a run finishes when the block ends and
records the exception (with its traceback) as a failure when it raises.
"""

from __future__ import annotations

import difflib
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import torch

from interp.runs import formats, shards
from interp.runs.errors import ArtifactNotFoundError, InvalidNameError, ManifestFieldError
from interp.runs.jsonvalues import normalise
from interp.runs.manifest import FAILED, FINISHED, RUNNING, STATUSES, now_iso, read_manifest, write_manifest
from interp.runs.names import RESERVED_JSON_NAMES, check_name
from interp.runs.progress import PROGRESS_FIELD, Progress, progress_of, progress_record

# Fields that identify a run or its layout; update_manifest refuses to change them.
FROZEN_FIELDS = frozenset({"id", "format"})


def failure_reason(error: BaseException) -> str:
    """``"Type: message"``, or just ``"Type"`` for an exception without a message (``KeyboardInterrupt``)."""
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class Run:
    """One run directory. Open runs with :class:`~interp.runs.RunStore`, or directly from a path."""

    def __init__(self, path: str | Path, lock: Any = None) -> None:
        self.path = Path(path)
        self._lock = lock  # the write lock of a run opened for writing (interp.runs.lock); None for readers

    def release(self) -> None:
        """Give up this process's write lock on the run, if it holds one (the run stays as it is)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    # ----------------------------------------------------------------- manifest

    @property
    def id(self) -> str:
        """The run id (the directory name)."""
        return self.path.name

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest, read fresh from disk (raises CorruptRunError if it is unreadable)."""
        return read_manifest(self.path)

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def status(self) -> str:
        """``"running"``, ``"finished"`` or ``"failed"``."""
        return self.manifest["status"]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    def update_manifest(self, **fields: Any) -> None:
        """Set top-level manifest fields (e.g. ``summary=...``, or new ones like ``progress=...``).

        Values must be JSON; ``id`` and ``format`` cannot change, and ``status`` must be one of
        ``"running"``, ``"finished"``, ``"failed"``. The manifest is rewritten atomically.
        """
        frozen = sorted(FROZEN_FIELDS & fields.keys())
        if frozen:
            raise ManifestFieldError(f"manifest field(s) {frozen} cannot be changed; they are fixed when the run is created")
        if "status" in fields and fields["status"] not in STATUSES:
            raise ManifestFieldError(f"status must be one of {list(STATUSES)}, got {fields['status']!r}")
        updates = {key: normalise(value, f"manifest[{key!r}]") for key, value in fields.items()}
        manifest = self.manifest
        manifest.update(updates)
        write_manifest(self.path, manifest)

    def set_progress(self, done: int, total: int, unit: str, stage: str | None = None, **extra: Any) -> None:
        """Record that ``done`` of ``total`` ``unit`` are finished, the last being ``stage`` (see
        :mod:`interp.runs.progress`); readers show it while the run is being written."""
        self.update_manifest(**{PROGRESS_FIELD: progress_record(done, total, unit, stage, **extra)})

    @property
    def progress(self) -> Progress | None:
        """The progress the writer last recorded, or None."""
        return progress_of(self.manifest)

    def finish(self, summary: dict[str, Any] | None = None) -> None:
        """Mark the run finished now; ``summary`` entries are merged into the manifest's summary."""
        merged = {**self.manifest.get("summary", {}), **(summary or {})}
        self.update_manifest(status=FINISHED, finished=now_iso(), summary=merged, error=None, traceback=None)

    def fail(self, error: str | BaseException) -> None:
        """Mark the run failed now with ``error`` as the reason; an exception is recorded as
        ``"Type: message"`` (just ``"Type"`` when it has no message) with its traceback in ``traceback``."""
        if isinstance(error, BaseException):
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
            self.update_manifest(status=FAILED, finished=now_iso(), error=failure_reason(error), traceback=trace)
        else:
            self.update_manifest(status=FAILED, finished=now_iso(), error=error, traceback=None)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is not None:
                self.fail(exc)
            elif self.status == RUNNING:
                self.finish()
        finally:
            self.release()

    # ----------------------------------------------------------------- artifacts

    def _artifact(self, name: str, what: str, suffix: str) -> Path:
        return self.path / f"{check_name(name, what)}{suffix}"

    def _names(self, suffix: str) -> list[str]:
        return sorted(p.name[: -len(suffix)] for p in self.path.glob(f"[!.]*{suffix}") if p.is_file())

    def _missing(self, name: str, what: str, have: list[str]) -> ArtifactNotFoundError:
        close = difflib.get_close_matches(name, have, n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        return ArtifactNotFoundError(f"run {self.id!r} has no {what} {name!r} (it has: {have or 'none'}){hint}")

    def tables(self) -> list[str]:
        """Names of the run's tables."""
        return self._names(formats.TABLE_SUFFIX)

    def tensor_files(self) -> list[str]:
        """Names of the run's tensor files."""
        return self._names(formats.TENSORS_SUFFIX)

    def json_files(self) -> list[str]:
        """Names of the run's JSON values (the manifest excluded)."""
        return [n for n in self._names(formats.JSON_SUFFIX) if n not in RESERVED_JSON_NAMES]

    def write_table(self, name: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as ``<name>.parquet`` (atomically; replaces a table of that name)."""
        formats.write_table(self._artifact(name, "table", formats.TABLE_SUFFIX), frame)

    def read_table(self, name: str) -> pd.DataFrame:
        path = self._artifact(name, "table", formats.TABLE_SUFFIX)
        if not path.is_file():
            raise self._missing(name, "table", self.tables())
        return formats.read_table(path)

    def write_tensors(
        self, name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
    ) -> None:
        """Write ``tensors`` as ``<name>.safetensors`` (atomically), with optional string metadata."""
        formats.write_tensors(self._artifact(name, "tensor file", formats.TENSORS_SUFFIX), tensors, metadata)

    def read_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of ``<name>.safetensors``, on CPU, exactly as written."""
        return formats.read_tensors(self._existing_tensors(name))

    def read_tensor_metadata(self, name: str) -> dict[str, str]:
        """The metadata written with ``<name>.safetensors``."""
        return formats.read_tensor_metadata(self._existing_tensors(name))

    def _existing_tensors(self, name: str) -> Path:
        path = self._artifact(name, "tensor file", formats.TENSORS_SUFFIX)
        if not path.is_file():
            raise self._missing(name, "tensor file", self.tensor_files())
        return path

    def _json_path(self, name: str) -> Path:
        if name in RESERVED_JSON_NAMES:
            raise InvalidNameError(f"JSON name {name!r} is reserved by the run; use update_manifest to edit it")
        return self._artifact(name, "JSON", formats.JSON_SUFFIX)

    def write_json(self, name: str, obj: Any) -> None:
        """Write a JSON value as ``<name>.json`` (atomically; refuses values JSON cannot hold)."""
        formats.write_json(self._json_path(name), obj, name)

    def read_json(self, name: str) -> Any:
        path = self._json_path(name)
        if not path.is_file():
            raise self._missing(name, "JSON file", self.json_files())
        return formats.read_json(path)

    # ----------------------------------------------------------------- shards

    def _shard_dir(self, group: str) -> Path:
        return self.path / shards.SHARDS_DIR / check_name(group, "shard group")

    def shard_groups(self) -> list[str]:
        """Names of the shard groups the run has."""
        root = self.path / shards.SHARDS_DIR
        return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []

    def write_shard(
        self,
        group: str,
        index: int,
        tensors: dict[str, torch.Tensor] | None = None,
        frame: pd.DataFrame | None = None,
    ) -> None:
        """Write shard ``index`` of ``group``; it counts as finished only once fully written."""
        shards.write_shard(self._shard_dir(group), index, tensors, frame)

    def finished_shards(self, group: str) -> list[int]:
        """Indices of ``group``'s finished shards, sorted ([] for a group never written)."""
        return shards.finished_indices(self._shard_dir(group))

    def read_shard(self, group: str, index: int) -> tuple[dict[str, torch.Tensor], pd.DataFrame | None]:
        """The tensors ({} if none) and table (None if none) of one finished shard."""
        return shards.read_shard(self._shard_dir(group), index)

    def read_shards(self, group: str) -> list[tuple[int, dict[str, torch.Tensor], pd.DataFrame | None]]:
        """``(index, tensors, frame)`` for every finished shard of ``group``, by index.

        A damaged shard raises :class:`~interp.runs.errors.DamagedShardError` (resume the run to recompute
        it) rather than being skipped or read with NaN in it.
        """
        return [(i, *self.read_shard(group, i)) for i in shards.marked_indices(self._shard_dir(group))]
