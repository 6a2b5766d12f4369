"""Attribution over SAE latents and error nodes: the nodes of sparse feature circuits (Marks et al. 2024).

Splice one or more SAEs into the model. At each SAE's site the activation is split exactly into

    x = decode(f(x)) + e(x),

the SAE's latents ``f`` (``d_sae`` of them) and its **error** ``e`` (what the SAE misses). Every
latent of every SAE, and each SAE's error term, is a *node*; a node covers all token positions
(patching latent ``i`` patches it at every position). Nodes are ordered SAE by SAE, latents first,
then that SAE's error node (:class:`FeatureNodes`).

:class:`FeatureSplice` is the intervention that makes the nodes editable without changing the
forward: it writes ``x + (decode(f') - decode(f)) + (e' - e)``, which is exactly ``x`` (bit for bit)
when nothing is edited, and routes the gradient to ``f`` and ``e`` when asked to record them. The
gradient reaching the site from upstream is the identity, so splicing never changes the gradient of
anything upstream either.

The effect of a node is that of replacing its value on the *base* run by a *replacement*:

* ``replacement="patch"``: its value on the *source* run (``direction`` as everywhere in the
  library: noising patches corrupt values into the clean run, denoising clean into corrupt);
* ``replacement="mean"``: its mean over the task's clean and corrupt prompts at each position
  (mean ablation, the ablation of the faithfulness curves, :mod:`interp.attribution.faithfulness`).

Estimates (:func:`feature_attribution`; ``method=``):

* ``"atp"``: ``(f_replacement - f_base) . dm/df`` summed over positions: one source forward, one
  base forward and one backward for every node of every SAE (2F + 1B);
* ``"relp"``: the same with RelP's LRP rules in the base backward pass (same cost);
* ``"ig"``: integrated gradients along the activations path, per SAE (Marks et al.'s node IG):
  the SAE's latents and error move together from base to replacement in ``steps`` points while the
  rest of the model runs on the base prompt; the averaged gradients times the delta give each node
  (``steps`` (F + B) per SAE).

:func:`exact_feature_effects` measures the same effects by patching each node alone (the ground
truth), batching many (node, example) rows into one forward with a per-row patch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from interp.attribution.ig import Rule, step_points
from interp.attribution.relp.install import relp_rules
from interp.attribution.relp.rules import RelPRules
from interp.attribution.runs import forward
from interp.errors import InterventionError, InvalidArgumentError
from interp.interventions import Intervention
from interp.model import Model
from interp.sae import SAE, Latents
from interp.sites import Site
from interp.tasks.direction import Direction, check_direction, roles, run_spec
from interp.tasks.metrics import TaskMetric, resolve_metric

Replacement = Literal["patch", "mean"]
FeatureMethod = Literal["atp", "relp", "ig"]
FEATURE_METHODS: tuple[str, ...] = ("atp", "relp", "ig")


class FeatureRecord:
    """Where a :class:`FeatureSplice` leaves the latents ``(batch, pos, d_sae)`` and error
    ``(batch, pos, d_in)`` of the last forward; leaves requiring grad when gradients are on."""

    def __init__(self) -> None:
        self.latents: Tensor | None = None
        self.error: Tensor | None = None


@dataclass(frozen=True, kw_only=True)
class FeatureSplice(Intervention):
    """An SAE at its site with editable latents and error (see the module docstring).

    ``latent_values``/``latent_mask``: rows (or one shared row) of ``(pos, d_sae)`` values written
    where the mask (broadcastable to ``(rows, pos, d_sae)``) is True; ``error_values``/``error_mask``
    likewise for the error, with a ``(rows, 1 or pos, 1)`` mask. ``where`` (``(rows, pos)`` booleans)
    limits the nodes to some token positions: elsewhere the site keeps its exact value, so latents
    there have no effect and get no gradient.
    """

    sae: SAE
    latent_values: Tensor | None = None
    latent_mask: Tensor | None = None
    error_values: Tensor | None = None
    error_mask: Tensor | None = None
    record: FeatureRecord | None = None
    where: Tensor | None = None
    kind: ClassVar[str] = "feature_splice"

    def new_value(self, value: Tensor, site: Site) -> Tensor:
        if value.shape[-1] != self.sae.d_in or len(site.axes) != 3:
            raise InterventionError(
                f"SAE with d_in={self.sae.d_in} cannot be spliced at {site.name!r}, whose values have shape "
                f"{tuple(value.shape)} (axes {site.axes})"
            )
        latents, error, decode = split(self.sae, value)
        new_latents, new_error = latents, error
        if self.latent_values is not None and self.latent_mask is not None:
            source = self.latent_values.to(device=latents.device, dtype=latents.dtype)
            new_latents = torch.where(self.latent_mask.to(value.device), source, latents)
        if self.error_values is not None and self.error_mask is not None:
            source = self.error_values.to(device=error.device, dtype=error.dtype)
            new_error = torch.where(self.error_mask.to(value.device), source, error)
        if self.record is not None:
            grad = torch.is_grad_enabled()
            new_latents = new_latents.detach().requires_grad_(grad)
            new_error = new_error.detach().requires_grad_(grad)
            self.record.latents, self.record.error = new_latents, new_error
        if new_latents is latents and new_error is error:
            return value
        moved = (decode(new_latents) - decode(latents).detach()) + (new_error - error.detach())
        if self.where is not None:
            moved = moved * self.where.to(device=value.device, dtype=moved.dtype).unsqueeze(-1)
        return value + moved.to(value.dtype)

    def to_dict(self, tensor_prefix: str) -> tuple[dict[str, Any], dict[str, Tensor]]:
        raise InterventionError("a feature splice holds a live SAE and is not saved with the interventions")


def split(sae: SAE, value: Tensor) -> tuple[Tensor, Tensor, Any]:
    """Latents ``(*lead, d_sae)``, error ``(*lead, d_in)`` and a decoder ``latents -> x`` (with the
    input's norm statistics) such that ``decode(latents) + error`` is ``value`` up to rounding."""
    with torch.no_grad():
        encoded = sae.encode_detailed(value.detach())
    lead = tuple(value.shape[:-1])
    latents = encoded.latents.dense().reshape(*lead, sae.d_sae)

    def decode(dense: Tensor) -> Tensor:
        flat = Latents(values=dense.reshape(-1, sae.d_sae), indices=None, d_sae=sae.d_sae, lead=lead)
        return sae.decode(flat, encoded.norm_stats)

    error = value.detach().to(latents.dtype) - decode(latents).detach()
    return latents, error, decode


def node_positions(task: Any, which: str, skip_first: int) -> Tensor:
    """``(example, pos)``: the real tokens of each row after its first ``skip_first`` (padding and the
    attention-sink first tokens, which SAEs are usually not trained on, carry no nodes)."""
    batch, _ = run_spec(task, which)  # type: ignore[arg-type]
    real = batch.attention_mask.bool()
    return real & (real.long().cumsum(dim=1) > skip_first)


@dataclass(frozen=True)
class FeatureNodes:
    """The node list of some spliced SAEs: per SAE, its latents ``0..d_sae-1``, then its error node."""

    sites: tuple[str, ...]
    sizes: tuple[int, ...]

    @classmethod
    def of(cls, saes: Sequence[SAE]) -> FeatureNodes:
        sites = tuple(_site(sae) for sae in saes)
        if len(set(sites)) != len(sites):
            raise InvalidArgumentError(f"two SAEs are spliced at the same site: {list(sites)}; use one SAE per site")
        return cls(sites, tuple(sae.d_sae for sae in saes))

    @property
    def offsets(self) -> list[int]:
        return [sum(size + 1 for size in self.sizes[:i]) for i in range(len(self.sizes))]

    def __len__(self) -> int:
        return sum(size + 1 for size in self.sizes)

    def locate(self, node: int) -> tuple[int, int | None]:
        """(SAE index, latent index or None for the error node) of a flat node index."""
        for index, (offset, size) in enumerate(zip(self.offsets, self.sizes, strict=True)):
            if offset <= node <= offset + size:
                return index, None if node == offset + size else node - offset
        raise InvalidArgumentError(f"node {node} is out of range for {len(self)} nodes")

    def to_frame(self) -> pd.DataFrame:
        """One row per node: ``node``, ``sae`` (index), ``site``, ``latent`` (-1 for the error node), ``kind``."""
        rows = []
        for index, (site, size) in enumerate(zip(self.sites, self.sizes, strict=True)):
            rows += [{"sae": index, "site": site, "latent": i, "kind": "latent"} for i in range(size)]
            rows.append({"sae": index, "site": site, "latent": -1, "kind": "error"})
        frame = pd.DataFrame(rows)
        frame.insert(0, "node", range(len(frame)))
        return frame


def _site(sae: SAE) -> str:
    if sae.site is None:
        raise InvalidArgumentError("an SAE without a site cannot be spliced; set its config's hook_name")
    return sae.site


@dataclass
class FeatureValues:
    """Latents and error of every SAE on one run (each at its own site, others spliced transparently)."""

    latents: list[Tensor]
    error: list[Tensor]


@dataclass
class FeatureEffects:
    """Per-example effects ``(example, node)`` of replacing each node (estimated or exact), with cost.

    ``effects`` and ``base_metric`` are CPU tensors whatever the model's device, as every result of
    the workbench, so rankings index CPU masks and tables take them directly.
    ``passes`` counts forward-pass equivalents over the task's batch (forward 1, backward 2).
    """

    method: str
    effects: Float[Tensor, "example node"]
    nodes: FeatureNodes
    base_metric: Float[Tensor, " example"]
    direction: Direction
    replacement: Replacement
    passes: float
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)

    def mean(self) -> Float[Tensor, " node"]:
        return self.effects.double().mean(dim=0)

    def ranking(self) -> Float[Tensor, " node"]:
        """``|mean effect|``: the effect of the node on the mean metric, whatever its sign."""
        return self.mean().abs()


