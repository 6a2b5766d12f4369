"""Comparing two patching results on the same grid: the difference heatmap.

:func:`interp.viz.patching.compare` puts two results side by side; :func:`difference` shows where
they disagree, cell by cell (second minus first, on a diverging scale centred on 0), for two runs of
the same sweep, e.g. denoising vs noising, two models of one family, or two prompt sets. Both are
read as *effects* (patched minus the unpatched base run, normalised by default), whose no-effect
value is 0 in either direction: normalised values are not comparable across directions (no effect
is 0 for denoising but 1 for noising). Hovering a cell gives both values and their difference.
"""

from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go

from interp.errors import GridMismatchError, InvalidArgumentError
from interp.patching.result import PatchingResult
from interp.viz.patching import _axis_labels, _select


def same_grid(first: PatchingResult, second: PatchingResult) -> str | None:
    """Why two results cannot be compared cell by cell, or None when they can."""
    if first.axes != second.axes:
        return f"the results have different axes: {list(first.axes)} vs {list(second.axes)}"
    for axis in first.axes:
        if first.coords[axis] != second.coords[axis]:
            return (
                f"the results cover different {axis} values ({len(first.coords[axis])} vs "
                f"{len(second.coords[axis])}: {first.coords[axis][:5]}... vs {second.coords[axis][:5]}...)"
            )
    return None


def difference(
    first: PatchingResult,
    second: PatchingResult,
    normalized: bool = True,
    fixed: Mapping[str, int] | None = None,
    names: tuple[str, str] = ("first", "second"),
    quantity: str | None = None,
) -> go.Figure:
    """Heatmap of ``second - first`` mean effects per cell (both results must share their grid).

    ``quantity`` defaults to ``normalized_effect`` (``effect`` with ``normalized=False``).
    """
    problem = same_grid(first, second)
    if problem is not None:
        raise GridMismatchError(f"cannot take the difference: {problem}")
    kind = quantity or ("normalized_effect" if normalized else "effect")
    a, remaining = _select(first, first.quantity(kind).mean(dim=0), fixed or {})
    b, _ = _select(second, second.quantity(kind).mean(dim=0), fixed or {})
    if len(remaining) != 2:
        raise InvalidArgumentError(f"a heatmap needs two free axes; fix all but two of {list(first.axes)}")
    y_axis, x_axis = remaining
    delta = b - a
    limit = float(delta.abs().max()) or 1.0
    hover = [
        [f"{names[0]} {va:.3f}<br>{names[1]} {vb:.3f}<br>difference {vb - va:+.3f}" for va, vb in zip(ra, rb, strict=True)]
        for ra, rb in zip(a.tolist(), b.tolist(), strict=True)
    ]
    label = first.quantity_label(kind)
    figure = go.Figure(
        go.Heatmap(
            z=delta.numpy(),
            x=_axis_labels(first, x_axis),
            y=_axis_labels(first, y_axis),
            text=hover,
            hovertemplate=f"{y_axis} %{{y}}, {x_axis} %{{x}}<br>%{{text}}<extra></extra>",
            colorscale="PiYG",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": "difference"},
        )
    )
    figure.update_layout(
        title=f"{names[1]} minus {names[0]} ({label})",
        xaxis_title=x_axis,
        yaxis_title=y_axis,
        yaxis={"autorange": "reversed"},
    )
    return figure
