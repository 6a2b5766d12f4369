"""AtP*: AtP with the QK fix and GradDrop (Kramar, Lieberum, Shah, Nanda 2024; docs/methods.md, AtP*).

AtP has two systematic failure modes, and AtP* fixes each, switchably:

**QK fix** (``qk_fix=True``). For query and key nodes (sweeps ``head_q``, ``head_k`` and their
``_by_pos`` variants) the change of the attention probabilities is computed exactly from the
post-RoPE queries and keys (:mod:`interp.attribution.qk`), and only what happens downstream of the
pattern is linearised with ``G = dm/dA``. Values, head outputs and everything else stay plain AtP:
they are linear up to the head output.

**GradDrop** (``grad_drop=True``). A node's direct and indirect effects can cancel in the gradient.
For every layer ``l`` GradDrop takes the gradient with block ``l``'s write into the residual stream
(its attention and MLP outputs) held fixed, so gradient reaches earlier layers through the skip
path only, giving one estimate ``I_l(n)`` per layer (:func:`grad_drop_terms`). They combine into an
unsigned ranking score ``(1 / (L - 1)) sum_l |I_l(n)|`` (residual-stream nodes, which no drop
silences, divide by ``L``). The signed AtP(+QK fix) estimate stays in ``values``; the score goes to
``scores`` and drives the ranking.

**Ranking** (``ranking=``; default ``"signed"``). With several prompt pairs the paper's score takes
``|I_l|`` per pair before averaging (``"unsigned"``). The default takes it after averaging over the
pairs, ``(1 / (L - 1)) sum_l |mean_pairs I_l(n)|``, because what patching measures, and what the true
top components are ranked by, is the effect on the *mean* metric: a node whose per-pair effects
are large but of both signs has a small mean effect, and the unsigned score ranks it high anyway.
Measured with the paper's own protocol (recall of the exact top 10 against forward passes spent,
:mod:`interp.attribution.recall`; BENCHMARKS.md, "Recall against cost"): on SmolLM2-135M with 8 IOI
pairs the unsigned score found 0.4-0.8 of the top 10 after 10 verifications where the signed one
found 0.8-1.0 (queries 0.4 vs 0.8, neurons 0.7 vs 1.0), and the same gap separates unsigned and
signed plain AtP. With one pair the two coincide. That unsigned score is what made AtP* look worse
than AtP in a top-10 comparison; GradDrop itself is tested against an independent recompute.
The same measurements support **AtP + QK fix without GradDrop** (``grad_drop=False``, ``"atp+qk"``)
as the best ranking for its cost: its signed ranking matched or beat signed AtP* on every component
type at an eighth of the passes (4 forward-pass equivalents against 33 on 30 layers), as one
reading of the paper recommends for the distribution setting. GradDrop stays available for the
cancellation cases it targets (tested on a constructed one), where it is worth its ``L / 2`` passes.

GradDrop's ``L`` backward passes are cheap here. The residual stream entering block ``l`` is a
bottleneck: everything earlier reaches the metric only through it. With block ``l``'s write held
fixed, the gradient arriving there is the ordinary gradient at the block's *output*, ``g_post[l]``.
So for nodes before block ``l`` the dropped gradient is one vector-Jacobian product from
``resid_pre[l]`` (seeded with ``g_post[l]``) back through blocks ``0..l-1`` only; nodes after block
``l`` keep their ordinary gradient, nodes inside it get zero. That is ``1 + sum_l l / L``, about
``L / 2`` full backward passes, instead of ``L`` (recorded as such in the cost), and it gives the
same numbers as zeroing the block's write gradient in a full backward pass (tested).

With ``rules`` (LRP rules, :mod:`interp.attribution.relp`) every coefficient, ``G`` included, comes
from RelP's modified backward pass: ``relp(..., qk_fix=True)`` is RelP with the QK fix. The
paper's false-negative diagnostic lives in :mod:`interp.attribution.diagnostics`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from interp.attribution.atp import single_or_all
from interp.attribution.linear import Clock, Sweeps, build_result, resolve_sweeps
from interp.attribution.nodes import SweepSpec, cell_sums, grid
from interp.attribution.qk import key_effects, query_effects
from interp.attribution.relp.install import relp_rules
from interp.attribution.relp.rules import RelPRules
from interp.attribution.result import AttributionResult
from interp.attribution.runs import ForwardRun, forward
from interp.errors import InvalidArgumentError
from interp.tasks.direction import Direction, roles
from interp.model import Model
from interp.tasks.metrics import TaskMetric, resolve_metric
from interp.sites import parse_site, site_name

RESIDUAL_KINDS = ("resid_pre", "resid_mid", "resid_post")
QK_KINDS = ("q", "k")


def _qk_fixed(spec: SweepSpec, qk_fix: bool) -> bool:
    return qk_fix and spec.kind in QK_KINDS


def _needed_sites(specs: list[SweepSpec], qk_fix: bool) -> list[str]:
    sites = set()
    for spec in specs:
        if _qk_fixed(spec, qk_fix):
            sites.update(site_name("pattern", layer) for layer in spec.layers)
        else:
            sites.update(spec.sites)
    return sorted(sites)


def _estimator(
    spec: SweepSpec, qk_fix: bool, base: ForwardRun, source: ForwardRun, grads: dict[str, torch.Tensor]
) -> Callable[[int], torch.Tensor]:
    """Per-layer cell estimates of ``spec`` from one set of gradients (plain AtP or QK-fixed)."""
    per_position = "pos" in spec.axes

    def per_layer(layer: int) -> torch.Tensor:
        if _qk_fixed(spec, qk_fix):
            pattern_grad = grads[site_name("pattern", layer)]
            effects = query_effects if spec.kind == "q" else key_effects
            return effects(base.attention[layer], source.attention[layer], pattern_grad, per_position)
        name = spec.site(layer)
        delta = source.acts[name].double() - base.acts[name].double()
        return cell_sums(spec, delta * grads[name].double())

    return per_layer


def _drop_terms(
    model: Model, base: ForwardRun, targets: list[str], grads: dict[str, torch.Tensor], clock: Clock
) -> list[dict[str, torch.Tensor]]:
    """Gradients at the ``targets`` sites with block ``l``'s write held fixed, for each layer ``l``."""
    n_layers = model.dims.n_layers
    last = site_name("resid_post", n_layers - 1)
    post = [grads[site_name("resid_pre", layer + 1)] for layer in range(n_layers - 1)] + [grads[last]]
    parsed = {name: parse_site(name) for name in targets}
    terms = []
    for drop in range(n_layers):
        upstream = [name for name in targets if parsed[name].layer < drop]
        dropped: dict[str, torch.Tensor] = {}
        if upstream:
            entry = base.live[site_name("resid_pre", drop)]
            inputs = [base.live[n] for n in upstream]
            vjp = torch.autograd.grad(entry, inputs, post[drop], retain_graph=True, allow_unused=True)
            clock.backward_passes += drop / n_layers
            for name, tensor, grad in zip(upstream, inputs, vjp, strict=True):
                dropped[name] = torch.zeros_like(tensor) if grad is None else grad
        for name in targets:
            site = parsed[name]
            if name in dropped:
                continue
            if site.layer > drop or (site.kind == "resid_post" and site.layer == drop):
                dropped[name] = grads[name]
            elif site.kind in ("resid_pre", "resid_mid"):
                dropped[name] = post[drop]
            else:
                dropped[name] = torch.zeros_like(grads[name])
        terms.append(dropped)
    return terms