def _values(model: Model, task: Any, which: str, saes: Sequence[SAE], metric_fn: TaskMetric,
            extra: Sequence[Intervention] = (), rules: Any = None, attention_rule: str = "gradient",
            grad: bool = False, skip_first: int = 0) -> tuple[FeatureValues, Tensor, list[FeatureRecord]]:
    records = [FeatureRecord() for _ in saes]
    where = node_positions(task, which, skip_first) if skip_first else None
    splices = [FeatureSplice(site=_site(sae), sae=sae, record=record, where=where)
               for sae, record in zip(saes, records, strict=True)]
    sites = [_site(sae) for sae in saes] if grad else []
    run = forward(model, task, which, metric_fn, [], grad_sites=sites, extra_interventions=[*extra, *splices],
                  rules=rules, attention_rule=attention_rule)  # type: ignore[arg-type]
    values = FeatureValues([r.latents for r in records], [r.error for r in records])  # type: ignore[misc]
    return values, run.metric, records


def _mean_values(model: Model, task: Any, saes: Sequence[SAE], metric_fn: TaskMetric, skip_first: int = 0) -> FeatureValues:
    """Per-position means over the clean and corrupt prompts, ``(1, pos, ...)``, over the rows whose
    token at that position carries nodes (all rows when ``skip_first`` is 0)."""
    runs = [_values(model, task, which, saes, metric_fn)[0] for which in ("clean", "corrupt")]
    weights = torch.cat([node_positions(task, which, skip_first) if skip_first else torch.ones_like(
        node_positions(task, which, 0)) for which in ("clean", "corrupt")]).double()
    weights = weights / weights.sum(dim=0, keepdim=True).clamp(min=1)

    def mean(stack: Tensor) -> Tensor:
        return (stack.double() * weights.to(stack.device).unsqueeze(-1)).sum(dim=0, keepdim=True).to(stack.dtype)

    return FeatureValues([mean(torch.cat([r.latents[i] for r in runs])).detach() for i in range(len(saes))],
                         [mean(torch.cat([r.error[i] for r in runs])).detach() for i in range(len(saes))])


