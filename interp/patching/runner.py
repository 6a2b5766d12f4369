"""Running a patching config into the results store, resumably.

Each sweep's cells are cut into *shards* of ``shard_cells`` cells. A shard's values (and the work
it cost) are written atomically as soon as it finishes, so a run killed at any point resumes from
its last finished shard. The unpatched clean and corrupt runs are recomputed on resume; they are
deterministic, so the resumed run's numbers equal an uninterrupted run's exactly. Once every shard
of a sweep is in, the shards are assembled into a :class:`PatchingResult` stored under the sweep's
name, and the run's manifest gets a summary (the strongest cells, cost, FLOP fraction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pandas as pd
import torch

from interp.cells import sweep_groups
from interp.config import DTYPES
from interp.model import Model
from interp.models import load_model
from interp.patching.config import PatchConfig
from interp.patching.persist import save_result
from interp.patching.result import Cost, PatchingResult
from interp.patching.sweep import axis_labels, make_engine
from interp.runs import Run, RunStore, lifecycle
from interp.tasks.base import named_columns, patched_tokens
from interp.tasks.config import build_task

COST_FIELDS = [f.name for f in fields(Cost)]


def sweep_name(index: int, config: PatchConfig) -> str:
    return f"sweep{index}_{config.sweeps[index].sweep}"


def total_cells(model: Model, task: Any, config: PatchConfig) -> int:
    return sum(len(sweep_groups(model, task, **s.model_dump(), allow_named=True)[0]) for s in config.sweeps)


def run_config(
    config: PatchConfig, store: RunStore, resume: str | None = None, progress: Callable[[int, int], None] | None = None
) -> Run:
    """Execute every sweep of ``config`` into a run of ``store``; returns the finished run.

    ``resume`` continues a run from its last finished shard (see :mod:`interp.runs.lifecycle`).
    ``progress(done_cells, total_cells)`` is called as cells finish.
    """
    torch.manual_seed(0)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    task = build_task(model, config.task)
    identity = {"name": model.name, "family": model.arch.family, "n_layers": model.dims.n_layers}
    dataset = {"name": getattr(task, "name", config.task.kind), "examples": len(task), **config.task.model_dump()}
    with lifecycle(store, "patching", config.model_dump(), model=identity, dataset=dataset, resume=resume) as run:
        run.write_table("task", task_frame(model, task))
        total = total_cells(model, task, config)
        done = 0
        summary: dict[str, Any] = {}
        for index, sweep in enumerate(config.sweeps):
            name = sweep_name(index, config)
            groups, axes, coords = sweep_groups(model, task, **sweep.model_dump(), allow_named=True)
            metric_name, engine = make_engine(
                model, task, config.metric, config.direction, config.prefix_reuse, config.max_rows, config.skip_noop_rows
            )
            engine.ensure_prepared(groups)
            finished = set(run.finished_shards(name))
            shards = [groups[i : i + config.shard_cells] for i in range(0, len(groups), config.shard_cells)]
            for shard_index, shard in enumerate(shards):
                if shard_index in finished:
                    done += len(shard)
                    continue
                before = engine.cost.as_dict()
                values = engine.run(shard)
                spent = [engine.cost.as_dict()[k] - before[k] for k in COST_FIELDS]
                run.write_shard(name, shard_index, tensors={"values": values, "cost": torch.tensor(spent, dtype=torch.float64)})
                done += len(shard)
                if progress is not None:
                    progress(done, total)
            result = assemble(run, name, sweep.sweep, axes, coords, metric_name, config, engine.baselines,
                              **axis_labels(model, task, sweep.positions))
            result.meta.update({"model": model.name, "task": getattr(task, "name", None), "aligned": task.aligned})
            save_result(run, name, result)
            summary[name] = summarise(result)
        run.finish(summary)
    return run


def assemble(
    run: Run,
    name: str,
    sweep: str,
    axes: tuple[str, ...],
    coords: dict[str, list[int]],
    metric: str,
    config: PatchConfig,
    baselines: dict[str, torch.Tensor],
    position_labels: list[str],
    positions: str = "raw",
) -> PatchingResult:
    """Join a sweep's shards into one result."""
    shards = run.read_shards(name)
    values = torch.cat([tensors["values"] for _, tensors, _ in shards])
    # shards written before a cost field was added hold fewer (leading) fields: the rest count zero
    costs = [torch.nn.functional.pad(tensors["cost"], (0, len(COST_FIELDS) - len(tensors["cost"]))) for _, tensors, _ in shards]
    spent = torch.stack(costs).sum(dim=0).tolist()
    grid = [len(coords[a]) for a in axes]
    return PatchingResult(
        sweep=sweep,
        axes=axes,
        coords=coords,
        values=values.T.reshape(-1, *grid),
        metric=metric,
        direction=config.direction,
        cost=Cost(**dict(zip(COST_FIELDS, spent, strict=True))),
        position_labels=position_labels,
        positions=positions,
        **baselines,
    )


def task_frame(model: Model, task: Any) -> pd.DataFrame:
    """The task's table, with each example's token at each named position (``"token S2"``: ``"11: John"``)."""
    frame = task.to_frame()
    names = list(getattr(task, "positions", {}) or {})
    if names:
        tokens = patched_tokens(model, task, named_columns(task, names))
        for index, name in enumerate(names):
            frame[f"token {name}"] = [row[index] for row in tokens]
    return frame


def summarise(result: PatchingResult, top: int = 5) -> dict[str, Any]:
    """The strongest cells by |normalised mean|, and the cost, for the manifest."""
    mean = result.mean().flatten()
    strength = torch.nan_to_num(mean.abs(), nan=-1.0)  # a NaN cell (no effect to normalise by) ranks last
    order = strength.argsort(descending=True, stable=True)[:top].tolist()
    grid = result.summary_frame()
    return {
        "top_cells": [
            {**{a: int(grid.iloc[i][a]) for a in result.axes}, **_label(result, int(grid.iloc[i]["pos"]) if "pos" in result.axes else None),
             "normalized_mean": round(float(mean[i]), 4)}
            for i in order
        ],
        "clean_mean": round(float(result.clean.mean()), 4),
        "corrupt_mean": round(float(result.corrupt.mean()), 4),
        **{k: float(v) if k.endswith("flops") else round(float(v), 4) for k, v in result.cost.as_dict().items()},
    }


def _label(result: PatchingResult, pos: int | None) -> dict[str, str]:
    """The position's label (its name, or its token) for a summary row."""
    if pos is None or result.position_labels is None:
        return {}
    return {"position": result.position_labels[pos]}
