"""Plotly figures for attribution methods against exact patching.

:func:`scatter` puts each method's estimated effect of every cell (x) against the exact patching
effect (y), one colour per method, with the identity line and Pearson r in the legend: points on
the diagonal are cells the method gets right; points on the y axis are false negatives (AtP's
saturated attention, cancelled effects). :func:`comparison_scatter` draws it for one component type of a
stored :class:`~interp.attribution.Comparison`. :func:`correlation_bars` shows the r of each method
per component type from a comparison table. Figures are returned, never shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
import torch
from scipy import stats

from interp.attribution import Comparison
from interp.errors import GridMismatchError, InvalidArgumentError
from interp.patching import PatchingResult


# One colour per method, the same in every figure and whichever methods are shown.
METHOD_ORDER = ("atp", "atp+qk", "atp*", "relp", "relp+qk", "ig")
PALETTE = ("#1f77b4", "#17becf", "#ff7f0e", "#2ca02c", "#98df8a", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def method_colour(method: str) -> str:
    """The method's fixed colour (known methods in :data:`METHOD_ORDER`; others by a stable hash)."""
    if method in METHOD_ORDER:
        return PALETTE[METHOD_ORDER.index(method)]
    return PALETTE[len(METHOD_ORDER) + sum(map(ord, method)) % (len(PALETTE) - len(METHOD_ORDER))]


def method_sort_key(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def _mean_effects(result: PatchingResult) -> torch.Tensor:
    base = result.corrupt if result.direction == "denoising" else result.clean
    return (result.values - base.view(-1, *[1] * (result.values.ndim - 1))).double().mean(dim=0).flatten()


def _cell_labels(result: PatchingResult) -> list[str]:
    frame = result.summary_frame()
    return [", ".join(f"{axis}={int(row[axis])}" for axis in result.axes) for _, row in frame.iterrows()]


def scatter(exact: PatchingResult, estimates: Sequence[PatchingResult], title: str | None = None) -> go.Figure:
    """Estimated vs exact mean effect per cell, one trace per estimate (labelled with its r)."""
    truth = _mean_effects(exact)
    labels = _cell_labels(exact)
    figure = go.Figure()
    low, high = float(truth.min()), float(truth.max())
    for estimate in sorted(estimates, key=lambda e: method_sort_key(getattr(e, "method", "estimate"))):
        guess = _mean_effects(estimate)
        if guess.shape != truth.shape:
            raise GridMismatchError(f"estimate grid {estimate.grid_shape} does not match the exact grid {exact.grid_shape}")
        defined = guess.std() > 0 and truth.std() > 0
        r = float(stats.pearsonr(guess.tolist(), truth.tolist()).statistic) if defined else float("nan")
        method = getattr(estimate, "method", "estimate")
        figure.add_trace(go.Scatter(
            x=guess.tolist(), y=truth.tolist(), mode="markers", name=f"{method} (r = {r:.3f})", text=labels,
            hovertemplate="%{text}<br>estimate %{x:.4f}<br>exact %{y:.4f}<extra>" + method + "</extra>",
            marker={"size": 6, "opacity": 0.7, "color": method_colour(method)},
        ))
        low, high = min(low, float(guess.min())), max(high, float(guess.max()))
    figure.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                                line={"dash": "dot", "color": "grey"}, hoverinfo="skip"))
    figure.update_layout(
        title=title or f"{exact.direction} {exact.sweep}: attribution vs exact patching ({exact.metric})",
        xaxis_title=f"estimated effect ({exact.metric})",
        yaxis_title=f"exact effect ({exact.metric})",
    )
    return figure


def comparison_scatter(comparison: Comparison, component: str, methods: Sequence[str] | None = None) -> go.Figure:
    """:func:`scatter` of one component type of a comparison (every method, or ``methods``)."""
    chosen = list(comparison.estimates) if methods is None else list(methods)
    return scatter(comparison.exact[component], [comparison.estimates[m][component] for m in chosen])


