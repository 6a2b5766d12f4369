"""Architecture adapters: the whole seam between the methods and a model's module tree.

An adapter says where each site lives (:meth:`~interp.arch.base.ArchAdapter.locate`) and provides
the few capabilities that methods need beyond sites, so that no method looks at module names or
classes itself:

* ``norms()`` / ``norm(module)``: every normalisation and the formula it computes (RelP's LN-rule,
  direct logit effects through the final norm);
* ``mlp_activation(layer)``: the MLP nonlinearity (RelP's Identity-rule);
* ``unembed(residual)`` / ``unembedding()``: final norm, unembedding and soft-capping (logit lens);
* ``start_at(layer, residual)``: run blocks ``layer..`` from a given residual (the patching engine).

:func:`adapter_for` picks the adapter from ``config.model_type``. Adding a family means writing the
module getters of :class:`~interp.arch.base.ArchAdapter` for its module tree; a new backend fills
the same methods over its own modules. The seam is shaped for the other libraries' models:

* an nnsight ``LanguageModel`` wraps a Hugging Face model, and its envoys proxy that model's
  modules, so the family adapters apply to the wrapped model as they are;
* a TransformerLens 4 ``TransformerBridge`` wraps each Hugging Face module in a component that keeps
  the ``original_component`` and adds ``hook_in``/``hook_out`` hook points; a ``HookedTransformer``
  has one hook point per site. Either fills ``locate`` with hook points (a module whose output is
  the site), ``start_at`` with its own ``start_at_layer``, ``norms``/``unembed`` with its norm and
  unembedding modules.

Knowledge of transformers' calling conventions (the KV cache keyword, :mod:`interp.arch.kv`; the
attention implementation, ``use_attention``) lives here too.
"""

from __future__ import annotations

from torch import nn

from interp.arch.base import ArchAdapter, Dims, Location, Norm
from interp.arch.gpt2 import GPT2Adapter
from interp.arch.llama import LlamaAdapter
from interp.arch.neox import NeoXAdapter
from interp.errors import ModelLoadError

ADAPTERS: dict[str, type[ArchAdapter]] = {
    "gpt2": GPT2Adapter,
    "llama": LlamaAdapter,
    "mistral": LlamaAdapter,
    "qwen2": LlamaAdapter,
    "qwen3": LlamaAdapter,
    "gemma": LlamaAdapter,
    "gemma2": LlamaAdapter,
    "gemma3_text": LlamaAdapter,
    "gpt_neox": NeoXAdapter,
}


def adapter_for(hf_model: nn.Module) -> ArchAdapter:
    """The adapter for a Hugging Face causal LM, chosen by ``config.model_type``."""
    model_type = getattr(getattr(hf_model, "config", None), "model_type", None)
    if model_type not in ADAPTERS:
        raise ModelLoadError(
            f"unsupported architecture {model_type!r}; supported model types: {sorted(ADAPTERS)}. "
            "Add an adapter in interp/arch/ (see interp/arch/base.py) to support it."
        )
    adapter = ADAPTERS[model_type](hf_model)
    adapter.family = model_type
    return adapter


__all__ = ["ADAPTERS", "ArchAdapter", "Dims", "Location", "Norm", "adapter_for"]
