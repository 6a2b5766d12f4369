"""RelP: relevance patching, AtP with LRP propagation coefficients in place of gradients.

RelP (Rezaei Jafari, Eberle, Khakzar, Nanda 2025; docs/methods.md, RelP) keeps AtP's recipe and cost,
a source forward plus a base forward and backward, but runs the backward pass with LRP rules
(:mod:`interp.attribution.relp.rules`): norms' scales and nonlinearities' gates are treated as
constants, gated products split relevance in half. The coefficient ``r(n)`` it leaves at each site
replaces the gradient:

    RelP(n) = (n_source - n_base) . r(n)

The rules are what make the estimate faithful where AtP is not: AtP differentiates through a
norm's ``1/std`` and a GELU's curvature, which are poor guides to what a *finite* patch does; the
LRP coefficients describe the contribution of each entry to the output (relevance ``n . r(n)``
sums to the metric across a layer where the rules conserve it, :meth:`RelPRules.conservative`).
With every rule off (:meth:`RelPRules.none`) RelP is AtP exactly.

    >>> result = relp(model, task, "mlp_out")                       # fork's rules: LN, Identity, Half
    >>> strict = relp(model, task, "mlp_out", rules=RelPRules(attention="cp"))
    >>> keys = relp(model, task, "head_k", qk_fix=True)                # exact softmax for q and k
"""

from __future__ import annotations

import functools
from typing import Any

from interp.attribution.atp import single_or_all
from interp.attribution.linear import Sweeps, gradient_attribution
from interp.attribution.relp.install import relp_rules
from interp.attribution.relp.rules import RelPRules
from interp.attribution.result import AttributionResult
from interp.tasks.direction import Direction
from interp.model import Model
from interp.tasks.metrics import TaskMetric


def relp(
    model: Model,
    task: Any,
    sweeps: Sweeps,
    metric: str | TaskMetric = "logit_diff",
    direction: Direction = "denoising",
    rules: RelPRules | None = None,
    qk_fix: bool = False,
) -> AttributionResult | dict[str, AttributionResult]:
    """RelP estimates of one sweep or several (see :func:`interp.attribution.atp` for the arguments).

    Args:
        rules: which LRP rules to use; default :class:`RelPRules` () (LN-, Identity- and Half-rule,
            ordinary attention gradient: the RelP fork's defaults).
        qk_fix: for query and key sweeps, recompute the attention probabilities exactly and use
            RelP's coefficient at the pattern (AtP*'s QK fix, :mod:`interp.attribution.qk`) instead
            of propagating through the softmax; same passes, eager attention.
    """
    rules = RelPRules() if rules is None else rules
    if qk_fix:
        from interp.attribution.atp_star import atp_star

        return atp_star(model, task, sweeps, metric, direction, qk_fix=True, grad_drop=False, rules=rules)
    results = gradient_attribution(
        model, task, sweeps, metric, direction, method="relp",
        rules=functools.partial(relp_rules, rules=rules), attention_rule=rules.attention,
        meta={"rules": rules.as_dict()},
    )
    return single_or_all(sweeps, results)
