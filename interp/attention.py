"""Attention patterns as a hookable site.

Fused attention kernels (SDPA, flash) never materialise the attention probabilities, so
``hook_pattern`` needs an *eager* attention computation with a place to hook between the softmax
and the value mixing. We register our own eager attention function with transformers'
``AttentionInterface`` under the name ``"interp_eager"``::

    scores  = q @ k^T * scaling        (k, v repeated for grouped-query attention)
    scores  = softcap * tanh(scores / softcap)           (Gemma 2 only)
    pattern = softmax(scores + additive_mask)            <- HookPoint ``interp_pattern``
    z       = pattern @ v

The HookPoint is an identity module attached to each attention module, so reading and writing the
pattern is an ordinary forward hook. Models that already run HF's eager attention (Gemma 2) are
switched to this function for good (:func:`adopt_eager_attention`): it is the same computation, bit
for bit in float32, but HF's eager computes the softmax in float32 even for a float64 model, which
turns the float64 mask minimum into -inf, fully masked padding rows into NaN, and every gradient of
a padded batch into NaN; ours takes the softmax in the wider of the two dtypes. A model whose config
asks for attention-logit soft-capping but runs SDPA is switched too: SDPA has no soft-capping and
drops it without a word (transformers before about 5.20 default Gemma 2 to SDPA), so its logits
are not the model's. The model switches to this implementation only for a forward
that touches a pattern site (docs/design.md, Performance principles), and switches back after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from jaxtyping import Float
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

IMPLEMENTATION = "interp_eager"
HOOK_POINT = "interp_pattern"


class HookPoint(nn.Identity):
    """An identity module whose only job is to be hooked."""


def interp_eager_attention(
    module: nn.Module,
    query: Float[torch.Tensor, "batch head q d_head"],
    key: Float[torch.Tensor, "batch kv_head k d_head"],
    value: Float[torch.Tensor, "batch kv_head k d_head"],
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    **_: Any,
) -> tuple[Float[torch.Tensor, "batch q head d_head"], Float[torch.Tensor, "batch head q k"]]:
    """Eager attention with the pattern passed through the module's ``interp_pattern`` HookPoint."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    # softmax in at least float32; never *down*cast (HF's eager casts float64 scores to float32,
    # turning float64 masks into -inf and fully masked pad rows into NaN gradients)
    pattern = torch.softmax(scores, dim=-1, dtype=torch.promote_types(query.dtype, torch.float32)).to(query.dtype)
    hook_point = getattr(module, HOOK_POINT, None)
    if hook_point is not None:
        pattern = hook_point(pattern)
    pattern = nn.functional.dropout(pattern, p=dropout, training=module.training)
    output = torch.matmul(pattern, value).transpose(1, 2).contiguous()
    return output, pattern


AttentionInterface.register(IMPLEMENTATION, interp_eager_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)


def pattern_hook_point(attention_module: nn.Module) -> HookPoint:
    """The HookPoint of an attention module, attached on first use."""
    if not hasattr(attention_module, HOOK_POINT):
        attention_module.add_module(HOOK_POINT, HookPoint())
    return getattr(attention_module, HOOK_POINT)


@contextmanager
def attention_implementation(hf_model: nn.Module, implementation: str = IMPLEMENTATION) -> Iterator[None]:
    """Run the model with the registered attention ``implementation`` inside the block (default:
    :func:`interp_eager_attention`), restoring every config's own afterwards, exceptions included."""
    configs = [m.config for m in hf_model.modules() if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")]
    unique = list({id(c): c for c in configs}.values())
    previous = [c._attn_implementation for c in unique]
    try:
        for config in unique:
            config._attn_implementation = implementation
        yield
    finally:
        for config, old in zip(unique, previous, strict=True):
            config._attn_implementation = old


def adopt_eager_attention(hf_model: nn.Module) -> None:
    """Switch to :func:`interp_eager_attention` a model that runs HF's eager attention, or SDPA while
    its config asks for attention-logit soft-capping (which SDPA silently leaves out)."""
    for module in hf_model.modules():
        config = getattr(module, "config", None)
        implementation = getattr(config, "_attn_implementation", None)
        soft_capped = getattr(config, "attn_logit_softcapping", None) is not None
        if implementation == "eager" or (implementation == "sdpa" and soft_capped):
            config._attn_implementation = IMPLEMENTATION
