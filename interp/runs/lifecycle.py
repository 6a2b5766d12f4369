"""The life of a run that a command writes: open it (new or resumed), work, and record how it ended.

::

    with lifecycle(store, "patching", config, model=identity, dataset=data, resume=resume) as run:
        for index, shard in enumerate(shards):
            if index in run.finished_shards("cells"):
                continue                                # written before an interruption
            run.write_shard("cells", index, tensors=compute(shard))
        run.finish(summary)

``resume`` means the same for every command (the CLI's ``--resume RUN``):

* ``None``: start a new run;
* ``"latest"``: continue the newest unfinished run of this kind whose stored config equals
  ``config``;
* a run id: continue that run (its kind and config must match).

A continued run picks up from its last finished shard: the work it already wrote (patching cell
shards, attribution stages, SAE training checkpoints) is read back, not recomputed, and the result
equals an uninterrupted run's.

Any exception that leaves the block, ``KeyboardInterrupt`` (Ctrl-C) and ``SystemExit`` included,
marks the run failed (where the manifest can still be written: on a full disk it may not) with :func:`~interp.runs.run.failure_reason` (the exception's type and message) as its
manifest's ``error`` and the traceback as ``traceback``, then propagates. A block that ends without
calling :meth:`~interp.runs.Run.finish` leaves the run ``running``, to be continued later.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from interp.runs.errors import ConfigMismatchError, CorruptRunError, RunNotFoundError, UnreadableRunWarning
from interp.runs.jsonvalues import differences, normalise
from interp.runs.manifest import CORRUPT, FINISHED
from interp.runs.run import Run
from interp.runs.store import RunStore

LATEST = "latest"


def latest_matching(store: RunStore, kind: str, config: dict[str, Any]) -> str:
    """The id of the newest unfinished run of ``kind`` whose config equals ``config``.

    Runs whose manifest cannot be read are skipped, with an :class:`UnreadableRunWarning` naming them
    (and named again in the error if no run matches): one broken run must not block every resume.
    """
    wanted = normalise(config, "config")
    infos = store.list(kind=kind)
    unreadable = [info for info in infos if info.status == CORRUPT]
    candidates = [info for info in infos if info.status not in (FINISHED, CORRUPT)]
    found = None
    for info in candidates:
        try:
            stored = store.get(info.id).config
        except (CorruptRunError, RunNotFoundError) as e:  # broken or deleted since the listing
            unreadable.append(type(info)(**{**info.__dict__, "status": CORRUPT, "error": str(e)}))
            continue
        if not differences(stored, wanted):
            found = info.id
            break
    skipped = "; ".join(f"{info.id} ({info.error})" for info in unreadable)
    if unreadable:
        warnings.warn(
            f"skipped {len(unreadable)} unreadable {kind} run(s) while looking for one to resume: {skipped}",
            UnreadableRunWarning,
            stacklevel=3,
        )
    if found is not None:
        return found
    problem = store.root_problem()
    where = problem if problem else f"in {store.root}"
    note = f"; skipped {len(unreadable)} unreadable run(s): {skipped}" if unreadable else ""
    raise RunNotFoundError(
        f"no unfinished {kind} run with this config {where} ({len(candidates)} unfinished {kind} run(s) "
        f"with other configs{note}); run without --resume to start one, or pass the id of the run to continue"
    )


def open_run(
    store: RunStore,
    kind: str,
    config: dict[str, Any],
    *,
    model: dict[str, Any] | str,
    dataset: dict[str, Any] | str | None = None,
    resume: str | None = None,
) -> Run:
    """A new run, or the run ``resume`` names reopened for writing (see the module docstring)."""
    if resume is None:
        return store.create(kind, config, model=model, dataset=dataset)
    run_id = latest_matching(store, kind, config) if resume == LATEST else resume
    found = store.get(run_id).kind
    if found != kind:
        raise ConfigMismatchError(f"run {run_id!r} is a {found} run, not a {kind} run; resume it with its own command")
    return store.resume(run_id, config)


@contextmanager
def lifecycle(
    store: RunStore,
    kind: str,
    config: dict[str, Any],
    *,
    model: dict[str, Any] | str,
    dataset: dict[str, Any] | str | None = None,
    resume: str | None = None,
) -> Iterator[Run]:
    """Open a run with :func:`open_run` and mark it failed if anything escapes the block."""
    run = open_run(store, kind, config, model=model, dataset=dataset, resume=resume)
    try:
        yield run
    except BaseException as error:
        try:
            run.fail(error)
        except OSError as unrecorded:  # e.g. the disk is still full: the original error matters more
            error.add_note(f"(the failure could not be recorded in {run.path}: {unrecorded})")
        raise
    finally:
        run.release()
