"""Function vectors (Todd et al. 2024): find the heads that carry an in-context task, sum their mean
outputs into one vector, and show that the vector alone makes the model do the task zero-shot.

    >>> task = load_icl_task("antonyms")
    >>> found = extract_function_vector(model, task, n_top_heads=10)
    >>> found.aie                                  # (layer, head) average indirect effects
    >>> found.vectors                              # LayerVectors at resid_post of every layer
    >>> table = evaluate_function_vector(model, found, layers=[3, 6, 9])
    >>> table[["layer", "zero_shot", "fv", "random_heads", "icl"]]

The steps, each in its own module:

1. :mod:`.fv_tasks`: a seeded train/test split of the task's pairs; clean ``n_shots``-shot prompts
   whose queries come from the train split (never among their own demonstrations);
2. :mod:`.fv_heads`: keep the clean prompts the model answers correctly (``filter_correct``),
   average every head's last-token activation over them, and measure each head's average indirect
   effect on shuffled-label prompts through the patching engine;
3. :mod:`.fv_vector`: the FV is the sum of the top ``n_top_heads`` heads' mean outputs through
   ``W_O``; a random-heads vector of as many heads (seeded) is the baseline;
4. :func:`evaluate_function_vector`: top-1 accuracy of the first answer token on zero-shot prompts
   of the *held-out* test queries, unsteered, with the FV added at each layer of a sweep, with the
   random-heads vector at the same layers, and with ``n_shots`` demonstrations (the in-context
   ceiling).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
from jaxtyping import Float

from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.steering.fv_heads import HeadEffects, correct_mask, head_indirect_effects, mean_head_activations
from interp.steering.fv_tasks import ICLPrompts, ICLTask, build_prompts
from interp.steering.fv_vector import Head, function_vector, injection, random_heads, top_heads
from interp.vectors import LayerVectors, data_hash


@dataclass(frozen=True)
class FunctionVectorResult:
    """What :func:`extract_function_vector` found.

    Attributes:
        task: the task's name.
        means: mean last-token head activations over the kept clean prompts.
        effects: per-head causal indirect effects on the shuffled-label prompts.
        heads: the top heads ``(layer, head)``, largest AIE first.
        vectors: the FV at ``resid_post`` of every layer (head table in ``meta``).
        random_vectors: the random-heads baseline, same number of heads.
        train, test: the split of the task's pairs.
        n_clean, n_kept: clean prompts built, and kept (answered correctly) for the means.
        settings: the arguments that produced it.
    """

    task: str
    means: Float[torch.Tensor, "layer head d_head"]
    effects: HeadEffects
    heads: list[Head]
    vectors: LayerVectors
    random_vectors: LayerVectors
    train: ICLTask
    test: ICLTask
    n_clean: int
    n_kept: int
    settings: dict = field(default_factory=dict)

    @property
    def aie(self) -> Float[torch.Tensor, "layer head"]:
        return self.effects.aie

    def head_table(self) -> pd.DataFrame:
        """One row per measured head: layer, head, AIE, its rank and whether the FV uses it."""
        aie = self.aie
        chosen = set(self.heads)
        rows = [
            {"layer": layer, "head": head, "aie": float(aie[i, j]), "in_fv": (layer, head) in chosen}
            for i, layer in enumerate(self.effects.layers)
            for j, head in enumerate(self.effects.heads)
        ]
        table = pd.DataFrame(rows)
        table["rank"] = table["aie"].rank(ascending=False, method="first").astype(int)
        return table


def _queries(pairs: Sequence[tuple[str, str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    """``n`` queries: distinct while the pairs last, then drawn again."""
    pairs = list(pairs)
    if n <= len(pairs):
        return rng.sample(pairs, n)
    return rng.sample(pairs, len(pairs)) + rng.choices(pairs, k=n - len(pairs))


def clean_prompts(
    model: Model, task: ICLTask, n_shots: int, n_mean_prompts: int, test_fraction: float, seed: int
) -> tuple[ICLTask, ICLPrompts, random.Random]:
    """The train split, the clean prompts the means average over, and the seeded random state the
    shuffled-label prompts' queries are drawn from next (:func:`shuffled_prompts`)."""
    train, _ = task.split(test_fraction, seed)
    rng = random.Random(seed)
    clean = build_prompts(model.tokenizer, train, _queries(train.pairs, n_mean_prompts, rng), n_shots, seed)
    return train, clean, rng


