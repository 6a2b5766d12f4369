"""What a model does with one prompt: next-token distribution, logit lens, attention patterns.

:func:`inspect_prompt` runs the prompt once through the hook layer, capturing the residual stream
after the embedding and after every block, and the attention pattern of the layers asked for, and
reads each residual through the model's own final norm and unembedding (the *logit lens*,
nostalgebraist 2020) with the architecture adapter's ``unembed``. The last row of the lens is
therefore exactly the model's output distribution. Models that soft-cap their final logits
(Gemma 2) have the cap applied to every row, as in their forward pass. The figures of
:mod:`interp.viz.lens` draw the result; notebooks and the app's live model page share both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from interp.indices import check_indices
from interp.model import Model


@dataclass(frozen=True)
class PromptInspection:
    """One prompt's next-token distribution, logit lens and attention patterns.

    Attributes:
        tokens: the prompt's tokens as text, one per position.
        next_ids, next_probs: the ``top_k`` most likely next tokens after the last position.
        next_tokens: their text.
        lens_rows: a label per lens row: ``"embed"``, then ``"L0"``, ``"L1"``, ...
        lens_top_tokens: the top token's text per row and position (``[row][pos]``).
        lens_top_probs: its probability, shape ``(row, pos)``.
        lens_hover: the ``top_k`` tokens and probabilities of each cell as one string.
        patterns: attention probabilities by layer, shape ``(head, query, key)``.
    """

    tokens: list[str]
    next_ids: list[int]
    next_probs: list[float]
    next_tokens: list[str]
    lens_rows: list[str]
    lens_top_tokens: list[list[str]]
    lens_top_probs: torch.Tensor
    lens_hover: list[list[str]]
    patterns: dict[int, torch.Tensor] = field(default_factory=dict)


@torch.no_grad()
def inspect_prompt(model: Model, prompt: str, layers: Sequence[int] = (), top_k: int = 10) -> PromptInspection:
    """Run ``prompt`` once and read off its next-token distribution, logit lens and the attention
    patterns of ``layers``."""
    n_layers = model.dims.n_layers
    layers = check_indices(layers, n_layers, "layers", f"of {model.name!r}")
    residual_sites = ["blocks.0.hook_resid_pre", *(f"blocks.{layer}.hook_resid_post" for layer in range(n_layers))]
    pattern_sites = [f"blocks.{layer}.attn.hook_pattern" for layer in layers]
    batch = model.to_tokens(prompt)
    logits, cache = model.run_with_cache(batch, sites=residual_sites + pattern_sites)
    ids = batch.input_ids[0].tolist()
    decode = model.tokenizer.decode
    tokens = [decode([token]) for token in ids]

    residuals = torch.stack([cache[site][0] for site in residual_sites])  # (row, pos, d_model)
    probs = model.arch.unembed(residuals.to(model.dtype)).float().softmax(dim=-1)
    top = probs.topk(top_k, dim=-1)
    words: dict[int, str] = {}

    def word(token: int) -> str:
        if token not in words:
            words[token] = decode([token])
        return words[token]

    top_ids = top.indices.tolist()
    top_probs = top.values.tolist()
    lens_hover = [
        ["<br>".join(f"{word(i)!r} {p:.3f}" for i, p in zip(cell_ids, cell_probs, strict=True))
         for cell_ids, cell_probs in zip(row_ids, row_probs, strict=True)]
        for row_ids, row_probs in zip(top_ids, top_probs, strict=True)
    ]
    final = logits[0, -1].float().softmax(dim=-1).topk(top_k)
    return PromptInspection(
        tokens=tokens,
        next_ids=final.indices.tolist(),
        next_probs=final.values.tolist(),
        next_tokens=[word(i) for i in final.indices.tolist()],
        lens_rows=["embed", *(f"L{layer}" for layer in range(n_layers))],
        lens_top_tokens=[[word(cell[0]) for cell in row] for row in top_ids],
        lens_top_probs=top.values[..., 0].cpu(),
        lens_hover=lens_hover,
        patterns={layer: cache[site][0].float().cpu() for layer, site in zip(layers, pattern_sites, strict=True)},
    )
