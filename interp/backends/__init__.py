"""Models held by other libraries as ``interp`` models: TransformerLens and nnsight as backends.

Researchers already hold a TransformerLens or nnsight model in their notebooks. :func:`wrap` (or
:meth:`Model.from_transformer_lens <interp.model.Model.from_transformer_lens>` and
:meth:`Model.from_nnsight <interp.model.Model.from_nnsight>`) turns one into an
:class:`~interp.model.Model` with the same site names, so every method runs on it::

    bridge = TransformerBridge.boot_transformers("HuggingFaceTB/SmolLM2-135M")
    model = interp.wrap(bridge)
    result = patch_sweep(model, task, "resid_pre")

**Design: wrap the Hugging Face model they hold, not their hook points.** Both a TransformerLens 4
``TransformerBridge`` and an nnsight ``LanguageModel`` run a live Hugging Face module tree: the
bridge rewires the model's submodules in place into bridge components that call the modules they
replaced, and nnsight proxies each module with an envoy and swaps its ``forward`` for a controller.
Either way the modules, weights and torch hook mechanism are the Hugging Face ones, so the family
adapters of :mod:`interp.arch` (with a few overrides for what the bridge computes in its own code,
:mod:`interp.arch.bridge`) place every site where it is on the plain model and the hook layer reads
and writes the very tensors that flow. The alternative, mapping our sites onto the other library's
hook points, would put every value through that library's layout conversions and lose what the
engine builds on the module tree (starting a forward at a block).

Nothing is copied: the wrapped :class:`~interp.model.Model` and the user's object share one module
tree, every hook of ours is removed after each call (exceptions included: the hook layer's
guarantee), and the user's object keeps working as before with its own hooks, caches and traces.
Wrapping puts the model in eval mode. A TransformerLens 3 ``HookedTransformer`` is TL's own
reimplementation of the model (no Hugging Face modules to hook; removed in TransformerLens 4) and
is refused with an error saying what to wrap instead.

What each backend provides (the rest raises :class:`~interp.errors.BackendCapabilityError` naming
the capability and the backend; ``model.arch.unavailable`` lists it):

========================== ============ =====================================================
capability                 nnsight      TransformerBridge
========================== ============ =====================================================
sites, interventions,      yes          yes (``hook_pattern`` at the bridge's own HookPoint)
captures, gradients
patching: start at block   yes          yes
patching: prefix reuse     yes          no (no KV cache; forwards start at position 0)
generation                 yes          ``use_cache=False`` only
AtP, IG, steering, CAVs    yes          yes
RelP (default rules)       yes          where the bridge runs the norm and MLP activation
                                        modules (Llama-style families without compatibility
                                        mode; not GPT-2, whose LayerNorms are bridge code)
AtP* QK fix, RelP          yes          no (attention is the bridge's own code)
attention rules
padded float64 batches     yes          not on rotary families (NaN from the bridge's attention)
float64 precision          yes          GPT-2 yes; rotary families take the attention softmax
                                        in float32 (agreement to about 1e-5)
========================== ============ =====================================================

TransformerLens's weight processing (``enable_compatibility_mode()``: folded layer norms, centred
writing weights and unembedding) rewrites the weights in place; a processed bridge is wrapped as
it is, so its residual-stream sites are centred and its logits shifted per position, while
attention sites, MLP hidden activations, logit differences and patching tables are unchanged
(:mod:`interp.arch.bridge`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from interp.arch.bridge import HOOKED_TRANSFORMER, is_hooked_transformer, is_transformer_bridge
from interp.arch.envoy import is_nnsight_model
from interp.errors import ModelLoadError
from interp.model import Model


def wrap(obj: Any, tokenizer: Any = None, name: str | None = None, prepend_bos: bool | None = None) -> Model:
    """An :class:`~interp.model.Model` over ``obj``, whatever holds the model.

    Args:
        obj: a TransformerLens ``TransformerBridge``, an nnsight ``LanguageModel`` /
            ``TransformersModel``, a Hugging Face causal LM (then ``tokenizer`` is required), or an
            ``interp.Model`` (returned as it is).
        tokenizer: the tokenizer of a bare Hugging Face model (the other backends carry theirs).
        name, prepend_bos: as for :class:`~interp.model.Model` (None: the tokenizer's default).
    """
    if isinstance(obj, Model):
        return obj
    if is_transformer_bridge(obj):
        return Model.from_transformer_lens(obj, name=name, prepend_bos=prepend_bos)
    if is_nnsight_model(obj):
        return Model.from_nnsight(obj, name=name, prepend_bos=prepend_bos)
    if is_hooked_transformer(obj):
        raise ModelLoadError(HOOKED_TRANSFORMER)
    if isinstance(obj, nn.Module) and getattr(obj, "config", None) is not None:
        if tokenizer is None:
            raise ModelLoadError(
                f"a bare Hugging Face model ({type(obj).__name__}) needs its tokenizer: interp.wrap(model, tokenizer=...)"
            )
        return Model(obj, tokenizer, name, prepend_bos)
    raise ModelLoadError(
        f"cannot wrap a {type(obj).__name__}: pass a TransformerLens TransformerBridge, an nnsight LanguageModel "
        "or TransformersModel, a Hugging Face causal LM with its tokenizer, or an interp.Model"
    )


__all__ = ["wrap"]
