"""Strength sweeps: the effect-versus-damage table of a steering vector, per layer.

For each layer and each strength, :func:`strength_sweep` steers the same prompts with that layer's
vector alone (:func:`interp.steering.apply.steer`), generates, and measures every step against the
unsteered model (:func:`interp.steering.evaluate.evaluate`). Three tables come back:

* ``table``: one row per (layer, strength): mean KL(steered || unsteered), KL at the first
  generated token, entropy, perplexity of the steered text under the unsteered model, the
  behaviour score and its change from the unsteered baseline. Reading down a layer's rows gives
  the curve to choose a strength from: the most effect at a KL (damage) one accepts.
* ``steps``: one row per (layer, strength, prompt, step) with the token and its KL, entropy, NLL
  and score (the per-token "where was I steered" view).
* ``samples``: steered and unsteered texts side by side.

Strength 0 is the unsteered model; it is run once and shared by every layer's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.positions import Scope
from interp.steering.apply import steer
from interp.steering.evaluate import Score, SteeredRun, evaluate
from interp.vectors import LayerVectors, StrengthUnit


@dataclass(frozen=True)
class SweepResult:
    """The three tables of a sweep (see the module docstring)."""

    table: pd.DataFrame
    steps: pd.DataFrame
    samples: pd.DataFrame


def _step_rows(run: SteeredRun, model: Model, layer: int, strength: float) -> list[dict]:
    rows = []
    generated = run.generation.generated
    for row in range(generated.shape[0]):
        for step in range(int(run.generation.generated_lengths[row])):
            token = int(generated[row, step])
            rows.append(
                {
                    "layer": layer,
                    "strength": strength,
                    "row": row,
                    "step": step,
                    "token_id": token,
                    "token": model.tokenizer.decode([token]),
                    "kl": float(run.kl[row, step]),
                    "entropy": float(run.entropy[row, step]),
                    "nll": float(run.nll[row, step]),
                    "score": float(run.score[row, step]) if run.score is not None else float("nan"),
                }
            )
    return rows


def strength_sweep(
    model: Model,
    vectors: LayerVectors,
    prompts: Sequence[str],
    strengths: Sequence[float],
    layers: Sequence[int] | None = None,
    unit: StrengthUnit = "norm",
    scope: Scope = "all",
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    seed: int | None = 0,
    score: Score | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Steer ``prompts`` at each layer and strength; see the module docstring for the tables."""
    if not prompts:
        raise InvalidArgumentError("a strength sweep needs at least one prompt")
    if not strengths:
        raise InvalidArgumentError("a strength sweep needs at least one strength")
    chosen = list(vectors.layers if layers is None else layers)
    for layer in chosen:
        vectors.site(layer)
    settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed, "score": score}
    baseline = evaluate(model, list(prompts), [], **settings)
    base_summary = baseline.summary()
    table, steps, samples = [], [], []
    total, done = len(chosen) * len(strengths), 0
    for layer in chosen:
        for strength in strengths:
            strength = float(strength)
            interventions = steer(vectors, strength, unit, layers=[layer], scope=scope)
            run = baseline if not interventions else evaluate(model, list(prompts), interventions, **settings)
            summary = run.summary()
            table.append(
                {
                    "layer": layer,
                    "strength": strength,
                    "unit": unit,
                    "raw_strength": vectors.raw_strength(layer, strength, unit),
                    **summary,
                    "score_delta": summary.get("score", float("nan")) - base_summary.get("score", float("nan")),
                }
            )
            steps.extend(_step_rows(run, model, layer, strength))
            for row, (prompt, text) in enumerate(zip(prompts, run.generation.texts, strict=True)):
                samples.append(
                    {
                        "layer": layer,
                        "strength": strength,
                        "row": row,
                        "prompt": prompt,
                        "baseline": baseline.generation.texts[row],
                        "steered": text,
                    }
                )
            done += 1
            if progress is not None:
                progress(done, total)
    return SweepResult(pd.DataFrame(table), pd.DataFrame(steps), pd.DataFrame(samples))
