"""Running a TCAV config into the results store (``interp tcav CONFIG``), one resumable stage at a time.

A run of kind ``"tcav"`` holds the tables ``scores`` (one row per CAV run and layer), ``tests``
(one row per concept and layer: tests, effects, corrected p-values), ``examples`` (per-example
directional derivatives), optionally ``steer`` (causal effect per concept and layer), ``gcav`` and
``gcav_variance`` (TCAV per layer before and after alignment, global CAVs under ``gcavs/``), and
``nmf_top`` with the JSON ``nmf`` (fidelity of the factorisation); the JSON ``settings`` and
``target`` (prompts and their tokens, for drill-down); and each concept's CAVs (its first run) as
a vectors directory under ``cavs/<concept>`` (safetensors + JSON, readable with
:func:`interp.vectors.load_vectors`).

**Stages and resuming.** The work is done in stages, each recorded as shards of the run
(:mod:`interp.runs.shards`: payload first, done-marker last) as soon as it finishes:

=================  =====================================================================
``activations``    the pooled activations of every concept and random set (one shard)
``gradients``      the target metric's pooled gradients and values (one shard)
``cavs``           every CAV run of one concept, or of the random null (one shard each)
``significance``   scores, tests and per-example tables (marker after the tables)
``steer``          the causal check of one concept (one shard each)
``gcav``           global CAVs and the variance tables (marker after them)
``nmf``            NMF concepts and their fidelity (marker after them)
=================  =====================================================================

The run's manifest records how many of these shards are finished (:meth:`~interp.runs.Run.set_progress`,
unit ``stages``), so the app shows a run still being written with how far it has got.

``interp tcav CONFIG --resume RUN`` (or ``latest``) reopens a run only if its stored config equals
this one (:func:`interp.runs.lifecycle`), reads the finished stages back and computes only the
rest. Every stage is deterministic given its inputs, and the inputs are read back exactly as they
were written, so a resumed run's tables equal an uninterrupted run's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch

from interp.concepts.causal import steer_effect
from interp.concepts.config import TCAVConfig
from interp.concepts.data import ConceptSet, load_concept
from interp.concepts.experiment import (
    NULL,
    TCAVResult,
    concept_cavs,
    draw_randoms,
    pairs,
    read_sets,
    run_settings,
    score,
)
from interp.concepts.gcav import gcav
from interp.concepts.nmf import nmf_concepts, prediction_fidelity, top_examples
from interp.concepts.reading import layer_sites, read_layers
from interp.concepts.selection import TokenSelector
from interp.concepts.tcav import Sensitivities, Target, load_target, sensitivities
from interp.config import DTYPES
from interp.model import Model
from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.sites import site_name
from interp.vectors import LayerVectors

KIND = "tcav"
Note = Callable[[str], None]


def _target_tokens(model, prompts: list[str]) -> list[list[str]]:
    batch = model.to_tokens(prompts)
    tokens = []
    for row, length in zip(batch.input_ids.cpu(), batch.lengths.cpu().tolist(), strict=True):
        tokens.append([model.tokenizer.decode([int(i)]) for i in row[len(row) - length :]])
    return tokens


STAGE_GROUPS = ("activations", "gradients", "cavs", "significance", "steer", "gcav", "nmf")


def _stage_count(config: TCAVConfig, n_pairs: int, n_layers: int) -> int:
    """The shards a finished run of ``config`` holds over :data:`STAGE_GROUPS` (``n_pairs``: the concepts and the null)."""
    steer = len(config.concepts) if config.steer is not None and config.steer.enabled else 0
    gcav_stage = int(config.gcav is not None and config.gcav.enabled and n_layers > 1)
    nmf_stage = int(config.nmf is not None and config.nmf.enabled)
    return 2 + n_pairs + 1 + steer + gcav_stage + nmf_stage


def _record(run: Run, total: int, stage: str) -> None:
    """The run's progress: its finished stage shards, read from the run itself (so a resume counts right)."""
    done = sum(len(run.finished_shards(group)) for group in STAGE_GROUPS)
    run.set_progress(min(done, total), total, "stages", stage=stage)


