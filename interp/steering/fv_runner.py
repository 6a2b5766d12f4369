"""Running a function-vector config into the results store, resumably.

A run holds:

* table ``heads``: every head's average indirect effect (``layer, head, aie, in_fv, rank``);
* tensors ``head_effects``: the mean head activations (``means``), the per-prompt indirect effects
  (``cie``) and the shuffled-label baseline probabilities (``shuffled_prob``);
* JSON ``extraction``: prompt counts (built, kept by the correctness filter) and the top heads;
* ``vectors/function_vector`` and ``vectors/random_heads``: :class:`~interp.vectors.LayerVectors`
  directories (read them with :func:`interp.vectors.load_vectors`);
* JSON ``baselines``: zero-shot and in-context accuracy without any vector;
* table ``accuracy``: per injection layer, zero-shot accuracy unsteered, with the FV, with the
  random-heads vector, and the in-context accuracy (``layer, zero_shot, fv, random_heads, icl, n``).

The head measurements are written as soon as they finish and each layer's accuracies as a shard,
so a resumed run (``resume=``) reads what it has and computes only the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from interp.config import DTYPES
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.steering.fv_config import FunctionVectorConfig
from interp.steering.fv_heads import HeadEffects
from interp.steering.fv_tasks import load_icl_task, single_token_fraction
from interp.steering.function_vectors import (
    FunctionVectorResult,
    assemble_result,
    baseline_accuracies,
    evaluate_function_vector,
    extract_function_vector,
)

KIND = "function_vectors"
VECTORS_DIR = "vectors"
UNITS = {"means": "mean-activation passes", "heads": "heads measured", "layers": "layers evaluated"}
"""What each stage counts, as the run's recorded progress names it."""


def vectors_path(run: Run, name: str = "function_vector") -> Path:
    """Where a run keeps its function vector (``"function_vector"``) or baseline (``"random_heads"``)."""
    return run.path / VECTORS_DIR / name


def run_function_vectors(
    config: FunctionVectorConfig,
    store: RunStore,
    resume: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Run:
    """Find the heads, build the function vector and sweep it over layers into a run of ``store``.

    ``resume`` continues a run (see :mod:`interp.runs.lifecycle`); ``progress(stage, done, total)``
    reports the stages (``means``, ``heads``, ``layers``), whose counts the run's manifest also
    records (:meth:`~interp.runs.Run.set_progress`).
    """
    torch.manual_seed(0)
    task = load_icl_task(config.task)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    identity = {"name": model.name, "family": model.arch.family, "n_layers": model.dims.n_layers}
    dataset = {
        "name": task.name,
        "pairs": len(task),
        "single_token_answers": single_token_fraction(model.tokenizer, task),
    }
    with lifecycle(store, KIND, config.model_dump(), model=identity, dataset=dataset, resume=resume) as run:

        def advance(stage: str, done: int, total: int) -> None:
            run.set_progress(done, total, UNITS.get(stage, stage))
            if progress is not None:
                progress(stage, done, total)

        found = _extraction(run, model, task, config, advance)
        layers = list(range(model.dims.n_layers)) if config.layers is None else config.layers
        if "baselines" not in run.json_files():
            run.write_json("baselines", baseline_accuracies(model, found, batch_size=config.batch_size))
        baselines = run.read_json("baselines")
        finished = set(run.finished_shards("layers"))
        for index, layer in enumerate(layers):
            if index not in finished:
                frame = evaluate_function_vector(
                    model, found, [layer], config.scale, batch_size=config.batch_size, baselines=baselines
                )
                run.write_shard("layers", index, frame=frame)
            advance("layers", index + 1, len(layers))
        accuracy = pd.concat([frame for _, _, frame in run.read_shards("layers")], ignore_index=True)
        run.write_table("accuracy", accuracy)
        run.finish(_summary(found, accuracy))
    return run


def _extraction(
    run: Run, model: Any, task: Any, config: FunctionVectorConfig, progress: Callable[[str, int, int], None] | None
) -> FunctionVectorResult:
    """The head measurements and vectors: read back from a resumed run, else computed and written."""
    settings = config.model_dump(include={
        "n_shots", "n_mean_prompts", "n_effect_prompts", "n_top_heads", "filter_correct", "test_fraction", "seed",
        "with_bias",
    })
    if "head_effects" in run.tensor_files() and "extraction" in run.json_files():
        stored, counts = run.read_tensors("head_effects"), run.read_json("extraction")
        effects = HeadEffects(
            tuple(counts["layers"]), tuple(counts["heads"]), stored["cie"], stored["shuffled_prob"]
        )
        return assemble_result(
            model, task, stored["means"].to(model.device, model.dtype), effects, counts["n_clean"], counts["n_kept"],
            {"task": task.name, **settings},
        )
    found = extract_function_vector(model, task, batch_size=config.batch_size, progress=progress, **settings)
    run.write_tensors("head_effects", {
        "means": found.means, "cie": found.effects.cie, "shuffled_prob": found.effects.shuffled_prob,
    })
    run.write_table("heads", found.head_table())
    found.vectors.save(vectors_path(run))
    found.random_vectors.save(vectors_path(run, "random_heads"))
    run.write_json("extraction", {
        "n_clean": found.n_clean, "n_kept": found.n_kept,
        "layers": list(found.effects.layers), "heads": list(found.effects.heads),
        "top_heads": [[layer, head] for layer, head in found.heads],
        "random_heads": found.random_vectors.meta["heads"],
    })
    return found


def _summary(found: FunctionVectorResult, accuracy: pd.DataFrame) -> dict[str, Any]:
    best = accuracy.loc[(accuracy["fv"] - accuracy["random_heads"]).idxmax()]
    return {
        "task": found.task,
        "kept_prompts": found.n_kept,
        "top_heads": [[layer, head, float(found.aie[found.effects.layers.index(layer), head])] for layer, head in found.heads[:5]],
        "best_layer": int(best["layer"]),
        "zero_shot": float(best["zero_shot"]),
        "fv": float(best["fv"]),
        "random_heads": float(best["random_heads"]),
        "icl": float(best["icl"]),
    }
