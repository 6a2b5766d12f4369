"""AtP: attribution patching, a first-order estimate of every patch from two forwards and one backward.

Exact activation patching costs one forward per component. Attribution patching (Nanda 2023;
Kramar et al. 2024; docs/methods.md, AtP) replaces each patched forward by its first-order Taylor
expansion around the run being patched (the *base* run):

    m(base | do(n = n_source)) - m(base)  ~  (n_source - n_base) . dm/dn |_base

* **denoising** (base = corrupt, source = clean): the gradient is taken on the corrupt run;
* **noising** (base = clean, source = corrupt): the gradient is taken on the clean run.

One forward on the source run (its activations), one forward and one backward on the base run
(its activations and the gradient at every site at once) give the estimate for *every* cell of
every sweep: residual stream and attention/MLP outputs by (layer, position), heads (z, q, k, v) by
(layer, head) or (layer, head, position), attention patterns by (layer, head), MLP neurons by
(layer, neuron). A cell that patches several entries (a head at all positions) gets the sum of its
entries' estimates. Estimates are per example; the gradient metric is the sum over examples, never
the mean, so there is no hidden ``1/B`` (docs/methods.md, Directions and metrics).

AtP is exact when the metric is affine in the patched activation (e.g. a last-layer output read
by a linear unembedding and a logit difference), and fails in two known ways: saturated attention
(fixed by AtP*'s QK fix) and cancelling direct and indirect effects (GradDrop); see
:mod:`interp.attribution.atp_star`.

    >>> result = atp(model, task, "resid_pre")                    # AttributionResult, like patch_sweep
    >>> both = atp(model, task, ["attn_out", "head_z_by_pos"])    # dict: one pass pair serves all
"""

from __future__ import annotations

from typing import Any

from interp.attribution.linear import Sweeps, gradient_attribution
from interp.attribution.result import AttributionResult
from interp.tasks.direction import Direction
from interp.model import Model
from interp.tasks.metrics import TaskMetric


def atp(
    model: Model,
    task: Any,
    sweeps: Sweeps,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
) -> AttributionResult | dict[str, AttributionResult]:
    """AtP estimates of one sweep (an :class:`AttributionResult`) or several (a dict by sweep name).

    Args:
        model: the model.
        task: a :class:`interp.tasks.PatchingTask`.
        sweeps: a sweep name (``"resid_pre"``, ``"head_q_by_pos"``, ``"neuron"``, ...), a
            :class:`~interp.attribution.linear.SweepRequest` with layer/position/head/neuron
            selections, or a list of them. All share the same 2 forwards + 1 backward.
        metric: ``"logit_diff"``, ``"logprob"``, ``"prob"`` or ``(final_logits, task) -> (example,)``.
        direction: ``"denoising"`` (gradient on the corrupt run) or ``"noising"`` (on the clean run).
    """
    results = gradient_attribution(model, task, sweeps, metric, direction, method="atp")
    return single_or_all(sweeps, results)


def single_or_all(
    sweeps: Sweeps, results: dict[str, AttributionResult]
) -> AttributionResult | dict[str, AttributionResult]:
    """One result when one sweep was asked for, else the dict."""
    if isinstance(sweeps, str) or not isinstance(sweeps, (list, tuple)):
        return next(iter(results.values()))
    return results
