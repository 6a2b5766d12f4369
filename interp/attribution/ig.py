"""Integrated gradients between the base and source activations (EAP-IG style), the costly reference.

AtP evaluates the gradient only at the base run. Integrated gradients (Sundararajan et al. 2017;
docs/methods.md, Integrated gradients) average it along a straight path from the base activations to the source
activations, which makes the estimate *complete*: summed over the interpolated entries it equals
the exact change of the metric as the number of steps grows,

    IG(n) = (n_source - n_base) . (1/m) sum_k dm/dn |_{path point alpha_k}.

Two paths are offered (``path=``):

* ``"inputs"`` (EAP-IG, Hanna et al. 2024): interpolate the token embeddings (``hook_embed``,
  after the task's corrupt interventions) from base to source, run the base prompts, and collect
  the gradient at every sweep site at once. Cost ``2F + m(F + B)`` for all sweeps together.
* ``"activations"`` (EAP-IG activations / Marks et al.'s node IG): for each layer of a sweep,
  interpolate *that site* at the entries the sweep's cells cover, with everything upstream on the
  base run. Completeness then holds for exactly the patch of those entries, so a sweep with a single
  cell converges to exact patching of that cell. Cost ``2F + m(F + B)`` per (sweep, layer).

Step points (``rule=``): ``"midpoint"`` uses ``alpha_k = (k + 1/2)/m`` (error ``O(1/m^2)``);
``"left"`` uses ``alpha_k = k/m`` for ``k = 0..m-1`` (the EAP-IG code's convention, which includes
the base point and excludes the source point): with ``m = 1`` it is AtP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from interp.attribution.atp import single_or_all
from interp.attribution.linear import Clock, Sweeps, build_result, delta_times, resolve_sweeps
from interp.attribution.nodes import SweepSpec, grid
from interp.attribution.result import AttributionResult
from interp.attribution.runs import ForwardRun, forward
from interp.errors import InvalidArgumentError
from interp.tasks.direction import Direction, roles
from interp.model import Model
from interp.cells import Cell, selection_mask
from interp.interventions import MaskedPatch
from interp.tasks.metrics import TaskMetric, resolve_metric

Path = Literal["inputs", "activations"]
Rule = Literal["midpoint", "left"]


def step_points(steps: int, rule: Rule) -> list[float]:
    """The interpolation coefficients ``alpha_k`` of a Riemann rule."""
    if steps < 1:
        raise InvalidArgumentError(f"steps must be at least 1, got {steps}")
    if rule == "midpoint":
        return [(k + 0.5) / steps for k in range(steps)]
    if rule == "left":
        return [k / steps for k in range(steps)]
    raise InvalidArgumentError(f"unknown rule {rule!r}; choose 'midpoint' or 'left'")


def covered_mask(model: Model, spec: SweepSpec, layer: int, shape: Sequence[int]) -> torch.Tensor:
    """Boolean mask over a site's non-batch axes: the entries the sweep's cells at ``layer`` patch."""
    site = model.site(spec.site(layer))
    cell = Cell(
        site=site.name,
        positions=tuple(spec.coords["pos"]) if "pos" in spec.coords else None,
        heads=tuple(spec.coords["head"]) if "head" in spec.coords else None,
        neurons=tuple(spec.coords["neuron"]) if "neuron" in spec.coords else None,
    )
    return selection_mask(cell, site, shape, 0)


def _average_gradients(
    model: Model,
    task: Any,
    which: str,
    metric_fn: TaskMetric,
    site: str,
    base_value: torch.Tensor,
    source_value: torch.Tensor,
    mask: torch.Tensor,
    grad_sites: list[str],
    alphas: list[float],
    clock: Clock,
) -> dict[str, torch.Tensor]:
    """Mean over path points of the gradients at ``grad_sites``, interpolating ``site`` under ``mask``."""
    total: dict[str, torch.Tensor] = {}
    for alpha in alphas:
        point = base_value + alpha * (source_value - base_value)
        patch = MaskedPatch(site=site, source=point, mask=mask.unsqueeze(0))
        run = forward(model, task, which, metric_fn, [], grad_sites=grad_sites, extra_interventions=[patch])
        for name, grad in run.grads(grad_sites).items():
            total[name] = total[name] + grad.double() if name in total else grad.double()
        clock.forward_passes += 1
        clock.backward_passes += 1
    return {name: value / len(alphas) for name, value in total.items()}


def integrated_gradients(
    model: Model,
    task: Any,
    sweeps: Sweeps,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    steps: int = 10,
    path: Path = "inputs",
    rule: Rule = "midpoint",
) -> AttributionResult | dict[str, AttributionResult]:
    """IG estimates of one sweep or several (see the module docstring).

    Args:
        sweeps, metric, direction: as :func:`interp.attribution.atp`.
        steps: number of path points ``m``.
        path: ``"inputs"`` (interpolate embeddings) or ``"activations"`` (each swept site).
        rule: ``"midpoint"`` or ``"left"`` Riemann points.
    """
    if path not in ("inputs", "activations"):
        raise InvalidArgumentError(f"unknown path {path!r}; choose 'inputs' or 'activations'")
    metric_name, metric_fn = resolve_metric(metric)
    specs = resolve_sweeps(model, task, sweeps)
    alphas = step_points(steps, rule)
    base_name, source_name = roles(direction)
    clock = Clock(model, task)
    sites = sorted({site for spec in specs for site in spec.sites}, key=model.sites.index)
    captured = sites + ["hook_embed"] if path == "inputs" else sites
    source = forward(model, task, source_name, metric_fn, captured)
    base = forward(model, task, base_name, metric_fn, captured)
    clock.forward_passes = 2
    runs: dict[str, ForwardRun] = {base_name: base, source_name: source}
    averaged: dict[str, torch.Tensor] = {}
    if path == "inputs":
        embed_mask = torch.ones(base.acts["hook_embed"].shape[1:], dtype=torch.bool)
        averaged = _average_gradients(
            model, task, base_name, metric_fn, "hook_embed", base.acts["hook_embed"], source.acts["hook_embed"],
            embed_mask, sites, alphas, clock,
        )
    results = {}
    for spec in specs:
        coefficients = dict(averaged)
        spec_clock = clock
        if path == "activations":
            spec_clock = Clock(model, task, forward_passes=2)
            for layer in spec.layers:
                name = spec.site(layer)
                mask = covered_mask(model, spec, layer, base.acts[name].shape)
                coefficients.update(_average_gradients(
                    model, task, base_name, metric_fn, name, base.acts[name], source.acts[name], mask, [name], alphas,
                    spec_clock,
                ))
        estimates = grid(spec, delta_times(spec, source.acts, base.acts, coefficients))
        results[spec.sweep] = build_result(
            model, task, spec, estimates, runs, metric_name, direction, "ig", spec_clock.cost(spec.n_cells),
            meta={"steps": steps, "path": path, "rule": rule},
        )
    return single_or_all(sweeps, results)