Ranking = Literal["signed", "unsigned"]


@dataclass
class _Passes:
    """The passes AtP* shares between its outputs: runs, gradients, per-drop gradients, cost."""

    specs: list[SweepSpec]
    base: ForwardRun
    source: ForwardRun
    grads: dict[str, torch.Tensor]
    terms: list[dict[str, torch.Tensor]]
    clock: Clock
    metric_name: str


def _passes(
    model: Model, task: Any, sweeps: Sweeps, metric: str | TaskMetric, direction: Direction, qk_fix: bool,
    grad_drop: bool, rules: RelPRules | None,
) -> _Passes:
    metric_name, metric_fn = resolve_metric(metric)
    specs = resolve_sweeps(model, task, sweeps)
    base_name, source_name = roles(direction)
    clock = Clock(model, task)
    needs_attention = any(_qk_fixed(spec, qk_fix) for spec in specs)
    sites = _needed_sites(specs, qk_fix)
    grad_sites = list(sites)
    if grad_drop:
        n_layers = model.dims.n_layers
        grad_sites += [site_name("resid_pre", layer) for layer in range(n_layers)]
        grad_sites += [site_name("resid_post", n_layers - 1)]
    grad_sites = sorted(set(grad_sites), key=model.sites.index)
    source = forward(model, task, source_name, metric_fn, sites, record_attention=needs_attention)
    base = forward(
        model, task, base_name, metric_fn, sites, grad_sites=grad_sites, record_attention=needs_attention,
        rules=None if rules is None else functools.partial(relp_rules, rules=rules),
        attention_rule="gradient" if rules is None else rules.attention,
    )
    grads = base.grads(grad_sites, retain_graph=grad_drop)
    clock.forward_passes, clock.backward_passes = 2, 1
    terms = _drop_terms(model, base, sites, grads, clock) if grad_drop else []
    return _Passes(specs, base, source, grads, terms, clock, metric_name)


