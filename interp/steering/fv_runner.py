"""Running a function-vector config into the results store, resumably, in this process or on Ray.

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

The work is cut into shards, each written with its done-marker as soon as it finishes: the mean
head activations (shard group ``means``, one shard: the kept prompts and their means), the head
sweep one layer a shard (group ``heads``: that layer's per-head, per-prompt indirect effects, the
patching engine's suffix forwards from that layer on), and the accuracy one injection layer a shard
(group ``layers``). A resumed run (``resume=``) reads what it has and computes only the rest.

Shards are computed by :class:`FunctionVectorWorker` s on an executor (:mod:`interp.cluster`): one
in this process, or one per Ray actor, each loading the model once; the head sweep's and the
accuracy's layers spread over the actors. The driver only writes, so a run resumes under either
executor, and its tables are the same to the bit for the same dtype, device and torch thread count.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from interp.cluster import Executor
from interp.cluster import executor as pool_of
from interp.config import DTYPES
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.steering.function_vectors import (
    FunctionVectorResult,
    assemble_result,
    baseline_accuracies,
    clean_prompts,
    evaluate_function_vector,
    kept_rows,
    shuffled_prompts,
)
from interp.steering.fv_config import FunctionVectorConfig
from interp.steering.fv_heads import HeadEffects, head_indirect_effects, mean_head_activations
from interp.steering.fv_tasks import ICLPrompts, ICLTask, load_icl_task, single_token_fraction
from interp.vectors import LayerVectors

KIND = "function_vectors"
VECTORS_DIR = "vectors"
UNITS = {"means": "mean-activation passes", "heads": "layers of heads measured", "layers": "layers evaluated"}
"""What each stage counts, as the run's recorded progress names it."""
SETTINGS = ("n_shots", "n_mean_prompts", "n_effect_prompts", "n_top_heads", "filter_correct", "test_fraction", "seed",
            "with_bias")
Measured = tuple[torch.Tensor, HeadEffects, int, int]  # means, head effects, clean prompts built, kept


def vectors_path(run: Run, name: str = "function_vector") -> Path:
    """Where a run keeps its function vector (``"function_vector"``) or baseline (``"random_heads"``)."""
    return run.path / VECTORS_DIR / name


class FunctionVectorWorker:
    """The model and task of a function-vector config, computing the run's shards.

    Every step is deterministic given the config, and each takes what earlier steps measured as
    arguments (the kept prompts, the means, the head effects), so any worker computes any shard.
    """

    def __init__(self, config: FunctionVectorConfig, device: str | None = None) -> None:
        torch.manual_seed(0)
        self.config = config
        self.task = load_icl_task(config.task)
        self.model = load_model(config.model, device=device or config.device, dtype=DTYPES[config.dtype])
        self.settings = config.model_dump(include=set(SETTINGS))
        self._found: FunctionVectorResult | None = None

    def plan(self) -> dict[str, Any]:
        """The run's model and data set, and the layers of the head sweep and of the accuracy sweep."""
        model, config = self.model, self.config
        return {
            "model": {"name": model.name, "family": model.arch.family, "n_layers": model.dims.n_layers},
            "dataset": {
                "name": self.task.name, "pairs": len(self.task),
                "single_token_answers": single_token_fraction(model.tokenizer, self.task),
            },
            "head_layers": list(range(model.dims.n_layers)),
            "layers": list(range(model.dims.n_layers)) if config.layers is None else list(config.layers),
        }

    def _prompts(self) -> tuple[ICLTask, ICLPrompts, random.Random]:
        """The train split, the clean prompts and the random state :func:`shuffled_prompts` continues."""
        c = self.config
        return clean_prompts(self.model, self.task, c.n_shots, c.n_mean_prompts, c.test_fraction, c.seed)

    def means(self) -> tuple[int, list[int], torch.Tensor]:
        """``(clean prompts built, rows kept, mean head activations)``: the ``means`` shard."""
        _, clean, _ = self._prompts()
        kept = kept_rows(self.model, clean, self.config.filter_correct, self.config.batch_size, self.task.name)
        return len(clean), kept, mean_head_activations(self.model, clean.subset(kept), self.config.batch_size).cpu()

    def heads(
        self, index: int, layer: int, kept: list[int], means: torch.Tensor
    ) -> tuple[int, torch.Tensor, torch.Tensor]:
        """``(index, layer's cie over (head, prompt), shuffled-label probabilities)``: ``heads`` shard ``index``."""
        c = self.config
        train, clean, rng = self._prompts()
        shuffled = shuffled_prompts(self.model, train, clean.subset(kept), c.n_effect_prompts, c.n_shots, c.seed, rng)
        effects = head_indirect_effects(self.model, shuffled, means, layers=[layer])
        return index, effects.cie[0].cpu(), effects.shuffled_prob.cpu()

    def found(self, measured: Measured) -> FunctionVectorResult:
        """The function vector and its random-heads baseline, built once from the measurements."""
        if self._found is None:
            means, effects, n_clean, n_kept = measured
            model = self.model
            self._found = assemble_result(model, self.task, means.to(model.device, model.dtype), effects, n_clean, n_kept,
                                          {"task": self.task.name, **self.settings})
        return self._found

    def extraction(self, measured: Measured) -> FunctionVectorResult:
        """:meth:`found` with its tensors on the CPU, for the driver to write."""
        found = self.found(measured)
        return dataclasses.replace(
            found, means=found.means.cpu(), vectors=_on_cpu(found.vectors), random_vectors=_on_cpu(found.random_vectors)
        )

    def baselines(self, measured: Measured) -> dict[str, float]:
        """Zero-shot and in-context accuracy without any vector."""
        return baseline_accuracies(self.model, self.found(measured), batch_size=self.config.batch_size)

    def layer(self, index: int, layer: int, measured: Measured, baselines: dict[str, float]) -> tuple[int, pd.DataFrame]:
        """``(index, accuracies with the vectors injected at layer)``: one ``layers`` shard."""
        c = self.config
        frame = evaluate_function_vector(self.model, self.found(measured), [layer], c.scale, batch_size=c.batch_size,
                                         baselines=baselines)
        return index, frame


