"""Plotly figures for patching results: layer x position / layer x head heatmaps, drill-down.

Figures are returned, never shown, so notebooks, the app and scripts decide what to do with them.
Heatmaps use a diverging scale centred on 0 (normalised patching values are 0 for "no effect",
1 for "fully restores the clean behaviour"); hovering a cell shows the mean, its standard error
and the number of examples. Position axes carry the first prompt's tokens as labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from interp.errors import InvalidArgumentError
from interp.patching.result import PatchingResult


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


def heatmap(
    result: PatchingResult,
    normalized: bool = True,
    fixed: Mapping[str, int] | None = None,
    title: str | None = None,
    selectable: bool = False,
) -> go.Figure:
    """Heatmap of the mean over examples for a two-axis grid (fix extra axes with ``fixed``).

    ``selectable`` adds a clickable overlay for apps: plotly heatmaps report no selection to
    Streamlit (streamlit#8760), so a nearly transparent scatter with one point per cell, carrying
    the cell's ``[y coordinate, x coordinate]`` as ``customdata``, takes the hover and the clicks;
    a selected cell is outlined.
    """
    mean, remaining = _select(result, result.mean(normalized), fixed or {})
    sem, _ = _select(result, result.sem(normalized), fixed or {})
    if len(remaining) != 2:
        raise InvalidArgumentError(
            f"a heatmap needs two free axes; the result has {list(result.axes)}: fix the others, e.g. "
            f"fixed={{'{remaining[-1]}': {result.coords[remaining[-1]][0]}}}"
        )
    y_axis, x_axis = remaining
    z = mean.numpy()
    limit = float(abs(z).max()) or 1.0
    n = result.values.shape[0]
    hover = [[f"mean {m:.3f} ± {s:.3f} (n={n})" for m, s in zip(row_m, row_s, strict=True)] for row_m, row_s in zip(mean.tolist(), sem.tolist(), strict=True)]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=_axis_labels(result, x_axis),
            y=_axis_labels(result, y_axis),
            text=hover,
            hovertemplate=f"{y_axis} %{{y}}, {x_axis} %{{x}}<br>%{{text}}<extra></extra>",
            colorscale="RdBu",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "normalised" if normalized else result.metric},
        )
    )
    label = "normalised " + result.metric if normalized else result.metric
    if selectable:
        _add_cell_overlay(figure, result, y_axis, x_axis, hover)
    figure.update_layout(
        title=title or f"{result.direction} patching: {result.sweep} ({label})",
        xaxis_title=x_axis,
        yaxis_title=y_axis,
        yaxis={"autorange": "reversed"},
    )
    return figure


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


def example_drilldown(result: PatchingResult, cell: Mapping[str, int], normalized: bool = True) -> go.Figure:
    """Per-example values at one cell, next to each example's clean and corrupt metric."""
    data = result.normalized() if normalized else result.values
    per_example, remaining = _select(result, data.movedim(0, -1), cell)
    if remaining:
        raise InvalidArgumentError(f"give a coordinate for every axis {list(result.axes)}; missing {remaining}")
    examples = list(range(per_example.shape[-1]))
    figure = go.Figure(go.Bar(x=examples, y=per_example.tolist(), name="patched"))
    if normalized:
        figure.add_hline(y=1.0, line_dash="dot", annotation_text="clean")
        figure.add_hline(y=0.0, line_dash="dot", annotation_text="corrupt")
    else:
        figure.add_trace(go.Scatter(x=examples, y=result.clean.tolist(), mode="markers", name="clean"))
        figure.add_trace(go.Scatter(x=examples, y=result.corrupt.tolist(), mode="markers", name="corrupt"))
    where = ", ".join(f"{k}={v}" for k, v in cell.items())
    figure.update_layout(title=f"{result.sweep} at {where}", xaxis_title="example", yaxis_title=result.metric)
    return figure


def compare(
    first: PatchingResult,
    second: PatchingResult,
    normalized: bool = True,
    fixed: Mapping[str, int] | None = None,
    titles: tuple[str, str] | None = None,
) -> go.Figure:
    """Two results side by side (e.g. denoising vs noising), on one colour scale.

    ``fixed`` fixes extra axes as in :func:`heatmap`; ``titles`` replaces the panel titles.
    """
    figure = make_subplots(rows=1, cols=2, subplot_titles=titles or [f"{r.direction} {r.sweep}" for r in (first, second)])
    limit = max(float(r.mean(normalized).abs().max()) for r in (first, second)) or 1.0
    for column, result in enumerate((first, second), start=1):
        single = heatmap(result, normalized, fixed)
        trace = single.data[0]
        trace.update(zmin=-limit, zmax=limit, showscale=column == 2)
        figure.add_trace(trace, row=1, col=column)
    figure.update_yaxes(autorange="reversed")
    return figure
