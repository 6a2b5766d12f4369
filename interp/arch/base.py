"""Where each site lives in a Hugging Face module tree.

An architecture adapter maps every site of the vocabulary (:mod:`interp.sites`) to a
:class:`Location`: a module, whether the value is that module's output or its input, and two
functions that turn the module's raw value into the site's tensor and back. Per-head sites are
*views*: ``hook_q`` on a Llama is ``q_proj``'s output reshaped to ``(batch, pos, head, d_head)``;
on GPT-2 it is a slice of the fused ``c_attn`` output. Writing a site rebuilds the raw value out of
place, so gradients and later hooks see exactly the tensor that flows on.

``hook_resid_mid`` is *derived*: most blocks never materialise it as a module's input or output that
one could overwrite (GPT-2's ``ln_2`` input is a copy of it, not the stream). It is read as
``resid_pre + attn_out`` at the attention contribution and written by setting the contribution to
``new_resid_mid - resid_pre``, which makes the stream carry the new value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import nn

from interp.attention import IMPLEMENTATION, attention_implementation, pattern_hook_point
from interp.errors import BackendCapabilityError, InvalidArgumentError, UnknownSiteError
from interp.sites import BLOCK, Site, site_name


def _first(raw: Any) -> torch.Tensor:
    return raw[0] if isinstance(raw, tuple) else raw


def _replace_first(raw: Any, value: torch.Tensor) -> Any:
    return (value, *raw[1:]) if isinstance(raw, tuple) else value


@dataclass(frozen=True)
class Location:
    """A site's place in the module tree.

    Attributes:
        module: the module whose input or output holds the site's value.
        hook: ``"output"`` for a forward hook on the output, ``"input"`` for a pre-hook on the
            first input (``hidden_states``).
        read: raw value -> site tensor.
        write: (raw value, new site tensor) -> new raw value, built out of place.
        offset_layer: for derived ``resid_mid``: the block whose input is added to the raw value.
    """

    module: nn.Module
    hook: Literal["output", "input"]
    read: Callable[[Any], torch.Tensor] = _first
    write: Callable[[Any, torch.Tensor], Any] = _replace_first
    offset_layer: int | None = None


def heads_view(n_heads: int) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any, torch.Tensor], Any]]:
    """Read/write pair that shows a ``(..., n_heads * d_head)`` value as ``(..., n_heads, d_head)``."""

    def read(raw: Any) -> torch.Tensor:
        return _first(raw).unflatten(-1, (n_heads, -1))

    def write(raw: Any, value: torch.Tensor) -> Any:
        return _replace_first(raw, value.flatten(-2))

    return read, write


def fused_slice_view(
    n_heads: int, start: int, stop: int
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any, torch.Tensor], Any]]:
    """Read/write pair for heads stored in ``[start:stop]`` of a fused projection's last axis."""

    def read(raw: torch.Tensor) -> torch.Tensor:
        return raw[..., start:stop].unflatten(-1, (n_heads, -1))

    def write(raw: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return torch.cat([raw[..., :start], value.flatten(-2).to(raw.dtype), raw[..., stop:]], dim=-1)

    return read, write


NormKind = Literal["layernorm", "rmsnorm", "rmsnorm_plus_one"]


@dataclass(frozen=True)
class Norm:
    """A normalisation module and the formula it computes.

    * ``"layernorm"``: ``(x - mean) / sqrt(var + eps) * w + b`` (``nn.LayerNorm``);
    * ``"rmsnorm"``: ``x / sqrt(mean(x^2) + eps) * w``, normalised in float32 (Llama, Qwen);
    * ``"rmsnorm_plus_one"``: the same with gain ``1 + w`` (Gemma).
    """

    module: nn.Module
    kind: NormKind
    eps: float

    @property
    def gain(self) -> torch.Tensor | None:
        """The per-feature gain the normalised vector is multiplied by (None: no weight)."""
        weight = getattr(self.module, "weight", None)
        if weight is None:
            return None
        return 1 + weight.float() if self.kind == "rmsnorm_plus_one" else weight

    def linear_part(self, directions: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... d_model"]:
        """Directions through the norm with its scale held constant: centring (LayerNorm) and gain."""
        if self.kind == "layernorm":
            directions = directions - directions.mean(dim=-1, keepdim=True)
        gain = self.gain
        return directions if gain is None else directions * gain.to(directions)


class _SkippedBlock(nn.Module):
    """Stands in for a block that a forward starting later does not run: passes its input on."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states


@dataclass
class Dims:
    """Sizes of a decoder-only transformer, in TransformerLens's names."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int


@dataclass
class ArchAdapter(ABC):
    """Base adapter: subclasses fill the module getters for one architecture family."""

    hf_model: nn.Module
    family: str = "base"
    gated_mlp: bool = True
    parallel_residual: bool = False
    has_pos_embed: bool = False
    norm_kind: NormKind = "rmsnorm"
    backend: str = "transformers"
    dims: Dims = field(init=False)
    unavailable: dict[str, str] = field(init=False, default_factory=dict)
    """Capabilities this model cannot provide (``"start_at"``, ``"kv_cache"``, ``"norms"``, ...), each
    with the reason; empty for a Hugging Face model. Backends fill it (:mod:`interp.arch.bridge`)."""

    def __post_init__(self) -> None:
        self.dims = self._dims()

    # --- capabilities ------------------------------------------------------------------------
    def supports(self, capability: str) -> bool:
        """Whether this model provides ``capability`` (see :attr:`unavailable`)."""
        return capability not in self.unavailable

    def require(self, capability: str) -> None:
        """Raise :class:`~interp.errors.BackendCapabilityError` naming the capability, the backend and
        why, when this model cannot provide ``capability``."""
        if capability in self.unavailable:
            raise BackendCapabilityError(
                f"{capability} is unavailable on a model from the {self.backend} backend: {self.unavailable[capability]}"
            )

    def check_forward(self, hf_kwargs: dict[str, Any]) -> None:
        """Refuse a forward this model would compute wrongly (backends override; nothing for HF models)."""

    # --- to be provided by each family -------------------------------------------------------
    @abstractmethod
    def _dims(self) -> Dims:
        ...

    @abstractmethod
    def embed(self) -> nn.Module:
        ...

    def pos_embed(self) -> nn.Module:
        """The learned position embedding; only called when ``has_pos_embed`` is set."""
        raise AttributeError(f"{self.family} has no learned position embedding")

    @abstractmethod
    def layers(self) -> nn.ModuleList:
        ...

    @abstractmethod
    def final_norm(self) -> nn.Module:
        ...

    @abstractmethod
    def attention(self, layer: int) -> nn.Module:
        ...

    @abstractmethod
    def qkv_location(self, layer: int, which: str) -> Location:
        ...

    @abstractmethod
    def out_proj(self, layer: int) -> nn.Module:
        ...

    def out_proj_weight(self, layer: int) -> Float[torch.Tensor, "head d_head d_model"]:
        """The attention out-projection ``W_O`` of ``layer``, split by head: ``z[h] @ W_O[h]`` is
        head ``h``'s contribution before the bias. This default reads an ``nn.Linear``."""
        weight = self.out_proj(layer).weight
        return weight.T.reshape(self.dims.n_heads, self.dims.d_head, self.dims.d_model)

    def out_proj_bias(self, layer: int) -> Float[torch.Tensor, " d_model"] | None:
        """The bias the out-projection adds once per position (None where it has none)."""
        return getattr(self.out_proj(layer), "bias", None)

    def attn_contribution(self, layer: int) -> nn.Module:
        """The module whose output is what attention adds to the residual stream."""
        return self.attention(layer)

    @abstractmethod
    def mlp_contribution(self, layer: int) -> nn.Module:
        ...

    @abstractmethod
    def mlp_in(self, layer: int) -> nn.Module:
        """The module whose output is ``mlp.hook_pre`` (the gate on gated MLPs)."""
        ...

    def mlp_up(self, layer: int) -> nn.Module:
        """The up projection of a gated MLP; only called when ``gated_mlp`` is set."""
        raise AttributeError(f"{self.family} has no gated MLP")

    @abstractmethod
    def mlp_down(self, layer: int) -> nn.Module:
        ...

    @abstractmethod
    def mlp_activation(self, layer: int) -> nn.Module:
        """The MLP's element-wise nonlinearity (applied to the gate on gated MLPs)."""
        ...

    def is_norm(self, module: nn.Module) -> bool:
        """Whether ``module`` is one of this family's normalisation modules."""
        if self.norm_kind == "layernorm":
            return isinstance(module, nn.LayerNorm)
        return type(module).__name__.endswith("RMSNorm")

    # --- capabilities the methods build on ----------------------------------------------------
    def norms(self) -> list[Norm]:
        """Every normalisation in the model: block norms, q/k norms, post norms and the final norm."""
        return [self.norm(module) for module in self.hf_model.modules() if self.is_norm(module)]

    def norm(self, module: nn.Module) -> Norm:
        """Describe one of the model's normalisation modules."""
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", 1e-6))
        return Norm(module, self.norm_kind, float(eps))

    @property
    def final_logit_softcap(self) -> float | None:
        """Gemma 2's ``cap * tanh(logits / cap)`` on the output logits (None where absent)."""
        return getattr(self.hf_model.config, "final_logit_softcapping", None) or None

    def unembedding(self) -> Float[torch.Tensor, "vocab d_model"]:
        """The unembedding matrix ``W_U`` (rows are tokens)."""
        return self.hf_model.get_output_embeddings().weight

    def unembed(
        self, residual: Float[torch.Tensor, "... d_model"], normalize: bool = True
    ) -> Float[torch.Tensor, "... vocab"]:
        """Logits of residual-stream vectors: final norm (unless ``normalize`` is False), unembedding
        and the final soft-cap, exactly as the model's forward computes them."""
        if normalize:
            residual = self.final_norm()(residual)
        logits = self.hf_model.get_output_embeddings()(residual)
        cap = self.final_logit_softcap
        return cap * torch.tanh(logits / cap) if cap else logits

    def use_attention(self, implementation: str = IMPLEMENTATION) -> AbstractContextManager[None]:
        """Within the context, attention runs the registered ``implementation`` (default: the eager
        attention with a hookable pattern, :mod:`interp.attention`)."""
        return attention_implementation(self.hf_model, implementation)

    @contextmanager
    def start_at(self, layer: int, residual: Float[torch.Tensor, "batch pos d_model"]) -> Iterator[None]:
        """Within the context, a forward skips blocks ``0..layer-1`` and feeds ``residual`` into block
        ``layer`` (``layer == n_layers``: into the final norm).

        The skipped blocks are swapped out of the block list for pass-through stand-ins and put back
        on exit, exceptions included; the blocks themselves are never modified, so wrappers that other
        libraries install on them (accelerate's device hooks) stay intact. The embedding still runs
        (its output is discarded at the entry block), so position ids, masks and caches are built by
        the model as usual.
        """
        self.require("start_at")
        blocks = self.layers()
        if not 0 <= layer <= len(blocks):
            raise InvalidArgumentError(f"start layer {layer} out of range: the model has blocks 0..{len(blocks) - 1}")
        entry = blocks[layer] if layer < len(blocks) else self.final_norm()

        def inject(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if args:
                return (residual, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": residual}

        originals = [blocks[index] for index in range(layer)]
        handle = entry.register_forward_pre_hook(inject, with_kwargs=True)
        try:
            for index in range(layer):
                blocks[index] = _SkippedBlock()
            yield
        finally:
            handle.remove()
            for index, block in enumerate(originals):
                blocks[index] = block

    # --- shared ------------------------------------------------------------------------------
    def site_names(self) -> list[str]:
        """Every site this architecture has, in forward order."""
        names = ["hook_embed"] + (["hook_pos_embed"] if self.has_pos_embed else [])
        skip = set()
        if not self.gated_mlp:
            skip.add("mlp_pre_linear")
        if self.parallel_residual:
            skip.add("resid_mid")
        for layer in range(self.dims.n_layers):
            names += [site_name(kind, layer) for kind in BLOCK if kind not in skip]
        return names + ["ln_final.hook_normalized", "logits"]

    def n_heads_at(self, site: Site) -> int | None:
        """Size of the head axis of a site (KV heads for k and v), or None without one."""
        if site.kind in ("k", "v"):
            return self.dims.n_kv_heads
        if site.kind in ("q", "z", "pattern"):
            return self.dims.n_heads
        return None

    def locate(self, site: Site) -> Location:
        """Where ``site`` lives (``pattern``: the HookPoint of :mod:`interp.attention`)."""
        kind, layer = site.kind, site.layer
        if kind == "embed":
            return Location(self.embed(), "output")
        if kind == "pos_embed":
            return Location(self.pos_embed(), "output")
        if kind == "normalized":
            return Location(self.final_norm(), "output")
        if kind == "logits":
            return Location(self.hf_model, "output", read=_read_logits, write=_write_logits)
        assert layer is not None
        if kind == "resid_pre":
            return Location(self.layers()[layer], "input")
        if kind == "resid_post":
            return Location(self.layers()[layer], "output")
        if kind in ("q", "k", "v"):
            return self.qkv_location(layer, kind)
        if kind == "pattern":
            return Location(pattern_hook_point(self.attention(layer)), "output")
        if kind == "z":
            read, write = heads_view(self.dims.n_heads)
            return Location(self.out_proj(layer), "input", read, write)
        if kind == "attn_out":
            return Location(self.attn_contribution(layer), "output")
        if kind == "resid_mid":
            return Location(self.attn_contribution(layer), "output", offset_layer=layer)
        if kind == "mlp_pre":
            return Location(self.mlp_in(layer), "output")
        if kind == "mlp_pre_linear":
            return Location(self.mlp_up(layer), "output")
        if kind == "mlp_post":
            return Location(self.mlp_down(layer), "input")
        if kind == "mlp_out":
            return Location(self.mlp_contribution(layer), "output")
        raise UnknownSiteError(f"site kind {kind!r} has no location in the {type(self).__name__} adapter")

    def module_path(self, site: Site) -> str | None:
        """Dotted name of the module holding ``site`` in the Hugging Face model (``model.layers.3``).

        For metadata that other tools read (SAELens's ``hf_hook_name``); the hook layer never needs
        it. None when the site lives on a module outside the model's tree (attention patterns).
        """
        target = self.locate(site).module
        return next((name for name, module in self.hf_model.named_modules() if module is target), None)


def _read_logits(raw: Any) -> torch.Tensor:
    return raw.logits


def _write_logits(raw: Any, value: torch.Tensor) -> Any:
    raw.logits = value
    return raw
