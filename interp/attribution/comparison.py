"""A stored comparison of attribution methods with exact patching, readable on its own.

:class:`Comparison` holds the exact sweeps, each method's estimates and the agreement table that
:func:`interp.attribution.compare.compare` computes. :func:`save_comparison` writes it as a run of
kind ``"attribution"`` (exact and estimated results as safetensors + JSON, the agreement table and the
recall-against-cost curves of :mod:`interp.attribution.recall` as Parquet) and
:func:`load_comparison` reads it back. Reading imports no attribution method, no model code and no
statistics or plotting library: only the result types and the results store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from interp.attribution.result import AttributionResult
from interp.patching import PatchingResult, load_result, save_result
from interp.runs import Run, RunStore


@dataclass
class Comparison:
    """Exact sweeps, approximations and their agreement (see the module docstring)."""

    exact: dict[str, PatchingResult]
    estimates: dict[str, dict[str, AttributionResult]]
    table: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    recall: pd.DataFrame | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per (component, method): correlations, recall, sign agreement, costs."""
        return self.table.copy()

    def pearson(self) -> pd.DataFrame:
        """Pearson r as a component x method table."""
        return self.table.pivot(index="component", columns="method", values="pearson")


def _slug(method: str) -> str:
    return method.replace("*", "_star").replace("+", "_")


def save_comparison(comparison: Comparison, run: Run) -> None:
    """Write a comparison into ``run``: exact and estimated results, the table, an index of names."""
    index: dict[str, Any] = {"exact": {}, "estimates": {}}
    for sweep, result in comparison.exact.items():
        index["exact"][sweep] = f"exact_{sweep}"
        save_result(run, index["exact"][sweep], result)
    for method, results in comparison.estimates.items():
        index["estimates"][method] = {}
        for sweep, result in results.items():
            name = f"{_slug(method)}_{sweep}"
            index["estimates"][method][sweep] = name
            save_result(run, name, result)
    run.write_table("comparison", comparison.table)
    if comparison.recall is not None:
        run.write_table("recall", comparison.recall)
    run.write_json("comparison", {"meta": comparison.meta, "results": index})


def summary(comparison: Comparison) -> dict[str, Any]:
    """Pearson r per component and method, for a run manifest."""
    return {
        f"{row.component}/{row.method}": None if math.isnan(row.pearson) else round(float(row.pearson), 4)
        for row in comparison.table.itertuples()
    }


def record(comparison: Comparison, store: RunStore, config: dict[str, Any], task: Any) -> Run:
    """Create a finished run of kind ``"attribution"`` holding ``comparison``."""
    run = store.create(
        kind="attribution",
        config=config,
        model={"name": comparison.meta["model"]},
        dataset={"name": comparison.meta["task"], "examples": comparison.meta["examples"]},
    )
    try:
        run.write_table("task", task.to_frame())
        save_comparison(comparison, run)
        run.finish(summary(comparison))
    except BaseException as error:
        run.fail(f"{type(error).__name__}: {error}")
        raise
    finally:
        run.release()  # written: another process may now resume or rewrite it
    return run


def load_comparison(run: Run) -> Comparison:
    """Read back a comparison written by :func:`save_comparison`."""
    info = run.read_json("comparison")
    index = info["results"]
    exact = {sweep: load_result(run, name) for sweep, name in index["exact"].items()}
    estimates = {
        method: {
            sweep: AttributionResult.from_parts(run.read_json(name), run.read_tensors(name))
            for sweep, name in names.items()
        }
        for method, names in index["estimates"].items()
    }
    recall = run.read_table("recall") if "recall" in run.tables() else None
    return Comparison(exact=exact, estimates=estimates, table=run.read_table("comparison"), meta=info["meta"],
                      recall=recall)
