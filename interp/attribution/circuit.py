"""A sparse-feature-circuit run: ``interp attribute CONFIG`` with ``kind: feature_circuit``.

The config names the model, a task and metric (:mod:`interp.tasks`), the SAEs to splice (SAE
directories, or SAEs stored by ``interp sae train`` in a run of the same store), the attribution
methods over their latents and error nodes (:mod:`interp.attribution.features`), how many of each
method's top nodes to verify by exact patching, and the circuit sizes of the faithfulness curves
(:mod:`interp.attribution.faithfulness`). The run (kind ``"feature_circuit"``) stores:

* ``nodes`` (Parquet): one row per node: SAE, site, latent (-1: error node), each method's mean
  estimated effect and the exact one (NaN where not verified);
* ``faithfulness`` (Parquet): faithfulness and completeness against circuit size, per method;
* ``costs`` (Parquet): each method's passes (forward-pass equivalents) and seconds, and the exact
  patching's;
* ``circuit`` (JSON): the metric of the whole model and of the empty circuit, the SAEs used (with the
  run they came from, so the app can show their latents' contexts), and the settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd
import torch
from pydantic import Field, field_validator

from interp.attribution.config import IGConfig, RelPConfig
from interp.attribution.faithfulness import faithfulness_curves
from interp.attribution.features import FEATURE_METHODS, FeatureEffects, exact_feature_effects, feature_attribution
from interp.attribution.relp import RelPRules
from interp.config import DTYPES, ConfigError, ConfigModel, Device, Dtype
from interp.errors import InvalidArgumentError
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.sae import SAE, load
from interp.tasks.config import TaskConfig, build_task

KIND = "feature_circuit"


class FeatureCircuitConfig(ConfigModel):
    """A feature-circuit run (see the module docstring)."""

    kind: Literal["feature_circuit"]
    model: str = "smollm2-135m"
    device: Device = "cpu"
    dtype: Dtype = "float32"
    task: TaskConfig = TaskConfig(n=8)
    metric: Literal["logit_diff", "logprob", "prob"] = "logit_diff"
    direction: Literal["denoising", "noising"] = "noising"
    replacement: Literal["patch", "mean"] = "patch"
    sae_run: str | None = Field(None, description="id of an SAE training run in the store; saes are then its SAE names")
    saes: list[str] = Field(min_length=1, description="SAE names in sae_run, or SAE directories")
    methods: list[str] = Field(default_factory=lambda: ["atp", "relp", "ig"], min_length=1)
    exact_top: int = Field(50, ge=0, description="exactly patch the union of each method's top nodes")
    skip_first: int = Field(0, ge=0, description="no nodes at each row's first real tokens (attention sinks) or padding")
    sizes: list[int] | None = None
    relp: RelPConfig = RelPConfig()
    ig: IGConfig = IGConfig()

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: list[str]) -> list[str]:
        unknown = [m for m in value if m not in FEATURE_METHODS]
        if unknown:
            raise ConfigError(f"unknown methods {unknown}; feature circuits support {list(FEATURE_METHODS)}")
        return value


def load_saes(config: FeatureCircuitConfig, store: RunStore, device: str) -> list[SAE]:
    """The SAEs a config names, on ``device``."""
    if config.sae_run is None:
        return [load(Path(path), device=device) for path in config.saes]
    run = store.get(config.sae_run)
    root = run.path / "saes"
    missing = [name for name in config.saes if not (root / name).is_dir()]
    if missing:
        have = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        raise InvalidArgumentError(f"run {config.sae_run!r} has no SAEs {missing} (it has: {have or 'none'})")
    return [load(root / name, device=device) for name in config.saes]


def _estimate(config: FeatureCircuitConfig, model, task, saes, method: str) -> FeatureEffects:
    rules = RelPRules(**config.relp.model_dump())
    return feature_attribution(model, task, saes, method, config.metric, config.direction, config.replacement,
                               rules=rules, steps=config.ig.steps, rule=config.ig.rule,  # type: ignore[arg-type]
                               skip_first=config.skip_first)


def run_feature_circuit(
    config: FeatureCircuitConfig,
    store: RunStore,
    progress: Callable[[str], None] | None = None,
    resume: str | None = None,
) -> Run:
    """Attribute, verify and measure faithfulness; write a run of kind ``"feature_circuit"``.

    ``progress`` is called with each stage's name as it finishes (each method, ``"exact"``,
    ``"faithfulness"``), and the run's manifest records the count (:meth:`~interp.runs.Run.set_progress`).
    """
    torch.manual_seed(0)
    report = progress or (lambda stage: None)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    saes = [sae.to(dtype=DTYPES[config.dtype]) for sae in load_saes(config, store, config.device)]
    task = build_task(model, config.task)
    dataset = {"name": task.name, "examples": len(task)}
    with lifecycle(store, KIND, config.model_dump(), model={"name": model.name}, dataset=dataset, resume=resume) as run:
        run.write_table("task", task.to_frame())
        total = len(config.methods) + 2  # each method, then the exact verification, then the faithfulness curves

        def finished(done: int, stage: str) -> None:
            run.set_progress(done, total, "stages", stage=stage)
            report(stage)

        run.set_progress(0, total, "stages")
        estimates = {}
        for done, method in enumerate(config.methods, start=1):
            estimates[method] = _estimate(config, model, task, saes, method)
            finished(done, method)
        nodes = next(iter(estimates.values())).nodes
        chosen = sorted({int(i) for e in estimates.values() for i in e.ranking().argsort(descending=True)[:config.exact_top]})
        exact = exact_feature_effects(model, task, saes, chosen, config.metric, config.direction, config.replacement,
                                      skip_first=config.skip_first)
        finished(total - 1, "exact")
        curves = faithfulness_curves(model, task, saes, {m: e.ranking() for m, e in estimates.items()},
                                     config.sizes, config.metric, config.skip_first)
        finished(total, "faithfulness")
        frame = nodes.to_frame()
        for method, estimate in estimates.items():
            frame[method] = estimate.mean().numpy()
        frame["exact"] = exact.mean().numpy()
        run.write_table("nodes", frame)
        run.write_table("faithfulness", curves.table)
        costs = [{"method": m, "passes": e.passes, "seconds": e.seconds} for m, e in estimates.items()]
        costs.append({"method": "exact", "passes": exact.passes, "seconds": exact.seconds})
        run.write_table("costs", pd.DataFrame(costs))
        run.write_json("circuit", {
            "full": curves.full, "empty": curves.empty, "metric": config.metric, "direction": config.direction,
            "replacement": config.replacement, "sae_run": config.sae_run, "saes": config.saes,
            "sites": list(nodes.sites), "verified": len(chosen),
        })
        summary = {}
        for method in config.methods:
            rows = curves.table[curves.table.method == method]
            reached = rows[rows.faithfulness >= 0.8]
            summary[f"{method}/nodes_for_0.8"] = int(reached.nodes.iloc[0]) if len(reached) else None
        run.finish(summary)
    return run
