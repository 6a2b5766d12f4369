"""Running a patching config into the results store, resumably.

Each sweep's cells are cut into *shards* of ``shard_cells`` cells. A shard's values (and the work
it cost) are written atomically as soon as it finishes, so a run killed at any point resumes from
its last finished shard. The unpatched clean and corrupt runs are recomputed on resume; they are
deterministic, so the resumed run's numbers equal an uninterrupted run's exactly. Once every shard
of a sweep is in, the shards are assembled into a :class:`PatchingResult` stored under the sweep's
name, and the run's manifest gets a summary (the strongest cells, cost, FLOP fraction).

Shards are computed by :class:`ShardWorker`: one in this process, or one per Ray actor across a
cluster (``executor="ray"``, :mod:`interp.cluster`), each loading the model once. Either way the
shards come back here and are written into the run in the same layout with the same done-markers,
so a run started on Ray can be resumed locally and the other way round, and the assembled results
are the same to the bit for the same dtype, device and torch thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import pandas as pd
import torch

from interp.cells import CellGroup, sweep_groups
from interp.cluster import Executor
from interp.cluster import executor as pool_of
from interp.config import DTYPES
from interp.model import Model
from interp.models import load_model
from interp.patching.config import PatchConfig
from interp.patching.engine import PatchingEngine
from interp.patching.persist import save_result
from interp.patching.result import Cost, PatchingResult
from interp.patching.sweep import axis_labels, make_engine
from interp.runs import Run, RunStore, lifecycle
from interp.tasks.base import named_columns, patched_tokens
from interp.tasks.config import build_task
from interp.tasks.direction import Direction

COST_FIELDS = [f.name for f in fields(Cost)]


def sweep_name(index: int, config: PatchConfig) -> str:
    return f"sweep{index}_{config.sweeps[index].sweep}"


class ShardWorker:
    """Computes the shards of a config's sweeps: the model and task are built once, the engine once per sweep.

    The same worker serves a run in this process and each Ray actor of a distributed run, so both
    compute every shard with the same code on the same inputs. A worker keeps one sweep's engine
    (its unpatched runs) at a time; taking shards sweep by sweep prepares each engine once.
    """

    def __init__(self, config: PatchConfig, device: str | None = None) -> None:
        torch.manual_seed(0)
        self.config = config
        self.model = load_model(config.model, device=device or config.device, dtype=DTYPES[config.dtype])
        self.task = build_task(self.model, config.task)
        self._groups: dict[int, tuple[list[CellGroup], tuple[str, ...], dict[str, list[int]]]] = {}
        self._engine: tuple[int, str, PatchingEngine] | None = None
        self._baselines: dict[int, tuple[str, dict[str, torch.Tensor], torch.Tensor]] = {}

    def groups(self, index: int) -> tuple[list[CellGroup], tuple[str, ...], dict[str, list[int]]]:
        if index not in self._groups:
            groups, axes, coords = sweep_groups(self.model, self.task, **self.config.sweeps[index].model_dump(), allow_named=True)
            self._groups[index] = (list(groups), axes, coords)
        return self._groups[index]

    def engine(self, index: int) -> tuple[str, PatchingEngine]:
        """Sweep ``index``'s engine, prepared for all of its cells."""
        if self._engine is None or self._engine[0] != index:
            c = self.config
            metric, engine = make_engine(self.model, self.task, c.metric, c.direction, c.prefix_reuse, c.max_rows, c.skip_noop_rows)
            engine.ensure_prepared(self.groups(index)[0])
            self._engine = (index, metric, engine)
            self._baselines[index] = (metric, engine.baselines, _spent(engine))
        return self._engine[1], self._engine[2]

    def plan(self) -> dict[str, Any]:
        """What the run records before any shard: model, data set, task table, each sweep's grid and shard sizes."""
        model, task, config = self.model, self.task, self.config
        sweeps = []
        for index in range(len(config.sweeps)):
            groups, axes, coords = self.groups(index)
            sizes = [len(groups[i : i + config.shard_cells]) for i in range(0, len(groups), config.shard_cells)]
            sweeps.append({
                "name": sweep_name(index, config), "axes": axes, "coords": coords, "shard_sizes": sizes,
                "labels": axis_labels(model, task, config.sweeps[index].positions),
            })
        return {
            "model": {"name": model.name, "family": model.arch.family, "n_layers": model.dims.n_layers},
            "dataset": {"name": getattr(task, "name", config.task.kind), "examples": len(task), **config.task.model_dump()},
            "task_name": getattr(task, "name", None),
            "task": task_frame(model, task),
            "aligned": task.aligned,
            "sweeps": sweeps,
        }

    def shard(self, index: int, shard_index: int) -> tuple[int, int, torch.Tensor, torch.Tensor]:
        """``(index, shard_index, values, cost spent)`` of shard ``shard_index`` of sweep ``index``."""
        groups = self.groups(index)[0]
        size = self.config.shard_cells
        _, engine = self.engine(index)
        before = _spent(engine)
        values = engine.run(groups[shard_index * size : (shard_index + 1) * size])
        return index, shard_index, values, _spent(engine) - before

    def baselines(self, index: int) -> tuple[str, dict[str, torch.Tensor], torch.Tensor]:
        """The metric's name, its values on the unpatched clean and corrupt runs of sweep ``index``, and
        what those two runs cost (the :data:`COST_FIELDS`; a sweep's cost counts them once)."""
        if index not in self._baselines:
            self.engine(index)
        return self._baselines[index]


