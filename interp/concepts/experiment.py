"""A full TCAV experiment: CAVs for concepts and random concepts at every layer, scores, tests.

:func:`run_tcav` does, from one seed:

1. draws ``n_random + 1`` random sets from a pool of ordinary text (``random_0`` is held back as
   the null's counterpart);
2. reads the pooled activations of every prompt of every set at every requested layer in one pass
   (:func:`~interp.concepts.reading.read_layers`);
3. trains, for each concept, one CAV per layer against each ``random_i`` (``i = 1..N``), and the
   null CAVs ``random_0`` vs ``random_i``;
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

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.concepts.cav import Balance, Classifier, train_cavs
from interp.concepts.data import ConceptSet, random_sets
from interp.concepts.reading import layer_sites, read_layers
from interp.concepts.selection import TokenSelector
from interp.concepts.significance import benjamini_hochberg, bonferroni, compare_scores
from interp.concepts.tcav import Sensitivities, Target, sensitivities, tcav_scores
from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.vectors import LayerVectors, data_hash

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


def _derivatives(sens: Sensitivities, runs: list[LayerVectors]) -> Float[Tensor, "run layer n"]:
    return torch.stack([sens.derivatives(cav) for cav in runs])


def run_tcav(
    model: Model,
    concepts: Sequence[ConceptSet],
    random_pool: ConceptSet | Sequence[str],
    target: Target,
    kind: str = "resid_post",
    layers: Sequence[int] | None = None,
    selector: TokenSelector = TokenSelector("last"),
    classifier: Classifier = "sgd",
    n_random: int = 10,
    random_size: int | None = None,
    balance: Balance = "truncate",
    alpha: float = 0.01,
    test_fraction: float = 0.33,
    n_permutations: int = 2000,
    level: float = 0.05,
    seed: int = 0,
    batch_size: int = 16,
    progress: Progress | None = None,
) -> TCAVResult:
    """Run a TCAV experiment (see the module docstring) and return its tables and CAVs."""
    if n_random < 2:
        raise InvalidArgumentError(f"n_random={n_random}: significance needs at least 2 random concepts (10 or more advised)")
    names = [c.name for c in concepts]
    if not concepts or len(set(names)) != len(names) or NULL in names:
        raise InvalidArgumentError(f"concepts {names} must be non-empty with distinct names other than {NULL!r}")
    chosen, _ = layer_sites(model, kind, layers)
    note = progress or (lambda stage: None)
    size = random_size or max(len(c) for c in concepts)
    randoms = random_sets(random_pool, n_random + 1, size, seed)
    sets = [*concepts, *randoms]
    prompts = [p for s in sets for p in s.prompts]
    if selector.kind == "marked" and any(s.marks is None for s in sets):
        raise InvalidArgumentError("the 'marked' selector needs marks on every concept and random example")
    marks = [m for s in sets for m in s.marks] if selector.kind == "marked" else None
    note("reading activations")
    acts = read_layers(model, prompts, kind, chosen, selector, marks, batch_size)
    blocks, start = {}, 0
    for s in sets:
        blocks[s.name] = acts[:, start : start + len(s)]
        start += len(s)
    note("gradients")
    sens = sensitivities(model, target, kind, chosen, selector, batch_size)
    result = analyse(
        blocks, list(concepts), randoms, sens, classifier, balance, alpha, test_fraction, n_permutations, level, seed,
        model=getattr(model, "name", None), progress=note,
    )
    result.settings.update({
        "selector": selector.kind, "random_size": size, "metric": target.metric_name, "n_target": len(target.prompts),
    })
    return result


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
    model: str | None = None,
    progress: Progress | None = None,
) -> TCAVResult:
    """Steps 3-5 of :func:`run_tcav` on activations already read: ``blocks[name]`` is the
    ``(layer, n, ...)`` activations of each concept and random set at ``sens``'s layers, and
    ``randoms[0]`` is the null's counterpart."""
    note = progress or (lambda stage: None)
    kind, chosen = sens.kind, list(sens.layers)
    names = [c.name for c in concepts]
    sets = [*concepts, *randoms]
    cavs: dict[str, list[LayerVectors]] = {}
    for name in [*names, NULL]:
        note(f"CAVs: {name}")
        positive = blocks[randoms[0].name] if name == NULL else blocks[name]
        source = next((s for s in sets if s.name == name), randoms[0])
        cavs[name] = [
            train_cavs(
                positive, blocks[r.name], kind, chosen, classifier, seed + i, test_fraction, balance, alpha,
                model=model, data_hash=data_hash(list(source.prompts) + list(r.prompts)),
                meta={"concept": source.name, "negative": r.name, },
            )
            for i, r in enumerate(randoms[1:], start=1)
        ]
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
    note("significance")
    test_rows = []
    for ci, name in enumerate(names):
        for li, layer in enumerate(chosen):
            pick = lambda n: scores[(scores.concept == n) & (scores.layer == layer)]  # noqa: E731
            own, null = pick(name), pick(NULL)
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
        "kind": kind, "layers": chosen, "classifier": classifier, "n_random": len(randoms) - 1,
        "balance": balance, "alpha": alpha, "test_fraction": test_fraction,
        "n_permutations": n_permutations, "level": level, "seed": seed, "concepts": {c.name: len(c) for c in concepts},
    }
    return TCAVResult(scores, tests, pd.DataFrame(example_rows), cavs, sens, settings)
