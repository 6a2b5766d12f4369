"""The validation harness: every attribution method against exact activation patching.

An attribution estimate is only worth its agreement with the quantity it estimates. For a task and
a list of sweeps (component types), :func:`compare` runs the exact sweep with the patching engine
and each approximation (:data:`METHODS`: AtP, AtP + QK fix, AtP*, RelP, RelP + QK fix, IG; same
direction and metric; ``atp*`` ranks by the signed GradDrop score, ``atp*-unsigned`` by the paper's
per-pair one, see :mod:`interp.attribution.atp_star`), and reports per
component type and method, over the sweep's cells (mean effect over examples, raw metric units):

* **Pearson r** and **Spearman r** between the estimated and the exact mean effects;
* **top-k recall**: the fraction of the k cells with the largest exact ``|effect|`` that are
  among the method's k highest-ranked cells (its ``ranking()``: GradDrop magnitude for AtP*,
  ``|mean estimate|`` otherwise);
* **sign agreement** on those true top-k cells;
* **cost**: forward and backward passes and wall time, next to the exact sweep's;
* the **recall-against-cost curves** of :mod:`interp.attribution.recall` (the AtP* paper's
  protocol: verify in ranking order, recall of the true top-k against forward-pass equivalents),
  for each method's signed and unsigned ranking.

The correlation is over cells of the (layer x position), (layer x head), ... map, as in the RelP
paper's table (docs/methods.md, RelP). AtP*'s Pearson/Spearman use its signed estimate (AtP + QK fix);
its GradDrop magnitude only drives the ranking. A method that serves several sweeps from one set of
passes (AtP, AtP*, RelP, IG with ``path="inputs"``) reports that shared cost on each.

The result is a :class:`~interp.attribution.comparison.Comparison`, which that module saves as a
run of kind ``"attribution"`` and reads back without importing any method.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from scipy import stats

from interp.attribution.atp import atp
from interp.attribution.atp_star import atp_star
from interp.attribution.comparison import Comparison
from interp.attribution.recall import recall_table
from interp.attribution.ig import Path, Rule, integrated_gradients
from interp.attribution.linear import Sweeps, resolve_sweeps
from interp.attribution.relp import RelPRules, relp
from interp.attribution.result import AttributionResult
from interp.cells import SweepRequest
from interp.errors import GridMismatchError, InvalidArgumentError
from interp.model import Model
from interp.patching import PatchingResult, patch_sweep
from interp.tasks.direction import Direction, check_direction
from interp.tasks.metrics import TaskMetric, resolve_metric

METHODS: tuple[str, ...] = ("atp", "atp+qk", "atp*", "atp*-unsigned", "relp", "relp+qk", "ig")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class MethodOptions:
    """Settings of the approximations: RelP's rules and IG's steps, path and rule."""

    relp_rules: RelPRules = field(default_factory=RelPRules)
    ig_steps: int = 10
    ig_path: Path = "inputs"
    ig_rule: Rule = "midpoint"


def run_method(
    method: str,
    model: Model,
    task: Any,
    sweeps: Sequence[SweepRequest],
    metric: str | TaskMetric,
    direction: Direction,
    options: MethodOptions,
) -> dict[str, AttributionResult]:
    """One approximation on several sweeps, as a dict by sweep name."""
    requests = list(sweeps)
    if method == "atp":
        results = atp(model, task, requests, metric, direction)
    elif method == "atp+qk":
        results = atp_star(model, task, requests, metric, direction, qk_fix=True, grad_drop=False)
    elif method in ("atp*", "atp*-unsigned"):
        ranking = "unsigned" if method == "atp*-unsigned" else "signed"
        results = atp_star(model, task, requests, metric, direction, qk_fix=True, grad_drop=True, ranking=ranking)
    elif method in ("relp", "relp+qk"):
        results = relp(model, task, requests, metric, direction, rules=options.relp_rules, qk_fix=method == "relp+qk")
    elif method == "ig":
        results = integrated_gradients(
            model, task, requests, metric, direction, options.ig_steps, options.ig_path, options.ig_rule
        )
    else:
        raise InvalidArgumentError(f"unknown method {method!r}; choose from {list(METHODS)}")
    assert isinstance(results, dict)
    return results


def exact_effects(exact: PatchingResult) -> torch.Tensor:
    """Per-example exact effect ``m(patched) - m(base)`` of each cell."""
    base = exact.corrupt if exact.direction == "denoising" else exact.clean
    return exact.values - base.view(-1, *[1] * (exact.values.ndim - 1))


def _correlation(function: Callable[..., Any], a: list[float], b: list[float]) -> float:
    if len(a) < 2 or min(a) == max(a) or min(b) == max(b):
        return float("nan")
    return float(function(a, b).statistic)


def agreement(exact: PatchingResult, estimate: AttributionResult, top_k: int = 10) -> dict[str, float]:
    """Pearson, Spearman, top-k recall and sign agreement of an estimate against the exact sweep."""
    if exact.axes != estimate.axes or exact.coords != estimate.coords:
        raise GridMismatchError(
            f"the estimate's grid {estimate.axes} {estimate.grid_shape} does not match the exact sweep's "
            f"{exact.axes} {exact.grid_shape}"
        )
    truth = exact_effects(exact).double().mean(dim=0).flatten()
    guess = estimate.effects().double().mean(dim=0).flatten()
    k = min(top_k, truth.numel())
    true_top = truth.abs().argsort(descending=True)[:k]
    guessed_top = estimate.ranking().double().flatten().argsort(descending=True)[:k]
    recall = len(set(true_top.tolist()) & set(guessed_top.tolist())) / k
    signs = (torch.sign(truth[true_top]) == torch.sign(guess[true_top])).double().mean()
    return {
        "pearson": _correlation(stats.pearsonr, guess.tolist(), truth.tolist()),
        "spearman": _correlation(stats.spearmanr, guess.tolist(), truth.tolist()),
        "top_k": k,
        "recall": recall,
        "sign_agreement": float(signs),
    }


def exact_requests(model: Model, task: Any, sweeps: Sweeps) -> list[SweepRequest]:
    """``sweeps`` as requests with every coordinate spelled out: the exact sweeps' grids, equal to the estimates'."""
    return [
        SweepRequest(s.sweep, layers=s.coords["layer"], positions=s.coords.get("pos"), heads=s.coords.get("head"),
                     neurons=s.coords.get("neuron"))
        for s in resolve_sweeps(model, task, sweeps)
    ]


def compare(
    model: Model,
    task: Any,
    sweeps: Sweeps,
    methods: Sequence[str] = ("atp", "atp*", "relp", "ig"),
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    top_k: int = 10,
    options: MethodOptions | None = None,
    exact: dict[str, PatchingResult] | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Run exact patching and each approximation on ``sweeps``; measure their agreement.

    Args:
        sweeps: sweep names or :class:`SweepRequest` s (component types), as for :func:`atp`.
        methods: any of :data:`METHODS`.
        top_k: size of the true top set for recall and sign agreement.
        options: RelP rules and IG settings.
        exact: exact results already computed, by sweep name (must have the same grid).
        progress: called with a short description as each stage finishes.
    """
    check_direction(direction)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InvalidArgumentError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    options = options or MethodOptions()
    metric_name, _ = resolve_metric(metric)
    requests = exact_requests(model, task, sweeps)
    exact = dict(exact or {})
    for request in requests:
        if request.sweep not in exact:
            exact[request.sweep] = patch_sweep(
                model, task, request.sweep, metric, direction, request.layers, request.positions,
                request.heads, request.neurons,
            )
        if progress is not None:
            progress(f"exact {request.sweep}")
    estimates: dict[str, dict[str, AttributionResult]] = {}
    for method in methods:
        started = time.perf_counter()
        estimates[method] = run_method(method, model, task, requests, metric, direction, options)
        for result in estimates[method].values():
            result.cost.seconds = time.perf_counter() - started
        if progress is not None:
            progress(method)
    rows = []
    for request in requests:
        truth = exact[request.sweep]
        for method in methods:
            estimate = estimates[method][request.sweep]
            rows.append({
                "component": request.sweep,
                "method": method,
                "cells": math.prod(truth.grid_shape),
                **agreement(truth, estimate, top_k),
                "forward_passes": estimate.cost.forward_passes,
                "backward_passes": estimate.cost.backward_passes,
                "seconds": estimate.cost.seconds,
                "exact_forward_passes": truth.cost.forward_passes,
                "exact_seconds": truth.cost.seconds,
            })
    meta = {"model": model.name, "task": getattr(task, "name", None), "examples": len(task), "metric": metric_name,
            "direction": direction, "top_k": top_k, "ig_steps": options.ig_steps, "ig_path": options.ig_path,
            "relp_rules": options.relp_rules.as_dict()}
    return Comparison(exact=exact, estimates=estimates, table=pd.DataFrame(rows), meta=meta,
                      recall=recall_table(exact, estimates, top_k) if estimates else None)