def node_effects(nodes: FeatureNodes, delta: FeatureValues, coefficients: FeatureValues) -> Tensor:
    """``delta . coefficient`` per example and node: latents summed over positions, errors over
    positions and dimensions; ``(example, node)`` in float64."""
    parts = []
    for latents, error, lat_coef, err_coef in zip(delta.latents, delta.error, coefficients.latents,
                                                  coefficients.error, strict=True):
        parts.append((latents.double() * lat_coef.double()).sum(dim=1))
        parts.append((error.double() * err_coef.double()).sum(dim=(1, 2)).unsqueeze(-1))
    return torch.cat(parts, dim=-1)


def _delta(base: FeatureValues, target: FeatureValues) -> FeatureValues:
    return FeatureValues([t - b for b, t in zip(base.latents, target.latents, strict=True)],
                         [t - b for b, t in zip(base.error, target.error, strict=True)])


def _targets(model: Model, task: Any, saes: Sequence[SAE], metric_fn: TaskMetric, direction: Direction,
             replacement: Replacement, skip_first: int = 0) -> tuple[FeatureValues, int]:
    """The replacement values of every node, and the forwards spent getting them."""
    if replacement == "patch":
        return _values(model, task, roles(direction)[1], saes, metric_fn)[0], 1
    if replacement == "mean":
        return _mean_values(model, task, saes, metric_fn, skip_first), 2
    raise InvalidArgumentError(f"unknown replacement {replacement!r}; choose 'patch' or 'mean'")


