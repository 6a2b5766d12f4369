"""The Hugging Face model inside an nnsight ``LanguageModel`` / ``TransformersModel``.

nnsight wraps a module tree in *envoys*: proxies that mirror each module (``lm.model.layers[3]`` is
the envoy of ``hf.model.layers[3]``) and, to run its traces, swap each module's ``forward`` for a
controller that calls the original one when no trace is active. The modules themselves, their
weights and the torch hook mechanism are untouched, so the family adapters apply to the wrapped
model as they are: same site names, same tensors, the KV cache, ``start_at`` and every attention
implementation. A model built lazily on the meta device (``LanguageModel("repo")`` without
``dispatch=True``) gets its weights loaded first, as nnsight itself does on its first trace.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from interp.errors import ModelLoadError

BACKEND = "nnsight"


def is_nnsight_model(obj: Any) -> bool:
    """Whether ``obj`` is an nnsight model wrapper (an envoy holding a module; checked without importing nnsight)."""
    return type(obj).__module__.startswith("nnsight") and isinstance(obj.__dict__.get("_module"), nn.Module)


def envoy_module(model: Any) -> nn.Module:
    """The module an nnsight model wraps, its weights dispatched (loaded) if they were still on meta."""
    if not is_nnsight_model(model):
        raise ModelLoadError(
            f"expected an nnsight LanguageModel or TransformersModel, got {type(model).__name__}; "
            "wrap another kind of model with interp.wrap"
        )
    if getattr(model, "dispatched", True) is False:
        model.dispatch()
    module = model.__dict__["_module"]
    if getattr(module, "config", None) is None:
        raise ModelLoadError(
            f"the nnsight model wraps a {type(module).__name__}, not a Hugging Face causal LM with a config; "
            "interp needs a transformers model (LanguageModel or TransformersModel with task='text-generation')"
        )
    return module