def kept_rows(model: Model, clean: ICLPrompts, filter_correct: bool, batch_size: int, task_name: str) -> list[int]:
    """The clean prompts the means average over: those the model answers correctly, or all of them."""
    if not filter_correct:
        return list(range(len(clean)))
    kept = correct_mask(model, clean, batch_size=batch_size).nonzero().flatten().tolist()
    if not kept:
        raise InvalidArgumentError(
            f"the model answers none of the {len(clean)} clean prompts of task {task_name!r} correctly, so there "
            "is nothing to average; use more shots, another task, or filter_correct=False"
        )
    return kept


def shuffled_prompts(
    model: Model, train: ICLTask, kept: ICLPrompts, n_effect_prompts: int, n_shots: int, seed: int, rng: random.Random
) -> ICLPrompts:
    """Shuffled-label prompts whose queries are among the kept clean prompts' (the AIE's prompts)."""
    good_queries = sorted(set(zip(kept.queries, kept.answers, strict=True)))
    return build_prompts(
        model.tokenizer, train, _queries(good_queries, n_effect_prompts, rng), n_shots, seed + 1, shuffle_labels=True
    )


def extract_function_vector(
    model: Model,
    task: ICLTask,
    n_shots: int = 10,
    n_mean_prompts: int = 100,
    n_effect_prompts: int = 25,
    n_top_heads: int = 10,
    filter_correct: bool = True,
    test_fraction: float = 0.3,
    seed: int = 42,
    with_bias: bool = False,
    batch_size: int = 16,
    progress: Callable[[str, int, int], None] | None = None,
) -> FunctionVectorResult:
    """Mean head activations, per-head AIE and the function vector of ``task`` (defaults: the paper's).

    Args:
        model: the model.
        task: the in-context task (:func:`~interp.steering.fv_tasks.load_icl_task`).
        n_shots: demonstrations per in-context prompt.
        n_mean_prompts: clean prompts built for the mean activations (before filtering).
        n_effect_prompts: shuffled-label prompts the AIE averages over.
        n_top_heads: heads summed into the FV.
        filter_correct: average and measure only on queries the model answers correctly in context.
        test_fraction: share of the pairs held out for evaluation.
        seed: seeds the split, the prompts and the random-heads baseline.
        with_bias: add the out-projection's bias once per head (the reference implementation's form).
        batch_size: prompts per forward for the means and the filter.
        progress: called as ``progress(stage, done, total)``.
    """
    train, clean, rng = clean_prompts(model, task, n_shots, n_mean_prompts, test_fraction, seed)
    kept = kept_rows(model, clean, filter_correct, batch_size, task.name)
    kept_prompts = clean.subset(kept)
    if progress is not None:
        progress("means", 0, 1)
    means = mean_head_activations(model, kept_prompts, batch_size)
    if progress is not None:
        progress("means", 1, 1)
    shuffled = shuffled_prompts(model, train, kept_prompts, n_effect_prompts, n_shots, seed, rng)
    total = model.dims.n_layers * model.dims.n_heads
    done = [0]

    def heads_done(count: int) -> None:
        done[0] += count
        if progress is not None:
            progress("heads", done[0], total)

    effects = head_indirect_effects(model, shuffled, means, progress=heads_done)
    settings = {
        "task": task.name, "n_shots": n_shots, "n_mean_prompts": n_mean_prompts, "n_effect_prompts": n_effect_prompts,
        "n_top_heads": n_top_heads, "filter_correct": filter_correct, "test_fraction": test_fraction, "seed": seed,
        "with_bias": with_bias,
    }
    return assemble_result(model, task, means, effects, len(clean), len(kept_prompts), settings)