def feature_attribution(
    model: Model,
    task: Any,
    saes: Sequence[SAE],
    method: FeatureMethod = "atp",
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "noising",
    replacement: Replacement = "patch",
    rules: RelPRules | None = None,
    steps: int = 10,
    rule: Rule = "midpoint",
    skip_first: int = 0,
) -> FeatureEffects:
    """Estimated effect of replacing each latent and error node (see the module docstring).

    Args:
        saes: SAEs to splice, each at its own site (``sae.site``).
        method: ``"atp"``, ``"relp"`` (``rules``, default the RelP fork's) or ``"ig"`` (``steps``, ``rule``).
        direction: ``"noising"`` (base = clean, the default) or ``"denoising"``.
        replacement: ``"patch"`` (source-run values) or ``"mean"`` (mean ablation).
        skip_first: nodes exist only at real tokens after each row's first ``skip_first`` (padding
            and attention sinks keep their exact values; :func:`node_positions`).
    """
    check_direction(direction)
    if method not in FEATURE_METHODS:
        raise InvalidArgumentError(f"unknown method {method!r}; choose from {list(FEATURE_METHODS)}")
    started = time.perf_counter()
    nodes = FeatureNodes.of(saes)
    metric_name, metric_fn = resolve_metric(metric)
    base_name = roles(direction)[0]
    target, passes = _targets(model, task, saes, metric_fn, direction, replacement, skip_first)
    base, base_metric, _ = _values(model, task, base_name, saes, metric_fn)
    delta = _delta(base, target)
    passes += 1
    if method in ("atp", "relp"):
        installed = None
        attention = "gradient"
        if method == "relp":
            chosen = rules if rules is not None else RelPRules()
            installed, attention = functools.partial(relp_rules, rules=chosen), chosen.attention
        _, metric_values, records = _values(model, task, base_name, saes, metric_fn, rules=installed,
                                            attention_rule=attention, grad=True, skip_first=skip_first)
        coefficients = _gradients(metric_values, records)
        passes += 1 + 2
    else:
        where = node_positions(task, base_name, skip_first) if skip_first else None
        coefficients, spent = _ig_coefficients(model, task, base_name, saes, metric_fn, base, delta, steps, rule, where)
        passes += spent
    effects = node_effects(nodes, delta, coefficients).cpu()
    return FeatureEffects(method, effects, nodes, base_metric.detach().cpu(), direction, replacement, passes,
                          time.perf_counter() - started,
                          meta={"metric": metric_name, **({"steps": steps, "rule": rule} if method == "ig" else {})})


def _gradients(metric_values: Tensor, records: Sequence[FeatureRecord]) -> FeatureValues:
    leaves = [t for r in records for t in (r.latents, r.error)]
    grads = torch.autograd.grad(metric_values.sum(), leaves, allow_unused=True)
    filled = [torch.zeros_like(t) if g is None else g.detach() for t, g in zip(leaves, grads, strict=True)]
    return FeatureValues(filled[0::2], filled[1::2])


def _ig_coefficients(model: Model, task: Any, base_name: str, saes: Sequence[SAE], metric_fn: TaskMetric,
                     base: FeatureValues, delta: FeatureValues, steps: int, rule: Rule,
                     where: Tensor | None = None) -> tuple[FeatureValues, float]:
    """Per SAE: gradients at its nodes averaged over the path base -> replacement of all its nodes."""
    alphas = step_points(steps, rule)
    latents, errors, passes = [], [], 0.0
    for index, sae in enumerate(saes):
        total_latents, total_error = None, None
        for alpha in alphas:
            point = FeatureSplice(
                site=_site(sae), sae=sae,
                latent_values=base.latents[index] + alpha * delta.latents[index],
                latent_mask=torch.ones(1, 1, 1, dtype=torch.bool),
                error_values=base.error[index] + alpha * delta.error[index],
                error_mask=torch.ones(1, 1, 1, dtype=torch.bool),
                record=FeatureRecord(), where=where,
            )
            run = forward(model, task, base_name, metric_fn, [], grad_sites=[_site(sae)], extra_interventions=[point])
            assert point.record is not None
            grads = _gradients(run.metric, [point.record])
            total_latents = grads.latents[0] if total_latents is None else total_latents + grads.latents[0]
            total_error = grads.error[0] if total_error is None else total_error + grads.error[0]
            passes += 3
        latents.append(total_latents / len(alphas))  # type: ignore[operator]
        errors.append(total_error / len(alphas))  # type: ignore[operator]
    return FeatureValues(latents, errors), passes


