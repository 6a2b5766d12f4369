"""Concepts (TCAV): which concepts matter to the target metric, at which layers, and how sure we are.

The layer x concept grid shows each concept's mean TCAV score over its runs, starred where its
difference from random concepts survives Bonferroni correction (hover for the interval and every
p-value); beside it, the held-out accuracy of the CAV probes per layer, because a CAV that reads
nothing says nothing. Choosing a (concept, layer) shows the random-concept distribution behind
its test and the per-example directional derivatives, with each target prompt's tokens and the
tokens the selector pooled. Everything is read from the run as ``interp tcav`` stored it.
"""

from __future__ import annotations

import html

import streamlit as st
from browse import choose_run, reading, stamp

from interp.runs import RUNNING, Run
from interp.viz.concepts import (
    example_derivatives,
    probe_accuracy,
    random_distribution,
    steer_lines,
    tcav_grid,
    tcav_lines,
)

RUN_FILES = ("tests.parquet", "scores.parquet", "examples.parquet", "target.json")


@st.cache_resource(max_entries=8, show_spinner=False)
def _load(path: str, version: tuple[int, ...]) -> dict:
    run = Run(path)
    loaded = {name: run.read_table(name) for name in ("tests", "scores", "examples")}
    loaded["target"] = run.read_json("target")
    loaded["settings"] = run.read_json("settings")
    loaded["steer"] = run.read_table("steer") if "steer" in run.tables() else None
    return loaded


st.title("Concepts (TCAV)")
run, info = choose_run("tcav")
if info.status == RUNNING and "tests" not in run.tables():
    st.info("This run has not stored its tests yet. Reload the page when it has finished.")
    st.stop()
with reading("TCAV tables", run):
    data = _load(str(run.path), stamp(run, *RUN_FILES))
tests, scores, examples, target, settings = data["tests"], data["scores"], data["examples"], data["target"], data["settings"]

st.markdown(
    f"**site** `{settings.get('kind')}` · **selector** `{settings.get('selector')}` · **classifier** "
    f"`{settings.get('classifier')}` · **design** `{settings.get('design')}` · **random runs** "
    f"{settings.get('n_random')} · **metric** `{target.get('metric')}` on {len(target['prompts'])} prompts · "
    f"**seed** {settings.get('seed')} · * = significant after Bonferroni at {settings.get('level')}"
)
left, right = st.columns(2)
left.plotly_chart(tcav_grid(tests), key=f"grid-{run.id}")
right.plotly_chart(probe_accuracy(tests), key=f"accuracy-{run.id}")
st.plotly_chart(tcav_lines(tests), key=f"lines-{run.id}")
with st.expander("All tests: scores, intervals, p-values (t-test, permutation, Bonferroni, Benjamini-Hochberg)"):
    st.dataframe(tests, hide_index=True)
if data["steer"] is not None:
    st.subheader("Does the CAV steer? Adding it at its layer")
    st.plotly_chart(steer_lines(data["steer"]), key=f"steer-{run.id}")

st.subheader("One test in detail")
concepts = list(dict.fromkeys(tests.concept))
layers = sorted(set(tests.layer))
pick_concept, pick_layer = st.columns(2)
concept = pick_concept.selectbox("Concept", concepts, key=f"concept-{run.id}")
layer = pick_layer.selectbox("Layer", layers, key=f"layer-{run.id}")
row = tests[(tests.concept == concept) & (tests.layer == layer)].iloc[0]
st.markdown(
    f"TCAV **{row.concept_mean:.3f}** vs random **{row.random_mean:.3f}**; difference {row['diff']:+.3f} "
    f"(95% CI {row.diff_low:+.3f} to {row.diff_high:+.3f}), Hedges' g {row.hedges_g:.2f}; "
    f"p = {row.p_t:.2g} (t), {row.p_perm:.2g} (permutation), {row.p_bonferroni:.2g} (Bonferroni)"
)
st.plotly_chart(random_distribution(scores, concept, layer), key=f"null-{run.id}")
prompts = target["prompts"]
st.plotly_chart(example_derivatives(examples, concept, layer, prompts), key=f"examples-{run.id}")
example = st.number_input("Example", min_value=0, max_value=len(prompts) - 1, value=0, key=f"example-{run.id}")
tokens, (start, stop) = target["tokens"][example], target["ranges"][example]
marked = "".join(
    f"<mark>{html.escape(tok)}</mark>" if start <= i < stop else html.escape(tok) for i, tok in enumerate(tokens)
)
value = examples[(examples.concept == concept) & (examples.layer == layer) & (examples.example == example)]
st.markdown(f"Tokens (pooled ones highlighted): <code>{marked}</code>", unsafe_allow_html=True)
if len(value):
    st.markdown(
        f"metric {float(value.metric.iloc[0]):.3f} · derivative along {concept} {float(value.derivative.iloc[0]):.4g} · "
        f"positive in {float(value.positive_fraction.iloc[0]):.0%} of the concept's runs"
    )