def _done(run: Run, stage: str, index: int = 0) -> bool:
    return index in run.finished_shards(stage)


def _activations(
    run: Run, model: Model, sets: Sequence[ConceptSet], config: TCAVConfig, layers: list[int], selector: TokenSelector,
    note: Note,
) -> dict[str, torch.Tensor]:
    if not _done(run, "activations"):
        note("reading activations")
        blocks = read_sets(model, sets, config.kind, layers, selector, config.batch_size)
        run.write_shard("activations", 0, tensors={name: block.contiguous() for name, block in blocks.items()})
        return blocks
    return run.read_shard("activations", 0)[0]


def _gradients(
    run: Run, model: Model, target: Target, config: TCAVConfig, layers: list[int], selector: TokenSelector, note: Note
) -> Sensitivities:
    if not _done(run, "gradients"):
        note("gradients")
        sens = sensitivities(model, target, config.kind, layers, selector, config.batch_size)
        ranges = torch.tensor(sens.ranges, dtype=torch.int64).reshape(-1, 2)
        run.write_shard("gradients", 0, tensors={"grads": sens.grads.contiguous(), "values": sens.values, "ranges": ranges})
        return sens
    stored = run.read_shard("gradients", 0)[0]
    ranges = [(int(lo), int(hi)) for lo, hi in stored["ranges"].tolist()]
    return Sensitivities(config.kind, tuple(layers), stored["grads"], stored["values"], ranges)


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else v.tolist())


def _write_cavs(run: Run, index: int, runs: list[LayerVectors]) -> None:
    tensors = {"vectors": torch.stack([cav.vectors for cav in runs]).contiguous()}
    if all(cav.token_norms is not None for cav in runs):
        tensors["token_norms"] = torch.stack([cav.token_norms for cav in runs]).contiguous()
    frame = pd.DataFrame([
        {"method": cav.method, "model": _json(cav.model), "data_hash": cav.data_hash, "meta": _json(dict(cav.meta))}
        for cav in runs
    ])
    run.write_shard("cavs", index, tensors=tensors, frame=frame)


def _read_cavs(run: Run, index: int, kind: str, layers: list[int]) -> list[LayerVectors]:
    tensors, frame = run.read_shard("cavs", index)
    norms = tensors.get("token_norms")
    return [
        LayerVectors(kind, tuple(layers), tensors["vectors"][i], row.method, json.loads(row.model), row.data_hash,
                     None if norms is None else norms[i], json.loads(row.meta))
        for i, row in enumerate(frame.itertuples())
    ]


def _significance(
    run: Run, cavs: dict[str, list[LayerVectors]], concepts: Sequence[ConceptSet], sens: Sensitivities,
    config: TCAVConfig, extra: dict[str, Any], note: Note,
) -> TCAVResult:
    if not _done(run, "significance"):
        note("significance")
        result = score(cavs, concepts, sens, config.classifier, config.balance, config.alpha, config.test_fraction,
                       config.n_permutations, config.level, config.seed, config.design)
        result.settings.update(extra)
        run.write_table("scores", result.scores)
        run.write_table("tests", result.tests)
        run.write_table("examples", result.examples)
        run.write_json("settings", result.settings)
        run.write_shard("significance", 0)
        return result
    return TCAVResult(run.read_table("scores"), run.read_table("tests"), run.read_table("examples"), cavs, sens,
                      run.read_json("settings"))


def _steer(run: Run, model: Model, concepts: Sequence[ConceptSet], result: TCAVResult, target: Target,
           config: TCAVConfig, note: Note) -> None:
    for index, concept in enumerate(concepts):
        if not _done(run, "steer", index):
            note(f"steering: {concept.name}")
            effect = steer_effect(model, result.cav(concept.name), target, config.steer.strength, config.steer.unit,
                                  config.batch_size)
            run.write_shard("steer", index, frame=effect.table.assign(concept=concept.name))
    run.write_table("steer", pd.concat([frame for _, _, frame in run.read_shards("steer")], ignore_index=True))


