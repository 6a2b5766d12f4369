"""Figures for browsing SAE latents: highlighted contexts, activation histograms, logit effects, metrics.

They draw the statistics :mod:`interp.sae.features` and :mod:`interp.sae.metrics` store in a run
and compute nothing of their own, so a notebook and the app show the same numbers:

* :func:`context_html`: a context window as HTML, each token's background shaded by the latent's
  activation on it (SAEDashboard / Neuronpedia style), the max-activating token outlined;
  activations show on hover. Plain HTML without scripts, so it renders anywhere (Streamlit's
  sanitised ``st.html`` included);
* :func:`contexts_html`: a latent's contexts, one line each, led by the activation they were kept for;
* :func:`interval_examples_html`: the examples sampled across the activation range, grouped by
  interval, highest first, each headed by its range and how many firing tokens it holds
  (:func:`stored_intervals_html` draws them from a run's stored tensors);
* :func:`activation_histogram`: the stored counts on the stored log-spaced bins, on a log x axis;
* :func:`logit_effects`: the top positive and negative direct logit effects as two bar lists;
* :func:`metrics_bars`: one panel per metric (L0, FVU, dead fraction, CE recovered), one bar per SAE;
* :func:`training_curves`: the training log's L0 and FVU over steps, one line per SAE.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

HIGHLIGHT = "255, 140, 0"  # orange, as in SAEDashboard
SUMMARY_METRICS = ("l0", "fvu", "dead_fraction", "ce_recovered")
DEFAULT_COLOURS = plotly.colors.qualitative.Plotly


def _shown(token: str) -> str:
    """A token's text made visible in HTML: newlines and tabs as symbols, spaces kept."""
    return html.escape(token).replace("\n", "\u21b5").replace("\t", "\u2192")


def context_html(tokens: Sequence[str | None], acts: Sequence[float], scale: float, centre: int | None = None) -> str:
    """One context window as a line of HTML spans shaded by activation (``acts / scale`` as opacity).

    ``centre`` (the token the context was collected for) is outlined. Tokens given as ``None`` are
    outside the text (before its start or after its end) and are skipped.
    """
    scale = scale if scale > 0 else 1.0
    spans = []
    for index, (token, act) in enumerate(zip(tokens, acts, strict=True)):
        if token is None:
            continue
        alpha = min(max(act / scale, 0.0), 1.0)
        border = "outline: 1.5px solid #222;" if index == centre else ""
        spans.append(
            f'<span title="{act:.3f}" style="background: rgba({HIGHLIGHT}, {alpha:.2f}); {border} '
            f'white-space: pre; border-radius: 2px; padding: 0 1px;">{_shown(token)}</span>'
        )
    return '<div style="font-family: monospace; line-height: 1.9; margin: 2px 0;">' + "".join(spans) + "</div>"


def contexts_html(
    values: Sequence[float], windows: Sequence[Sequence[str | None]], acts: Sequence[Sequence[float]], scale: float,
    centre: int | None = None,
) -> str:
    """One line per context: its activation, then the window shaded by :func:`context_html`."""
    return "".join(
        '<div style="display: flex; gap: 0.8em; align-items: baseline; overflow-x: auto;">'
        f'<code style="min-width: 4.5em; text-align: right;">{value:.3f}</code>'
        f"{context_html(words, window_acts, scale, centre)}</div>"
        for value, words, window_acts in zip(values, windows, acts, strict=True)
    )


def interval_examples_html(
    edges: Sequence[float],
    counts: Sequence[int],
    values: Sequence[Sequence[float]],
    windows: Sequence[Sequence[Sequence[str | None]]],
    acts: Sequence[Sequence[Sequence[float]]],
    scale: float,
    centre: int | None = None,
) -> str:
    """Examples across a latent's activation range, one section per interval ``(edges[i], edges[i+1]]``.

    ``values[i]``, ``windows[i]``, ``acts[i]`` are interval ``i``'s examples (already without empty
    slots); ``counts[i]`` is how many firing tokens the interval held. Highest interval first, each
    headed by its range, its share of the firing tokens and how many are shown; shading uses one
    ``scale`` (the latent's max) throughout, so intervals compare by colour.
    """
    total = sum(counts)
    sections = []
    for i in reversed(range(len(counts))):
        count = int(counts[i])
        share = f" ({count / total:.1%} of its firing tokens)" if total else ""
        shown = f"{len(values[i])} shown" if values[i] else "none to show"
        heading = (f'<div style="font-weight: 600; margin: 0.7em 0 0.2em 0;">activation {edges[i]:.3g} to '
                   f"{edges[i + 1]:.3g}: {count:,} token{'s' if count != 1 else ''}{share}, {shown}</div>")
        sections.append(heading + contexts_html(values[i], windows[i], acts[i], scale, centre))
    return "".join(sections)


