"""Sparse autoencoders: the metrics of each SAE in a run, its training curves, and a latent browser.

Everything comes from what the SAE pipeline stored in the run (:mod:`interp.sae.pipeline`): the
``metrics`` table (L0, FVU, dead fraction, CE loss recovered, ...), the ``train_log``, and per SAE the
``features-<name>`` statistics (top activating contexts with the activation on every token of the
window, activation histogram, density, direct logit effects) with the ``vocab-<name>`` token texts.
The browser searches latents by id or by the tokens they promote, sorts them by density or max
activation, and shows one latent's top contexts with token-level highlighting, examples sampled from
each interval of its activation range (when the run stored them), its activation histogram, the
density histogram of all latents with this one marked, and its logit effects. A run still training
shows its progress and curves.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from browse import choose_run, page_help, reading, show_config
from latents import show_latent, table_of, tensors_of, tokens_text

from interp.runs import RUNNING, Run
from interp.viz.latents import metrics_bars, training_curves

FEATURES = "features-"
KEY_METRICS = ["sae", "site", "d_sae", "activation", "l0", "fvu", "dead_fraction", "ce_recovered", "n_tokens"]
SORTS = {"max activation": "max_activation", "density": "density", "latent id": "latent"}
TABLE_ROWS = 500


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


def match_text(matched: int, limit: int) -> str:
    """``1 latent matches.``, ``12 latents match.``, ``9,000 latents match; the first 500 are listed.``"""
    text = "1 latent matches" if matched == 1 else f"{matched:,} latents match"
    return text + (f"; the first {limit:,} are listed." if matched > limit else ".")


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
    st.caption(match_text(len(rows), TABLE_ROWS) + " Click a row (any cell of it) to open its latent.")
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
    tables = run.tables()

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
