"""Adapter for GPT-NeoX (Pythia): a fused ``query_key_value`` whose output is laid out per head as
``(head, [q | k | v])``, rotary positions, a plain MLP, and (by default) *parallel* residual blocks,
``resid_post = resid_pre + attn(ln1(resid_pre)) + mlp(ln2(resid_pre))``, where no ``resid_mid``
exists; with ``use_parallel_residual=False`` the block is sequential and ``resid_mid`` is a site.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp.arch.base import ArchAdapter, Dims, Location, NormKind


@dataclass
class NeoXAdapter(ArchAdapter):
    family: str = "gpt_neox"
    gated_mlp: bool = False
    norm_kind: NormKind = "layernorm"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.parallel_residual = bool(self.hf_model.config.use_parallel_residual)

    def _dims(self) -> Dims:
        config = self.hf_model.config
        return Dims(
            n_layers=config.num_hidden_layers,
            d_model=config.hidden_size,
            n_heads=config.num_attention_heads,
            n_kv_heads=config.num_attention_heads,
            d_head=config.hidden_size // config.num_attention_heads,
            d_mlp=config.intermediate_size,
            d_vocab=config.vocab_size,
        )

    def embed(self) -> nn.Module:
        return self.hf_model.gpt_neox.embed_in

    def layers(self) -> nn.ModuleList:
        return self.hf_model.gpt_neox.layers

    def final_norm(self) -> nn.Module:
        return self.hf_model.gpt_neox.final_layer_norm

    def attention(self, layer: int) -> nn.Module:
        return self.layers()[layer].attention

    def qkv_location(self, layer: int, which: str) -> Location:
        n_heads, d_head = self.dims.n_heads, self.dims.d_head
        start = "qkv".index(which) * d_head

        def read(raw: torch.Tensor) -> torch.Tensor:
            return raw.unflatten(-1, (n_heads, 3 * d_head))[..., start : start + d_head]

        def write(raw: torch.Tensor, value: torch.Tensor) -> Any:
            per_head = raw.unflatten(-1, (n_heads, 3 * d_head))
            parts = [per_head[..., :start], value.to(raw.dtype), per_head[..., start + d_head :]]
            return torch.cat(parts, dim=-1).flatten(-2)

        return Location(self.attention(layer).query_key_value, "output", read, write)

    def out_proj(self, layer: int) -> nn.Module:
        return self.attention(layer).dense

    def mlp_contribution(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp

    def mlp_in(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp.dense_h_to_4h

    def mlp_down(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp.dense_4h_to_h

    def mlp_activation(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp.act
