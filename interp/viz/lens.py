"""What a model does with one prompt: next-token distribution, logit lens, attention patterns.

The live model page of the app and notebooks share these. :func:`inspect_prompt` runs the prompt
once through the hook layer, capturing the residual stream after the embedding and after every
block, and the attention pattern of the layers asked for, and reads each residual through the
model's own final norm and unembedding (the *logit lens*, nostalgebraist 2020). The last row of
the lens is therefore exactly the model's output distribution. Models that soft-cap their final
logits (Gemma 2) have the cap applied to every row, as in their forward pass.

The figures follow the usual conventions: the lens is a layer x position grid coloured by the
probability of each cell's top token with the token written in the cell (tuned-lens, nnterp
``plot_topk_tokens``); hovering shows the top tokens. Attention is a query x key heatmap with
token labels on both axes. Figures are returned, never shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import plotly.graph_objects as go
import torch

from interp.errors import InvalidArgumentError
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


def _unembed(model: Model, residual: torch.Tensor) -> torch.Tensor:
    """Logits of residual-stream vectors through the final norm and the unembedding."""
    logits = model.hf.get_output_embeddings()(model.arch.final_norm()(residual))
    cap = getattr(model.hf.config, "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits


@torch.no_grad()
def inspect_prompt(model: Model, prompt: str, layers: Sequence[int] = (), top_k: int = 10) -> PromptInspection:
    """Run ``prompt`` once and read off its next-token distribution, logit lens and the attention
    patterns of ``layers``."""
    n_layers = model.dims.n_layers
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad:
        raise InvalidArgumentError(f"layers {bad} are out of range: the model has layers 0..{n_layers - 1}")
    residual_sites = ["blocks.0.hook_resid_pre", *(f"blocks.{layer}.hook_resid_post" for layer in range(n_layers))]
    pattern_sites = [f"blocks.{layer}.attn.hook_pattern" for layer in layers]
    batch = model.to_tokens(prompt)
    logits, cache = model.run_with_cache(batch, sites=residual_sites + pattern_sites)
    ids = batch.input_ids[0].tolist()
    decode = model.tokenizer.decode
    tokens = [decode([token]) for token in ids]

    residuals = torch.stack([cache[site][0] for site in residual_sites])  # (row, pos, d_model)
    probs = _unembed(model, residuals.to(model.dtype)).float().softmax(dim=-1)
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


def _position_labels(tokens: Sequence[str]) -> list[str]:
    """Unique axis labels ``"i:token"`` (repeated tokens would otherwise collapse into one category)."""
    return [f"{i}:{token}" for i, token in enumerate(tokens)]


def next_token_bar(inspection: PromptInspection, title: str | None = None) -> go.Figure:
    """Horizontal bars of the most likely next tokens, most likely on top."""
    labels = [repr(token) for token in inspection.next_tokens]
    figure = go.Figure(
        go.Bar(
            x=inspection.next_probs[::-1],
            y=labels[::-1],
            orientation="h",
            text=[f"{p:.3f}" for p in inspection.next_probs[::-1]],
            textposition="auto",
            hovertemplate="%{y}: p = %{x:.4f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=title or "next-token distribution",
        xaxis_title="probability",
        xaxis={"range": [0, 1]},
        height=max(250, 28 * len(labels) + 100),
    )
    return figure


def lens_heatmap(inspection: PromptInspection, last_positions: int | None = None) -> go.Figure:
    """Layer x position grid of the logit lens: colour is the top token's probability, the text is
    the token; hover shows the top tokens. ``last_positions`` keeps only the prompt's tail."""
    start = 0 if last_positions is None else max(0, len(inspection.tokens) - last_positions)
    x = _position_labels(inspection.tokens)[start:]
    z = inspection.lens_top_probs[:, start:].tolist()
    text = [row[start:] for row in inspection.lens_top_tokens]
    hover = [row[start:] for row in inspection.lens_hover]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=inspection.lens_rows,
            text=text,
            texttemplate="%{text}",
            customdata=hover,
            hovertemplate="%{y}, position %{x}<br>%{customdata}<extra></extra>",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": "top-token p"},
        )
    )
    figure.update_layout(
        title="logit lens: top token after each layer",
        xaxis_title="position",
        yaxis_title="residual stream after",
        yaxis={"autorange": "reversed"},
        height=max(350, 22 * len(inspection.lens_rows) + 150),
    )
    return figure


def attention_heatmap(inspection: PromptInspection, layer: int, head: int) -> go.Figure:
    """Query x key attention probabilities of one head, token-labelled."""
    if layer not in inspection.patterns:
        raise InvalidArgumentError(f"layer {layer} was not captured; captured layers: {sorted(inspection.patterns)}")
    pattern = inspection.patterns[layer]
    if not 0 <= head < pattern.shape[0]:
        raise InvalidArgumentError(f"head {head} is out of range: layer {layer} has heads 0..{pattern.shape[0] - 1}")
    labels = _position_labels(inspection.tokens)
    figure = go.Figure(
        go.Heatmap(
            z=pattern[head].tolist(),
            x=labels,
            y=labels,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            hovertemplate="query %{y}<br>key %{x}<br>p = %{z:.3f}<extra></extra>",
            colorbar={"title": "attention"},
        )
    )
    figure.update_layout(
        title=f"attention pattern, layer {layer} head {head}",
        xaxis_title="key (attended to)",
        yaxis_title="query",
        yaxis={"autorange": "reversed"},
        height=max(400, 18 * len(labels) + 150),
    )
    return figure