def _check_rows(task: Any) -> None:
    if any(True for _ in getattr(task, "corrupt_interventions", ())):
        raise InvalidArgumentError(
            "exact feature patching batches (node, example) rows and needs a task whose corrupt run is a prompt; "
            "this task corrupts with interventions (e.g. embedding noise): use a prompt corruption such as 'abc'"
        )


def exact_feature_effects(
    model: Model,
    task: Any,
    saes: Sequence[SAE],
    nodes: Sequence[int] | None = None,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "noising",
    replacement: Replacement = "patch",
    max_rows: int = 256,
    skip_first: int = 0,
) -> FeatureEffects:
    """Exact effect of replacing each node alone: ``m(base | node <- replacement) - m(base)``.

    Rows of one forward are (node, example) pairs of one SAE; each row writes its node's replacement
    through :class:`FeatureSplice`'s per-row masks, so one forward evaluates up to ``max_rows`` pairs.
    ``nodes`` (flat indices, default all) limits the work; the others get effect NaN.
    """
    check_direction(direction)
    _check_rows(task)
    started = time.perf_counter()
    graph = FeatureNodes.of(saes)
    metric_name, metric_fn = resolve_metric(metric)
    base_name = roles(direction)[0]
    target, passes = _targets(model, task, saes, metric_fn, direction, replacement, skip_first)
    base, base_metric, _ = _values(model, task, base_name, saes, metric_fn)
    passes += 1
    where = node_positions(task, base_name, skip_first) if skip_first else None
    chosen = list(range(len(graph))) if nodes is None else list(nodes)
    batch, interventions = run_spec(task, base_name, model.device)  # type: ignore[arg-type]
    examples = batch.shape[0]
    effects = torch.full((examples, len(graph)), float("nan"), dtype=torch.float64)
    by_sae: dict[int, list[tuple[int, int | None]]] = {}
    for node in chosen:
        index, latent = graph.locate(node)
        by_sae.setdefault(index, []).append((node, latent))
    per_forward = max(1, max_rows // examples)
    for index, members in by_sae.items():
        sae = saes[index]
        for start in range(0, len(members), per_forward):
            chunk = members[start:start + per_forward]
            rows = len(chunk) * examples
            latent_mask = torch.zeros(rows, 1, sae.d_sae, dtype=torch.bool)
            error_mask = torch.zeros(rows, 1, 1, dtype=torch.bool)
            for slot, (_, latent) in enumerate(chunk):
                block = slice(slot * examples, (slot + 1) * examples)
                if latent is None:
                    error_mask[block] = True
                else:
                    latent_mask[block, 0, latent] = True
            latent_values = _tile(target.latents[index], examples, len(chunk))
            error_values = _tile(target.error[index], examples, len(chunk))
            edit = FeatureSplice(site=_site(sae), sae=sae, latent_values=latent_values, latent_mask=latent_mask,
                                 error_values=error_values, error_mask=error_mask,
                                 where=None if where is None else where.repeat(len(chunk), 1))
            with torch.no_grad(), model.hooks([*interventions, edit]) as session:
                logits = model.forward(batch[torch.arange(rows) % examples], session, logits_to_keep=1)[:, -1]
            passes += len(chunk)
            for slot, (node, _) in enumerate(chunk):
                values = metric_fn(logits[slot * examples:(slot + 1) * examples], task)
                effects[:, node] = values.double().cpu() - base_metric.double().cpu()
    return FeatureEffects("exact", effects, graph, base_metric.detach().cpu(), direction, replacement, passes,
                          time.perf_counter() - started, meta={"metric": metric_name})


def _tile(values: Tensor, examples: int, copies: int) -> Tensor:
    """``(examples or 1, pos, d)`` values repeated for ``copies`` blocks of ``examples`` rows."""
    expanded = values.expand(examples, *values.shape[1:]) if values.shape[0] == 1 else values
    return expanded.repeat(copies, *[1] * (values.ndim - 1))

