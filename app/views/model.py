"""Live model: type a prompt and see the next-token distribution, the logit lens and attention patterns.

The model (default: the embedded SmolLM2-135M) is loaded once per process through Streamlit's
resource cache and shared by every session. Sessions are threads; the model's lock keeps one
thread's forward from running under another's hooks (:mod:`interp.hooks`). Each prompt's inspection
(one forward pass, :func:`interp.lens.inspect_prompt`) is cached per model, prompt and layer.
This is the only page that runs a model: the others read stored runs.
"""

from __future__ import annotations

import streamlit as st

from interp.errors import InterpError
from interp.model import Model
from interp.models import DEFAULT_MODEL, load_model
from interp.lens import PromptInspection, inspect_prompt
from interp.viz.lens import attention_heatmap, lens_heatmap, next_token_bar

DEFAULT_PROMPT = "When Mary and John went to the store, John gave a drink to"


@st.cache_resource(max_entries=2, show_spinner=False)
def model_named(name: str) -> Model:
    return load_model(name)


@st.cache_data(max_entries=32, show_spinner=False)
def inspection(_model: Model, name: str, prompt: str, layer: int) -> PromptInspection:
    return inspect_prompt(_model, prompt, layers=[layer])


st.title("Model")
name = st.text_input("Model", value=DEFAULT_MODEL, key="model_name",
                     help="the embedded default, a tiny test model (tiny-llama, ...), a local HF directory or a .gguf file")
try:
    with st.spinner(f"Loading {name} (once per server)..."):
        model = model_named(name.strip())
except (InterpError, OSError, ValueError) as error:
    st.error(f"Cannot load model {name!r}: {error}")
    st.stop()
st.caption(repr(model))

prompt = st.text_area("Prompt", value=DEFAULT_PROMPT, key="prompt", height=80)
if not prompt.strip():
    st.info("Type a prompt to see what the model predicts.")
    st.stop()
dims = model.dims
pick_layer, pick_head, pick_span = st.columns(3)
layer = pick_layer.selectbox("Attention layer", range(dims.n_layers), index=dims.n_layers // 2, key="layer")
head = pick_head.selectbox("Attention head", range(dims.n_heads), key="head")

try:
    result = inspection(model, model.name, prompt, layer)
except (InterpError, ValueError) as error:
    st.error(f"Cannot run this prompt: {error}")
    st.stop()
n_tokens = len(result.tokens)
span = pick_span.slider("Logit lens: last positions", 1, n_tokens, min(n_tokens, 16), key="span") if n_tokens > 1 else 1

top, lens = st.columns([1, 2])
with top:
    st.plotly_chart(next_token_bar(result), key="next-token")
with lens:
    st.plotly_chart(lens_heatmap(result, last_positions=span), key="lens")
st.plotly_chart(attention_heatmap(result, layer, head), key="attention")