def _on_cpu(vectors: LayerVectors) -> LayerVectors:
    norms = vectors.token_norms
    return dataclasses.replace(vectors, vectors=vectors.vectors.cpu(), token_norms=None if norms is None else norms.cpu())


def run_function_vectors(
    config: FunctionVectorConfig,
    store: RunStore,
    resume: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    executor: Executor = "local",
    address: str | None = None,
    workers: int | None = None,
) -> Run:
    """Find the heads, build the function vector and sweep it over layers into a run of ``store``.

    ``resume`` continues a run (see :mod:`interp.runs.lifecycle`); ``progress(stage, done, total)``
    reports the stages (``means``, ``heads``, ``layers``), whose counts the run's manifest also
    records (:meth:`~interp.runs.Run.set_progress`). ``executor``, ``address`` and ``workers`` say
    where the shards are computed (see :mod:`interp.cluster`; a GPU per Ray actor when
    ``config.device`` is CUDA, each actor checking its device at its start).
    """
    with pool_of(executor, FunctionVectorWorker, (config,), device=config.device, address=address, workers=workers) as pool:
        plan = pool.call("plan")
        with lifecycle(store, KIND, config.model_dump(), model=plan["model"], dataset=plan["dataset"], resume=resume) as run:

            def advance(stage: str, done: int, total: int) -> None:
                run.set_progress(done, total, UNITS.get(stage, stage))
                if progress is not None:
                    progress(stage, done, total)

            found, measured = _extraction(run, pool, plan, advance)
            if "baselines" not in run.json_files():
                run.write_json("baselines", pool.call("baselines", measured))
            baselines = run.read_json("baselines")
            layers = plan["layers"]
            finished = set(run.finished_shards("layers"))
            done = len(finished & set(range(len(layers))))
            pending = [(i, layer, measured, baselines) for i, layer in enumerate(layers) if i not in finished]
            advance("layers", done, len(layers))
            for index, frame in pool.map("layer", pending):
                run.write_shard("layers", index, frame=frame)
                done += 1
                advance("layers", done, len(layers))
            accuracy = pd.concat([frame for _, _, frame in run.read_shards("layers")], ignore_index=True)
            run.write_table("accuracy", accuracy)
            run.finish(_summary(found, accuracy))
    return run


def _extraction(
    run: Run, pool: Any, plan: dict[str, Any], report: Callable[[str, int, int], None]
) -> tuple[FunctionVectorResult, Measured]:
    """The head measurements (means, then the head sweep by layer) and the vectors: read back from
    the run's shards, the missing ones computed on ``pool``; written once all are in."""
    if "head_effects" in run.tensor_files() and "extraction" in run.json_files():  # the extraction, written last
        stored, counts = run.read_tensors("head_effects"), run.read_json("extraction")
        effects = HeadEffects(tuple(counts["layers"]), tuple(counts["heads"]), stored["cie"], stored["shuffled_prob"])
        measured: Measured = (stored["means"], effects, counts["n_clean"], counts["n_kept"])
        return pool.call("extraction", measured), measured
    if 0 not in run.finished_shards("means"):
        n_clean, kept, means = pool.call("means")
        run.write_shard("means", 0, tensors={
            "means": means, "kept": torch.tensor(kept, dtype=torch.int64), "n_clean": torch.tensor([n_clean]),
        })
    stored, _ = run.read_shard("means", 0)
    means, kept, n_clean = stored["means"], stored["kept"].tolist(), int(stored["n_clean"][0])
    report("means", 1, 1)
    layers = plan["head_layers"]
    finished = set(run.finished_shards("heads"))
    pending = [(index, layer, kept, means) for index, layer in enumerate(layers) if index not in finished]
    done = len(layers) - len(pending)
    for index, cie, shuffled_prob in pool.map("heads", pending):
        run.write_shard("heads", index, tensors={"cie": cie, "shuffled_prob": shuffled_prob})
        done += 1
        report("heads", done, len(layers))
    shards = run.read_shards("heads")
    cie = torch.stack([tensors["cie"] for _, tensors, _ in shards])
    effects = HeadEffects(tuple(layers), tuple(range(cie.shape[1])), cie, shards[0][1]["shuffled_prob"])
    measured = (means, effects, n_clean, len(kept))
    found = pool.call("extraction", measured)
    run.write_tensors("head_effects", {"means": means, "cie": effects.cie, "shuffled_prob": effects.shuffled_prob})
    run.write_table("heads", found.head_table())
    found.vectors.save(vectors_path(run))
    found.random_vectors.save(vectors_path(run, "random_heads"))
    run.write_json("extraction", {
        "n_clean": n_clean, "n_kept": len(kept),
        "layers": list(effects.layers), "heads": list(effects.heads),
        "top_heads": [[layer, head] for layer, head in found.heads],
        "random_heads": found.random_vectors.meta["heads"],
    })
    return found, measured


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
