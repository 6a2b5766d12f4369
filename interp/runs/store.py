"""The store: a directory of runs, and the one way the app, notebooks and CLI find, make and resume them.

::

    store = RunStore()                                   # $INTERP_RUNS_DIR, else ./data/runs
    run = store.create("patching", config, model="smollm2-135m", dataset="ioi")
    store.list(kind="patching")                          # [RunInfo, ...], newest first
    store.to_frame()                                     # one row per run, for tables and plots
    run = store.resume(run.id, config)                   # after an interruption; refuses a changed config

Creating a run builds it in a hidden staging directory and renames it into place, so a reader never
sees a run directory without its manifest; deleting renames it out of sight before removing it, so
a reader never sees half of one. Hidden entries (names starting with ``.``) are never runs.

Listing never raises on a bad run: a directory whose manifest is missing, unreadable or malformed
is listed with status ``"corrupt"`` and the reason in ``error``, so one broken directory cannot take
the app's run browser down. Readers take no locks and write nothing, so browsing a sweep while it
runs cannot disturb it.

Resuming compares the config given with the one stored, key by key, and refuses with every
difference named: continuing a sweep under a different config would silently mix two experiments
in one result.
"""

from __future__ import annotations

import difflib
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from interp.runs.atomic import fsync_directory, remove_temporaries, write_error
from interp.runs.errors import (
    ConfigMismatchError,
    CorruptRunError,
    InvalidNameError,
    RunExistsError,
    RunNotFoundError,
    StoreNotFoundError,
)
from interp.runs.jsonvalues import differences, flatten, normalise
from interp.runs.lock import WriteLock
from interp.runs.manifest import CORRUPT, RUNNING, new_manifest, now_iso, read_manifest, write_manifest
from interp.runs.names import check_name, check_run_id, kind_from_run_id, new_run_id
from interp.runs.progress import Progress, progress_of
from interp.runs.run import Run

RUNS_DIR_ENV = "INTERP_RUNS_DIR"
FRAME_COLUMNS = ["id", "kind", "status", "model", "dataset", "created", "finished", "error", "path"]
_LABEL_KEYS = ("name", "id", "path", "repo")


def default_runs_root() -> Path:
    """Where runs live unless told otherwise: ``$INTERP_RUNS_DIR``, else ``./data/runs`` (made absolute)."""
    env = os.environ.get(RUNS_DIR_ENV)
    return (Path(env).expanduser() if env else Path("data") / "runs").absolute()


@dataclass(frozen=True)
class RunInfo:
    """What a listing says about one run, read from its manifest (status ``"corrupt"`` if unreadable)."""

    id: str
    kind: str | None
    status: str
    model: dict[str, Any] | str | None
    dataset: dict[str, Any] | str | None
    created: str | None
    finished: str | None
    summary: dict[str, Any]
    path: Path
    error: str | None
    progress: Progress | None = None


def _info(path: Path) -> RunInfo:
    try:
        m = read_manifest(path)
    except Exception as e:  # noqa: BLE001 - listing never raises: CorruptRunError says why, anything else as it is
        reason = str(e) if isinstance(e, CorruptRunError) else f"cannot read {path}: {type(e).__name__}: {e}"
        return RunInfo(path.name, kind_from_run_id(path.name), CORRUPT, None, None, None, None, {}, path, reason)
    return RunInfo(
        id=m["id"],
        kind=m["kind"],
        status=m["status"],
        model=m.get("model"),
        dataset=m.get("dataset"),
        created=m["created"],
        finished=m.get("finished"),
        summary=m.get("summary") or {},
        path=path,
        error=m.get("error"),
        progress=progress_of(m),
    )


def _sort_time(info: RunInfo) -> float:
    """Seconds since the epoch when the run was created (directory time for corrupt runs)."""
    if info.created:
        try:
            created = datetime.fromisoformat(info.created)
            return (created if created.tzinfo else created.replace(tzinfo=timezone.utc)).timestamp()
        except (TypeError, ValueError):
            pass
    try:
        return info.path.stat().st_mtime
    except OSError:
        return 0.0


def _label(identity: dict[str, Any] | str | None) -> str | None:
    """A model or dataset identity as one readable string for a table cell."""
    if identity is None or isinstance(identity, str):
        return identity
    for key in _LABEL_KEYS:
        if isinstance(identity.get(key), str):
            return identity[key]
    return str(identity)


