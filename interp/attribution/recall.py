"""Recall of the true top components against total cost: the AtP* paper's evaluation protocol.

An attribution method is a pre-filter. A researcher ranks every component by the method, then
verifies components by exact activation patching in ranking order until the important ones are
found. The AtP* paper (Kramar et al. 2024; docs/methods.md, Recall against cost) therefore judges a
method by one curve per component type: after verifying the first ``v`` components of its ranking,

* **recall** = the fraction of the true top ``K`` components (largest ``|exact mean effect|``)
  among the verified ones;
* **cost** = the method's own cost plus ``v``, in forward-pass equivalents: a forward pass over the
  batch counts 1, a backward pass 2, and each verified component one forward. (A method that
  serves several component types with one set of passes is charged its whole cost on each.)

A single top-``K`` overlap is one point of this curve (``v = K``); the curve shows what that point
hides, e.g. a method whose misses are ranked just after the top ``K`` (cheap to recover) versus one
whose misses are ranked last. Two reference curves go with it:

* **exhaustive**: verifying in random order, expected recall ``v / n`` at cost ``v``;
* **false-negative bound** (:mod:`interp.attribution.diagnostics`): after verifying ``v``
  components a researcher who does *not* know the truth draws ``samples`` of the unverified ones
  uniformly, patches them too, and counts those at least as large as the ``K``-th true effect
  (``h`` hits). The one-sided Clopper-Pearson bound ``u`` caps the fraction of unverified components
  that large, so at confidence ``1 - alpha`` recall is at least ``found / (found + u * remaining)``;
  plotted at cost ``method + v + samples``. The threshold is the true ``K``-th effect here, so the
  line shows what the diagnostic would certify for exactly this top set.

Rankings (``ranking=``). Over a distribution of prompt pairs, the quantity patched is the mean
effect, and the true top components are those with the largest ``|mean effect|``. A method can rank
by ``"signed"``, ``|mean estimate|`` (the absolute value taken after averaging over pairs), or by
``"unsigned"``, the mean of per-pair ``|estimate|`` (the paper's AtP score, and GradDrop's). A
result that carries its own ``scores`` (AtP* with GradDrop) ranks by their mean, which already
encodes its variant (:func:`interp.attribution.atp_star.grad_drop_scores`).

Verification (:func:`verify_in_order`) patches the ranked cells through the patching engine, in
batches; the curves are read from the exhaustive exact sweep, which holds the same numbers (tested).
"""

from __future__ import annotations

import random
from typing import Literal

import pandas as pd
import torch
from jaxtyping import Float

from interp.attribution.diagnostics import clopper_pearson_upper
from interp.attribution.result import AttributionCost, AttributionResult
from interp.cells import sweep_groups
from interp.errors import GridMismatchError, InvalidArgumentError
from interp.model import Model
from interp.patching import PatchingResult, patch_cells

Ranking = Literal["signed", "unsigned"]
RANKINGS: tuple[Ranking, ...] = ("signed", "unsigned")


def forward_equivalents(cost: AttributionCost) -> float:
    """A method's cost in forward passes over the batch: forward = 1, backward = 2."""
    return float(cost.forward_passes) + 2.0 * float(cost.backward_passes)


def _exact_mean_effects(exact: PatchingResult) -> Float[torch.Tensor, " cells"]:
    base = exact.corrupt if exact.direction == "denoising" else exact.clean
    return (exact.values - base.view(-1, *[1] * (exact.values.ndim - 1))).double().mean(dim=0).flatten()


def ranking_scores(result: AttributionResult, ranking: Ranking = "signed") -> Float[torch.Tensor, " cells"]:
    """Per-cell ranking score, flattened in the sweep's cell order (see the module docstring)."""
    if ranking not in RANKINGS:
        raise InvalidArgumentError(f"unknown ranking {ranking!r}; choose 'signed' or 'unsigned'")
    if result.scores is not None:
        return result.scores.double().mean(dim=0).flatten()
    effects = result.effects().double()
    if ranking == "signed":
        return effects.mean(dim=0).abs().flatten()
    return effects.abs().mean(dim=0).flatten()


def true_top(exact: PatchingResult, top_k: int) -> list[int]:
    """Indices (flattened cell order) of the ``top_k`` cells with the largest ``|exact mean effect|``."""
    truth = _exact_mean_effects(exact)
    return truth.abs().argsort(descending=True, stable=True)[: min(top_k, truth.numel())].tolist()


def recall_curve(
    exact: PatchingResult, scores: torch.Tensor, method_cost: float, top_k: int
) -> pd.DataFrame:
    """Recall of the true top ``top_k`` after verifying ``v = 0..n`` cells in descending score order."""
    if scores.numel() != exact.values[0].numel():
        raise GridMismatchError(f"{scores.numel()} scores for a sweep of {exact.values[0].numel()} cells")
    top = set(true_top(exact, top_k))
    order = scores.double().argsort(descending=True, stable=True).tolist()
    found = torch.tensor([0] + [int(i in top) for i in order]).cumsum(0)
    verified = torch.arange(len(order) + 1)
    return pd.DataFrame({
        "verified": verified.tolist(),
        "cost": (method_cost + verified.double()).tolist(),
        "recall": (found.double() / len(top)).tolist(),
    })


