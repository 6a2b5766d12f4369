"""Figures of steering results: effect versus KL per layer, per-token KL of a sample, DAC intensities.

* :func:`effect_vs_kl`: one line per layer through its strengths, x = mean KL(steered || unsteered)
  per generated token (damage), y = the behaviour score's change from the unsteered model (effect);
  hover names the strength, perplexity and entropy. The best strengths sit top-left.
* :func:`token_kl_strip`: the tokens of one generation coloured by each step's KL: where the
  model was steered away from what it would have said.
* :func:`dac_intensities`: DAC's per-step intensity of each property (mean over prompts).

Figures are returned, never shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from interp.errors import InvalidArgumentError


def effect_vs_kl(table: pd.DataFrame, effect: str = "score_delta") -> go.Figure:
    """Effect (``effect`` column) against mean KL, one line per layer, points ordered by strength."""
    missing = {"layer", "strength", "kl", effect} - set(table.columns)
    if missing:
        raise InvalidArgumentError(f"the sweep table has no {sorted(missing)} columns; give a strength_sweep table")
    figure = go.Figure()
    for layer, rows in table.sort_values("strength").groupby("layer"):
        figure.add_trace(
            go.Scatter(
                x=rows["kl"],
                y=rows[effect],
                mode="lines+markers+text",
                name=f"layer {layer}",
                text=[f"{s:g}" for s in rows["strength"]],
                textposition="top center",
                customdata=rows[["strength", "perplexity", "entropy"]].to_numpy(),
                hovertemplate=(
                    f"layer {layer}<br>strength %{{customdata[0]:g}}<br>KL %{{x:.4f}}<br>{effect} %{{y:.3f}}"
                    "<br>perplexity %{customdata[1]:.2f}<br>entropy %{customdata[2]:.2f}<extra></extra>"
                ),
            )
        )
    figure.update_layout(
        title="effect vs damage per layer (labels: strength)",
        xaxis_title="mean KL(steered || unsteered) per token",
        yaxis_title=effect,
        legend_title="layer",
    )
    return figure


def token_kl_strip(tokens: Sequence[str], kl: Sequence[float], title: str | None = None) -> go.Figure:
    """One row of generated tokens, each cell coloured by that step's KL (token written in the cell)."""
    if len(tokens) != len(kl):
        raise InvalidArgumentError(f"{len(tokens)} tokens but {len(kl)} KL values; give one KL per generated token")
    labels = [f"{i}:{token}" for i, token in enumerate(tokens)]
    figure = go.Figure(
        go.Heatmap(
            z=[list(kl)],
            x=labels,
            y=["KL"],
            text=[[repr(t)[1:-1] for t in tokens]],
            texttemplate="%{text}",
            colorscale="Reds",
            zmin=0,
            hovertemplate="%{x}<br>KL %{z:.4f}<extra></extra>",
            colorbar={"title": "KL"},
        )
    )
    figure.update_layout(title=title or "per-token KL(steered || unsteered)", height=200, xaxis={"showticklabels": False})
    return figure


def dac_intensities(trace: pd.DataFrame) -> go.Figure:
    """Mean DAC intensity per generation step, one line per property (band: min to max over prompts)."""
    missing = {"step", "property", "alpha"} - set(trace.columns)
    if missing:
        raise InvalidArgumentError(f"the DAC trace has no {sorted(missing)} columns; give DACResult.trace()")
    figure = go.Figure()
    for name, rows in trace.groupby("property"):
        stats = rows.groupby("step")["alpha"].agg(["mean", "min", "max"]).reset_index()
        figure.add_trace(
            go.Scatter(
                x=stats["step"], y=stats["mean"], mode="lines+markers", name=str(name),
                error_y={"type": "data", "symmetric": False, "array": stats["max"] - stats["mean"],
                         "arrayminus": stats["mean"] - stats["min"]},
            )
        )
    figure.update_layout(title="DAC intensity per step", xaxis_title="generation step", yaxis_title="alpha", yaxis={"range": [0, 2.1]})
    return figure
