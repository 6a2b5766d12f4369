"""Live model: type a prompt and see the next-token distribution, the logit lens and attention patterns.

The model (default: the embedded SmolLM2-135M) is loaded once per process through Streamlit's
resource cache and shared by every session. Sessions are threads; the model's lock keeps one
thread's forward from running under another's hooks (:mod:`interp.hooks`). Each prompt's inspection
(one forward pass, :func:`interp.lens.inspect_prompt`) is cached per model, prompt and layer.
This is the only page that runs a model: the others read stored runs.
"""

from __future__ import annotations

import streamlit as st
import torch
from browse import page_help, store

from interp.errors import InterpError
from interp.lens import PromptInspection, inspect_prompt
from interp.model import Model
from interp.models import DEFAULT_MODEL, load_model
from interp.sae import SAE
from interp.sae import load as load_sae
from interp.viz.latents import context_html
from interp.viz.lens import attention_heatmap, lens_heatmap, next_token_bar

DEFAULT_PROMPT = "When Mary and John went to the store, John gave a drink to"


@st.cache_resource(max_entries=2, show_spinner=False)
def model_named(name: str) -> Model:
    return load_model(name)


@st.cache_data(max_entries=32, show_spinner=False)
def inspection(_model: Model, name: str, prompt: str, layer: int) -> PromptInspection:
    return inspect_prompt(_model, prompt, layers=[layer])


URL_KEYS = {"model": "model_name", "prompt": "prompt", "layer": "layer", "head": "head"}
SAE_KEYS = ("sae_run", "sae", "latent")


@st.cache_resource(max_entries=4, show_spinner=False)
def sae_from(path: str) -> SAE:
    return load_sae(path)


def show_latent_on_text(model: Model, prompt: str, tokens: list[str]) -> None:
    """One SAE latent's activation on every token of the prompt (``?sae_run=&sae=&latent=``, from the SAE page)."""
    wanted = {k: st.query_params.get(k) or st.session_state.get(f"url-model-{k}") for k in SAE_KEYS}
    if not all(wanted.values()):
        return
    for key, value in wanted.items():
        st.session_state[f"url-model-{key}"] = value
    st.subheader(f"SAE latent {wanted['latent']} of `{wanted['sae']}` on this prompt")
    try:
        run = store().get(str(wanted["sae_run"]))
        sae = sae_from(str(run.path / "saes" / str(wanted["sae"])))
        latent = int(str(wanted["latent"]))
        if not 0 <= latent < sae.d_sae or sae.site is None:
            raise InterpError(f"latent {latent} is not in 0..{sae.d_sae - 1}, or the SAE names no site")
        _, cache = model.run_with_cache(prompt, sites=[sae.site])
        with torch.no_grad():
            acts = sae.encode(cache[sae.site][0].to(sae.device)).dense()[:, latent].float().cpu()
    except (InterpError, OSError, ValueError, KeyError) as error:
        st.error(f"Cannot run SAE {wanted['sae']!r} of run {wanted['sae_run']!r} here: {error}")
        return
    st.caption(f"Site `{sae.site}` of {model.name}; shading is the activation over its maximum on this prompt "
               f"({float(acts.max()):.3f}); hover a token for its value. Edit the prompt above to try your own text.")
    st.html(context_html(tokens, acts.tolist(), float(acts.max())))
    if st.button("Stop showing this latent", key="sae-clear"):
        for key in SAE_KEYS:
            st.session_state.pop(f"url-model-{key}", None)
            if key in st.query_params:
                del st.query_params[key]
        st.rerun()


def apply_url() -> None:
    """Open the page on what its address names (``?model=&prompt=&layer=&head=``, e.g. from a heatmap
    cell's link), once per distinct address; afterwards the widgets keep the reader's changes."""
    given = {k: st.query_params[k] for k in URL_KEYS if k in st.query_params}
    if not given or st.session_state.get("model-url-applied") == given:
        return
    st.session_state["model-url-applied"] = given
    for param, value in given.items():
        st.session_state[URL_KEYS[param]] = int(value) if param in ("layer", "head") and value.isdigit() else value


st.title("Model")
page_help("model")
apply_url()
# defaults through the session state, as a link's values are: a widget given both warns and keeps the link's
st.session_state.setdefault("model_name", DEFAULT_MODEL)
st.session_state.setdefault("prompt", DEFAULT_PROMPT)
name = st.text_input("Model", key="model_name",
                     help="the embedded default, a tiny test model (tiny-llama, ...), a local HF directory or a .gguf file")
try:
    with st.spinner(f"Loading {name} (once per server)..."):
        model = model_named(name.strip())
except (InterpError, OSError, ValueError) as error:
    st.error(f"Cannot load model {name!r}: {error}")
    st.stop()
st.caption(repr(model))

prompt = st.text_area("Prompt", key="prompt", height=80)
if not prompt.strip():
    st.info("Type a prompt to see what the model predicts.")
    st.stop()
dims = model.dims
pick_layer, pick_head, pick_span = st.columns(3)
st.session_state.setdefault("layer", dims.n_layers // 2)
for key, size in (("layer", dims.n_layers), ("head", dims.n_heads)):
    if not isinstance(st.session_state.get(key, 0), int) or not 0 <= st.session_state.get(key, 0) < size:
        st.warning(f"The address asks for {key} {st.session_state[key]}, but {model.name} has {size}; showing {key} 0.")
        st.session_state[key] = 0
layer = pick_layer.selectbox("Attention layer", range(dims.n_layers), key="layer")
head = pick_head.selectbox("Attention head", range(dims.n_heads), key="head")
st.session_state["model-url-applied"] = {"model": name, "prompt": prompt, "layer": str(layer), "head": str(head)}
for param, value in st.session_state["model-url-applied"].items():
    if st.query_params.get(param) != value:
        st.query_params[param] = value

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
show_latent_on_text(model, prompt, list(result.tokens))
