"""Figures of a function-vector run: the heads' average indirect effects and accuracy by layer.

Both take the tables a run stores (``heads``: ``layer, head, aie, in_fv``; ``accuracy``: ``layer,
zero_shot, fv, random_heads, icl``), so they draw a run read back from disk as well as a result
in memory (``found.head_table()``, ``evaluate_function_vector(...)``). Figures are returned, never
shown.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from interp.errors import InvalidArgumentError

ACCURACY_SERIES = {
    "fv": "function vector",
    "random_heads": "random heads",
    "zero_shot": "zero-shot",
    "icl": "in-context",
}


def _require(table: pd.DataFrame, columns: set[str], what: str) -> None:
    missing = sorted(columns - set(table.columns))
    if missing:
        raise InvalidArgumentError(f"the {what} table has no column(s) {missing}; it needs {sorted(columns)}")


def aie_heatmap(heads: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Layer x head heatmap of the average indirect effect, centred on 0; the heads in the function
    vector (``in_fv``) are marked with a dot."""
    _require(heads, {"layer", "head", "aie"}, "heads")
    grid = heads.pivot(index="layer", columns="head", values="aie").sort_index()
    bound = float(grid.abs().max().max()) or 1.0
    figure = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[str(h) for h in grid.columns],
            y=[str(layer) for layer in grid.index],
            colorscale="RdBu",
            zmid=0,
            zmin=-bound,
            zmax=bound,
            colorbar={"title": "AIE"},
            hovertemplate="layer %{y}, head %{x}<br>AIE %{z:.4f}<extra></extra>",
        )
    )
    if "in_fv" in heads.columns:
        chosen = heads[heads["in_fv"].astype(bool)]
        figure.add_trace(
            go.Scatter(
                x=[str(h) for h in chosen["head"]],
                y=[str(layer) for layer in chosen["layer"]],
                mode="markers",
                marker={"symbol": "circle-open", "size": 12, "color": "black", "line": {"width": 2}},
                name="in function vector",
                hovertemplate="layer %{y}, head %{x}: in the function vector<extra></extra>",
            )
        )
    figure.update_layout(
        title=title or "average indirect effect per head",
        xaxis_title="head",
        yaxis_title="layer",
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"type": "category"},
        legend={"orientation": "h", "y": -0.15},
    )
    return figure


def accuracy_by_layer(accuracy: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Zero-shot accuracy per injection layer with the function vector and with the random-heads
    vector, against the unsteered zero-shot and the in-context accuracies (horizontal references)."""
    _require(accuracy, {"layer", *ACCURACY_SERIES}, "accuracy")
    table = accuracy.sort_values("layer")
    figure = go.Figure()
    for column, name in ACCURACY_SERIES.items():
        dashed = column in ("zero_shot", "icl")
        figure.add_trace(
            go.Scatter(
                x=table["layer"],
                y=table[column],
                mode="lines" if dashed else "lines+markers",
                line={"dash": "dash"} if dashed else {},
                name=name,
                hovertemplate=f"{name}<br>layer %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    figure.update_layout(
        title=title or "zero-shot accuracy by injection layer",
        xaxis_title="layer the vector is added at (resid_post, last token)",
        yaxis_title="top-1 accuracy of the first answer token",
        yaxis={"range": [0, 1.02]},
    )
    return figure
