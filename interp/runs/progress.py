"""How far a run has got: ``done`` of ``total`` units (shards of cells, stages, training steps).

A command that writes a run records its progress in the manifest as it goes, through
:meth:`~interp.runs.Run.set_progress`::

    run.set_progress(0, 6, "stages")                          # when the run opens
    run.set_progress(1, 6, "stages", stage="exact resid_pre")  # as each unit of work lands

so every reader (the app's run pages and overview, a notebook, ``RunInfo.progress`` in a listing)
can say how far a run that is still being written has got without knowing which command writes
it. The manifest field is a JSON object::

    {"done": 1, "total": 6, "unit": "stages", "stage": "exact resid_pre", ...}

``stage`` (the last unit finished) is optional, and a command may add numbers of its own (an SAE
run adds ``tokens_per_epoch``). Progress is a display aid, not part of what a run computed: a
malformed progress field reads as no progress (:func:`progress_of` returns None) rather than
making the run unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from interp.runs.errors import ManifestFieldError

PROGRESS_FIELD = "progress"


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` ``unit`` finished, the last of them ``stage`` (when the writer names it)."""

    done: int
    total: int
    unit: str
    stage: str | None = None

    @property
    def fraction(self) -> float:
        """``done / total`` clipped to [0, 1] (0 for a run with nothing to do yet)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total > 0 else 0.0

    def describe(self) -> str:
        """``"2 of 6 stages (last: exact head_z)"``."""
        last = f" (last: {self.stage})" if self.stage else ""
        return f"{self.done} of {self.total} {self.unit}{last}"

    def short(self) -> str:
        """``"2/6 stages"``, for a table cell."""
        return f"{self.done}/{self.total} {self.unit}"


def progress_record(done: int, total: int, unit: str, stage: str | None = None, **extra: Any) -> dict[str, Any]:
    """The manifest's progress object; refuses counts that cannot describe progress."""
    for name, value in (("done", done), ("total", total)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ManifestFieldError(f"progress {name} must be a non-negative int, got {value!r}")
    if done > total:
        raise ManifestFieldError(f"progress done ({done}) exceeds total ({total})")
    if not isinstance(unit, str) or not unit:
        raise ManifestFieldError(f"progress unit must name what is counted (e.g. 'stages'), got {unit!r}")
    return {"done": done, "total": total, "unit": unit, **({"stage": stage} if stage is not None else {}), **extra}


def progress_of(manifest: dict[str, Any]) -> Progress | None:
    """The progress a manifest records, or None when it records none (or none that reads as progress)."""
    value = manifest.get(PROGRESS_FIELD)
    if not isinstance(value, dict):
        return None
    done, total, unit, stage = value.get("done"), value.get("total"), value.get("unit"), value.get("stage")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in (done, total)) or not isinstance(unit, str):
        return None
    return Progress(done=done, total=total, unit=unit, stage=stage if isinstance(stage, str) else None)
