"""Running an attribution config into the results store, one resumable stage at a time.

The stages are each component type's exact sweep, then each method over every component type.
An exact sweep is computed in shards, exactly as a patching run computes its sweeps (the patching
package's :class:`~interp.patching.ShardWorker`, ``shard_cells`` cells a shard, each written with
its done-marker as it finishes). After each stage the comparison so far is written into the run
(:func:`save_comparison`), whose index is written last, so a run interrupted at any point
continues from its last finished shard or stage (see :mod:`interp.runs.lifecycle`) and ends with
the same results as an uninterrupted one.

The work runs on an executor (:mod:`interp.cluster`): :class:`AttributionWorker` s hold the model,
in this process (``executor="local"``) or one per Ray actor (``"ray"``), where the exact sweeps'
shards spread over the actors and the methods run one per actor. The driver only writes, so a run
resumes under either executor, and the tables are equal to the bit for the same dtype, device and
torch thread count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from interp.attribution.compare import compare, exact_requests
from interp.attribution.comparison import Comparison, load_comparison, save_comparison, summary
from interp.attribution.config import AttributionConfig
from interp.attribution.recall import recall_table
from interp.cluster import Executor
from interp.cluster import executor as pool_of
from interp.config import DEVICE_ON_WORKERS
from interp.patching import PatchConfig, PatchingResult, ShardWorker, assemble
from interp.runs import Run, RunStore, lifecycle

KIND = "attribution"
INDEX = "comparison"


def stages(config: AttributionConfig) -> int:
    """Number of progress stages: one exact sweep per component type, one pass set per method."""
    return len(config.sweeps) + len(config.methods)


def shard_group(sweep: str) -> str:
    """The shard group holding an exact sweep's shards."""
    return f"exact_{sweep}"


class AttributionWorker(ShardWorker):
    """The model and task of an attribution config: exact sweeps by shard, and the approximations.

    The exact sweeps are the patching run's sweeps over the config's component types, every
    coordinate spelled out as the estimates' grids have them, on the patching engine's defaults.
    """

    def __init__(self, config: AttributionConfig, device: str | None = None) -> None:
        exact = PatchConfig.model_validate(
            {**config.model_dump(include={"model", "dtype", "task", "metric", "direction", "sweeps", "shard_cells"}),
             "device": device or config.device},
            context={DEVICE_ON_WORKERS: True},  # checked already: by the config here, by the actor on Ray
        )
        super().__init__(exact, device)
        self.config = exact.model_copy(update={"sweeps": exact_requests(self.model, self.task, config.sweeps)})
        self.attribution = config

    def plan(self) -> dict[str, Any]:
        """The patching plan of the exact sweeps, with the attribution run's model, data set and task table."""
        return {
            **super().plan(),
            "model": {"name": self.model.name},
            "dataset": {"name": self.task.name, "examples": len(self.task)},
            "task": self.task.to_frame(),
        }

    def compare(self, methods: list[str], exact: dict[str, PatchingResult]) -> Comparison:
        """``methods`` on every component type, measured against the ``exact`` sweeps."""
        c = self.attribution
        return compare(self.model, self.task, c.sweeps, methods, c.metric, c.direction, c.top_k, c.options(), exact=exact)


def _joined(tables: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _ordered(table: pd.DataFrame, config: AttributionConfig) -> pd.DataFrame:
    """Rows by component type, then method, in the config's order."""
    components = {s.sweep: i for i, s in enumerate(config.sweeps)}
    methods = {m: i for i, m in enumerate(config.methods)}
    key = table["component"].map(components) * len(methods) + table["method"].map(methods)
    return table.iloc[key.argsort(kind="stable")].reset_index(drop=True)


def exact_sweep(run: Run, pool: Any, plan: dict[str, Any], index: int, config: AttributionConfig) -> PatchingResult:
    """Exact sweep ``index``: its missing shards computed on ``pool`` and written, then all of them assembled."""
    sweep, request = plan["sweeps"][index], config.sweeps[index]
    group = shard_group(request.sweep)
    finished = set(run.finished_shards(group))
    pending = [(index, i) for i in range(len(sweep["shard_sizes"])) if i not in finished]
    for _, shard_index, values, spent in pool.map("shard", pending):
        run.write_shard(group, shard_index, tensors={"values": values, "cost": spent})
    metric, baselines, unpatched = pool.call("baselines", index)
    result = assemble(run, group, request.sweep, sweep["axes"], sweep["coords"], metric, config.direction, baselines,
                      unpatched, **sweep["labels"])
    result.meta.update({"model": plan["model"]["name"], "task": plan["task_name"], "aligned": plan["aligned"]})
    return result


def run_attribution(
    config: AttributionConfig,
    store: RunStore,
    progress: Callable[[str], None] | None = None,
    resume: str | None = None,
    executor: Executor = "local",
    address: str | None = None,
    workers: int | None = None,
) -> tuple[Run, Comparison]:
    """Execute ``config``: exact sweeps and every method, recorded as a run of kind ``"attribution"``.

    ``resume`` continues a run from its last finished shard or stage; ``progress`` is called with
    each stage's name as it finishes (or is found finished), and the run's manifest records how many
    of the :func:`stages` are finished (:meth:`~interp.runs.Run.set_progress`), so a reader such as
    the app can show a run still being written. ``executor``, ``address`` and ``workers`` say where
    the work runs (see :mod:`interp.cluster`; a GPU per Ray actor when ``config.device`` is CUDA,
    each actor checking its device at its start).
    """
    report = progress or (lambda stage: None)
    with pool_of(executor, AttributionWorker, (config,), device=config.device, address=address, workers=workers) as pool:
        plan = pool.call("plan")
        with lifecycle(store, KIND, config.model_dump(), model=plan["model"], dataset=plan["dataset"], resume=resume) as run:
            run.write_table("task", plan["task"])
            done = load_comparison(run) if INDEX in run.json_files() else None
            exact = dict(done.exact) if done else {}
            estimates = dict(done.estimates) if done else {}
            tables = [done.table] if done and len(done.table) else []
            meta = done.meta if done else {}

            total = stages(config)
            finished = sum(r.sweep in exact for r in config.sweeps) + sum(m in estimates for m in config.methods)
            run.set_progress(finished, total, "stages")

            def advance(name: str) -> None:
                nonlocal finished
                finished += 1
                run.set_progress(finished, total, "stages", stage=name)
                report(name)

            for index, request in enumerate(config.sweeps):
                if request.sweep not in exact:
                    exact[request.sweep] = exact_sweep(run, pool, plan, index, config)
                    save_comparison(Comparison(exact, estimates, _joined(tables), meta), run)
                    advance(f"exact {request.sweep}")
                else:
                    report(f"exact {request.sweep}")
            pending = [method for method in config.methods if method not in estimates]
            for method in config.methods:
                if method not in pending:
                    report(method)
            for part in pool.map("compare", [([method], exact) for method in pending]):
                estimates.update(part.estimates)
                tables.extend([part.table] if len(part.table) else [])
                meta = part.meta
                save_comparison(Comparison(exact, estimates, _joined(tables), meta), run)
                (method,) = part.estimates
                advance(method)
            estimates = {method: estimates[method] for method in config.methods}  # the config's order, as finished anywhere
            result = Comparison(exact, estimates, _ordered(_joined(tables), config), meta,
                                recall=recall_table(exact, estimates, config.top_k) if estimates else None)
            save_comparison(result, run)
            run.finish(summary(result))
    return run, result
