"""A full TCAV experiment: CAVs for concepts and random concepts at every layer, scores, tests.

:func:`run_tcav` does, from one seed:

1. draws random sets from a pool of ordinary text;
2. reads the pooled activations of every prompt of every set at every requested layer in one pass
   (:func:`~interp.concepts.reading.read_layers`);
3. trains ``N`` concept CAVs per layer and ``N`` random-vs-random CAVs (the null), in one of two
   designs:

   * ``disjoint`` (default): the concept's examples are split into ``N`` disjoint parts; run ``i``
     is part ``i`` against random set ``i``, and null run ``i`` is random set ``N+i`` against
     random set ``2N+i``. No two runs share data, so given the target's gradients the ``2N``
     scores are independent and, when the concept is no different from random text, identically
     distributed: the t-test and the permutation test hold their nominal level;
   * ``shared`` (the reference protocol): the whole concept set against each of ``random_1..N``,
     and the null ``random_0`` against each ``random_i``. Every concept run shares the concept set
     (and every null run ``random_0``), so scores within a group are correlated and the tests are
     too liberal: on a planted model with a concept that is pure noise, about a third of tests
     reject at 0.05 (see the tests). Use it to compare with the reference, not to decide;

4. takes the target metric's pooled gradients at every layer once
   (:func:`~interp.concepts.tcav.sensitivities`) and scores every CAV by dot products;
5. tests each (concept, layer) against the null (:mod:`interp.concepts.significance`) and corrects
   across all of them.

Every seed used (sets, splits, classifiers, permutations) derives from ``seed``, so a stored
result is reproducible bit for bit on the same machine and software.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.concepts.cav import Balance, Classifier, train_cavs
from interp.concepts.data import ConceptSet, random_sets
from interp.concepts.reading import layer_sites, read_layers
from interp.concepts.selection import LAST_TOKEN, TokenSelector
from interp.concepts.significance import benjamini_hochberg, bonferroni, compare_scores
from interp.concepts.tcav import Sensitivities, Target, sensitivities, tcav_scores
from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.vectors import LayerVectors, data_hash

Design = Literal["disjoint", "shared"]
DESIGNS: tuple[str, ...] = ("disjoint", "shared")
NULL = "random"  # the concept name under which random-vs-random scores are reported
Progress = Callable[[str], None]


@dataclass
class TCAVResult:
    """Everything a TCAV experiment produced (tables are one row per item, see :func:`run_tcav`)."""

    scores: pd.DataFrame  # concept, run, layer, sign_count, magnitude, accuracy, auc
    tests: pd.DataFrame  # concept, layer, tests and effects, corrected p-values, significant
    examples: pd.DataFrame  # concept, layer, example, derivative (mean over runs), positive_fraction
    cavs: dict[str, list[LayerVectors]]  # per concept (and NULL), one LayerVectors per run
    sens: Sensitivities
    settings: dict = field(default_factory=dict)

    def cav(self, concept: str) -> LayerVectors:
        """The concept's CAVs from its first run (against ``random_1``)."""
        if concept not in self.cavs:
            raise InvalidArgumentError(f"no concept {concept!r}; have {sorted(self.cavs)}")
        return self.cavs[concept][0]


def n_random_sets(design: Design, n_random: int) -> int:
    """How many random sets a design draws for ``n_random`` runs."""
    return 3 * n_random if design == "disjoint" else n_random + 1


def pairs(
    blocks: dict[str, Tensor], concepts: Sequence[ConceptSet], randoms: Sequence[ConceptSet], design: Design, seed: int
) -> dict[str, list[tuple[tuple[str, str], Tensor, Tensor]]]:
    """Per concept (and :data:`NULL`): ``((positive, negative) names, positive acts, negative acts)`` per run."""
    if design not in DESIGNS:
        raise InvalidArgumentError(f"design {design!r} is unknown; use one of {', '.join(DESIGNS)}")
    n = len(randoms) // 3 if design == "disjoint" else len(randoms) - 1
    if n < 2 or len(randoms) != n_random_sets(design, n):
        raise InvalidArgumentError(
            f"{len(randoms)} random sets do not fit the {design!r} design; draw n_random_sets(design, n_random) "
            "sets with n_random >= 2"
        )
    if design == "shared":
        pairs = {c.name: [((c.name, r.name), blocks[c.name], blocks[r.name]) for r in randoms[1:]] for c in concepts}
        pairs[NULL] = [((randoms[0].name, r.name), blocks[randoms[0].name], blocks[r.name]) for r in randoms[1:]]
        return pairs
    pairs = {}
    for index, concept in enumerate(concepts):
        size = len(concept) // n
        if size < 4:
            raise InvalidArgumentError(
                f"concept {concept.name!r} has {len(concept)} examples: the disjoint design splits it into "
                f"{n} parts and needs at least 4 per part; give more examples, fewer random runs, or design='shared'"
            )
        order = torch.from_numpy(np.random.default_rng([seed, index]).permutation(len(concept)))
        pairs[concept.name] = [
            ((f"{concept.name}[{i}]", randoms[i].name), blocks[concept.name][:, order[i * size : (i + 1) * size]],
             blocks[randoms[i].name])
            for i in range(n)
        ]
    pairs[NULL] = [
        ((randoms[n + i].name, randoms[2 * n + i].name), blocks[randoms[n + i].name], blocks[randoms[2 * n + i].name])
        for i in range(n)
    ]
    return pairs


