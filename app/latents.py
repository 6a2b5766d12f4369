"""Reading an SAE run's stored latent statistics and drawing one latent: shared by the SAE browser
and the feature-circuit page (which shows the contexts of a circuit's top latents)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch
from browse import reading, stamp

from interp.runs import Run
from interp.viz.latents import (
    activation_histogram,
    contexts_html,
    density_histogram,
    logit_effects,
    readable_token,
    stored_intervals_html,
)


@st.cache_resource(max_entries=24, show_spinner=False)
def _table(path: str, name: str, version: tuple[int, ...]) -> pd.DataFrame:
    return Run(path).read_table(name)


@st.cache_resource(max_entries=4, show_spinner=False)
def _tensors(path: str, name: str, version: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return Run(path).read_tensors(name)


def table_of(run: Run, name: str) -> pd.DataFrame:
    with reading(f"table {name!r}", run):
        return _table(str(run.path), name, stamp(run, f"{name}.parquet"))


def tensors_of(run: Run, name: str) -> dict[str, torch.Tensor]:
    with reading(f"tensors {name!r}", run):
        return _tensors(str(run.path), name, stamp(run, f"{name}.safetensors"))


def tokens_text(tokens: object) -> list[str]:
    """A latent's top-logit tokens, each readable (visible leading space)."""
    return [readable_token(str(token)) for token in list(tokens)]


def words(tokens: torch.Tensor, vocab: dict[int, str]) -> list[str | None]:
    """A stored window's token texts (``None`` for positions outside the text)."""
    return [vocab.get(int(t), f"<{int(t)}>") if t >= 0 else None for t in tokens]


def show_latent(run: Run, name: str, table: pd.DataFrame, stats: dict[str, torch.Tensor], vocab: dict[int, str],
                latent: int) -> None:
    row = table[table["latent"] == latent].iloc[0]
    tiles = st.columns(3)
    tiles[0].metric("density", f"{row['density']:.2e}")
    tiles[1].metric("log10 density", f"{row['log10_density']:.2f}")
    tiles[2].metric("max activation", f"{row['max_activation']:.3f}")

    st.markdown("**Top activating contexts**")
    values = stats["top_values"][latent]
    tokens, acts = stats["context_tokens"][latent], stats["context_acts"][latent]
    centre = tokens.shape[-1] // 2
    scale = float(values.max())
    fired = [k for k in range(values.shape[0]) if values[k] > 0]
    if fired:
        st.html(contexts_html([float(values[k]) for k in fired], [words(tokens[k], vocab) for k in fired],
                              [acts[k].tolist() for k in fired], scale, centre))
    else:
        st.info("This latent never fired on the held-out tokens.")
    intervals = stored_intervals_html(stats, vocab, latent) if fired else None
    if intervals is not None:  # runs stored before the interval examples existed have none
        st.markdown("**Examples across the activation range** (a uniform sample from each interval of (0, max])")
        st.html(intervals)
    metrics = table_of(run, "metrics") if "metrics" in run.tables() else None
    n_tokens = None
    if metrics is not None and "n_tokens" in metrics and name in set(metrics["sae"]):
        n_tokens = int(metrics.loc[metrics["sae"] == name, "n_tokens"].iloc[0])
    st.plotly_chart(density_histogram(table["log10_density"].tolist(), float(row["log10_density"]), n_tokens,
                                      label=f"latent {latent}"), key=f"density-{run.id}-{name}-{latent}")
    histogram, effects = st.columns([2, 3])
    counts, edges = stats["hist_counts"][latent].tolist(), stats["hist_edges"].tolist()
    histogram.plotly_chart(activation_histogram(counts, edges), key=f"hist-{run.id}-{name}-{latent}")
    figure = logit_effects(list(row["top_logits"]), list(row["top_logit_values"]), list(row["bottom_logits"]),
                           list(row["bottom_logit_values"]), title=f"latent {latent}: direct logit effects")
    effects.plotly_chart(figure, key=f"logits-{run.id}-{name}-{latent}")
    model = run.manifest.get("model")
    st.page_link("views/model.py", label=f"Run latent {latent} on my text (model page)", icon=":material/edit_note:",
                 query_params={"model": str(model.get("name", "") if isinstance(model, dict) else model or ""),
                               "sae_run": run.id, "sae": name, "latent": latent})
