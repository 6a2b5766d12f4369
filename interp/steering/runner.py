"""Running a steering config into the results store (``interp steer CONFIG``).

A ``vectors`` run writes, through :mod:`interp.runs`:

* ``vectors/<method>/``: each method's :class:`~interp.vectors.LayerVectors` (safetensors + JSON,
  loadable with :func:`interp.vectors.load_vectors` from :func:`vectors_dir`);
* tables ``sweep`` (layer x strength: KL, entropy, perplexity, score), ``steps`` (per generated
  token) and ``samples`` (steered and baseline texts);
* the manifest summary: per layer, the strength with the largest score change and its KL;
  while the sweep runs, its progress in (layer, strength) settings (:meth:`~interp.runs.Run.set_progress`).

A ``dac`` run writes each property's per-step vectors (tensor file ``deltas``), the table ``trace``
(intensity and KL per prompt, step and property) and ``samples`` (DAC and unsteered texts).

:data:`RUNNERS` maps a config ``kind`` to its runner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from interp.cluster import Executor
from interp.config import DTYPES
from interp.errors import InvalidArgumentError
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.steering.config import DACConfig, RunModel, VectorsConfig
from interp.steering.contrast import load_contrast
from interp.steering.dac import dac_deltas, dac_generate
from interp.steering.evaluate import TokenScore
from interp.steering.extract import build_vectors, model_info
from interp.steering.fv_config import FunctionVectorConfig
from interp.steering.fv_runner import run_function_vectors
from interp.steering.sweep import strength_sweep

Progress = Callable[[int, int], None]
VECTORS_DIR = "vectors"


def vectors_dir(run: Run, method: str) -> Path:
    """Where a run keeps the vectors of ``method`` (read them with :func:`interp.vectors.load_vectors`)."""
    return Path(run.path) / VECTORS_DIR / method


def recorded(run: Run, unit: str, progress: Progress | None) -> Progress:
    """A progress callback that records ``done`` of ``total`` ``unit`` in the run's manifest (for readers
    such as the app) and passes them on to ``progress``."""

    def advance(done: int, total: int) -> None:
        run.set_progress(done, total, unit)
        if progress is not None:
            progress(done, total)

    return advance


def _summary(table: pd.DataFrame) -> dict[str, Any]:
    best = {}
    for layer, rows in table.groupby("layer"):
        moved = rows[rows.strength != 0]
        if moved.empty or moved.score_delta.isna().all():
            continue
        top = moved.loc[moved.score_delta.idxmax()]
        best[str(layer)] = {"strength": float(top.strength), "score_delta": float(top.score_delta), "kl": float(top.kl)}
    return {"best_per_layer": best, "rows": len(table)}


def run_vectors(config: VectorsConfig, store: RunStore, resume: str | None = None, progress: Progress | None = None) -> Run:
    """Extract, save and sweep (see the module docstring)."""
    torch.manual_seed(0)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    contrast = load_contrast(config.data).take(config.pairs)
    dataset = {"name": Path(config.data).name, "pairs": len(contrast), "hash": contrast.hash()}
    with lifecycle(store, "steering", config.model_dump(), model=model_info(model), dataset=dataset, resume=resume) as run:
        built = build_vectors(model, contrast, config.site, config.layers, config.methods, config.token, config.pair_index)
        for method, vectors in built.items():
            vectors.save(vectors_dir(run, method))
        score = TokenScore.from_words(model, config.score.positive, config.score.negative) if config.score.positive else None
        sweep = config.sweep
        result = strength_sweep(
            model, built[sweep.method], sweep.prompts, sweep.strengths, sweep.layers, sweep.unit, sweep.scope,
            sweep.max_new_tokens, sweep.temperature, sweep.seed, score, recorded(run, "settings", progress),
        )
        run.write_table("sweep", result.table)
        run.write_table("steps", result.steps)
        run.write_table("samples", result.samples)
        run.finish(_summary(result.table))
    return run


def run_dac(config: DACConfig, store: RunStore, resume: str | None = None, progress: Progress | None = None) -> Run:
    """Per-step property vectors, then DAC generation next to unsteered generation."""
    torch.manual_seed(0)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    dataset = {"properties": [p.name for p in config.properties], "files": [Path(p.data).name for p in config.properties]}
    with lifecycle(store, "dac", config.model_dump(), model=model_info(model), dataset=dataset, resume=resume) as run:
        properties = []
        total = len(config.properties) + 1
        advance = recorded(run, "stages", progress)
        advance(0, total)
        for index, spec in enumerate(config.properties):
            contrast = load_contrast(spec.data).take(spec.pairs)
            prop = dac_deltas(model, contrast.positives, contrast.negatives, spec.steps, spec.site, spec.layers, spec.name)
            run.write_tensors(f"deltas_{index}", {"deltas": prop.deltas}, {"name": prop.name, "site": prop.kind, "layers": ",".join(map(str, prop.layers))})
            properties.append(prop)
            advance(index + 1, total)
        result = dac_generate(
            model, config.prompts, properties, config.max_new_tokens, config.top_p, config.alpha_start, config.alpha_max
        )
        plain = model.generate(config.prompts, max_new_tokens=config.max_new_tokens)
        run.write_table("trace", result.trace())
        run.write_table(
            "samples",
            pd.DataFrame({"row": range(len(config.prompts)), "prompt": config.prompts, "baseline": plain.texts, "steered": result.texts}),
        )
        advance(total, total)
        mean_alpha = {name: float(result.alphas[..., j].mean()) for j, name in enumerate(result.names)}
        run.finish({"mean_alpha": mean_alpha})
    return run


def run_fv(
    config: FunctionVectorConfig,
    store: RunStore,
    resume: str | None = None,
    progress: Progress | None = None,
    executor: Executor = "local",
    address: str | None = None,
    workers: int | None = None,
) -> Run:
    """Function vectors of an in-context task; ``progress`` follows each stage (means, heads, layers) in
    turn; the head sweep and the accuracy sweep run on ``executor`` (see :mod:`interp.cluster`)."""

    def staged(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(done, total)

    return run_function_vectors(config, store, resume, staged, executor, address, workers)


RUNNERS: dict[str, Callable[..., Run]] = {"vectors": run_vectors, "dac": run_dac, "function_vectors": run_fv}
"""Config ``kind`` -> runner ``(config, store, resume, progress) -> Run``."""
ON_EXECUTORS = ("function_vectors",)
"""Config kinds whose runner takes ``executor``, ``address`` and ``workers`` (the others run in this process)."""


def run_config(
    config: RunModel | FunctionVectorConfig,
    store: RunStore,
    resume: str | None = None,
    progress: Progress | None = None,
    executor: Executor = "local",
    address: str | None = None,
    workers: int | None = None,
) -> Run:
    """Run any steering config by its ``kind`` (on ``executor`` where :data:`ON_EXECUTORS` has it)."""
    kind = config.kind  # type: ignore[union-attr]
    if kind in ON_EXECUTORS:
        return RUNNERS[kind](config, store, resume, progress, executor, address, workers)
    if executor != "local" or address is not None or workers is not None:
        raise InvalidArgumentError(
            f"a {kind} run runs in this process only; drop --executor, --address and --workers "
            f"(they serve {', '.join(ON_EXECUTORS)} runs)"
        )
    return RUNNERS[kind](config, store, resume, progress)