class RunStore:
    """A directory of runs (created on first use)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_runs_root()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def __contains__(self, run_id: object) -> bool:
        try:
            return (self.root / check_run_id(run_id)).is_dir()  # type: ignore[arg-type]
        except InvalidNameError:
            return False

    def _ids(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:  # no store yet, a file, or unreadable: no runs (see root_problem)
            return []

    def root_problem(self) -> str | None:
        """Why the store's root cannot hold runs (missing, a file, unreadable), or None when it can."""
        if not self.root.exists():
            return f"runs store {self.root} does not exist; check the path (--runs or $INTERP_RUNS_DIR)"
        if not self.root.is_dir():
            return f"runs store {self.root} is a file, not a directory; point --runs at a directory"
        if not os.access(self.root, os.R_OK | os.X_OK):
            return f"runs store {self.root} is not readable; check its permissions"
        return None

    def check_root(self) -> None:
        """Raise :class:`StoreNotFoundError` with :meth:`root_problem`'s reason, if there is one."""
        problem = self.root_problem()
        if problem:
            raise StoreNotFoundError(problem)

    def _not_found(self, run_id: str) -> RunNotFoundError:
        problem = self.root_problem()
        if problem:
            return RunNotFoundError(f"no run {run_id!r}: {problem}")
        ids = self._ids()
        close = [i for i in ids if i.startswith(run_id)][:3] or difflib.get_close_matches(run_id, ids, n=3)
        hint = f"; did you mean {close}?" if close else ""
        count = f"{len(ids)} run{'' if len(ids) == 1 else 's'}"
        return RunNotFoundError(f"no run {run_id!r} in {self.root} ({count} there){hint}")

    def create(
        self,
        kind: str,
        config: dict[str, Any],
        model: dict[str, Any] | str,
        dataset: dict[str, Any] | str | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Start a new run with status ``"running"``; ``run_id`` defaults to ``<kind>-<time>-<hex>``.

        Every value must be JSON (checked before anything is written). An id already in the store is
        refused: resume that run, or delete it first.
        """
        check_name(kind, "kind")
        run_id = check_run_id(run_id) if run_id is not None else new_run_id(kind)
        manifest = new_manifest(run_id, kind, config, model, dataset)
        final = self.root / run_id
        if final.exists():
            raise RunExistsError(f"run {run_id!r} already exists in {self.root}; resume it or delete it first")
        if self.root.exists() and not self.root.is_dir():
            raise write_error(self.root, NotADirectoryError(20, "not a directory"), "create runs in")
        staging = self.root / f".{run_id}.creating-{secrets.token_hex(4)}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
        except OSError as e:
            raise write_error(staging.parent, e, "create runs in") from e
        try:
            write_manifest(staging, manifest)
            os.rename(staging, final)
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            if final.exists():
                raise RunExistsError(f"run {run_id!r} was created by someone else just now in {self.root}") from e
            raise write_error(final, e, "create run") from e
        fsync_directory(self.root)
        return Run(final, lock=WriteLock(final, run_id))

    def list(self, kind: str | None = None) -> list[RunInfo]:
        """Every run (or those of ``kind``), newest first. Never raises on a corrupt run: see the module doc."""
        infos = [_info(self.root / run_id) for run_id in self._ids()]
        if kind is not None:
            infos = [info for info in infos if info.kind == kind]
        return sorted(infos, key=lambda info: (_sort_time(info), info.id), reverse=True)

    def to_frame(self, kind: str | None = None) -> pd.DataFrame:
        """One row per run, newest first: id, kind, status, model, dataset, created, finished, error, path,
        then one ``summary.<key>`` column per summary number (nested dicts flattened with dots).

        ``model`` and ``dataset`` are shown by name (a dict's ``name``/``id``/``path``/``repo``);
        ``created`` and ``finished`` are UTC timestamps.
        """
        rows = []
        for info in self.list(kind):
            row: dict[str, Any] = {
                "id": info.id,
                "kind": info.kind,
                "status": info.status,
                "model": _label(info.model),
                "dataset": _label(info.dataset),
                "created": info.created,
                "finished": info.finished,
                "error": info.error,
                "path": str(info.path),
            }
            if info.summary:
                row.update(flatten(info.summary, "summary"))
            rows.append(row)
        frame = pd.DataFrame(rows, columns=None if rows else FRAME_COLUMNS)
        for column in ("created", "finished"):
            frame[column] = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
        return frame

    def get(self, run_id: str) -> Run:
        """The run ``run_id``.

        Raises :class:`RunNotFoundError` naming close ids, or :class:`CorruptRunError` saying what is broken.
        """
        path = self.root / check_run_id(run_id)
        if not path.is_dir():
            raise self._not_found(run_id)
        read_manifest(path)
        return Run(path)

    def resume(self, run_id: str, config: dict[str, Any]) -> Run:
        """Reopen an interrupted (or failed, or finished) run for writing, after checking its config.

        Raises :class:`ConfigMismatchError` listing each differing key with both values. Otherwise
        removes temporary files left by a killed writer, sets the status back to ``"running"``, and
        appends the time to the manifest's ``resumed`` list. A run another process is writing is refused
        with :class:`~interp.runs.errors.RunLockedError` (see :mod:`interp.runs.lock`).
        """
        run = self.get(run_id)
        lock = WriteLock(run.path, run_id)  # before anything is written: a second writer stops here
        try:
            return self._reopen(run, lock, config)
        except BaseException:
            lock.release()
            raise

    def _reopen(self, run: Run, lock: WriteLock, config: dict[str, Any]) -> Run:
        run_id = run.id
        manifest = run.manifest  # read under the lock: the last writer's final word
        diffs = differences(manifest["config"], normalise(config, "config"))
        if diffs:
            lines = "\n".join(f"  {key}: run has {a!r}, given {b!r}" for key, a, b in diffs)
            raise ConfigMismatchError(
                f"cannot resume run {run_id!r}: the config differs in {len(diffs)} place(s):\n{lines}\n"
                "resume with the run's own config (run.config), or start a new run for the new config"
            )
        run = Run(run.path, lock=lock)
        try:
            remove_temporaries(run.path)
        except OSError as e:
            raise write_error(run.path, e, "clean up") from e
        run.update_manifest(
            status=RUNNING, finished=None, error=None, traceback=None, resumed=[*manifest.get("resumed", []), now_iso()]
        )
        return run

    def delete(self, run_id: str) -> None:
        """Remove a run and everything in it (corrupt runs included)."""
        path = self.root / check_run_id(run_id)
        if not path.is_dir():
            raise self._not_found(run_id)
        doomed = self.root / f".{run_id}.deleting-{secrets.token_hex(4)}"
        os.rename(path, doomed)
        shutil.rmtree(doomed)
