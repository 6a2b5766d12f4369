"""Adapters for a TransformerLens 4 ``TransformerBridge``: the family adapters over the modules it rewired.

Booting a ``TransformerBridge`` does not copy or convert the Hugging Face model: it replaces the
model's submodules *in place* with bridge components (``BlockBridge``, ``LinearBridge``,
``NormalizationBridge``, attention bridges), each keeping the module it replaced as
``_original_component`` and forwarding attribute lookups to it. The Hugging Face forward still runs
(``bridge.original_model`` is the very object the user passed in), so the family adapter's paths
(``model.layers[3].self_attn.q_proj``) resolve to the bridge components and hooking their inputs and
outputs reads the same tensors at the same site names as on the plain model. Three things differ,
and this module handles them:

* **Attention is the bridge's own code.** The attention bridges compute scores, softmax and the
  value mix themselves (always eagerly), so transformers' attention implementation is never called:
  ``hook_pattern`` is read at the bridge's own ``hook_pattern`` HookPoint (same ``(batch, head, q,
  k)`` layout), ``use_attention`` needs no switch for patterns, and any *other* implementation
  (AtP*'s QK fix, RelP's attention rules) is unavailable. GPT-2's fused ``c_attn`` is replaced by
  separate ``q``/``k``/``v`` projections, which carry those sites.
* **Some modules are bypassed.** The bridge computes some normalisations and (after
  ``enable_compatibility_mode()``) gated MLPs in its own code, so hooks on those modules never
  fire. Probe forwards at wrap time find them: a site on a bypassed bridge component is read at the
  component's ``hook_out``/``hook_in`` HookPoint, which the bridge still runs the value through
  (same tensor, same layout); a site out of reach refuses the bridge; rules that need bypassed
  modules (RelP's LN- and Identity-rules) are refused with an error instead of silently doing nothing.
* **No padding in float64 (rotary families).** The rotary attention bridge turns the fully masked
  query rows of left padding into NaN in float64, and the NaN spreads to every token (in float32
  they stay finite and every real token matches the plain model exactly). The probe forward is
  left-padded; where its logits are not finite, a padded forward is refused.
* **No KV cache.** The attention bridges do not read a transformers KV cache correctly (cached
  and recomputed generation disagree), so generation runs with ``use_cache=False`` and the patching
  engine starts forwards at a block but not at a position (no prefix reuse). Starting at a block
  works: the skipped ``BlockBridge`` entries are swapped out of the block list and put back.

``enable_compatibility_mode()`` (TransformerLens's weight processing: layer-norm gains folded into
the following weights, writing weights and the unembedding centred, value biases folded into the
output bias) rewrites the weights in place, so a wrapped processed bridge *is* a different
parametrisation of the same function, and some site values change with it:

* on LayerNorm models the residual stream, ``hook_embed``/``hook_pos_embed`` and
  ``attn_out``/``mlp_out`` lose their mean over ``d_model`` (RMSNorm models are not centred);
* ``ln_final.hook_normalized`` loses its gain (folded into the unembedding);
* logits shift by a constant per position (centred unembedding; not with Gemma's soft-cap);
* on models with value biases (GPT-2), ``hook_v`` and ``hook_z`` shift by the value bias.

q, k, attention patterns, MLP hidden activations, the residual stream up to its mean, logit and
log-probability differences, and every patching table and AtP estimate of such metrics are
unchanged (tested). To read the values of the original model, wrap a bridge booted without
compatibility mode (or the Hugging Face model itself).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from interp.arch.base import ArchAdapter, Location, Norm, heads_view
from interp.attention import IMPLEMENTATION
from interp.errors import BackendCapabilityError, ModelLoadError
from interp.sites import Site, parse_site

BACKEND = "TransformerLens (TransformerBridge)"

NO_KV_CACHE = (
    "the bridge's attention components do not read a transformers KV cache; generate with use_cache=False "
    "(the patching engine then starts forwards at the patched block without prefix reuse)"
)


def is_transformer_bridge(obj: Any) -> bool:
    """Whether ``obj`` is a TransformerLens ``TransformerBridge`` (checked without importing it)."""
    return any(
        cls.__name__ == "TransformerBridge" and cls.__module__.startswith("transformer_lens")
        for cls in type(obj).__mro__
    )


def is_hooked_transformer(obj: Any) -> bool:
    """Whether ``obj`` is a TransformerLens 3 ``HookedTransformer`` (TL's own reimplementation)."""
    return any(
        cls.__name__ == "HookedTransformer" and cls.__module__.startswith("transformer_lens")
        for cls in type(obj).__mro__
    )


HOOKED_TRANSFORMER = (
    "a HookedTransformer (TransformerLens 3) is TransformerLens's own reimplementation of the model: its "
    "modules are not the Hugging Face modules the hook layer reads, and TransformerLens 4 removed it. "
    "Load the same weights as a Hugging Face model (interp.load_model, or AutoModelForCausalLM) or boot a "
    "TransformerBridge from it (TransformerLens 4), and wrap that"
)


def bridge_model(bridge: Any) -> nn.Module:
    """The Hugging Face model a ``TransformerBridge`` wraps (the object it was booted from)."""
    if is_hooked_transformer(bridge):
        raise ModelLoadError(HOOKED_TRANSFORMER)
    if not is_transformer_bridge(bridge):
        raise ModelLoadError(
            f"expected a TransformerLens TransformerBridge, got {type(bridge).__name__}; wrap other models with interp.wrap"
        )
    hf_model = getattr(bridge, "original_model", None)
    if not isinstance(hf_model, nn.Module) or getattr(hf_model, "config", None) is None:
        raise ModelLoadError(
            "this TransformerBridge holds no Hugging Face model (original_model); boot it with "
            "TransformerBridge.boot_transformers(..., hf_model=...) or pass the Hugging Face model instead"
        )
    return hf_model


class BridgeMixin:
    """Overrides of a family adapter for the module tree a ``TransformerBridge`` rewired."""

    _split_qkv: bool = False
    _bypassed: frozenset[int] | set[int] = frozenset()

    def qkv_location(self, layer: int, which: str) -> Location:
        attention = self.attention(layer)  # type: ignore[attr-defined]
        if self._split_qkv:
            n_heads = self.dims.n_heads if which == "q" else self.dims.n_kv_heads  # type: ignore[attr-defined]
            read, write = heads_view(n_heads)
            return Location(getattr(attention, which), "output", read, write)
        return super().qkv_location(layer, which)  # type: ignore[misc]

    def locate(self, site: Site) -> Location:
        if site.kind == "pattern":
            assert site.layer is not None
            return Location(self.attention(site.layer).hook_pattern, "output")  # type: ignore[attr-defined]
        location = super().locate(site)  # type: ignore[misc]
        if id(location.module) not in self._bypassed:
            return location
        # a bridge component whose own forward the bridge skips still passes the value through its
        # hook_out (output) or hook_in (input) HookPoint
        hook_point = getattr(location.module, "hook_out" if location.hook == "output" else "hook_in", None)
        if not isinstance(hook_point, nn.Module):
            return location
        return Location(hook_point, "output", location.read, location.write, location.offset_layer)

    def use_attention(self, implementation: str = IMPLEMENTATION) -> AbstractContextManager[None]:
        """Patterns need no switch (the bridge computes attention eagerly through ``hook_pattern``);
        another implementation cannot be installed."""
        if implementation != IMPLEMENTATION:
            raise BackendCapabilityError(
                f"the attention implementation {implementation!r} is unavailable on a model from the {BACKEND} "
                "backend: the bridge computes attention in its own components, so AtP*'s QK fix and RelP's "
                "attention rules cannot be installed; use plain AtP, or wrap the Hugging Face model itself"
            )
        return nullcontext()

    def check_forward(self, hf_kwargs: dict[str, Any]) -> None:
        """Refuse left padding in float64: the bridge's attention turns fully masked rows into NaN there."""
        mask = hf_kwargs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            self.require("padded batches")  # type: ignore[attr-defined]

    def norms(self) -> list[Norm]:
        self.require("norms")  # type: ignore[attr-defined]
        return super().norms()  # type: ignore[misc]

    def mlp_activation(self, layer: int) -> nn.Module:
        self.require("mlp_activation")  # type: ignore[attr-defined]
        return super().mlp_activation(layer)  # type: ignore[misc]


_CLASSES: dict[type[ArchAdapter], type[ArchAdapter]] = {}


def _bridge_class(family: type[ArchAdapter]) -> type[ArchAdapter]:
    if family not in _CLASSES:
        _CLASSES[family] = type(f"Bridge{family.__name__}", (BridgeMixin, family), {})
    return _CLASSES[family]


def bridge_adapter(hf_model: nn.Module, family: ArchAdapter) -> ArchAdapter:
    """The adapter for the Hugging Face model a ``TransformerBridge`` rewired, with ``family`` the
    plain adapter of its architecture; probe forwards learn what the bridge bypasses."""
    adapter = _bridge_class(type(family))(hf_model)
    adapter.family = family.family
    adapter.backend = BACKEND
    attention = adapter.attention(0)
    adapter._split_qkv = all(isinstance(getattr(attention, name, None), nn.Module) for name in "qkv")
    if not isinstance(getattr(attention, "hook_pattern", None), nn.Module):
        raise ModelLoadError(
            f"the attention of this TransformerBridge ({type(attention).__name__}) has no hook_pattern; "
            "this TransformerLens version is not supported, pass the Hugging Face model instead"
        )
    site_modules = _site_modules(adapter)
    fired, _ = _probe(adapter.hf_model, site_modules.values())
    adapter._bypassed = {id(module) for module in site_modules.values() if id(module) not in fired}
    site_modules = _site_modules(adapter)
    norms = [norm.module for norm in super(BridgeMixin, adapter).norms()]  # type: ignore[misc]
    activations = [super(BridgeMixin, adapter).mlp_activation(layer) for layer in range(adapter.dims.n_layers)]  # type: ignore[misc]
    fired, finite = _probe(adapter.hf_model, [*site_modules.values(), *norms, *activations])
    missing = [name for name, module in site_modules.items() if id(module) not in fired]
    if missing:
        raise ModelLoadError(
            f"this TransformerBridge computes {missing} in its own code, out of reach of the hook layer; "
            "pass the Hugging Face model it was booted from instead"
        )
    adapter.unavailable = {"kv_cache": NO_KV_CACHE}
    if not finite:
        adapter.unavailable["padded batches"] = (
            "its attention turns the fully masked rows of left padding into NaN (in float64), which spreads "
            "to every token; run in float32, or give prompts of one token length"
        )
    if any(id(module) not in fired for module in norms):
        adapter.unavailable["norms"] = (
            "the bridge computes some normalisations in its own code, so rules that hook the norm modules "
            "(RelP's LN-rule) would not run; use AtP or wrap the Hugging Face model itself"
        )
    if any(id(module) not in fired for module in activations):
        adapter.unavailable["mlp_activation"] = (
            "the bridge computes the MLP nonlinearity in its own code (after enable_compatibility_mode()), "
            "so rules that hook it (RelP's Identity-rule) would not run; wrap a bridge without compatibility "
            "mode or the Hugging Face model itself"
        )
    return adapter


def _site_modules(adapter: ArchAdapter) -> dict[str, nn.Module]:
    """The module each site is read at."""
    modules = {}
    for name in adapter.site_names():
        site = parse_site(name)
        assert site is not None
        modules[name] = adapter.locate(site).module
    return modules


def _probe(hf_model: nn.Module, modules: Iterable[nn.Module]) -> tuple[set[int], bool]:
    """Run one short left-padded forward with temporary hooks on ``modules``: the ids of those that
    ran, and whether the last token's logits are finite."""
    fired: set[int] = set()
    handles = []
    try:
        for module in {id(m): m for m in modules}.values():
            handles.append(module.register_forward_hook(lambda module, *_: fired.add(id(module))))
        device = next(hf_model.parameters()).device
        with torch.no_grad():
            logits = hf_model(
                input_ids=torch.zeros((1, 3), dtype=torch.long, device=device),
                attention_mask=torch.tensor([[0, 1, 1]], device=device),
                use_cache=False,
            ).logits
    finally:
        for handle in handles:
            handle.remove()
    return fired, bool(logits[:, -1].isfinite().all())
