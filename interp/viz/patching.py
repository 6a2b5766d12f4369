"""Plotly figures for patching results: layer x position / layer x head heatmaps, drill-down.

Figures are returned, never shown, so notebooks, the app and scripts decide what to do with them.
Each figure shows one :data:`~interp.patching.result.QUANTITIES` of a result and says which:
``normalized`` (clean = 1, corrupt = 0), ``effect`` (patched minus the unpatched base metric),
``normalized_effect`` or ``raw``. Heatmaps use a diverging scale centred on the quantity's *no
effect* value, so a cell that changes nothing is white in either direction: 0 for a denoising
normalised map, 1 for a noising one (whose important cells fall towards 0), 0 for any effect. The
title says what the direction means. Hovering a cell shows the mean, its standard error and the
number of examples. Position axes carry the named positions of a sweep by name, else the token
where every example has the same one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from interp.errors import InvalidArgumentError
from interp.patching.result import MEANING, PatchingResult


def _axis_labels(result: PatchingResult, axis: str) -> list[str]:
    values = result.coords[axis]
    if axis == "pos" and result.position_labels is not None:
        return [result.position_labels[p] for p in values]
    return [f"{axis[0].upper()}{v}" if axis in ("layer", "head") else str(v) for v in values]


def _select(result: PatchingResult, data: torch.Tensor, fixed: Mapping[str, int]) -> tuple[torch.Tensor, list[str]]:
    """Index ``data`` (grid-shaped) at fixed coordinates, returning the remaining axes."""
    remaining = []
    index: list[int | slice] = []
    for axis in result.axes:
        if axis in fixed:
            if fixed[axis] not in result.coords[axis]:
                raise InvalidArgumentError(f"{axis}={fixed[axis]} is not in the result's {axis} values {result.coords[axis]}")
            index.append(result.coords[axis].index(fixed[axis]))
        else:
            index.append(slice(None))
            remaining.append(axis)
    return data[tuple(index)], remaining


def _quantity(result: PatchingResult, normalized: bool, quantity: str | None) -> str:
    return quantity or ("normalized" if normalized else "raw")


def heatmap(
    result: PatchingResult,
    normalized: bool = True,
    fixed: Mapping[str, int] | None = None,
    title: str | None = None,
    selectable: bool = False,
    quantity: str | None = None,
) -> go.Figure:
    """Heatmap of the mean over examples for a two-axis grid (fix extra axes with ``fixed``).

    ``quantity`` picks what is drawn (default ``normalized``, or ``raw`` with ``normalized=False``);
    the colour scale is centred on its no-effect value (see the module docstring).

    ``selectable`` adds a clickable overlay for apps: plotly heatmaps report no selection to
    Streamlit (streamlit#8760), so a nearly transparent scatter with one point per cell, carrying
    the cell's ``[y coordinate, x coordinate]`` as ``customdata``, takes the hover and the clicks;
    a selected cell is outlined.
    """
    kind = _quantity(result, normalized, quantity)
    data = result.quantity(kind)
    mean, remaining = _select(result, data.mean(dim=0), fixed or {})
    n = data.shape[0]
    spread = data.std(dim=0, unbiased=True) / n**0.5 if n > 1 else torch.zeros_like(data[0])
    sem, _ = _select(result, spread, fixed or {})
    if len(remaining) != 2:
        raise InvalidArgumentError(
            f"a heatmap needs two free axes; the result has {list(result.axes)}: fix the others, e.g. "
            f"fixed={{'{remaining[-1]}': {result.coords[remaining[-1]][0]}}}"
        )
    y_axis, x_axis = remaining
    z = mean.numpy()
    centre = result.no_effect(kind)
    finite = abs(z[~np.isnan(z)] - centre) if np.isfinite(z).any() else np.zeros(1)
    limit = float(finite.max()) if finite.size and float(finite.max()) > 0 else 1.0
    hover = [[f"mean {m:.3f} ± {s:.3f} (n={n})" for m, s in zip(row_m, row_s, strict=True)] for row_m, row_s in zip(mean.tolist(), sem.tolist(), strict=True)]
    label = result.quantity_label(kind)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=_axis_labels(result, x_axis),
            y=_axis_labels(result, y_axis),
            text=hover,
            hovertemplate=f"{y_axis} %{{y}}, {x_axis} %{{x}}<br>%{{text}}<extra></extra>",
            colorscale="RdBu",
            zmid=centre,
            zmin=centre - limit,
            zmax=centre + limit,
            colorbar={"title": {"text": _short(kind, result), "side": "right"}},
        )
    )
    if selectable:
        _add_cell_overlay(figure, result, y_axis, x_axis, hover)
    figure.update_layout(
        title={"text": title or f"{result.direction} patching: {result.sweep}<br><sup>{MEANING[result.direction]}; "
               f"colour: {label}</sup>"},
        xaxis_title=AXIS_TITLES.get(x_axis, x_axis) if result.positions == "raw" or x_axis != "pos" else "named position",
        yaxis_title=AXIS_TITLES.get(y_axis, y_axis),
        yaxis={"autorange": "reversed"},
    )
    return figure


AXIS_TITLES = {"layer": "layer", "pos": "position (batch column)", "head": "head", "neuron": "neuron", "cell": "cell"}


def _short(kind: str, result: PatchingResult) -> str:
    """The colour bar's title: the quantity in a few words."""
    return {
        "normalized": "normalised",
        "effect": f"effect ({result.metric})",
        "normalized_effect": "normalised effect",
        "raw": result.metric,
    }[kind]


def _add_cell_overlay(figure: go.Figure, result: PatchingResult, y_axis: str, x_axis: str, hover: list[list[str]]) -> None:
    """Move the heatmap's hover onto a near-invisible scatter of one point per cell (see :func:`heatmap`)."""
    y_labels, x_labels = _axis_labels(result, y_axis), _axis_labels(result, x_axis)
    y_coords, x_coords = result.coords[y_axis], result.coords[x_axis]
    cells = [(i, j) for i in range(len(y_coords)) for j in range(len(x_coords))]
    figure.data[0].update(hoverinfo="skip", hovertemplate=None)
    figure.add_trace(
        go.Scatter(
            x=[x_labels[j] for _, j in cells],
            y=[y_labels[i] for i, _ in cells],
            customdata=[[y_coords[i], x_coords[j]] for i, j in cells],
            text=[hover[i][j] for i, j in cells],
            mode="markers",
            marker={"symbol": "square-open", "size": 14, "color": "rgba(0, 0, 0, 0)", "line": {"width": 2}},
            selected={"marker": {"color": "black", "opacity": 1.0}},
            unselected={"marker": {"color": "rgba(0, 0, 0, 0)"}},
            hovertemplate=f"{y_axis} %{{y}}, {x_axis} %{{x}}<br>%{{text}}<extra></extra>",
            showlegend=False,
            name="cells",
        )
    )
    # a click selects a cell; dragging zooms (a "select" drag mode would turn clicks into plain events)
    figure.update_layout(clickmode="event+select", dragmode="zoom")


def example_drilldown(
    result: PatchingResult,
    cell: Mapping[str, int],
    normalized: bool = True,
    tokens: list[str] | None = None,
    quantity: str | None = None,
) -> go.Figure:
    """Per-example values at one cell, next to each example's clean and corrupt metric.

    ``tokens`` (one per example) labels each bar with the token patched in that example, e.g.
    ``"11: John"`` for a sweep by named position.
    """
    kind = _quantity(result, normalized, quantity)
    data = result.quantity(kind)
    per_example, remaining = _select(result, data.movedim(0, -1), cell)
    if remaining:
        raise InvalidArgumentError(f"give a coordinate for every axis {list(result.axes)}; missing {remaining}")
    examples = list(range(per_example.shape[-1]))
    figure = go.Figure(go.Bar(
        x=examples, y=per_example.tolist(), name="patched",
        customdata=tokens, hovertemplate="example %{x}" + ("<br>patched token %{customdata}" if tokens else "")
        + "<br>%{y:.3f}<extra></extra>",
    ))
    if kind == "normalized":
        figure.add_hline(y=1.0, line_dash="dot", annotation_text="clean")
        figure.add_hline(y=0.0, line_dash="dot", annotation_text="corrupt")
    elif kind == "raw":
        figure.add_trace(go.Scatter(x=examples, y=result.clean.tolist(), mode="markers", name="clean"))
        figure.add_trace(go.Scatter(x=examples, y=result.corrupt.tolist(), mode="markers", name="corrupt"))
    else:
        figure.add_hline(y=0.0, line_dash="dot", annotation_text="no effect")
    where = ", ".join(f"{k}={_axis_labels(result, k)[result.coords[k].index(v)]}" for k, v in cell.items())
    figure.update_layout(
        title=f"{result.direction} {result.sweep} at {where}: each example",
        xaxis_title="example", yaxis_title=result.quantity_label(kind),
    )
    if tokens:
        figure.update_xaxes(tickvals=examples, ticktext=[f"{e}<br>{t}" for e, t in zip(examples, tokens, strict=True)])
    return figure


def compare(
    first: PatchingResult,
    second: PatchingResult,
    normalized: bool = True,
    fixed: Mapping[str, int] | None = None,
    titles: tuple[str, str] | None = None,
    quantity: str | None = None,
) -> go.Figure:
    """Two results side by side (e.g. denoising vs noising), on one colour scale centred on 0.

    Both panels show *effects* (``normalized_effect`` by default, ``effect`` with
    ``normalized=False``), whose no-effect value is 0 in either direction, so a denoising and a
    noising map share one scale. ``fixed`` fixes extra axes as in :func:`heatmap`; ``titles``
    replaces the panel titles.
    """
    kind = quantity or ("normalized_effect" if normalized else "effect")
    centres = {r.no_effect(kind) for r in (first, second)}
    if len(centres) > 1:
        raise InvalidArgumentError(
            f"{kind} has a different no-effect value in the two results ({sorted(centres)}); compare effects "
            "(quantity='normalized_effect' or 'effect')"
        )
    centre = centres.pop()
    figure = make_subplots(rows=1, cols=2, subplot_titles=titles or [f"{r.direction} {r.sweep}" for r in (first, second)])
    limit = max(float((r.quantity(kind).mean(dim=0) - centre).abs().nan_to_num(0).max()) for r in (first, second)) or 1.0
    for column, result in enumerate((first, second), start=1):
        single = heatmap(result, fixed=fixed, quantity=kind)
        trace = single.data[0]
        trace.update(zmid=centre, zmin=centre - limit, zmax=centre + limit, showscale=column == 2)
        figure.add_trace(trace, row=1, col=column)
        figure.update_xaxes(title_text=single.layout.xaxis.title.text, row=1, col=column)
        figure.update_yaxes(title_text=single.layout.yaxis.title.text, row=1, col=column)
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(title=f"{first.quantity_label(kind)}: 0 = no effect in both panels")
    return figure
