"""An attention function for attribution: records post-RoPE queries and keys, applies LRP rules.

The QK fix of AtP* (docs/methods.md, QK fix) recomputes attention probabilities with one query or key
swapped, which needs the queries and keys *as the softmax sees them*: after the q/k norms of
Qwen3 and Gemma 3, after RoPE, with the model's own scaling, soft-capping and mask (causal,
padding, sliding window). Rather than re-deriving all of that per family from the pre-RoPE
``hook_q``/``hook_k`` sites, we register one more implementation with transformers'
``AttentionInterface``, ``"interp_attribution"``, which every supported family calls with exactly
those tensors. While :func:`attribution_attention` is active it

* records ``(query, key, mask, scaling, softcap)`` of each layer when asked (:class:`AttentionRecord`);
* computes attention with one of three backward rules (docs/methods.md, LRP rules), forward values
  unchanged:

  - ``"gradient"``: the ordinary gradient (this is :func:`interp.attention.interp_eager_attention`);
  - ``"cp"``: CP-LRP / the AH-rule, the pattern is a constant in the backward pass, so relevance
    flows only through the values (q and k get zero gradient);
  - ``"attnlrp"``: AttnLRP's uniform rule on both matrix products, ``softmax(q k^T) v``: the
    gradient is halved at the scores and at the output, so q and k get 1/4 and v 1/2 of the
    ordinary gradient, and the pattern site half.

The pattern still passes through the ``interp_pattern`` HookPoint, so ``hook_pattern`` sites read,
write and differentiate as usual. Passing a swapped query or key changes exactly the rows or columns
the QK fix recomputes because positions are aligned between clean and corrupt runs: substituting the
rotated vector at a position is the same as substituting the unrotated one (docs/methods.md, QK fix).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from interp.attention import HOOK_POINT, interp_eager_attention
from interp.errors import InvalidArgumentError
from interp.model import Model

IMPLEMENTATION = "interp_attribution"
AttentionRule = Literal["gradient", "cp", "attnlrp"]
ATTENTION_RULES: tuple[str, ...] = ("gradient", "cp", "attnlrp")


@dataclass(frozen=True)
class AttentionRecord:
    """What one layer's softmax saw: post-RoPE queries/keys, additive mask, scaling, soft-cap."""

    query: Float[torch.Tensor, "batch head q d_head"]
    key: Float[torch.Tensor, "batch kv_head k d_head"]
    mask: Float[torch.Tensor, "batch 1 q k"] | None
    scaling: float
    softcap: float | None

    def scores(
        self, query: torch.Tensor | None = None, key: torch.Tensor | None = None, dtype: torch.dtype = torch.float64
    ) -> Float[torch.Tensor, "batch head q k"]:
        """Pre-softmax scores ``softcap(scaling q k^T) + mask`` (optionally with other q / k), in ``dtype``."""
        q = (self.query if query is None else query).to(dtype)
        k = (self.key if key is None else key).to(dtype)
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        return scores + self.additive_mask(dtype)

    def raw_scores(self, query: torch.Tensor | None = None, key: torch.Tensor | None = None) -> torch.Tensor:
        """Scores before the mask (float64)."""
        return self.scores(query, key) - self.additive_mask(torch.float64)

    def additive_mask(self, dtype: torch.dtype) -> torch.Tensor:
        """The mask as 0 (allowed) / -inf-like (masked) in ``dtype``; 0 when there is none."""
        if self.mask is None:
            return torch.zeros((), dtype=dtype, device=self.query.device)
        zero = torch.zeros((), dtype=dtype, device=self.query.device)
        return torch.where(self.allowed(), zero, torch.finfo(dtype).min)

    def allowed(self) -> torch.Tensor:
        """Boolean (batch, 1, q, k): which keys each query may attend to."""
        if self.mask is None:
            q, k = self.query.shape[2], self.key.shape[2]
            return torch.ones((1, 1, q, k), dtype=torch.bool, device=self.query.device)
        if self.mask.dtype == torch.bool:
            return self.mask
        return self.mask > torch.finfo(self.mask.dtype).min / 2


@dataclass
class _State:
    rule: AttentionRule = "gradient"
    record: dict[int, AttentionRecord] | None = None
    layers: dict[int, int] = field(default_factory=dict)


_STATE = _State()


def _half_gradient(x: torch.Tensor) -> torch.Tensor:
    """Same value, half the gradient (the uniform rule on a two-factor product)."""
    half = x / 2
    return x.detach() + (half - half.detach())


def _attention_with_rule(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    softcap: float | None,
    rule: AttentionRule,
) -> tuple[torch.Tensor, torch.Tensor]:
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if rule == "attnlrp":
        scores = _half_gradient(scores)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    pattern = torch.softmax(scores, dim=-1, dtype=torch.promote_types(query.dtype, torch.float32)).to(query.dtype)
    if rule == "cp":
        pattern = pattern.detach().requires_grad_(torch.is_grad_enabled())
    hook_point = getattr(module, HOOK_POINT, None)
    if hook_point is not None:
        pattern = hook_point(pattern)
    output = torch.matmul(pattern, value)
    if rule == "attnlrp":
        output = _half_gradient(output)
    return output.transpose(1, 2).contiguous(), pattern


def attribution_attention_function(
    module: nn.Module,
    query: Float[torch.Tensor, "batch head q d_head"],
    key: Float[torch.Tensor, "batch kv_head k d_head"],
    value: Float[torch.Tensor, "batch kv_head k d_head"],
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    **kwargs: Any,
) -> tuple[Float[torch.Tensor, "batch q head d_head"], Float[torch.Tensor, "batch head q k"]]:
    """The ``interp_attribution`` attention implementation (see the module docstring)."""
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if _STATE.record is not None and id(module) in _STATE.layers:
        mask = None if attention_mask is None else attention_mask[..., : key.shape[-2]].detach()
        _STATE.record[_STATE.layers[id(module)]] = AttentionRecord(
            query.detach(), key.detach(), mask, float(scaling), softcap
        )
    if _STATE.rule == "gradient":
        return interp_eager_attention(module, query, key, value, attention_mask, scaling, dropout, softcap, **kwargs)
    return _attention_with_rule(module, query, key, value, attention_mask, scaling, softcap, _STATE.rule)


AttentionInterface.register(IMPLEMENTATION, attribution_attention_function)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)


@contextmanager
def attribution_attention(
    model: Model, rule: AttentionRule = "gradient", record: dict[int, AttentionRecord] | None = None
) -> Iterator[None]:
    """Run ``model`` with the ``interp_attribution`` attention inside the block, restoring it on exit.

    Args:
        rule: the backward rule of the attention (see the module docstring).
        record: a dict filled with one :class:`AttentionRecord` per layer, if given.
    """
    if rule not in ATTENTION_RULES:
        raise InvalidArgumentError(f"unknown attention rule {rule!r}; choose one of {list(ATTENTION_RULES)}")
    saved = (_STATE.rule, _STATE.record, _STATE.layers)
    try:
        with model.arch.use_attention(IMPLEMENTATION):
            _STATE.rule, _STATE.record = rule, record
            _STATE.layers = {id(model.arch.attention(layer)): layer for layer in range(model.dims.n_layers)}
            yield
    finally:
        _STATE.rule, _STATE.record, _STATE.layers = saved
