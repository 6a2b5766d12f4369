"""Figures of one prompt's inspection (:func:`interp.lens.inspect_prompt`): next-token
distribution, logit lens, attention patterns.

The figures follow the usual conventions: the lens is a layer x position grid coloured by the
probability of each cell's top token with the token written in the cell (tuned-lens, nnterp
``plot_topk_tokens``); hovering shows the top tokens. Attention is a query x key heatmap with
token labels on both axes. Figures are returned, never shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from interp.errors import InvalidArgumentError
from interp.lens import PromptInspection


def _position_labels(tokens: Sequence[str]) -> list[str]:
    """Unique axis labels ``"i:token"`` (repeated tokens would otherwise collapse into one category)."""
    return [f"{i}:{token}" for i, token in enumerate(tokens)]


MAX_CELL_CHARS = 6


def _fit(token: str, limit: int) -> str:
    """A token cut to ``limit`` characters (with an ellipsis) so the cell's text stays readable."""
    return token if len(token) <= limit else token[: limit - 1] + "\u2026"


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
    # a cell holds only what fits at a readable size; the full top token is in the hover
    text = [[_fit(token, MAX_CELL_CHARS) for token in row[start:]] for row in inspection.lens_top_tokens]
    hover = [row[start:] for row in inspection.lens_hover]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=inspection.lens_rows,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 12},
            customdata=hover,
            hovertemplate="%{y}, position %{x}<br>%{customdata}<extra></extra>",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": "top-token p"},
        )
    )
    figure.update_layout(
        title="logit lens: top token after each layer (hover a cell for the top tokens)",
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
