"""The QK fix of AtP*: exact attention-probability changes for query and key nodes.

Plain AtP linearises the whole model. Through a softmax that is badly wrong when an attention row
is saturated (nearly one-hot): its Jacobian is nearly zero, so AtP predicts no effect even when
swapping a query or key moves all the attention (a false negative, docs/methods.md, QK fix). The fix
computes the change of the attention probabilities *exactly* and linearises only downstream of
them. With, on the base run, scores ``S`` (after scaling, soft-cap and mask), probabilities
``A = softmax(S)`` and ``G = dm/dA`` (the gradient at ``hook_pattern``), per layer, head and example:

* **query** ``q_t``: only row ``t`` changes, to ``A'_t = softmax(S'_t)`` with
  ``S'_t = q_t(source) K_base^T``; the estimate is ``sum_s G[t, s] (A'[t, s] - A[t, s])``.
* **key** ``k_s``: for every query ``t`` only the entry ``S[t, s]`` moves, by
  ``delta_t = S'[t, s] - S[t, s]``, and the row renormalises in closed form:
  ``Gbar_t = sum_j G[t, j] A[t, j]``, ``Z_t = 1 + A[t, s] expm1(delta_t)``,
  ``estimate = sum_t (Gbar_t + G[t, s] A[t, s] expm1(delta_t)) / Z_t - Gbar_t``
  (evaluated in the equivalent logit form of :func:`key_effects`, which stays finite when a row is
  one-hot to float64 precision).
  On grouped-query models one key serves several query heads; their estimates add.

Patching a head's queries (or keys) at *all* positions recomputes every row (every entry) at once.
Everything runs in float64; ``delta`` is clamped to +-700 (a shift that large already makes the
entry one-hot or zero), masked entries do not move, and a query row with no visible key (padding)
has no effect.
"""

from __future__ import annotations

import torch
from jaxtyping import Float

from interp.attribution.attention import AttentionRecord

MAX_SHIFT = 700.0


def _probabilities(scores: torch.Tensor) -> torch.Tensor:
    return torch.softmax(scores, dim=-1)


def query_effects(
    base: AttentionRecord,
    source: AttentionRecord,
    grad_pattern: Float[torch.Tensor, "batch head q k"],
    per_position: bool,
) -> Float[torch.Tensor, "batch head ..."]:
    """QK-fixed effect of swapping each head's query for the source's: ``(b, h, pos)`` or ``(b, h)``."""
    pattern = _probabilities(base.scores())
    swapped = _probabilities(base.scores(query=source.query))
    per_row = (grad_pattern.double() * (swapped - pattern)).sum(dim=-1)
    return per_row if per_position else per_row.sum(dim=-1)


def _excluding_each_key(
    scores: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per (query, key s): log-sum-exp of the row without s, and the pattern-weighted mean of the
    gradient over the row without s; plus the full row's weighted mean gradient.

    Subtracting key s's weight from the row total is exact enough unless s carries nearly all of it,
    which only the row's largest score can; that column is recomputed with it masked out.
    """
    top = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - top)
    total = weights.sum(dim=-1, keepdim=True)
    weighted = (grad * weights).sum(dim=-1, keepdim=True)
    rest, rest_weighted = total - weights, weighted - grad * weights
    largest = scores.argmax(dim=-1, keepdim=True)
    without = scores.scatter(-1, largest, -torch.inf)
    second = without.amax(dim=-1, keepdim=True)
    second = torch.where(torch.isfinite(second), second, 0.0)
    weights_without = torch.exp(without - second)
    rest_at_largest = weights_without.sum(dim=-1, keepdim=True)
    log_rest = torch.log(rest) + top
    log_rest = log_rest.scatter(-1, largest, torch.log(rest_at_largest) + second)
    rest_weighted = rest_weighted.scatter(-1, largest, (grad * weights_without).sum(dim=-1, keepdim=True))
    rest = rest.scatter(-1, largest, rest_at_largest)
    mean_rest = torch.where(rest > 0, rest_weighted / torch.where(rest > 0, rest, 1.0), 0.0)
    return log_rest, mean_rest, weighted / total


def key_effects(
    base: AttentionRecord,
    source: AttentionRecord,
    grad_pattern: Float[torch.Tensor, "batch head q k"],
    per_position: bool,
) -> Float[torch.Tensor, "batch kv_head ..."]:
    """QK-fixed effect of swapping each KV head's key for the source's: ``(b, h_kv, pos)`` or ``(b, h_kv)``.

    Per position the row renormalises in closed form, evaluated stably in logit space: with
    ``logit = S[t, s] - logsumexp_{j != s} S[t, j]``, the new probability of key s is
    ``sigmoid(logit + delta)``, the other keys share ``sigmoid(-(logit + delta))`` in their old
    proportions, and the estimate is ``G[t, s] A'[t, s] + (1 - A'[t, s]) Gbar_rest - Gbar``.
    """
    grad = grad_pattern.double()
    n_kv = base.key.shape[1]
    if per_position:
        raw = base.raw_scores()
        allowed = base.allowed().expand_as(raw)
        allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
        scores = torch.where(allowed, raw, -torch.inf)
        shift = torch.where(base.allowed(), base.raw_scores(key=source.key) - raw, 0.0).clamp(-MAX_SHIFT, MAX_SHIFT)
        log_rest, mean_rest, mean_grad = _excluding_each_key(scores, grad)
        logit = scores - log_rest + shift
        per_entry = grad * torch.sigmoid(logit) + torch.sigmoid(-logit) * mean_rest - mean_grad
        per_head = per_entry.sum(dim=2)
    else:
        pattern = _probabilities(base.scores())
        swapped = _probabilities(base.scores(key=source.key))
        per_head = (grad * (swapped - pattern)).sum(dim=(2, 3))
    return per_head.unflatten(1, (n_kv, -1)).sum(dim=2)
