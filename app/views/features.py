"""Sparse feature circuits: faithfulness of each attribution method's top nodes over SAE latents.

A feature-circuit run (``interp attribute`` with ``kind: feature_circuit``,
:mod:`interp.attribution.circuit`) stored each method's estimated effect of every SAE latent and
error node, the exact effect of the top nodes, the faithfulness and completeness curves
(:func:`interp.viz.attribution.faithfulness_figure`) and each method's cost. Below the curves, the
top nodes of a method, and for a latent its top activating contexts from the SAE training run the
SAEs came from (the SAE browser's view).
"""

from __future__ import annotations

import streamlit as st
from browse import choose_run, reading, store
from latents import show_latent, table_of, tensors_of

from interp.errors import InterpError
from interp.runs import RUNNING
from interp.viz.attribution import faithfulness_figure

st.title("Sparse feature circuits")
run, info = choose_run("feature_circuit")
if info.status == RUNNING and "circuit" not in run.json_files():
    st.info("This run has not stored its results yet. Reload the page when it has finished.")
    st.stop()
with reading("circuit", run):
    circuit = run.read_json("circuit")
nodes, curves, costs = table_of(run, "nodes"), table_of(run, "faithfulness"), table_of(run, "costs")
st.markdown(
    f"**model** `{run.manifest.get('model', {}).get('name', '?')}` · **metric** `{circuit['metric']}` · "
    f"**direction** `{circuit['direction']}` · **replacement** `{circuit['replacement']}` · "
    f"**SAE sites** {', '.join(f'`{s}`' for s in circuit['sites'])} · "
    f"m(model) {circuit['full']:.3f}, m(empty circuit) {circuit['empty']:.3f}"
)
left, right = st.columns(2)
left.plotly_chart(faithfulness_figure(curves), key=f"faith-{run.id}")
right.plotly_chart(faithfulness_figure(curves, "complement"), key=f"complete-{run.id}")
st.dataframe(costs, hide_index=True, column_config={"passes": st.column_config.NumberColumn("passes (F=1, B=2)", format="%.0f")})

methods = [m for m in costs["method"] if m in nodes.columns and m != "exact"]
method = st.selectbox("Top nodes of", methods, key=f"method-{run.id}")
top = nodes.reindex(nodes[method].abs().sort_values(ascending=False).index).head(30)
st.dataframe(top[["node", "site", "kind", "latent", *methods, "exact"]], hide_index=True)

if circuit.get("sae_run") is None:
    st.caption("The SAEs were given as directories: no training run holds their latents' contexts.")
    st.stop()
try:
    source = store().get(circuit["sae_run"])
except InterpError:  # the SAE run may have been deleted since
    st.caption(f"The SAE run {circuit['sae_run']!r} is not in this store: no contexts to show.")
    st.stop()
latents = top[top["kind"] == "latent"]
if latents.empty:
    st.stop()
choice = st.selectbox("Latent", [f"{row.site} #{row.latent}" for row in latents.itertuples()], key=f"latent-{run.id}")
row = latents.iloc[[f"{r.site} #{r.latent}" for r in latents.itertuples()].index(choice)]
name = circuit["saes"][int(row["sae"])]
table = table_of(source, f"features-{name}")
stats = tensors_of(source, f"features-{name}")
vocab_table = table_of(source, f"vocab-{name}")
vocab = dict(zip(vocab_table["token_id"].tolist(), vocab_table["text"].tolist(), strict=True))
show_latent(source, name, table, stats, vocab, int(row["latent"]))