def _term_grid(spec: SweepSpec, qk_fix: bool, passes: _Passes) -> torch.Tensor:
    """Per-drop signed estimates of one sweep, ``(drop, example, *grid)``."""
    return torch.stack([
        grid(spec, _estimator(spec, qk_fix, passes.base, passes.source, term)) for term in passes.terms
    ])


def grad_drop_divisor(model: Model, spec: SweepSpec) -> int:
    """``L`` for residual-stream nodes (no drop silences them), ``L - 1`` for nodes inside a block."""
    n_layers = model.dims.n_layers
    return n_layers if spec.kind in RESIDUAL_KINDS else max(n_layers - 1, 1)


def grad_drop_scores(terms: torch.Tensor, divisor: int, ranking: Ranking) -> torch.Tensor:
    """Per-example GradDrop scores from per-drop estimates ``(drop, example, *grid)``.

    ``"unsigned"`` (the paper's): ``(1/divisor) sum_l |I_l(n, e)|``, a magnitude per pair.
    ``"signed"``: ``(1/divisor) sum_l sign(mean_e I_l(n)) I_l(n, e)``, whose mean over examples is
    ``(1/divisor) sum_l |mean_e I_l(n)|``: the absolute value is taken after averaging over the
    pairs, as for the distribution-level effect being ranked.
    """
    if ranking == "unsigned":
        return terms.abs().sum(dim=0) / divisor
    if ranking == "signed":
        signs = torch.sign(terms.mean(dim=1, keepdim=True))
        return (signs * terms).sum(dim=0) / divisor
    raise InvalidArgumentError(f"unknown ranking {ranking!r}; choose 'signed' or 'unsigned'")


def grad_drop_terms(
    model: Model,
    task: Any,
    sweeps: Sweeps,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    qk_fix: bool = True,
    rules: RelPRules | None = None,
) -> dict[str, torch.Tensor]:
    """GradDrop's per-layer estimates ``I_l(n)`` of each sweep, ``(drop, example, *grid)`` by sweep name.

    Term ``l`` is the AtP (+ QK fix) estimate with block ``l``'s write held fixed; :func:`atp_star`
    combines them into its ranking scores (:func:`grad_drop_scores`). CPU tensors, as every result.
    """
    passes = _passes(model, task, sweeps, metric, direction, qk_fix, True, rules)
    return {spec.sweep: _term_grid(spec, qk_fix, passes).cpu() for spec in passes.specs}


def atp_star(
    model: Model,
    task: Any,
    sweeps: Sweeps,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    qk_fix: bool = True,
    grad_drop: bool = True,
    rules: RelPRules | None = None,
    ranking: Ranking = "signed",
) -> AttributionResult | dict[str, AttributionResult]:
    """AtP* estimates of one sweep or several (see the module docstring).

    Args:
        sweeps, metric, direction: as :func:`interp.attribution.atp`.
        qk_fix: exact attention-probability changes for query and key sweeps.
        grad_drop: GradDrop magnitudes in ``scores`` (costs about ``L / 2`` extra backward passes).
        rules: LRP rules for the backward pass (RelP coefficients instead of gradients, including
            ``G`` at the patterns); None for ordinary gradients. See :func:`interp.attribution.relp`.
        ranking: how GradDrop's per-layer terms combine over pairs (:func:`grad_drop_scores`);
            ``"signed"`` (default, see the module docstring) or the paper's ``"unsigned"``.

    Returns:
        ``values`` hold the signed AtP (+ QK fix) estimate; ``scores`` the GradDrop score
        when ``grad_drop`` (else None, ranking by ``|estimate|``).
    """
    if ranking not in ("signed", "unsigned"):
        raise InvalidArgumentError(f"unknown ranking {ranking!r}; choose 'signed' or 'unsigned'")
    passes = _passes(model, task, sweeps, metric, direction, qk_fix, grad_drop, rules)
    base_name, source_name = roles(direction)
    runs = {base_name: passes.base, source_name: passes.source}
    results = {}
    method = "atp*" if qk_fix and grad_drop else "atp+qk" if qk_fix else "atp+graddrop" if grad_drop else "atp"
    if rules is not None:
        method = method.replace("atp*", "atp+qk+graddrop").replace("atp", "relp")
    for spec in passes.specs:
        estimates = grid(spec, _estimator(spec, qk_fix, passes.base, passes.source, passes.grads))
        scores = None
        if grad_drop:
            scores = grad_drop_scores(_term_grid(spec, qk_fix, passes), grad_drop_divisor(model, spec), ranking)
        meta = {"qk_fix": qk_fix, "grad_drop": grad_drop, **({"ranking": ranking} if grad_drop else {})}
        results[spec.sweep] = build_result(
            model, task, spec, estimates, runs, passes.metric_name, direction, method,
            passes.clock.cost(spec.n_cells), scores,
            meta={**meta, **({} if rules is None else {"rules": rules.as_dict()})},
        )
    return single_or_all(sweeps, results)
