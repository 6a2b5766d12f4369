"""Sparse autoencoders: the metrics of each SAE in a run, its training curves, and a latent browser.

Everything comes from what the SAE pipeline stored in the run (:mod:`interp.sae.pipeline`): the
``metrics`` table (L0, FVU, dead fraction, CE loss recovered, ...), the ``train_log``, and per SAE the
``features-<name>`` statistics (top activating contexts with the activation on every token of the
window, activation histogram, density, direct logit effects) with the ``vocab-<name>`` token texts.
The browser searches latents by id or by the tokens they promote, sorts them by density or max
activation, and shows one latent's contexts with token-level highlighting, its histogram and logit
effects. A run still training shows its progress and curves.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
import torch
from browse import choose_run, page_help, show_config, reading, stamp

from interp.runs import RUNNING, Run
from interp.viz.latents import (
    activation_histogram,
    context_html,
    density_histogram,
    logit_effects,
    metrics_bars,
    readable_token,
    training_curves,
)

FEATURES = "features-"
KEY_METRICS = ["sae", "site", "d_sae", "activation", "l0", "fvu", "dead_fraction", "ce_recovered", "n_tokens"]
SORTS = {"max activation": "max_activation", "density": "density", "latent id": "latent"}
TABLE_ROWS = 500


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


def show_metrics(run: Run, specs: dict[str, dict]) -> None:
    metrics = table_of(run, "metrics")
    shown = metrics.assign(
        site=[specs.get(name, {}).get("site") for name in metrics["sae"]],
        d_sae=[specs.get(name, {}).get("d_sae") for name in metrics["sae"]],
        activation=[str(specs.get(name, {}).get("activation", {}).get("kind", "")) for name in metrics["sae"]],
    )
    st.dataframe(shown[[c for c in KEY_METRICS if c in shown.columns]], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.4f")
                                for c in ("fvu", "dead_fraction", "ce_recovered")})
    st.plotly_chart(metrics_bars(metrics), key=f"metrics-{run.id}")
    with st.expander("All metrics"):
        st.dataframe(metrics, hide_index=True)


def filtered_latents(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """The latents matching the search box, sorted as asked."""
    search_col, sort_col, order_col, dead_col = st.columns([2, 1, 1, 1])
    search = search_col.text_input("Search: latent id, or a token it promotes", key=f"search-{key}").strip()
    sort = sort_col.selectbox("Sort by", list(SORTS), key=f"sort-{key}")
    descending = order_col.toggle("Descending", value=True, key=f"order-{key}")
    hide_dead = dead_col.toggle("Hide dead latents", value=True, key=f"dead-{key}")
    rows = table[table["density"] > 0] if hide_dead else table
    if search.isdigit():
        rows = rows[rows["latent"] == int(search)]
    elif search:
        needle = search.lower()
        rows = rows[[any(needle in str(token).lower() for token in tokens) for tokens in rows["top_logits"]]]
    return rows.sort_values(SORTS[sort], ascending=not descending, kind="stable")


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
    lines = []
    for k in range(values.shape[0]):
        if values[k] <= 0:
            continue
        words = [vocab.get(int(t), f"<{int(t)}>") if t >= 0 else None for t in tokens[k]]
        lines.append(
            f'<div style="display: flex; gap: 0.8em; align-items: baseline; overflow-x: auto;">'
            f'<code style="min-width: 4.5em; text-align: right;">{float(values[k]):.3f}</code>'
            f"{context_html(words, acts[k].tolist(), scale, centre)}</div>"
        )
    if lines:
        st.html("".join(lines))
    else:
        st.info("This latent never fired on the held-out tokens.")
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


def picked_rows(event: object) -> list[int]:
    """The rows a table selection names: a selected row, or the row of a clicked cell."""
    selection = getattr(event, "selection", None)
    if selection is None:
        return []
    rows = list(getattr(selection, "rows", []) or [])
    cells = [cell[0] for cell in getattr(selection, "cells", []) or []]
    return rows or cells


def show_browser(run: Run, names: list[str]) -> None:
    name = st.selectbox("SAE", names, key=f"sae-{run.id}")
    key = f"{run.id}-{name}"
    table = table_of(run, f"{FEATURES}{name}")
    stats = tensors_of(run, f"{FEATURES}{name}")
    vocab_table = table_of(run, f"vocab-{name}")
    vocab = dict(zip(vocab_table["token_id"].tolist(), vocab_table["text"].tolist(), strict=True))
    rows = filtered_latents(table, key)
    if rows.empty:
        st.info("No latent matches the search.")
        return
    listing = rows.head(TABLE_ROWS).assign(top_logits=[tokens_text(t) for t in rows.head(TABLE_ROWS)["top_logits"]])
    event = st.dataframe(
        listing[["latent", "density", "max_activation", "top_logits"]], hide_index=True, width="stretch", height=260,
        on_select="rerun", selection_mode=["single-row", "single-cell"], key=f"latents-{key}",
        column_config={"density": st.column_config.NumberColumn("density", format="%.2e"),
                       "max_activation": st.column_config.NumberColumn("max activation", format="%.3f"),
                       "top_logits": st.column_config.ListColumn("top logits (tokens it promotes; ␣ = space)")},
    )
    listed = min(len(rows), TABLE_ROWS)
    st.caption(f"{len(rows)} latent{'s' if len(rows) != 1 else ''} match"
               + (f"; the first {listed} are listed" if listed < len(rows) else "")
               + ". Click a row to open its latent.")
    options = rows["latent"].tolist()
    latent_key = f"latent-{key}"
    picked = picked_rows(event)
    if picked and st.session_state.get(f"{latent_key}-clicked") != picked[0]:
        st.session_state[f"{latent_key}-clicked"] = picked[0]
        st.session_state[latent_key] = int(listing.iloc[picked[0]]["latent"])
    if st.session_state.get(latent_key) not in options:
        st.session_state[latent_key] = options[0]
    latent = st.selectbox("Latent", options, key=latent_key)
    show_latent(run, name, table, stats, vocab, latent)


st.title("Sparse autoencoders")
run, info = choose_run("sae")
page_help("sae")
show_config(run)
with reading("config", run):
    specs = {spec["name"]: spec for spec in run.config.get("saes", [])}
    manifest = run.manifest
    tables = run.tables()

progress = manifest.get("progress") or {}
if info.status == RUNNING and progress.get("total_steps"):
    step, total = int(progress.get("step", 0)), int(progress["total_steps"])
    st.progress(min(step / total, 1.0), text=f"training step {step} of {total}")
if "train_log" in tables:
    st.plotly_chart(training_curves(table_of(run, "train_log")), key=f"training-{run.id}")

st.subheader("Metrics on held-out tokens")
if "metrics" not in tables:
    if info.status == RUNNING:
        st.info("Metrics and feature statistics are computed when training finishes. Reload the page later.")
        st.stop()
    st.error(f"This run has no `metrics` table (it has: {', '.join(tables) or 'no tables'}).")
    st.stop()
show_metrics(run, specs)

st.subheader("Latent browser")
names = [t[len(FEATURES):] for t in tables if t.startswith(FEATURES)]
if not names:
    st.info("This run stored no feature statistics (its config has `features.enabled: false`).")
    st.stop()
show_browser(run, names)
