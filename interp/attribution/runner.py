"""Running an attribution config into the results store, one resumable stage at a time.

The stages are each component type's exact sweep, then each method over every component type.
After each stage the comparison so far is written into the run (:func:`save_comparison`), whose
index is written last, so a run interrupted at any point continues from its last finished stage
(see :mod:`interp.runs.lifecycle`) and ends with the same results as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from interp.attribution.compare import compare
from interp.attribution.comparison import Comparison, load_comparison, save_comparison, summary
from interp.attribution.config import AttributionConfig
from interp.attribution.recall import recall_table
from interp.cells import SweepRequest
from interp.config import DTYPES
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.tasks.config import build_task

KIND = "attribution"
INDEX = "comparison"


def stages(config: AttributionConfig) -> int:
    """Number of progress stages: one exact sweep per component type, one pass set per method."""
    return len(config.sweeps) + len(config.methods)


def _joined(tables: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _ordered(table: pd.DataFrame, config: AttributionConfig) -> pd.DataFrame:
    """Rows by component type, then method, in the config's order."""
    components = {s.sweep: i for i, s in enumerate(config.sweeps)}
    methods = {m: i for i, m in enumerate(config.methods)}
    key = table["component"].map(components) * len(methods) + table["method"].map(methods)
    return table.iloc[key.argsort(kind="stable")].reset_index(drop=True)


def run_attribution(
    config: AttributionConfig,
    store: RunStore,
    progress: Callable[[str], None] | None = None,
    resume: str | None = None,
) -> tuple[Run, Comparison]:
    """Execute ``config``: exact sweeps and every method, recorded as a run of kind ``"attribution"``.

    ``resume`` continues a run from its last finished stage; ``progress`` is called with each
    stage's name as it finishes (or is found finished), and the run's manifest records how many of
    the :func:`stages` are finished (:meth:`~interp.runs.Run.set_progress`), so a reader such as the
    app can show a run still being written.
    """
    torch.manual_seed(0)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    task = build_task(model, config.task)
    report = progress or (lambda stage: None)
    dataset = {"name": task.name, "examples": len(task)}
    requests = list(config.sweeps)
    with lifecycle(store, KIND, config.model_dump(), model={"name": model.name}, dataset=dataset, resume=resume) as run:
        run.write_table("task", task.to_frame())
        done = load_comparison(run) if INDEX in run.json_files() else None
        exact = dict(done.exact) if done else {}
        estimates = dict(done.estimates) if done else {}
        tables = [done.table] if done and len(done.table) else []
        meta = done.meta if done else {}

        def stage(sweeps: list[SweepRequest], methods: list[str]) -> dict[str, Any]:
            part = compare(model, task, sweeps, methods, config.metric, config.direction, config.top_k,
                           config.options(), exact=exact)
            exact.update(part.exact)
            estimates.update(part.estimates)
            tables.extend([part.table] if len(part.table) else [])
            save_comparison(Comparison(exact, estimates, _joined(tables), part.meta), run)
            return part.meta

        # (name, finished before this process started, sweeps, methods), in the order they run
        plan = [(f"exact {r.sweep}", r.sweep in exact, [r], []) for r in requests]
        plan += [(method, method in estimates, requests, [method]) for method in config.methods]
        run.set_progress(sum(finished for _, finished, _, _ in plan), len(plan), "stages")
        for count, (name, finished, sweeps, methods) in enumerate(plan, start=1):
            if not finished:
                meta = stage(sweeps, methods)
                run.set_progress(count, len(plan), "stages", stage=name)
            report(name)
        result = Comparison(exact, estimates, _ordered(_joined(tables), config), meta,
                            recall=recall_table(exact, estimates, config.top_k) if estimates else None)
        save_comparison(result, run)
        run.finish(summary(result))
    return run, result