INTERVAL_TENSORS = ("interval_edges", "interval_counts", "interval_values", "interval_tokens", "interval_acts")


def stored_intervals_html(stats: Mapping[str, Any], vocab: Mapping[int, str], latent: int) -> str | None:
    """:func:`interval_examples_html` of one latent straight from the stored ``features-<name>``
    tensors and ``vocab-<name>`` texts, shaded on the latent's max; ``None`` for statistics stored
    without the interval examples (older runs, or ``features.intervals: 0``)."""
    if not set(INTERVAL_TENSORS) <= set(stats):
        return None
    values = stats["interval_values"][latent].tolist()
    tokens, acts = stats["interval_tokens"][latent].tolist(), stats["interval_acts"][latent].tolist()
    slots = [[j for j, value in enumerate(row) if value > 0] for row in values]
    return interval_examples_html(
        stats["interval_edges"][latent].tolist(),
        stats["interval_counts"][latent].tolist(),
        [[values[i][j] for j in kept] for i, kept in enumerate(slots)],
        [[[vocab.get(t, f"<{t}>") if t >= 0 else None for t in tokens[i][j]] for j in kept] for i, kept in enumerate(slots)],
        [[acts[i][j] for j in kept] for i, kept in enumerate(slots)],
        scale=float(stats["interval_edges"][latent][-1]),
        centre=len(tokens[0][0]) // 2 if tokens and tokens[0] else None,
    )


def activation_histogram(counts: Sequence[int], edges: Sequence[float], title: str | None = None) -> go.Figure:
    """Bars of stored histogram ``counts`` over log-spaced bin ``edges`` (empty outer bins trimmed)."""
    filled = [i for i, count in enumerate(counts) if count > 0]
    if filled:
        first, last = filled[0], filled[-1]
    else:
        first, last = 0, len(counts) - 1
    lows, highs = list(edges[first : last + 1]), list(edges[first + 1 : last + 2])
    centres = [math.sqrt(lo * hi) if lo > 0 else hi / 2 for lo, hi in zip(lows, highs, strict=True)]
    widths = [hi - lo for lo, hi in zip(lows, highs, strict=True)]
    figure = go.Figure(
        go.Bar(
            x=centres,
            y=list(counts[first : last + 1]),
            width=widths,
            customdata=list(zip(lows, highs, strict=True)),
            hovertemplate="activation %{customdata[0]:.3g} to %{customdata[1]:.3g}<br>%{y} tokens<extra></extra>",
            marker={"color": f"rgb({HIGHLIGHT})"},
        )
    )
    figure.update_layout(
        title=title or "activation histogram (non-zero activations)",
        xaxis={"type": "log", "title": "activation (log scale)", "dtick": 1, "tickformat": ".2~g", "minor": {"showgrid": True}},
        yaxis_title="tokens",
        bargap=0,
        height=300,
    )
    return figure


def readable_token(token: str) -> str:
    """A token as a reader can see it: a leading space as a visible ``␣``, newlines and tabs as symbols."""
    shown = token.replace("\n", "\u21b5").replace("\t", "\u2192")
    return "\u2423" + shown[1:] if shown.startswith(" ") else shown


