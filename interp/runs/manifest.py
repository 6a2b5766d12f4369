"""The manifest: one JSON file per run saying what was run, on what, with which code, and how it went.

``manifest.json`` is the only file a reader needs to list, filter and compare runs, so it holds:

==============  ==============================================================================
``format``      manifest layout version (1), so future readers can tell old runs apart
``id``          the run id, which is also the directory name
``kind``        what produced it (``"patching"``, ``"sae_train"``, ...); the app has a page per kind
``status``      ``"running"``, ``"finished"`` or ``"failed"``
``model``       model identity: a name, or a dict (name, revision, dtype, ...)
``dataset``     dataset identity: a name, a dict, or null
``config``      the full config, exactly what :meth:`RunStore.resume` compares against
``versions``    interp, torch, transformers, python and platform that *created* the run
``created``     when the run was created, ISO-8601 UTC
``finished``    when it ended (finished or failed), ISO-8601 UTC, or null while running
``summary``     headline numbers for listings (a JSON object)
``error``       why it failed (``"Type: message"``, e.g. ``"KeyboardInterrupt"``), or null
``traceback``   the failure's traceback, or null (absent until a run first fails or finishes)
``progress``    how far the writer has got, ``{"done", "total", "unit", "stage"}``
                (:mod:`interp.runs.progress`; absent until the writer first records it)
==============  ==============================================================================

A manifest is rewritten whole and atomically on every change (see :mod:`interp.runs.atomic`), so a
reader always sees a complete one. Reading validates the layout and raises
:class:`~interp.runs.errors.CorruptRunError` with the reason, which listings turn into a row with
status ``"corrupt"`` instead of an exception.
"""

from __future__ import annotations

import functools
import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from interp.runs.atomic import atomic_write_bytes
from interp.runs.errors import CorruptRunError, NotSerializableError
from interp.runs.jsonvalues import dumps, normalise

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CORRUPT = "corrupt"  # only ever reported by listings, never written
STATUSES = (RUNNING, FINISHED, FAILED)

REQUIRED_FIELDS = ("id", "kind", "status", "config", "created")


def now_iso() -> str:
    """The current time as ISO-8601 UTC with microseconds (so runs created in one second still sort)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


@functools.cache
def versions() -> dict[str, str]:
    """Versions of the code that produced a run (read from package metadata: importing nothing new)."""
    return {
        "interp": _package_version("interp"),
        "torch": torch.__version__,
        "transformers": _package_version("transformers"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def new_manifest(
    run_id: str,
    kind: str,
    config: dict[str, Any],
    model: dict[str, Any] | str,
    dataset: dict[str, Any] | str | None,
) -> dict[str, Any]:
    """A fresh manifest with status ``"running"``; raises if any value is not JSON."""
    if not isinstance(config, dict):
        raise NotSerializableError(f"config must be a dict, got {type(config).__name__}")
    if not isinstance(model, (dict, str)):
        raise NotSerializableError(f"model must be a name or a dict describing it, got {type(model).__name__}")
    if dataset is not None and not isinstance(dataset, (dict, str)):
        raise NotSerializableError(
            f"dataset must be a name, a dict describing it, or None, got {type(dataset).__name__}"
        )
    return {
        "format": FORMAT_VERSION,
        "id": run_id,
        "kind": kind,
        "status": RUNNING,
        "model": normalise(model, "model"),
        "dataset": normalise(dataset, "dataset"),
        "config": normalise(config, "config"),
        "versions": versions(),
        "created": now_iso(),
        "finished": None,
        "summary": {},
        "error": None,
    }


_IDENTITY = (dict, str, type(None))
# field -> the JSON types it may hold (None: null); fields absent from a manifest are not checked
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "format": (int,),
    "id": (str,),
    "kind": (str,),
    "status": (str,),
    "model": _IDENTITY,
    "dataset": _IDENTITY,
    "config": (dict,),
    "versions": (dict, type(None)),
    "created": (str,),
    "finished": (str, type(None)),
    "summary": (dict, type(None)),
    "error": (str, type(None)),
    "traceback": (str, type(None)),
    "resumed": (list,),
}
_JSON_TYPE_NAMES = {dict: "an object", str: "a string", int: "an integer", list: "a list", type(None): "null"}


def _field_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's field types or values, or None."""
    for field, types in _FIELD_TYPES.items():
        if field not in manifest:
            continue
        value = manifest[field]
        if isinstance(value, bool) or not isinstance(value, types):  # bool is an int to Python, not to JSON
            wanted = " or ".join(_JSON_TYPE_NAMES[t] for t in types)
            return f"{field}={value!r:.80}, not {wanted}"
    if manifest["status"] not in STATUSES:
        return f"status {manifest['status']!r}, not one of {list(STATUSES)}"
    for field in ("created", "finished"):
        if isinstance(manifest.get(field), str):
            try:
                datetime.fromisoformat(manifest[field])
            except ValueError:
                return f"{field}={manifest[field]!r:.80}, not an ISO-8601 time"
    return None


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """Read and validate ``run_dir``'s manifest; :class:`CorruptRunError` says what is wrong."""
    path = run_dir / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CorruptRunError(f"run directory {run_dir} has no {MANIFEST_NAME}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptRunError(f"cannot read {path}: {type(e).__name__}: {e}") from None
    if not isinstance(manifest, dict):
        raise CorruptRunError(f"{path} holds a JSON {type(manifest).__name__}, not an object")
    missing = [field for field in REQUIRED_FIELDS if field not in manifest]
    if missing:
        raise CorruptRunError(f"{path} lacks the field(s) {missing}")
    problem = _field_problem(manifest)
    if problem:
        raise CorruptRunError(f"{path} has {problem}; fix or delete that run (interp reads no other field types)")
    if manifest["id"] != run_dir.name:
        raise CorruptRunError(
            f"{path} says id {manifest['id']!r} but lies in directory {run_dir.name!r} "
            "(was the directory renamed? rename it back, or edit the id to match)"
        )
    return manifest


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomically (re)write ``run_dir``'s manifest."""
    atomic_write_bytes(run_dir / MANIFEST_NAME, dumps(manifest))
