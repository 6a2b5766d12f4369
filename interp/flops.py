"""Counting the work of a forward pass, to report what fraction of a naive sweep we compute.

Matrix multiplies dominate a transformer forward: a ``(n, a) @ (a, b)`` product costs ``2nab``
FLOPs. Per block and query token that is the q/k/v/o projections (k and v at the KV-head width on
GQA models), the MLP (three matrices when gated, two otherwise), and attention itself, ``4 H d_head``
FLOPs per (query, key) pair (scores and value mixing). The unembedding costs ``2 d_model d_vocab``
per position whose logits are computed. Norms, softmax and elementwise ops are ignored (a few
percent). A *naive* patched forward runs every block over every position and computes logits
everywhere, as TransformerLens's patching helpers do.
"""

from __future__ import annotations

from interp.arch.base import Dims


def forward_flops(
    dims: Dims, gated_mlp: bool, rows: int, seq_len: int, start_pos: int, n_blocks: int, logit_positions: int
) -> float:
    """FLOPs of a forward over ``rows`` sequences of length ``seq_len`` computing positions
    ``start_pos..seq_len-1`` through ``n_blocks`` blocks, with logits at ``logit_positions`` positions."""
    queries = seq_len - start_pos
    width_q, width_kv = dims.n_heads * dims.d_head, dims.n_kv_heads * dims.d_head
    projections = 2 * queries * (dims.d_model * width_q + 2 * dims.d_model * width_kv + width_q * dims.d_model)
    mlp = 2 * queries * (3 if gated_mlp else 2) * dims.d_model * dims.d_mlp
    key_pairs = sum(t + 1 for t in range(start_pos, seq_len))
    attention = 4 * dims.n_heads * dims.d_head * key_pairs
    unembed = 2 * logit_positions * dims.d_model * dims.d_vocab
    return float(rows * (n_blocks * (projections + mlp + attention) + unembed))
