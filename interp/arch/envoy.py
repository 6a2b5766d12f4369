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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from interp.arch.base import ArchAdapter
from interp.attention import HOOK_POINT, IMPLEMENTATION
from interp.errors import ModelLoadError

BACKEND = "nnsight"


class EnvoyMixin:
    """Overrides of a family adapter for a module tree that nnsight holds: leave no module behind.

    On a plain model the attention pattern's HookPoint stays attached to each attention module once
    made; on the user's nnsight model it is detached when the session that needed it closes.
    """

    _attention_depth: int = 0

    @contextmanager
    def use_attention(self, implementation: str = IMPLEMENTATION) -> Iterator[None]:
        """As the family's, and when the outermost such context closes, detach the HookPoints."""
        self._attention_depth += 1
        try:
            with super().use_attention(implementation):  # type: ignore[misc]
                yield
        finally:
            self._attention_depth -= 1
            if self._attention_depth == 0:
                for layer in range(self.dims.n_layers):  # type: ignore[attr-defined]
                    attention = self.attention(layer)  # type: ignore[attr-defined]
                    if HOOK_POINT in attention._modules:
                        del attention._modules[HOOK_POINT]


_CLASSES: dict[type[ArchAdapter], type[ArchAdapter]] = {}


def envoy_adapter(hf_model: nn.Module, family: ArchAdapter) -> ArchAdapter:
    """The adapter for the model an nnsight wrapper holds, with ``family`` its plain adapter."""
    cls = type(family)
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Envoy{cls.__name__}", (EnvoyMixin, cls), {})
    adapter = _CLASSES[cls](hf_model)
    adapter.family, adapter.backend = family.family, BACKEND
    return adapter


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
