"""Function vectors: which heads carry an in-context task, and what their vector does zero-shot.

The heatmap is the average indirect effect of every head (layer x head) that the run stored, with
the heads summed into the function vector marked; the accuracy plot and table give, per layer the
vector was added at, zero-shot accuracy with the function vector, with a vector of as many random
heads, unsteered, and with demonstrations in context (:mod:`interp.viz.function_vectors`).
"""

from __future__ import annotations

import streamlit as st
from browse import choose_run, reading

from interp.runs import RUNNING
from interp.viz.function_vectors import accuracy_by_layer, aie_heatmap

st.title("Function vectors")
run, info = choose_run("function_vectors")
if "heads" not in run.tables():
    if info.status == RUNNING:
        st.info("This run has not measured its heads yet. Reload the page when it has progressed.")
        st.stop()
    st.error("This run stored no head table: it ended before the heads were measured.")
    st.stop()
with reading("head table", run):
    heads = run.read_table("heads")
    extraction = run.read_json("extraction") if "extraction" in run.json_files() else {}

config = run.config
st.markdown(
    f"**model** `{info.model.get('name', '?') if isinstance(info.model, dict) else info.model}` · "
    f"**task** `{config.get('task', '?')}` · **shots** {config.get('n_shots', '?')} · "
    f"**top heads** {config.get('n_top_heads', '?')} · **prompts kept for the means** "
    f"{extraction.get('n_kept', '?')} of {extraction.get('n_clean', '?')}"
)

left, right = st.columns([3, 2])
with left:
    figure = aie_heatmap(heads)
    figure.update_layout(height=max(420, 18 * heads["layer"].nunique() + 160))
    st.plotly_chart(figure, key=f"aie-{run.id}")
with right:
    st.subheader("Top heads")
    st.dataframe(
        heads.sort_values("rank").head(int(config.get("n_top_heads", 10)))[["rank", "layer", "head", "aie"]],
        hide_index=True,
        column_config={"aie": st.column_config.NumberColumn("AIE", format="%.4f")},
    )

st.subheader("Zero-shot accuracy by layer")
if "accuracy" not in run.tables():
    st.info("The layer sweep has not finished yet." if info.status == RUNNING else "This run stored no accuracy table.")
    st.stop()
with reading("accuracy table", run):
    accuracy = run.read_table("accuracy")
st.plotly_chart(accuracy_by_layer(accuracy), key=f"accuracy-{run.id}")
st.dataframe(
    accuracy,
    hide_index=True,
    column_config={
        column: st.column_config.NumberColumn(column, format="%.3f")
        for column in ("zero_shot", "fv", "random_heads", "icl")
    },
)