def bound_curve(
    exact: PatchingResult,
    scores: torch.Tensor,
    method_cost: float,
    top_k: int,
    samples: int = 30,
    alpha: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Recall certified by the sampling diagnostic after verifying ``v`` cells (module docstring)."""
    truth = _exact_mean_effects(exact).abs()
    top = true_top(exact, top_k)
    threshold = float(truth[top[-1]])
    order = scores.double().argsort(descending=True, stable=True).tolist()
    draw = list(range(len(order)))
    random.Random(seed).shuffle(draw)
    rows = []
    for verified in range(len(order) + 1):
        seen = set(order[:verified])
        found = sum(float(truth[i]) >= threshold for i in seen)
        rest = [i for i in draw if i not in seen]
        sample = rest[:samples]
        hits = sum(float(truth[i]) >= threshold for i in sample)
        remaining = len(rest) - len(sample)
        upper = clopper_pearson_upper(hits, len(sample), alpha) if remaining else 0.0
        found += hits
        missed = upper * remaining
        certified = found / (found + missed) if found + missed > 0 else 0.0
        rows.append({"verified": verified, "cost": method_cost + verified + len(sample), "recall": certified})
    return pd.DataFrame(rows)


def exhaustive_curve(exact: PatchingResult) -> pd.DataFrame:
    """Verifying in random order: expected recall ``v / n`` at cost ``v``."""
    n = exact.values[0].numel()
    verified = list(range(n + 1))
    return pd.DataFrame({"verified": verified, "cost": [float(v) for v in verified], "recall": [v / n for v in verified]})


def recall_table(
    exact: dict[str, PatchingResult],
    estimates: dict[str, dict[str, AttributionResult]],
    top_k: int = 10,
    rankings: tuple[Ranking, ...] = RANKINGS,
    bound_method: str | None = None,
    samples: int = 30,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every curve of every component type, long format.

    Columns: ``component``, ``method``, ``ranking``, ``curve`` (``"ranking"``, ``"bound"`` or
    ``"exhaustive"``), ``verified``, ``cost``, ``recall``. Methods whose results carry their own
    scores appear once (ranking ``"scores"``); the others once per entry of ``rankings``.
    ``bound_method`` (default: the first method) gets the false-negative bound line, with its
    first ranking.
    """
    frames = []
    bound_method = bound_method if bound_method is not None else next(iter(estimates), None)
    for component, truth in exact.items():
        frames.append(exhaustive_curve(truth).assign(component=component, method="exhaustive", ranking="random",
                                                     curve="exhaustive"))
        for method, results in estimates.items():
            if component not in results:
                continue
            result = results[component]
            if (result.axes, result.coords) != (truth.axes, truth.coords):
                raise GridMismatchError(f"{method} {component}: the estimate's grid does not match the exact sweep")
            cost = forward_equivalents(result.cost)
            variants: tuple[str, ...] = ("scores",) if result.scores is not None else rankings
            for index, ranking in enumerate(variants):
                scores = ranking_scores(result, "signed" if ranking == "scores" else ranking)  # type: ignore[arg-type]
                frames.append(recall_curve(truth, scores, cost, top_k).assign(
                    component=component, method=method, ranking=ranking, curve="ranking"))
                if method == bound_method and index == 0:
                    frames.append(bound_curve(truth, scores, cost, top_k, samples, alpha).assign(
                        component=component, method=method, ranking=ranking, curve="bound"))
    columns = ["component", "method", "ranking", "curve", "verified", "cost", "recall"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def recall_summary(table: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """Per (component, method, ranking): recall after verifying ``top_k`` cells, and the cost (and the
    number verified) at which every true top component has been found."""
    rows = []
    curves = table[table["curve"] == "ranking"]
    for (component, method, ranking), curve in curves.groupby(["component", "method", "ranking"], sort=False):
        at_k = curve[curve["verified"] == min(top_k, int(curve["verified"].max()))]["recall"].iloc[0]
        full = curve[curve["recall"] >= 1.0 - 1e-12].iloc[0]
        rows.append({"component": component, "method": method, "ranking": ranking, f"recall@{top_k}": float(at_k),
                     "verified_for_full_recall": int(full["verified"]), "cost_for_full_recall": float(full["cost"]),
                     "method_cost": float(curve["cost"].iloc[0])})
    return pd.DataFrame(rows)


def verify_in_order(
    model: Model, task: object, result: AttributionResult, count: int, ranking: Ranking = "signed"
) -> tuple[list[int], PatchingResult]:
    """Exactly patch the first ``count`` cells of ``result``'s ranking (one batched engine call).

    Returns the flattened cell indices in ranking order and the patching result (one cell axis in
    the same order), in the result's own metric and direction.
    """
    selections = {axis: result.coords[axis] for axis in result.axes if axis != "layer"}
    groups, _, _ = sweep_groups(
        model, task, result.sweep, result.coords["layer"],
        selections.get("pos"), selections.get("head"), selections.get("neuron"),
    )
    order = ranking_scores(result, ranking).argsort(descending=True, stable=True)[:count].tolist()
    verified = patch_cells(model, task, [groups[i] for i in order], metric=result.metric, direction=result.direction)
    return order, verified