def density_histogram(
    log10_density: Sequence[float], chosen: float | None = None, n_tokens: int | None = None, label: str = "this latent"
) -> go.Figure:
    """Histogram of every latent's log10 firing density, with the chosen latent's marked.

    Densities are fractions of the ``n_tokens`` held-out tokens the statistics were collected on;
    dead latents (density 0) sit at the floor of ``-10``.
    """
    figure = go.Figure(go.Histogram(x=list(log10_density), nbinsx=50, marker={"color": "#9ecae1"},
                                    hovertemplate="log10 density %{x}<br>%{y} latents<extra></extra>"))
    if chosen is not None:
        figure.add_vline(x=chosen, line={"color": f"rgb({HIGHLIGHT})", "width": 3},
                         annotation_text=f"{label}: {chosen:.2f}", annotation_position="top")
    where = f" over {n_tokens:,} held-out tokens" if n_tokens else ""
    figure.update_layout(
        title=f"firing density of every latent{where}",
        xaxis_title="log10 density (fraction of tokens a latent fires on)",
        yaxis_title="latents",
        bargap=0.05,
        height=300,
    )
    return figure


def logit_effects(
    top_tokens: Sequence[str],
    top_values: Sequence[float],
    bottom_tokens: Sequence[str],
    bottom_values: Sequence[float],
    title: str | None = None,
) -> go.Figure:
    """The tokens a latent promotes (left) and suppresses (right), strongest on top."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=["promoted (top logits)", "suppressed (bottom logits)"],
                           horizontal_spacing=0.25)
    for column, (tokens, values, colour) in enumerate(
        ((top_tokens, top_values, "#2166ac"), (bottom_tokens, bottom_values, "#b2182b")), start=1
    ):
        labels = [readable_token(str(token)) for token in tokens]
        figure.add_trace(
            go.Bar(
                x=list(values)[::-1],
                y=labels[::-1],
                orientation="h",
                marker={"color": colour},
                hovertemplate="%{y}: %{x:.3f}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
    figure.update_layout(title=title or "direct logit effects", height=max(280, 24 * len(top_tokens) + 120))
    return figure


def metrics_bars(metrics: pd.DataFrame, columns: Sequence[str] = SUMMARY_METRICS) -> go.Figure:
    """One panel per metric column, one bar per SAE (``metrics`` has an ``sae`` column)."""
    present = [column for column in columns if column in metrics.columns]
    figure = make_subplots(rows=1, cols=max(len(present), 1), subplot_titles=present)
    for column_index, column in enumerate(present, start=1):
        figure.add_trace(
            go.Bar(
                x=metrics["sae"].astype(str).tolist(),
                y=metrics[column].tolist(),
                hovertemplate="%{x}: %{y:.4g}<extra>" + column + "</extra>",
                showlegend=False,
            ),
            row=1,
            col=column_index,
        )
    figure.update_layout(title="SAE metrics on held-out tokens", height=320)
    return figure


def training_curves(log: pd.DataFrame, columns: Sequence[str] = ("l0", "fvu")) -> go.Figure:
    """One panel per logged quantity over training steps, one line per SAE (``log`` has ``sae``, ``step``)."""
    present = [column for column in columns if column in log.columns]
    figure = make_subplots(rows=1, cols=max(len(present), 1), subplot_titles=present)
    for index, (name, rows) in enumerate(log.groupby("sae", sort=False)):
        colour = DEFAULT_COLOURS[index % len(DEFAULT_COLOURS)]
        for column_index, column in enumerate(present, start=1):
            figure.add_trace(
                go.Scatter(x=rows["step"], y=rows[column], mode="lines", name=str(name), legendgroup=str(name),
                           showlegend=column_index == 1, line={"color": colour},
                           hovertemplate="step %{x}: %{y:.4g}<extra>" + str(name) + "</extra>"),
                row=1,
                col=column_index,
            )
    for column_index, column in enumerate(present, start=1):
        figure.update_xaxes(title_text="training step", row=1, col=column_index)
        figure.update_yaxes(title_text=AXIS_NAMES.get(column, column), row=1, col=column_index)
    figure.update_layout(title="training", height=340)
    return figure


AXIS_NAMES = {
    "l0": "L0 (latents firing per token)",
    "fvu": "FVU (unexplained variance)",
    "dead_fraction": "dead fraction",
    "ce_recovered": "CE loss recovered",
}
