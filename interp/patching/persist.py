"""Patching results in the results store: tensors as safetensors, the description as JSON, and a
per-cell summary as Parquet, all under one name inside a run."""

from __future__ import annotations

from interp.patching.result import PatchingResult
from interp.runs import Run

RESULTS_INDEX = "results"


def save_result(run: Run, name: str, result: PatchingResult) -> None:
    """Write ``result`` into ``run`` under ``name`` and list it in the run's results index."""
    run.write_tensors(name, result.tensors())
    run.write_table(f"{name}_summary", result.summary_frame())
    run.write_json(name, result.describe())
    names = result_names(run)
    if name not in names:
        run.write_json(RESULTS_INDEX, [*names, name])


def result_names(run: Run) -> list[str]:
    """Names of the patching results stored in ``run``, in the order they were written."""
    return list(run.read_json(RESULTS_INDEX)) if RESULTS_INDEX in run.json_files() else []


def load_result(run: Run, name: str) -> PatchingResult:
    """Read a result written by :func:`save_result`."""
    return PatchingResult.from_parts(run.read_json(name), run.read_tensors(name))
