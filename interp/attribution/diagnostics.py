"""Bounding the false negatives an attribution ranking leaves behind (AtP* Sec. 1.4 stand-in).

An attribution method is a pre-filter: one verifies its top-ranked components by exact patching
and trusts that the rest do not matter. The AtP* paper bounds how wrong that trust can be by
verifying a random sample of the *unverified* components. Its exact estimator could not be
checked (docs/methods.md, False-negative bound), so this is the workbench's own, labelled as such:

1. verify the ``top_k`` components by exact patching (:func:`interp.patching.patch_cells`);
2. split the remaining components into ``buckets`` by their attribution score (quantiles) and draw
   ``samples`` of them, spread evenly over the buckets; verify those too;
3. count the sampled components whose true effect exceeds ``threshold`` (as a fraction of the
   clean-corrupt gap of the mean metric). With ``h`` hits among ``N`` samples, the one-sided
   Clopper-Pearson bound says that at confidence ``1 - alpha`` the fraction of unverified components
   above the threshold is below ``beta.ppf(1 - alpha, h + 1, N - h)``; for ``h = 0`` that is
   ``1 - alpha^(1/N)``, about ``3/N`` at 95%. (Stratified sampling makes this bound conservative
   only if buckets are sampled in proportion; the per-bucket table reports each bucket's own.)
4. per bucket, the largest ratio ``|true effect| / score``: how badly the scores under-predict.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from scipy import stats

from interp.attribution.result import AttributionResult
from interp.model import Model
from interp.patching import patch_cells
from interp.cells import sweep_groups


@dataclass
class FalseNegativeReport:
    """What verifying the top components and a random sample of the rest found.

    Attributes:
        threshold: effect size (fraction of the clean-corrupt gap) that counts as a miss.
        alpha: one minus the confidence of the bound.
        verified_top: number of top-ranked components verified.
        remaining: number of unverified components the sample was drawn from.
        sampled: number sampled; hits: how many of them exceed ``threshold``.
        bound: upper bound on the fraction of the remaining components above ``threshold``.
        top_recall: fraction of verified top components that do exceed the threshold.
        buckets: per score bucket: size, sampled, hits, bound, max |effect| / score.
        forward_passes: exact-patching forwards spent verifying.
    """

    threshold: float
    alpha: float
    verified_top: int
    remaining: int
    sampled: int
    hits: int
    bound: float
    top_recall: float
    buckets: list[dict[str, Any]] = field(default_factory=list)
    forward_passes: int = 0

    @property
    def expected_missed(self) -> float:
        """Upper bound on the number of unverified components above the threshold."""
        return self.bound * self.remaining

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.buckets)


def clopper_pearson_upper(hits: int, n: int, alpha: float) -> float:
    """One-sided upper confidence bound on a binomial proportion (1.0 when nothing was sampled)."""
    if n == 0:
        return 1.0
    if hits >= n:
        return 1.0
    return float(stats.beta.ppf(1 - alpha, hits + 1, n - hits))


def false_negative_bound(
    model: Model,
    task: Any,
    result: AttributionResult,
    top_k: int = 10,
    samples: int = 30,
    threshold: float = 0.05,
    alpha: float = 0.05,
    buckets: int = 3,
    seed: int = 0,
) -> FalseNegativeReport:
    """Verify the top of ``result``'s ranking and a stratified random sample of the rest.

    ``result`` must come from a named sweep (its ``sweep``/``coords`` say which cells to patch);
    the exact patches use the result's own metric and direction.
    """
    selections = {axis: result.coords[axis] for axis in result.axes if axis != "layer"}
    groups, _, _ = sweep_groups(
        model, task, result.sweep, result.coords["layer"],
        selections.get("pos"), selections.get("head"), selections.get("neuron"),
    )
    ranking = result.ranking().flatten()
    order = ranking.argsort(descending=True).tolist()
    top, rest = order[:top_k], order[top_k:]
    strata = _score_buckets(rest, buckets)
    rng = random.Random(seed)
    per_bucket = max(1, samples // max(len(strata), 1)) if rest else 0
    drawn = [rng.sample(stratum, min(per_bucket, len(stratum))) for stratum in strata]
    cells = [groups[i] for i in top] + [groups[i] for stratum in drawn for i in stratum]
    exact = patch_cells(model, task, cells, metric=result.metric, direction=result.direction)
    gap = float((result.clean.mean() - result.corrupt.mean()).abs())
    base = exact.corrupt if result.direction == "denoising" else exact.clean
    effects = ((exact.values - base.unsqueeze(-1)).mean(dim=0).abs() / gap).tolist()
    top_effects, sample_effects = effects[: len(top)], effects[len(top):]
    rows, offset = [], 0
    for index, (stratum, chosen) in enumerate(zip(strata, drawn, strict=True)):
        found = sample_effects[offset: offset + len(chosen)]
        offset += len(chosen)
        scores = [float(ranking[i]) / gap for i in chosen]
        ratios = [f / s for f, s in zip(found, scores, strict=True) if s > 0]
        hits = sum(f > threshold for f in found)
        rows.append({
            "bucket": index,
            "size": len(stratum),
            "score_max": float(ranking[stratum[0]]) if stratum else float("nan"),
            "sampled": len(chosen),
            "hits": hits,
            "bound": clopper_pearson_upper(hits, len(chosen), alpha),
            "max_ratio": max(ratios) if ratios else float("nan"),
        })
    hits = sum(f > threshold for f in sample_effects)
    return FalseNegativeReport(
        threshold=threshold,
        alpha=alpha,
        verified_top=len(top),
        remaining=len(rest),
        sampled=len(sample_effects),
        hits=hits,
        bound=clopper_pearson_upper(hits, len(sample_effects), alpha),
        top_recall=sum(f > threshold for f in top_effects) / max(len(top), 1),
        buckets=rows,
        forward_passes=exact.cost.forward_passes,
    )


def _score_buckets(indices: list[int], buckets: int) -> list[list[int]]:
    """Split indices (already in descending score order) into ``buckets`` runs of near-equal size."""
    if not indices:
        return []
    size = -(-len(indices) // buckets)
    return [indices[i: i + size] for i in range(0, len(indices), size)]
