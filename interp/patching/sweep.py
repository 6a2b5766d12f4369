"""One-call patching: named sweeps and arbitrary cell lists, returning :class:`PatchingResult`.

    >>> task = interp.tasks.ioi_task(model, n=32)
    >>> result = patch_sweep(model, task, "resid_pre")            # (layer, pos), denoising
    >>> result.mean()                                              # normalised, clean = 1
    >>> heads = patch_sweep(model, task, "head_z", direction="noising")

Sweeps: ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out`` by (layer, pos);
``head_{z,q,k,v}`` by (layer, head) over all positions and ``head_{z,q,k,v}_by_pos`` by
(layer, head, pos); ``head_pattern`` by (layer, head); ``neuron`` by (layer, neuron) at all positions.
:func:`patch_cells` takes any list of cells, or of cell tuples patched jointly (path-style).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from interp.cells import Cell, position_names, sweep_groups
from interp.model import Model
from interp.patching.engine import PatchingEngine
from interp.patching.result import PatchingResult
from interp.tasks.base import position_labels
from interp.tasks.direction import Direction
from interp.tasks.metrics import TaskMetric, resolve_metric


def make_engine(
    model: Model,
    task: Any,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    prefix_reuse: bool = True,
    max_rows: int | None = None,
    skip_noop_rows: bool = True,
) -> tuple[str, PatchingEngine]:
    """The engine for a task and metric (and the metric's name)."""
    name, function = resolve_metric(metric)
    return name, PatchingEngine(
        model, task, function, direction, prefix_reuse=prefix_reuse, skip_noop_rows=skip_noop_rows, max_rows=max_rows
    )


def patch_sweep(
    model: Model,
    task: Any,
    sweep: str,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | Sequence[str] | str | None = None,
    heads: Sequence[int] | None = None,
    neurons: Sequence[int] | None = None,
    prefix_reuse: bool = True,
    max_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
    skip_noop_rows: bool = True,
) -> PatchingResult:
    """Run a named sweep exactly (see the module docstring for the sweeps).

    ``positions`` takes raw indices, or the task's named positions (``"named"`` or a list of
    names): each example is then patched at its own index for each name.
    """
    groups, axes, coords = sweep_groups(model, task, sweep, layers, positions, heads, neurons, allow_named=True)
    metric_name, engine = make_engine(model, task, metric, direction, prefix_reuse, max_rows, skip_noop_rows)
    values = engine.run(groups, progress)
    grid = [len(coords[a]) for a in axes]
    return PatchingResult(
        sweep=sweep,
        axes=axes,
        coords=coords,
        values=values.T.reshape(-1, *grid),
        metric=metric_name,
        direction=direction,
        cost=engine.cost,
        **axis_labels(model, task, positions),
        meta={"model": model.name, "task": getattr(task, "name", None), "aligned": task.aligned},
        **engine.baselines,
    )


def axis_labels(model: Model, task: Any, positions: Sequence[int] | Sequence[str] | str | None) -> dict[str, Any]:
    """``position_labels`` and ``positions`` of a sweep's result: the names, or one token label per column."""
    names = position_names(task, positions)
    if names is None:
        return {"position_labels": position_labels(model, task), "positions": "raw"}
    return {"position_labels": names, "positions": "named"}


def patch_cells(
    model: Model,
    task: Any,
    cells: Sequence[Cell | Sequence[Cell]],
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    prefix_reuse: bool = True,
    max_rows: int | None = None,
    progress: Callable[[int], None] | None = None,
    skip_noop_rows: bool = True,
) -> PatchingResult:
    """Patch each entry of ``cells`` (a cell, or a tuple of cells patched together) separately."""
    groups = [(c,) if isinstance(c, Cell) else tuple(c) for c in cells]
    for group in groups:
        for cell in group:
            model.site(cell.site)
    metric_name, engine = make_engine(model, task, metric, direction, prefix_reuse, max_rows, skip_noop_rows)
    values = engine.run(groups, progress)
    return PatchingResult(
        sweep="cells",
        axes=("cell",),
        coords={"cell": list(range(len(groups)))},
        values=values.T,
        metric=metric_name,
        direction=direction,
        cost=engine.cost,
        position_labels=position_labels(model, task),
        meta={"model": model.name, "task": getattr(task, "name", None), "cells": [[vars(c) for c in g] for g in groups]},
        **engine.baselines,
    )