def _spent(engine: PatchingEngine) -> torch.Tensor:
    """The engine's cost so far, as the :data:`COST_FIELDS` in float64."""
    cost = engine.cost.as_dict()
    return torch.tensor([cost[k] for k in COST_FIELDS], dtype=torch.float64)


def run_config(
    config: PatchConfig,
    store: RunStore,
    resume: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor = "local",
    address: str | None = None,
    workers: int | None = None,
) -> Run:
    """Execute every sweep of ``config`` into a run of ``store``; returns the finished run.

    ``resume`` continues a run from its last finished shard (see :mod:`interp.runs.lifecycle`).
    ``progress(done_cells, total_cells)`` is called as shards finish, and the same count is recorded in
    the run's manifest (:meth:`~interp.runs.Run.set_progress`) for readers such as the app. ``executor="ray"``
    computes the shards on Ray actors (one model each, a GPU each when ``config.device`` is CUDA, each
    checking its device at its start) at ``address``,
    or on a local Ray cluster of ``workers`` actors (see :mod:`interp.cluster`). Shards are written
    here, in the same layout and with the same done-markers either way, so a run started with one
    executor resumes with the other; the numbers are the same to the bit for the same dtype, device
    and torch thread count.
    """
    with pool_of(executor, ShardWorker, (config,), device=config.device, address=address, workers=workers) as pool:
        plan = pool.call("plan")
        with lifecycle(store, "patching", config.model_dump(), model=plan["model"], dataset=plan["dataset"], resume=resume) as run:
            run.write_table("task", plan["task"])
            sweeps = plan["sweeps"]
            total = sum(sum(s["shard_sizes"]) for s in sweeps)
            pending = []
            for index, sweep in enumerate(sweeps):
                finished = set(run.finished_shards(sweep["name"]))
                pending += [(index, i) for i in range(len(sweep["shard_sizes"])) if i not in finished]
            done = total - sum(sweeps[i]["shard_sizes"][s] for i, s in pending)
            run.set_progress(done, total, "cells")
            for index, shard_index, values, spent in pool.map("shard", pending):
                run.write_shard(sweeps[index]["name"], shard_index, tensors={"values": values, "cost": spent})
                done += sweeps[index]["shard_sizes"][shard_index]
                run.set_progress(done, total, "cells", stage=f"{sweeps[index]['name']} shard {shard_index}")
                if progress is not None:
                    progress(done, total)
            summary: dict[str, Any] = {}
            for index, (sweep, request) in enumerate(zip(sweeps, config.sweeps, strict=True)):
                metric, baselines, unpatched = pool.call("baselines", index)
                result = assemble(
                    run, sweep["name"], request.sweep, sweep["axes"], sweep["coords"], metric, config.direction, baselines,
                    unpatched, **sweep["labels"],
                )
                result.meta.update({"model": plan["model"]["name"], "task": plan["task_name"], "aligned": plan["aligned"]})
                save_result(run, sweep["name"], result)
                summary[sweep["name"]] = summarise(result)
            run.finish(summary)
    return run


def assemble(
    run: Run,
    name: str,
    sweep: str,
    axes: tuple[str, ...],
    coords: dict[str, list[int]],
    metric: str,
    direction: Direction,
    baselines: dict[str, torch.Tensor],
    unpatched: torch.Tensor,
    position_labels: list[str],
    positions: str = "raw",
) -> PatchingResult:
    """Join a sweep's shards (written from :meth:`ShardWorker.shard`) into one result; its cost is the
    shards' and the ``unpatched`` runs' (from :meth:`ShardWorker.baselines`), as a one-call sweep's."""
    shards = run.read_shards(name)
    values = torch.cat([tensors["values"] for _, tensors, _ in shards])
    # shards written before a cost field was added hold fewer (leading) fields: the rest count zero
    costs = [torch.nn.functional.pad(tensors["cost"], (0, len(COST_FIELDS) - len(tensors["cost"]))) for _, tensors, _ in shards]
    spent = (torch.stack(costs).sum(dim=0) + unpatched).tolist()
    grid = [len(coords[a]) for a in axes]
    return PatchingResult(
        sweep=sweep,
        axes=axes,
        coords=coords,
        values=values.T.reshape(-1, *grid),
        metric=metric,
        direction=direction,
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
