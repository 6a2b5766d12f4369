"""Adapter for GPT-2: learned positions, a fused ``c_attn`` (q | k | v along the last axis) and a
plain GELU MLP (``c_fc`` -> act -> ``c_proj``). Conv1D layers keep their weights transposed, which
matters only where a weight is read (:meth:`GPT2Adapter.out_proj_weight`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from interp.arch.base import ArchAdapter, Dims, Location, NormKind, fused_slice_view


@dataclass
class GPT2Adapter(ArchAdapter):
    family: str = "gpt2"
    gated_mlp: bool = False
    norm_kind: NormKind = "layernorm"
    has_pos_embed: bool = True

    def _dims(self) -> Dims:
        config = self.hf_model.config
        return Dims(
            n_layers=config.n_layer,
            d_model=config.n_embd,
            n_heads=config.n_head,
            n_kv_heads=config.n_head,
            d_head=config.n_embd // config.n_head,
            d_mlp=config.n_inner or 4 * config.n_embd,
            d_vocab=config.vocab_size,
        )

    def embed(self) -> nn.Module:
        return self.hf_model.transformer.wte

    def pos_embed(self) -> nn.Module:
        return self.hf_model.transformer.wpe

    def layers(self) -> nn.ModuleList:
        return self.hf_model.transformer.h

    def final_norm(self) -> nn.Module:
        return self.hf_model.transformer.ln_f

    def attention(self, layer: int) -> nn.Module:
        return self.layers()[layer].attn

    def qkv_location(self, layer: int, which: str) -> Location:
        d_model = self.dims.d_model
        start = "qkv".index(which) * d_model
        read, write = fused_slice_view(self.dims.n_heads, start, start + d_model)
        return Location(self.attention(layer).c_attn, "output", read, write)

    def out_proj(self, layer: int) -> nn.Module:
        return self.attention(layer).c_proj

    def out_proj_weight(self, layer: int) -> torch.Tensor:
        """``c_proj`` is a Conv1D, whose weight is stored ``(d_in, d_out)`` already."""
        weight = self.out_proj(layer).weight
        return weight.reshape(self.dims.n_heads, self.dims.d_head, self.dims.d_model)

    def mlp_contribution(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp

    def mlp_in(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp.c_fc

    def mlp_down(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp.c_proj

    def mlp_activation(self, layer: int) -> nn.Module:
        return self.layers()[layer].mlp.act
