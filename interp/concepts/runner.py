"""Running a TCAV config into the results store (``interp tcav CONFIG``).

A run of kind ``"tcav"`` holds the tables ``scores`` (one row per CAV run and layer), ``tests``
(one row per concept and layer: tests, effects, corrected p-values), ``examples`` (per-example
directional derivatives), optionally ``steer`` (causal effect per concept and layer), ``gcav`` and
``gcav_variance`` (TCAV per layer before and after alignment, global CAVs under ``gcavs/``), and
``nmf_top`` with the JSON ``nmf`` (fidelity of the factorisation); the JSON ``settings`` and ``target`` (prompts and their tokens, for drill-down);
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
from interp.concepts.gcav import gcav
from interp.concepts.nmf import nmf_concepts, prediction_fidelity, top_examples
from interp.concepts.reading import read_layers
from interp.concepts.selection import TokenSelector
from interp.concepts.tcav import load_target
from interp.config import DTYPES
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.sites import site_name

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
        if config.gcav is not None and config.gcav.enabled and len(result.settings["layers"]) > 1:
            note("GCAV")
            aligned = gcav(
                {c.name: result.cav(c.name) for c in concepts}, result.cavs[NULL], result.sens, config.gcav.dim,
                config.gcav.steps, config.gcav.fusion_steps, config.seed,
            )
            run.write_table("gcav", aligned.table)
            run.write_table("gcav_variance", aligned.variance)
            for name, vectors in aligned.cavs.items():
                vectors.save(run.path / "gcavs" / name)
        if config.nmf is not None and config.nmf.enabled:
            note("NMF concepts")
            selector = TokenSelector(config.selector)
            texts = [p for c in concepts for p in c.prompts] + list(pool.prompts)
            marks = None
            if selector.kind == "marked":
                marks = [m for c in concepts for m in (c.marks or [None] * len(c))] + list(pool.marks or [None] * len(pool))
            acts = read_layers(model, texts, config.kind, [config.nmf.layer], selector, marks, config.batch_size)[0]
            factors = nmf_concepts(acts.flatten(1).cpu(), site_name(config.kind, config.nmf.layer), config.nmf.components,
                                   config.seed)
            fidelity = prediction_fidelity(model, factors, target, config.nmf.layer, config.kind, selector, config.batch_size)
            run.write_table("nmf_top", top_examples(factors, texts, config.nmf.top))
            run.write_json("nmf", {"layer": config.nmf.layer, "components": config.nmf.components, "r2": factors.r2,
                                   **fidelity})
        significant = result.tests[result.tests.significant]
        run.finish({
            "concepts": len(concepts), "layers": len(result.settings["layers"]),
            "significant": [f"{r.concept}@{r.layer}" for r in significant.itertuples()],
        })
    return run, result
