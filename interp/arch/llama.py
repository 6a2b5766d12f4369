"""Adapter for Llama-style decoders: Llama, SmolLM2, Mistral, Qwen2, Qwen3 and Gemma 1/2/3.

They share one module tree (``model.layers[L].self_attn.{q,k,v,o}_proj`` and a gated
``mlp.{gate,up,down}_proj``). Gemma 2 and 3 add norms *after* attention and after the MLP
(``post_attention_layernorm`` / ``post_feedforward_layernorm``), so what a sublayer adds to the
residual stream is those norms' output, not the raw sublayer output. q and k are read before RoPE
(and before Qwen3's and Gemma 3's q/k norms), as TransformerLens's ``hook_q``/``hook_k`` are.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from interp.arch.base import ArchAdapter, Dims, Location, heads_view


@dataclass
class LlamaAdapter(ArchAdapter):
    family: str = "llama"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hf_model.config.model_type.startswith("gemma"):
            self.norm_kind = "rmsnorm_plus_one"

    def _dims(self) -> Dims:
        config = self.hf_model.config
        d_head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return Dims(
            n_layers=config.num_hidden_layers,
            d_model=config.hidden_size,
            n_heads=config.num_attention_heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            d_head=d_head,
            d_mlp=config.intermediate_size,
            d_vocab=config.vocab_size,
        )

    def _layer(self, layer: int) -> nn.Module:
        return self.layers()[layer]

    def _post_norms(self, layer: int) -> bool:
        return hasattr(self._layer(layer), "post_feedforward_layernorm")

    def embed(self) -> nn.Module:
        return self.hf_model.model.embed_tokens

    def layers(self) -> nn.ModuleList:
        return self.hf_model.model.layers

    def final_norm(self) -> nn.Module:
        return self.hf_model.model.norm

    def attention(self, layer: int) -> nn.Module:
        return self._layer(layer).self_attn

    def qkv_location(self, layer: int, which: str) -> Location:
        n_heads = self.dims.n_heads if which == "q" else self.dims.n_kv_heads
        read, write = heads_view(n_heads)
        return Location(getattr(self.attention(layer), f"{which}_proj"), "output", read, write)

    def out_proj(self, layer: int) -> nn.Module:
        return self.attention(layer).o_proj

    def attn_contribution(self, layer: int) -> nn.Module:
        block = self._layer(layer)
        return block.post_attention_layernorm if self._post_norms(layer) else block.self_attn

    def mlp_contribution(self, layer: int) -> nn.Module:
        block = self._layer(layer)
        return block.post_feedforward_layernorm if self._post_norms(layer) else block.mlp

    def mlp_in(self, layer: int) -> nn.Module:
        return self._layer(layer).mlp.gate_proj

    def mlp_up(self, layer: int) -> nn.Module:
        return self._layer(layer).mlp.up_proj

    def mlp_down(self, layer: int) -> nn.Module:
        return self._layer(layer).mlp.down_proj

    def mlp_activation(self, layer: int) -> nn.Module:
        return self._layer(layer).mlp.act_fn
