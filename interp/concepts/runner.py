"""Running a TCAV config into the results store (``interp tcav CONFIG``).

A run of kind ``"tcav"`` holds the tables ``scores`` (one row per CAV run and layer), ``tests``
(one row per concept and layer: tests, effects, corrected p-values), ``examples`` (per-example
directional derivatives), optionally ``steer`` (causal effect per concept and layer), ``gcav``
and ``nmf_*``; the JSON ``settings`` and ``target`` (prompts and their tokens, for drill-down);
and each concept's CAVs as a vectors directory under ``cavs/<concept>`` (safetensors + JSON,
readable with :func:`interp.vectors.load_vectors`).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from interp.concepts.causal import steer_effect
from interp.concepts.config import TCAVConfig
from interp.concepts.data import load_concept
from interp.concepts.experiment import NULL, TCAVResult, run_tcav
from interp.concepts.selection import TokenSelector
from interp.concepts.tcav import load_target
from interp.config import DTYPES
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle

KIND = "tcav"


def _target_tokens(model, prompts: list[str]) -> list[list[str]]:
    batch = model.to_tokens(prompts)
    tokens = []
    for row, length in zip(batch.input_ids.cpu(), batch.lengths.cpu().tolist(), strict=True):
        tokens.append([model.tokenizer.decode([int(i)]) for i in row[len(row) - length :]])
    return tokens


def run_config(
    config: TCAVConfig, store: RunStore, progress: Callable[[str], None] | None = None, resume: str | None = None
) -> tuple[Run, TCAVResult]:
    """Execute ``config`` and record it as a run of kind ``"tcav"`` (stages reported to ``progress``)."""
    note = progress or (lambda stage: None)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    concepts = [load_concept(c.path, c.name) for c in config.concepts]
    pool = load_concept(config.random, "random_pool")
    target = load_target(model, config.target.path, config.target.metric)
    dataset = {"name": target.name, "concepts": [c.name for c in concepts], "examples": len(target.prompts)}
    with lifecycle(store, KIND, config.model_dump(mode="json"), model={"name": model.name}, dataset=dataset,
                   resume=resume) as run:
        result = run_tcav(
            model, concepts, pool, target, config.kind, config.layers, TokenSelector(config.selector),
            config.classifier, config.n_random, config.random_size, config.balance, config.alpha,
            config.test_fraction, config.n_permutations, config.level, config.seed, config.design,
            config.batch_size, note,
        )
        run.write_table("scores", result.scores)
        run.write_table("tests", result.tests)
        run.write_table("examples", result.examples)
        run.write_json("settings", result.settings)
        prompts = list(target.prompts)
        run.write_json("target", {
            "prompts": prompts, "tokens": _target_tokens(model, prompts), "ranges": [list(r) for r in result.sens.ranges],
            "metric": target.metric_name, "values": result.sens.values.tolist(),
        })
        for name in [*[c.name for c in concepts], NULL]:
            result.cav(name).save(run.path / "cavs" / name)
        if config.steer is not None and config.steer.enabled:
            tables = []
            for concept in concepts:
                note(f"steering: {concept.name}")
                effect = steer_effect(model, result.cav(concept.name), target, config.steer.strength, config.steer.unit,
                                      config.batch_size)
                tables.append(effect.table.assign(concept=concept.name))
            run.write_table("steer", pd.concat(tables, ignore_index=True))
        significant = result.tests[result.tests.significant]
        run.finish({
            "concepts": len(concepts), "layers": len(result.settings["layers"]),
            "significant": [f"{r.concept}@{r.layer}" for r in significant.itertuples()],
        })
    return run, result
