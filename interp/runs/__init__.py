"""The results store: every method's results, on disk, in one layout that everything reads the same way.

A *run* is a directory ``<root>/<run-id>/`` holding ``manifest.json`` (what was run, on which model
and data, with which config and code versions, its status and summary numbers) plus tables as
Parquet, tensors as safetensors, JSON values, and numbered shards for resumable sweeps. The root is
``$INTERP_RUNS_DIR``, else ``./data/runs``. The app, the notebooks and the CLI read runs only
through this package.

Three promises hold whatever happens to the writing process:

- every write is atomic (temporary file in the same directory, then :func:`os.replace`), so a
  reader sees a file whole or not at all (:mod:`interp.runs.atomic`);
- a shard counts as finished only once all of it is on disk, so a sweep killed at any instant
  resumes from its last finished shard and gives the same numbers as an uninterrupted one
  (:mod:`interp.runs.shards`);
- nothing is ever unpickled: JSON, Parquet and safetensors only (:mod:`interp.runs.formats`).

Modules: :mod:`~interp.runs.store` (find, create, list, resume, delete runs),
:mod:`~interp.runs.run` (one run's files), :mod:`~interp.runs.lifecycle` (open or resume a run
and record how it ended; every command that writes a run goes through it),
:mod:`~interp.runs.manifest`, :mod:`~interp.runs.progress` (how far a run has got), :mod:`~interp.runs.shards`, :mod:`~interp.runs.formats`, :mod:`~interp.runs.atomic`, :mod:`~interp.runs.names`,
:mod:`~interp.runs.lock` (one writer per run),
:mod:`~interp.runs.jsonvalues`, :mod:`~interp.runs.errors`.
"""

from interp.runs.errors import (
    ArtifactNotFoundError,
    ConfigMismatchError,
    CorruptRunError,
    DamagedShardError,
    DamagedShardWarning,
    InvalidNameError,
    NotSerializableError,
    RunExistsError,
    RunLockedError,
    RunNotFoundError,
    StoreNotFoundError,
    StoreWriteError,
    UnreadableRunWarning,
)
from interp.runs.lifecycle import LATEST, lifecycle, open_run
from interp.runs.manifest import CORRUPT, FAILED, FINISHED, RUNNING
from interp.runs.progress import Progress
from interp.runs.run import Run
from interp.runs.store import RunInfo, RunStore, default_runs_root

__all__ = [
    "CORRUPT",
    "FAILED",
    "FINISHED",
    "LATEST",
    "RUNNING",
    "ArtifactNotFoundError",
    "ConfigMismatchError",
    "CorruptRunError",
    "DamagedShardError",
    "DamagedShardWarning",
    "InvalidNameError",
    "NotSerializableError",
    "Progress",
    "Run",
    "RunExistsError",
    "RunInfo",
    "RunLockedError",
    "RunNotFoundError",
    "RunStore",
    "StoreNotFoundError",
    "StoreWriteError",
    "UnreadableRunWarning",
    "default_runs_root",
    "lifecycle",
    "open_run",
]