def assemble_result(
    model: Model,
    task: ICLTask,
    means: Float[torch.Tensor, "layer head d_head"],
    effects: HeadEffects,
    n_clean: int,
    n_kept: int,
    settings: dict,
) -> FunctionVectorResult:
    """The FV, the random-heads baseline and the split, from measured means and effects (deterministic:
    a resumed run rebuilds them from its stored measurements). ``settings`` holds ``n_top_heads``,
    ``seed``, ``test_fraction`` and ``with_bias``."""
    k, seed, with_bias = int(settings["n_top_heads"]), int(settings["seed"]), bool(settings["with_bias"])
    train, test = task.split(float(settings["test_fraction"]), seed)
    heads = top_heads(effects.aie, k, effects.layers)
    all_layers = list(range(model.dims.n_layers))
    aie = effects.aie
    table = [[layer, head, float(aie[effects.layers.index(layer), effects.heads.index(head)])] for layer, head in heads]
    vectors = function_vector(
        model, means, heads, all_layers, with_bias,
        meta={"head_table": table, "columns": ["layer", "head", "aie"], **settings},
    )
    vectors = dataclasses.replace(vectors, data_hash=data_hash(train.pairs))
    baseline_heads = random_heads(model.dims.n_layers, model.dims.n_heads, k, seed)
    random_vectors = function_vector(model, means, baseline_heads, all_layers, with_bias, method="random_heads", meta=settings)
    return FunctionVectorResult(task.name, means, effects, heads, vectors, random_vectors, train, test, n_clean, n_kept, settings)


def accuracy(model: Model, prompts: ICLPrompts, vectors: LayerVectors | None = None, layer: int | None = None,
             scale: float = 1.0, batch_size: int = 32) -> float:
    """Top-1 accuracy of the first answer token, with ``vectors`` added at ``layer``'s last token if given."""
    if vectors is not None and layer is None:
        raise InvalidArgumentError(f"say which layer to add the vectors at: one of {list(vectors.layers)}")
    interventions = [] if vectors is None or layer is None else [injection(vectors, int(layer), scale)]
    return float(correct_mask(model, prompts, interventions, batch_size).float().mean())


def evaluation_prompts(model: Model, found: FunctionVectorResult, n_shots: int | None = None) -> tuple[ICLPrompts, ICLPrompts]:
    """(zero-shot, in-context) prompts of the held-out queries; demonstrations from the train split."""
    seed = int(found.settings.get("seed", 0))
    shots = int(found.settings.get("n_shots", 10)) if n_shots is None else n_shots
    zero = build_prompts(model.tokenizer, found.train, found.test.pairs, 0, seed)
    return zero, build_prompts(model.tokenizer, found.train, found.test.pairs, shots, seed)


def baseline_accuracies(
    model: Model, found: FunctionVectorResult, n_shots: int | None = None, batch_size: int = 32
) -> dict[str, float]:
    """Accuracy on the held-out queries without any vector: zero-shot, and with demonstrations."""
    zero, icl = evaluation_prompts(model, found, n_shots)
    return {"zero_shot": accuracy(model, zero, batch_size=batch_size), "icl": accuracy(model, icl, batch_size=batch_size)}


def evaluate_function_vector(
    model: Model,
    found: FunctionVectorResult,
    layers: Sequence[int] | None = None,
    scale: float = 1.0,
    n_shots: int | None = None,
    batch_size: int = 32,
    progress: Callable[[str, int, int], None] | None = None,
    baselines: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Zero-shot accuracy on the held-out queries, per layer: unsteered, with the FV, with the
    random-heads vector, and the ``n_shots``-shot in-context accuracy (the same for every layer).

    ``baselines`` (from :func:`baseline_accuracies`) saves recomputing the unsteered accuracies.
    Columns: ``layer, zero_shot, fv, random_heads, icl, n``.
    """
    layers = list(found.vectors.layers) if layers is None else [int(layer) for layer in layers]
    if not layers:
        raise InvalidArgumentError("no layers to evaluate; give at least one")
    zero, _ = evaluation_prompts(model, found, n_shots)
    if baselines is None:
        baselines = baseline_accuracies(model, found, n_shots, batch_size)
    rows = []
    for index, layer in enumerate(layers):
        rows.append({
            "layer": layer,
            "zero_shot": baselines["zero_shot"],
            "fv": accuracy(model, zero, found.vectors, layer, scale, batch_size),
            "random_heads": accuracy(model, zero, found.random_vectors, layer, scale, batch_size),
            "icl": baselines["icl"],
            "n": len(zero),
        })
        if progress is not None:
            progress("layers", index + 1, len(layers))
    return pd.DataFrame(rows)
