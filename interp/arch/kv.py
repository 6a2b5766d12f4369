"""The one place that knows how a KV cache goes into a Hugging Face forward and comes back out.

A decoder caches each layer's keys and values so that a later forward computes only new positions:
their queries attend to the cached keys and values of every earlier position. Transformers 5.x
carries this cache in a :class:`~transformers.DynamicCache` (one layer object per block, with
``.keys`` and ``.values`` of shape ``(batch, kv_head, pos, d_head)``).

Transformers 5.24.0 renamed the forward keyword ``past_key_values`` to ``cache`` and the output field
``past_key_values`` to ``cache`` in the same release; the old names still work there but warn, and
are scheduled for removal in 5.40. Releases 5.0 to 5.23 only know the old names. :data:`CACHE_NAME`
is decided once, at import, from the output class's fields, and every forward and output in the
workbench goes through :func:`cache_kwargs` and :func:`returned_cache`, so neither name is spelled
anywhere else and no deprecation warning is raised on any supported release.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from transformers import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

KeysValues = list[tuple[Float[torch.Tensor, "batch kv_head pos d_head"], Float[torch.Tensor, "batch kv_head pos d_head"]]]

CACHE_NAME: str = (
    "cache"
    if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    else "past_key_values"
)
"""The forward keyword and output field holding the KV cache on the installed transformers."""


def empty_cache() -> DynamicCache:
    """A cache that a forward fills with the keys and values of every position of every layer."""
    return DynamicCache()


def cache_from(keys_values: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A cache pre-filled with per-layer ``(keys, values)``, e.g. a prefix computed earlier."""
    return DynamicCache(ddp_cache_data=[(keys, values) for keys, values in keys_values])


def cache_kwargs(cache: Cache | None) -> dict[str, Any]:
    """Keyword arguments that hand ``cache`` (None: start without one) to a forward."""
    return {CACHE_NAME: cache}


def returned_cache(output: Any) -> Cache:
    """The cache a forward run with ``use_cache=True`` returned."""
    return getattr(output, CACHE_NAME)


def keys_values(cache: Cache) -> KeysValues:
    """Per-layer ``(keys, values)`` held by ``cache``."""
    return [(layer.keys, layer.values) for layer in cache.layers]