def _gcav(run: Run, concepts: Sequence[ConceptSet], result: TCAVResult, config: TCAVConfig, note: Note) -> None:
    if _done(run, "gcav"):
        return
    note("GCAV")
    aligned = gcav(
        {c.name: result.cavs[c.name] for c in concepts}, result.cavs[NULL], result.sens, config.gcav.dim,
        config.gcav.steps, config.gcav.fusion_steps, config.seed,
    )
    run.write_table("gcav", aligned.table)
    run.write_table("gcav_variance", aligned.variance)
    for name, vectors in aligned.cavs.items():
        vectors.save(run.path / "gcavs" / name)
    run.write_shard("gcav", 0)


def _nmf(run: Run, model: Model, concepts: Sequence[ConceptSet], pool: ConceptSet, target: Target, config: TCAVConfig,
         note: Note) -> None:
    if _done(run, "nmf"):
        return
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
    run.write_json("nmf", {"layer": config.nmf.layer, "components": config.nmf.components, "r2": factors.r2, **fidelity})
    run.write_shard("nmf", 0)


def run_config(
    config: TCAVConfig, store: RunStore, progress: Note | None = None, resume: str | None = None
) -> tuple[Run, TCAVResult]:
    """Execute ``config`` and record it as a run of kind ``"tcav"`` (stages reported to ``progress``).

    ``resume`` continues a run whose config equals ``config`` from its last finished stage (see the
    module docstring).
    """
    note = progress or (lambda stage: None)
    model = load_model(config.model, device=config.device, dtype=DTYPES[config.dtype])
    concepts = [load_concept(c.path, c.name) for c in config.concepts]
    pool = load_concept(config.random, "random_pool")
    target = load_target(model, config.target.path, config.target.metric)
    selector = TokenSelector(config.selector)
    randoms = draw_randoms(concepts, pool, config.n_random, config.random_size, config.design, config.seed)
    layers, _ = layer_sites(model, config.kind, config.layers)
    dataset = {"name": target.name, "concepts": [c.name for c in concepts], "examples": len(target.prompts)}
    with lifecycle(store, KIND, config.model_dump(mode="json"), model={"name": model.name}, dataset=dataset,
                   resume=resume) as run:
        n_pairs = len(concepts) + 1  # each concept's CAV runs, and the random null's
        total = _stage_count(config, n_pairs, len(layers))
        _record(run, total, "opened")
        blocks = _activations(run, model, [*concepts, *randoms], config, layers, selector, note)
        _record(run, total, "activations")
        sens = _gradients(run, model, target, config, layers, selector, note)
        _record(run, total, "gradients")
        prompts = list(target.prompts)
        run.write_json("target", {
            "prompts": prompts, "tokens": _target_tokens(model, prompts), "ranges": [list(r) for r in sens.ranges],
            "metric": target.metric_name, "values": sens.values.tolist(),
        })
        cavs: dict[str, list[LayerVectors]] = {}
        for index, (name, runs) in enumerate(pairs(blocks, concepts, randoms, config.design, config.seed).items()):
            if _done(run, "cavs", index):
                cavs[name] = _read_cavs(run, index, config.kind, layers)
                continue
            note(f"CAVs: {name}")
            cavs[name] = concept_cavs(runs, config.kind, layers, config.classifier, config.balance, config.alpha,
                                      config.test_fraction, config.seed, model.name)
            cavs[name][0].save(run.path / "cavs" / name)
            _write_cavs(run, index, cavs[name])
            _record(run, total, f"CAVs: {name}")
        result = _significance(run, cavs, concepts, sens, config, run_settings(selector, randoms, target), note)
        _record(run, total, "significance")
        if config.steer is not None and config.steer.enabled:
            _steer(run, model, concepts, result, target, config, note)
            _record(run, total, "steering")
        if config.gcav is not None and config.gcav.enabled and len(layers) > 1:
            _gcav(run, concepts, result, config, note)
            _record(run, total, "GCAV")
        if config.nmf is not None and config.nmf.enabled:
            _nmf(run, model, concepts, pool, target, config, note)
            _record(run, total, "NMF")
        significant = result.tests[result.tests.significant]
        run.finish({
            "concepts": len(concepts), "layers": len(layers),
            "significant": [f"{r.concept}@{r.layer}" for r in significant.itertuples()],
        })
    return run, result
