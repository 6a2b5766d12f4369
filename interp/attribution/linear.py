"""The shared core of the linear estimators: delta times coefficient, summed into sweep cells.

AtP, RelP and integrated gradients all estimate the effect of patching a node ``n`` as

    I(n) ~ sum over n's entries of (n_source - n_base) * c(n),

and differ only in the coefficient ``c``: the gradient on the base run (AtP), an LRP propagation
coefficient from a modified backward pass (RelP), or gradients averaged along a path (IG). This
module holds what they share: resolving the metric, the sweep specs, the per-layer delta-times-
coefficient cell sums, the cost bookkeeping, and building :class:`AttributionResult` objects that
line up with exact sweeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float

from interp.attribution.nodes import SweepSpec, cell_sums, grid, sweep_spec
from interp.attribution.result import AttributionCost, AttributionResult
from interp.attribution.runs import ForwardRun, forward
from interp.cells import SweepRequest
from interp.errors import InvalidArgumentError
from interp.flops import forward_flops
from interp.model import Model
from interp.tasks.base import position_labels
from interp.tasks.direction import Direction, roles
from interp.tasks.metrics import TaskMetric, resolve_metric

Sweeps = str | SweepRequest | Sequence[str | SweepRequest]


def resolve_sweeps(model: Model, task: Any, sweeps: Sweeps) -> list[SweepSpec]:
    """Validated specs of one sweep name, one request, or a list of either."""
    if isinstance(sweeps, (str, SweepRequest)):
        sweeps = [sweeps]
    requests = [SweepRequest(s) if isinstance(s, str) else s for s in sweeps]
    names = [r.sweep for r in requests]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgumentError(f"sweeps {repeated} are requested more than once; merge their selections into one request")
    return [sweep_spec(model, task, r.sweep, r.layers, r.positions, r.heads, r.neurons) for r in requests]


@dataclass
class Clock:
    """Counts passes and wall time of one method call."""

    model: Model
    task: Any
    forward_passes: float = 0.0
    backward_passes: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def cost(self, n_cells: int) -> AttributionCost:
        dims = self.model.dims
        rows, seq = self.task.clean.shape
        one = forward_flops(dims, self.model.arch.gated_mlp, rows, seq, 0, dims.n_layers, 1)
        naive = forward_flops(dims, self.model.arch.gated_mlp, rows, seq, 0, dims.n_layers, seq)
        return AttributionCost(
            forward_passes=int(round(self.forward_passes)),
            backward_passes=self.backward_passes,
            flops=one * (self.forward_passes + 2 * self.backward_passes),
            naive_forward_passes=n_cells,
            naive_flops=n_cells * naive,
            seconds=time.perf_counter() - self.started,
        )


def delta_times(
    spec: SweepSpec,
    source: Mapping[str, torch.Tensor],
    base: Mapping[str, torch.Tensor],
    coefficients: Mapping[str, torch.Tensor],
) -> Callable[[int], Float[torch.Tensor, "example ..."]]:
    """Per-layer cell sums of ``(source - base) * coefficient`` at the sweep's site (float64)."""

    def per_layer(layer: int) -> torch.Tensor:
        name = spec.site(layer)
        delta = source[name].double() - base[name].double()
        return cell_sums(spec, delta * coefficients[name].double())

    return per_layer


def build_result(
    model: Model,
    task: Any,
    spec: SweepSpec,
    estimates: Float[torch.Tensor, "example ..."],
    runs: Mapping[str, ForwardRun],
    metric_name: str,
    direction: Direction,
    method: str,
    cost: AttributionCost,
    scores: Float[torch.Tensor, "example ..."] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> AttributionResult:
    """An :class:`AttributionResult` whose values are ``m_base + estimate`` (see result.py)."""
    base_name, _ = roles(direction)
    clean = runs["clean"].metric.detach().cpu()
    corrupt = runs["corrupt"].metric.detach().cpu()
    base = clean if base_name == "clean" else corrupt
    values = (base.double().view(-1, *[1] * (estimates.ndim - 1)) + estimates.cpu()).to(clean.dtype)
    return AttributionResult(
        sweep=spec.sweep,
        axes=spec.axes,
        coords=spec.coords,
        values=values,
        clean=clean,
        corrupt=corrupt,
        metric=metric_name,
        direction=direction,
        cost=cost,
        position_labels=position_labels(model, task),
        meta={"model": model.name, "task": getattr(task, "name", None), **(meta or {})},
        method=method,
        scores=None if scores is None else scores.cpu().to(clean.dtype),
    )


def gradient_attribution(
    model: Model,
    task: Any,
    sweeps: Sweeps,
    metric: str | TaskMetric,
    direction: Direction,
    method: str,
    rules: Any = None,
    attention_rule: str = "gradient",
    meta: Mapping[str, Any] | None = None,
) -> dict[str, AttributionResult]:
    """Source forward, base forward + one backward, ``delta * coefficient`` for every sweep.

    ``rules``/``attention_rule`` modify the backward pass (RelP); without them this is AtP.
    """
    metric_name, metric_fn = resolve_metric(metric)
    specs = resolve_sweeps(model, task, sweeps)
    base_name, source_name = roles(direction)
    clock = Clock(model, task)
    sites = sorted({site for spec in specs for site in spec.sites}, key=model.sites.index)
    source = forward(model, task, source_name, metric_fn, sites)
    base = forward(
        model, task, base_name, metric_fn, sites, grad_sites=sites, rules=rules, attention_rule=attention_rule
    )
    coefficients = base.grads(sites)
    clock.forward_passes, clock.backward_passes = 2, 1
    runs = {base_name: base, source_name: source}
    results = {}
    for spec in specs:
        estimates = grid(spec, delta_times(spec, source.acts, base.acts, coefficients))
        results[spec.sweep] = build_result(
            model, task, spec, estimates, runs, metric_name, direction, method, clock.cost(spec.n_cells), meta=meta
        )
    return results