def _derivatives(sens: Sensitivities, runs: list[LayerVectors]) -> Float[Tensor, "run layer n"]:
    return torch.stack([sens.derivatives(cav) for cav in runs])


def draw_randoms(
    concepts: Sequence[ConceptSet], random_pool: ConceptSet | Sequence[str], n_random: int, random_size: int | None,
    design: Design, seed: int,
) -> list[ConceptSet]:
    """The random sets a design needs (:func:`n_random_sets`), each of ``random_size`` prompts, or by
    default as many as one concept part (``disjoint``) or one concept (``shared``), within the pool."""
    if n_random < 2:
        raise InvalidArgumentError(f"n_random={n_random}: significance needs at least 2 random concepts (10 or more advised)")
    names = [c.name for c in concepts]
    if not concepts or len(set(names)) != len(names) or NULL in names:
        raise InvalidArgumentError(f"concepts {names} must be non-empty with distinct names other than {NULL!r}")
    if design not in DESIGNS:
        raise InvalidArgumentError(f"design {design!r} is unknown; use one of {', '.join(DESIGNS)}")
    part = min(len(c) for c in concepts) // n_random if design == "disjoint" else max(len(c) for c in concepts)
    n_sets = n_random_sets(design, n_random)
    size = random_size or max(min(part, len(random_pool) // n_sets), 4)
    return random_sets(random_pool, n_sets, size, seed)


def read_sets(
    model: Model, sets: Sequence[ConceptSet], kind: str, layers: Sequence[int], selector: TokenSelector = LAST_TOKEN,
    batch_size: int = 16,
) -> dict[str, Float[Tensor, "layer n *dims"]]:
    """The pooled activations of every prompt of every set at ``layers``, read in one pass, by set name."""
    prompts = [p for s in sets for p in s.prompts]
    if selector.kind == "marked" and any(s.marks is None for s in sets):
        raise InvalidArgumentError("the 'marked' selector needs marks on every concept and random example")
    marks = [m for s in sets for m in s.marks] if selector.kind == "marked" else None
    acts = read_layers(model, prompts, kind, layers, selector, marks, batch_size)
    blocks, start = {}, 0
    for s in sets:
        blocks[s.name] = acts[:, start : start + len(s)]
        start += len(s)
    return blocks


def run_tcav(
    model: Model,
    concepts: Sequence[ConceptSet],
    random_pool: ConceptSet | Sequence[str],
    target: Target,
    kind: str = "resid_post",
    layers: Sequence[int] | None = None,
    selector: TokenSelector = LAST_TOKEN,
    classifier: Classifier = "sgd",
    n_random: int = 10,
    random_size: int | None = None,
    balance: Balance = "truncate",
    alpha: float = 0.01,
    test_fraction: float = 0.33,
    n_permutations: int = 2000,
    level: float = 0.05,
    seed: int = 0,
    design: Design = "disjoint",
    batch_size: int = 16,
    progress: Progress | None = None,
) -> TCAVResult:
    """Run a TCAV experiment (see the module docstring) and return its tables and CAVs."""
    randoms = draw_randoms(concepts, random_pool, n_random, random_size, design, seed)
    chosen, _ = layer_sites(model, kind, layers)
    note = progress or (lambda stage: None)
    note("reading activations")
    blocks = read_sets(model, [*concepts, *randoms], kind, chosen, selector, batch_size)
    note("gradients")
    sens = sensitivities(model, target, kind, chosen, selector, batch_size)
    result = analyse(
        blocks, list(concepts), randoms, sens, classifier, balance, alpha, test_fraction, n_permutations, level, seed,
        design, model=getattr(model, "name", None), progress=note,
    )
    result.settings.update(run_settings(selector, randoms, target))
    return result


def run_settings(selector: TokenSelector, randoms: Sequence[ConceptSet], target: Target) -> dict:
    """The settings :func:`run_tcav` adds to :func:`analyse`'s: selector, random set size, target metric and size."""
    return {"selector": selector.kind, "random_size": len(randoms[0]), "metric": target.metric_name,
            "n_target": len(target.prompts)}


def concept_cavs(
    runs: Sequence[tuple[tuple[str, str], Tensor, Tensor]],
    kind: str,
    layers: Sequence[int],
    classifier: Classifier = "sgd",
    balance: Balance = "truncate",
    alpha: float = 0.01,
    test_fraction: float = 0.33,
    seed: int = 0,
    model: str | None = None,
) -> list[LayerVectors]:
    """One concept's CAVs, one :class:`LayerVectors` per run of :func:`pairs` (run ``i`` seeded ``seed + i``)."""
    return [
        train_cavs(
            positive, negative, kind, layers, classifier, seed + i, test_fraction, balance, alpha,
            model=model, data_hash=data_hash(label), meta={"concept": label[0], "negative": label[1]},
        )
        for i, (label, positive, negative) in enumerate(runs, start=1)
    ]


def analyse(
    blocks: dict[str, Float[Tensor, "layer n *dims"]],
    concepts: Sequence[ConceptSet],
    randoms: Sequence[ConceptSet],
    sens: Sensitivities,
    classifier: Classifier = "sgd",
    balance: Balance = "truncate",
    alpha: float = 0.01,
    test_fraction: float = 0.33,
    n_permutations: int = 2000,
    level: float = 0.05,
    seed: int = 0,
    design: Design = "disjoint",
    model: str | None = None,
    progress: Progress | None = None,
) -> TCAVResult:
    """Steps 3-5 of :func:`run_tcav` on activations already read: ``blocks[name]`` is the
    ``(layer, n, ...)`` activations of each concept and random set at ``sens``'s layers, and
    ``randoms[0]`` is the null's counterpart."""
    note = progress or (lambda stage: None)
    cavs: dict[str, list[LayerVectors]] = {}
    for name, runs in pairs(blocks, concepts, randoms, design, seed).items():
        note(f"CAVs: {name}")
        cavs[name] = concept_cavs(runs, sens.kind, list(sens.layers), classifier, balance, alpha, test_fraction, seed, model)
    note("significance")
    return score(cavs, concepts, sens, classifier, balance, alpha, test_fraction, n_permutations, level, seed, design)


def score(
    cavs: dict[str, list[LayerVectors]],
    concepts: Sequence[ConceptSet],
    sens: Sensitivities,
    classifier: Classifier = "sgd",
    balance: Balance = "truncate",
    alpha: float = 0.01,
    test_fraction: float = 0.33,
    n_permutations: int = 2000,
    level: float = 0.05,
    seed: int = 0,
    design: Design = "disjoint",
) -> TCAVResult:
    """Steps 4-5 of :func:`run_tcav`: score every CAV against ``sens`` and test each concept against the null.

    ``cavs`` holds each concept's runs and the :data:`NULL`'s; the other arguments are recorded in
    the settings (and ``seed`` seeds the permutation tests).
    """
    kind, chosen = sens.kind, list(sens.layers)
    names = [c.name for c in concepts]
    score_rows, example_rows = [], []
    for name, runs in cavs.items():
        d = _derivatives(sens, runs)
        sign, magnitude = tcav_scores(d)
        for run, cav in enumerate(runs):
            for li, layer in enumerate(chosen):
                score_rows.append({
                    "concept": name, "run": run + 1, "negative": cav.meta["negative"], "layer": layer,
                    "sign_count": float(sign[run, li]), "magnitude": float(magnitude[run, li]),
                    "accuracy": cav.meta["accuracy"][li], "auc": cav.meta["auc"][li], "is_random": name == NULL,
                })
        mean_d, positive = d.mean(0), (d > 0).double().mean(0)
        for li, layer in enumerate(chosen):
            for example in range(d.shape[-1]):
                example_rows.append({
                    "concept": name, "layer": layer, "example": example, "derivative": float(mean_d[li, example]),
                    "positive_fraction": float(positive[li, example]), "metric": float(sens.values[example]),
                })
    scores = pd.DataFrame(score_rows)
    test_rows = []
    for ci, name in enumerate(names):
        for li, layer in enumerate(chosen):
            at_layer = scores[scores.layer == layer]
            own, null = at_layer[at_layer.concept == name], at_layer[at_layer.concept == NULL]
            numbers = compare_scores(own.sign_count, null.sign_count, n_permutations, seed + 7919 * (ci * len(chosen) + li + 1))
            magnitude = compare_scores(own.magnitude, null.magnitude, n_permutations, seed + 104729 + ci * len(chosen) + li)
            test_rows.append({
                "concept": name, "layer": layer, **numbers,
                "magnitude_mean": magnitude["concept_mean"], "magnitude_random": magnitude["random_mean"],
                "p_t_magnitude": magnitude["p_t"],
                "accuracy": float(own.accuracy.mean()), "auc": float(own.auc.mean()),
            })
    tests = pd.DataFrame(test_rows)
    tests["p_bonferroni"] = bonferroni(tests.p_t)
    tests["p_bh"] = benjamini_hochberg(tests.p_t)
    tests["p_perm_bh"] = benjamini_hochberg(tests.p_perm)
    tests["significant"] = tests.p_bonferroni < level
    settings = {
        "kind": kind, "layers": chosen, "classifier": classifier, "design": design,
        "n_random": len(cavs[NULL]),
        "balance": balance, "alpha": alpha, "test_fraction": test_fraction,
        "n_permutations": n_permutations, "level": level, "seed": seed, "concepts": {c.name: len(c) for c in concepts},
    }
    return TCAVResult(scores, tests, pd.DataFrame(example_rows), cavs, sens, settings)
