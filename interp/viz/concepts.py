"""Plotly figures for TCAV runs: the layer x concept grid, probe accuracy, the random null, examples.

* :func:`tcav_grid`: TCAV score (fraction of target examples whose metric rises toward the concept)
  per layer (rows) and concept (columns), centred on 0.5; a star marks a (concept, layer) whose
  difference from random concepts survives Bonferroni correction, and the hover gives the random
  mean, the 95% interval of the difference and every p-value;
* :func:`tcav_lines`: per concept, its mean TCAV score with the interval of its runs, and the
  random concepts' mean, across layers;
* :func:`probe_accuracy`: held-out accuracy (and AUC) of the CAV classifiers per layer;
* :func:`random_distribution`: the concept's run scores against the random-vs-random scores
  behind one test;
* :func:`example_derivatives`: per target example, the directional derivative at one layer;
* :func:`steer_lines`: the metric change and KL when each layer's CAV is added at that layer.

Figures are returned, never shown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

NULL = "random"


def tcav_grid(tests: pd.DataFrame, title: str = "TCAV score (concept runs, mean)") -> go.Figure:
    """Layer x concept heatmap of mean TCAV scores with significance stars (see the module docstring)."""
    concepts = list(dict.fromkeys(tests.concept))
    layers = sorted(set(tests.layer))
    table = tests.set_index(["layer", "concept"])
    z = np.array([[table.loc[(layer, c), "concept_mean"] for c in concepts] for layer in layers], dtype=float)
    stars = [["*" if bool(table.loc[(layer, c), "significant"]) else "" for c in concepts] for layer in layers]
    hover = [[
        (f"{c} @ layer {layer}<br>TCAV {table.loc[(layer, c), 'concept_mean']:.3f} vs random "
         f"{table.loc[(layer, c), 'random_mean']:.3f}<br>difference 95% CI [{table.loc[(layer, c), 'diff_low']:.3f}, "
         f"{table.loc[(layer, c), 'diff_high']:.3f}]<br>p t-test {table.loc[(layer, c), 'p_t']:.2g}, permutation "
         f"{table.loc[(layer, c), 'p_perm']:.2g}<br>Bonferroni {table.loc[(layer, c), 'p_bonferroni']:.2g}, BH "
         f"{table.loc[(layer, c), 'p_bh']:.2g}<br>probe accuracy {table.loc[(layer, c), 'accuracy']:.2f}")
        for c in concepts] for layer in layers]
    figure = go.Figure(go.Heatmap(
        z=z, x=concepts, y=[str(layer) for layer in layers], zmin=0, zmax=1, zmid=0.5, colorscale="RdBu_r",
        text=stars, texttemplate="%{text}", customdata=hover, hovertemplate="%{customdata}<extra></extra>",
        colorbar={"title": "TCAV"},
    ))
    figure.update_layout(title=title, xaxis_title="concept", yaxis_title="layer")
    return figure


def tcav_lines(tests: pd.DataFrame) -> go.Figure:
    """Mean TCAV score per layer for each concept (bars: 95% CI of the difference, shifted onto the
    concept's mean) against the random mean."""
    figure = go.Figure()
    for concept, rows in tests.groupby("concept", sort=False):
        rows = rows.sort_values("layer")
        upper = rows.diff_high - rows["diff"]
        lower = rows["diff"] - rows.diff_low
        figure.add_trace(go.Scatter(
            x=rows.layer, y=rows.concept_mean, name=concept, mode="lines+markers",
            error_y={"type": "data", "array": upper.tolist(), "arrayminus": lower.tolist()},
        ))
        figure.add_trace(go.Scatter(
            x=rows.layer, y=rows.random_mean, name=f"{concept}: random", mode="lines", line={"dash": "dot"},
        ))
    figure.update_layout(title="TCAV score by layer (with 95% CI of the difference from random)",
                         xaxis_title="layer", yaxis_title="TCAV score", yaxis_range=[0, 1])
    return figure


def probe_accuracy(tests: pd.DataFrame) -> go.Figure:
    """Held-out accuracy of each concept's CAV classifiers per layer (mean over runs)."""
    figure = go.Figure()
    for concept, rows in tests.groupby("concept", sort=False):
        rows = rows.sort_values("layer")
        figure.add_trace(go.Scatter(x=rows.layer, y=rows.accuracy, name=f"{concept} accuracy", mode="lines+markers"))
        figure.add_trace(go.Scatter(x=rows.layer, y=rows.auc, name=f"{concept} AUC", mode="lines", line={"dash": "dot"}))
    figure.update_layout(title="CAV probe: held-out accuracy and AUC", xaxis_title="layer", yaxis_title="score",
                         yaxis_range=[0, 1.02])
    return figure


def random_distribution(scores: pd.DataFrame, concept: str, layer: int, metric: str = "sign_count") -> go.Figure:
    """The concept's run scores beside the random-vs-random scores at ``layer`` (one point per CAV)."""
    figure = go.Figure()
    for name in (concept, NULL):
        rows = scores[(scores.concept == name) & (scores.layer == layer)]
        figure.add_trace(go.Box(
            y=rows[metric], name=name, boxpoints="all", jitter=0.3, pointpos=0,
            customdata=rows.negative, hovertemplate=f"{metric} %{{y:.3f}}<br>against %{{customdata}}<extra>{name}</extra>",
        ))
    figure.update_layout(title=f"{concept} vs random CAVs at layer {layer}", yaxis_title=metric)
    return figure


def example_derivatives(examples: pd.DataFrame, concept: str, layer: int, labels: list[str] | None = None) -> go.Figure:
    """Per target example: the directional derivative along the concept (mean over its runs)."""
    rows = examples[(examples.concept == concept) & (examples.layer == layer)].sort_values("example")
    text = labels if labels is not None else [str(i) for i in rows.example]
    colours = ["#2166ac" if v > 0 else "#b2182b" for v in rows.derivative]
    figure = go.Figure(go.Bar(
        x=rows.example, y=rows.derivative, marker_color=colours, customdata=text,
        hovertemplate="example %{x}: %{customdata}<br>derivative %{y:.4g}<extra></extra>",
    ))
    figure.update_layout(title=f"Directional derivative along {concept} at layer {layer}, per example",
                         xaxis_title="example", yaxis_title="d metric / d concept")
    return figure


def steer_lines(steer: pd.DataFrame) -> go.Figure:
    """Metric change and KL when adding each concept's CAV at its layer."""
    figure = go.Figure()
    for concept, rows in steer.groupby("concept", sort=False):
        rows = rows.sort_values("layer")
        figure.add_trace(go.Scatter(x=rows.layer, y=rows.delta, name=f"{concept}: metric change", mode="lines+markers"))
        figure.add_trace(go.Scatter(x=rows.layer, y=rows.kl, name=f"{concept}: KL", mode="lines", yaxis="y2",
                                    line={"dash": "dot"}))
    figure.update_layout(title="Adding the CAV at its layer", xaxis_title="layer", yaxis_title="metric change",
                         yaxis2={"title": "KL (nats)", "overlaying": "y", "side": "right"})
    return figure