def correlation_bars(table: pd.DataFrame, value: str = "pearson") -> go.Figure:
    """Grouped bars of ``value`` (default Pearson r) per component type, one group per method."""
    figure = go.Figure()
    methods = sorted(table["method"].astype(str).unique(), key=method_sort_key)
    for method in methods:
        rows = table[table["method"].astype(str) == method]
        figure.add_trace(go.Bar(x=rows["component"], y=rows[value], name=method, marker={"color": method_colour(method)}))
    figure.update_layout(
        barmode="group", yaxis_title=value, xaxis_title="component", title=f"{value} vs exact patching"
    )
    return figure


def recall_cost(table: pd.DataFrame, component: str, methods: Sequence[str] | None = None,
                title: str | None = None) -> go.Figure:
    """Recall of the true top components against cost in forward-pass equivalents, for one component type.

    ``table`` is :func:`interp.attribution.recall.recall_table`'s long format (also stored with an
    attribution run as ``Comparison.recall``). One line per method and ranking (solid: signed,
    dashed: unsigned, solid for methods ranking by their own scores), the false-negative bound as a
    dotted step line, and exhaustive patching in random order as a grey diagonal. The x axis is
    logarithmic: methods cost a few passes, exhaustive verification hundreds.
    """
    rows = table[table["component"] == component]
    if rows.empty:
        raise InvalidArgumentError(f"no recall curves for component {component!r}; have {sorted(table['component'].unique())}")
    figure = go.Figure()
    for (method, ranking, curve), line in rows.groupby(["method", "ranking", "curve"], sort=False):
        if methods is not None and curve != "exhaustive" and method not in methods:
            continue
        if curve == "exhaustive":
            style, name = {"color": "grey", "dash": "dot"}, "exhaustive patching (random order, expected)"
        elif curve == "bound":
            style, name = {"dash": "dot", "width": 2}, f"false-negative bound ({method}, {ranking}; 95%)"
        else:
            style, name = {"dash": "dash" if ranking == "unsigned" else "solid"}, f"{method} ({ranking})"
        figure.add_trace(go.Scatter(
            x=line["cost"].clip(lower=1).tolist(), y=line["recall"].tolist(), mode="lines", name=name,
            line={**style, "shape": "hv"}, customdata=line["verified"].tolist(),
            hovertemplate="cost %{x:.1f}<br>verified %{customdata}<br>recall %{y:.2f}<extra>" + name + "</extra>",
        ))
    figure.update_layout(
        title=title or f"{component}: recall of the true top components vs cost",
        xaxis={"title": "cost (forward-pass equivalents: method + verified components)", "type": "log"},
        yaxis={"title": "recall of the exact top-k", "range": [0, 1.02]},
    )
    return figure


def faithfulness_figure(table: pd.DataFrame, value: str = "faithfulness", title: str | None = None) -> go.Figure:
    """Faithfulness (or ``value="complement"``: completeness) of each method's top-N circuit against N.

    ``table`` is :class:`interp.attribution.faithfulness.FaithfulnessCurves`' table (stored as the
    ``faithfulness`` table of a feature-circuit run). The x axis is ``N + 1`` on a log scale, so the
    empty circuit shows at 1; dotted lines mark the whole model (1) and the empty circuit (0).
    """
    figure = go.Figure()
    for method, rows in table.groupby("method", sort=False):
        figure.add_trace(go.Scatter(
            x=(rows["nodes"] + 1).tolist(), y=rows[value].tolist(), mode="lines+markers", name=str(method),
            customdata=rows["nodes"].tolist(),
            hovertemplate="N = %{customdata}<br>" + value + " %{y:.3f}<extra>" + str(method) + "</extra>",
        ))
    for level in (0.0, 1.0):
        figure.add_hline(y=level, line={"dash": "dot", "color": "grey"})
    what = "faithfulness of the top-N circuit" if value == "faithfulness" else "faithfulness of the model without the top N"
    figure.update_layout(
        title=title or what, xaxis={"title": "N + 1 (nodes kept, log scale)", "type": "log"},
        yaxis={"title": value},
    )
    return figure
