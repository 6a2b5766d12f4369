"""Steering: effect-versus-KL curves of strength sweeps, samples coloured by per-token KL, DAC
intensities, and a live playground.

Sweeps and DAC traces come from runs written by ``interp steer CONFIG`` (kinds ``steering`` and
``dac``), read through :mod:`interp.runs`. The playground loads a run's vectors
(:func:`interp.steering.runner.vectors_dir`), steers a prompt live with the chosen layer, strength
and scope, and shows the steered and unsteered continuations side by side with each generated
token's KL(steered || unsteered); this is the one section that runs a model.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st
from browse import choose_run, reading, stamp

from interp.errors import InterpError
from interp.model import Model
from interp.models import DEFAULT_MODEL, load_model
from interp.runs import Run
from interp.steering import evaluate, steer
from interp.steering.runner import vectors_dir
from interp.vectors import LayerVectors, load_vectors
from interp.viz.steering import dac_intensities, effect_vs_kl, token_kl_strip

SECTIONS = ("Strength sweeps", "DAC", "Playground")


@st.cache_resource(max_entries=16, show_spinner=False)
def _table(path: str, name: str, version: tuple[int, ...]) -> pd.DataFrame:
    return Run(path).read_table(name)


@st.cache_resource(max_entries=2, show_spinner=False)
def model_named(name: str) -> Model:
    return load_model(name)


def table_of(run: Run, name: str) -> pd.DataFrame:
    with reading(f"table {name!r}", run):
        return _table(str(run.path), name, stamp(run, f"{name}.parquet"))


def show_sweep() -> None:
    run, _ = choose_run("steering")
    sweep = table_of(run, "sweep")
    st.plotly_chart(effect_vs_kl(sweep), key="effect-vs-kl")
    st.dataframe(sweep, hide_index=True, width="stretch")
    samples, steps = table_of(run, "samples"), table_of(run, "steps")
    st.subheader("Samples")
    left, middle, right = st.columns(3)
    layer = left.selectbox("Layer", sorted(samples["layer"].unique()), key="sample-layer")
    strength = middle.selectbox("Strength", sorted(samples["strength"].unique()), key="sample-strength")
    row = right.selectbox("Prompt", sorted(samples["row"].unique()), key="sample-row")
    chosen = samples[(samples.layer == layer) & (samples.strength == strength)]
    st.dataframe(chosen[["prompt", "baseline", "steered"]], hide_index=True, width="stretch")
    tokens = steps[(steps.layer == layer) & (steps.strength == strength) & (steps.row == row)].sort_values("step")
    if not tokens.empty:
        st.plotly_chart(token_kl_strip(list(tokens["token"]), list(tokens["kl"])), key="sample-kl")


def show_dac() -> None:
    run, _ = choose_run("dac")
    trace = table_of(run, "trace")
    st.plotly_chart(dac_intensities(trace), key="dac-alpha")
    st.dataframe(table_of(run, "samples"), hide_index=True, width="stretch")


def playground() -> None:
    run, _ = choose_run("steering", label="Vectors from run", key="play-run")
    methods = run.config.get("methods", ["mean_diff"])
    method = st.selectbox("Method", methods, key="play-method")
    with reading(f"vectors {method!r}", run):
        vectors: LayerVectors = load_vectors(vectors_dir(run, method))
    name = st.text_input("Model", value=run.config.get("model", DEFAULT_MODEL), key="play-model")
    try:
        with st.spinner(f"Loading {name} (once per server)..."):
            model = model_named(name.strip())
    except (InterpError, OSError, ValueError) as error:
        st.error(f"Cannot load model {name!r}: {error}")
        st.stop()
    prompt = st.text_input("Prompt", value=(run.config.get("sweep", {}).get("prompts") or ["The"])[0], key="play-prompt")
    a, b, c, d = st.columns(4)
    layer = a.selectbox("Layer", list(vectors.layers), key="play-layer")
    strength = b.slider("Strength (x median token norm)", -1.0, 1.0, 0.25, 0.05, key="play-strength")
    scope = c.selectbox("Scope", ["all", "generated", "prompt"], key="play-scope")
    tokens = d.number_input("New tokens", 1, 64, 12, key="play-tokens")
    if not prompt.strip():
        st.info("Type a prompt to steer.")
        st.stop()
    try:
        steered = evaluate(model, [prompt], steer(vectors, strength, "norm", layers=[layer], scope=scope), int(tokens))
        plain = model.generate([prompt], max_new_tokens=int(tokens))
    except (InterpError, ValueError) as error:
        st.error(f"Cannot steer this prompt: {error}")
        st.stop()
    left, right = st.columns(2)
    left.markdown("**Unsteered**")
    left.code(prompt + plain.texts[0], language=None)
    right.markdown(f"**Steered** (layer {layer}, strength {strength:g}, scope {scope})")
    right.code(prompt + steered.generation.texts[0], language=None)
    length = int(steered.generation.generated_lengths[0])
    ids = steered.generation.generated[0, :length].tolist()
    words = [model.tokenizer.decode([i]) for i in ids]
    st.plotly_chart(token_kl_strip(words, steered.kl[0, :length].tolist()), key="play-kl")
    st.caption(", ".join(f"{k} {v:.3f}" for k, v in steered.summary().items()))


st.title("Steering")
section = st.radio("Show", SECTIONS, horizontal=True, key="section")
if section == SECTIONS[0]:
    show_sweep()
elif section == SECTIONS[1]:
    show_dac()
else:
    playground()
