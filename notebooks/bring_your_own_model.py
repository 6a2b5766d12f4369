# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Bring your own model: TransformerLens and nnsight
#
# You already hold a TransformerLens `TransformerBridge` or an nnsight `LanguageModel` in your
# notebook. `interp.wrap` turns either into an `interp.Model` with the same site names, without
# copying it: every method of the workbench runs on it, and your object keeps working as before.
#
# Here we run the same small analysis, an exact activation-patching sweep of the residual stream
# and its AtP estimate on an IOI task, on the default model three ways: as the Hugging Face model
# `interp.load_model()` gives, through a TransformerBridge, and through nnsight. The three agree to
# float32 precision.

# %%
import copy
import tempfile
import time
import warnings

import pandas as pd
from nnsight import LanguageModel
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoTokenizer

import interp
from interp.attribution import SweepRequest, atp
from interp.patching import patch_sweep
from interp.tasks import ioi_task
from interp.viz import attribution as attribution_viz
from interp.viz import patching as patching_viz

reference = interp.load_model()  # SmolLM2-135M, float32, on CPU
reference

# %% [markdown]
# ## Wrap a TransformerBridge
#
# With a hub connection you would boot the bridge by name
# (`TransformerBridge.boot_transformers("HuggingFaceTB/SmolLM2-135M-Instruct")`). Offline, we hand
# it a copy of the model we already have (booting rewires the module it is given) and the
# tokenizer, saved and reloaded as the bridge expects.
#
# The wrapped model keeps the bridge's own code where the bridge replaced Hugging Face's
# (attention), so a few capabilities are unavailable on it: `model.arch.unavailable` lists them,
# and asking for one raises an error that names it. Here: no KV cache, so generation runs with
# `use_cache=False` and the patching engine starts forwards at the patched block but recomputes
# every position.

# %%
directory = tempfile.mkdtemp()
reference.tokenizer.save_pretrained(directory)
bridge = TransformerBridge.boot_transformers(
    directory, hf_model=copy.deepcopy(reference.hf), tokenizer=AutoTokenizer.from_pretrained(directory)
)

tl_model = interp.wrap(bridge, prepend_bos=reference.prepend_bos)
print(tl_model)
tl_model.arch.unavailable

# %% [markdown]
# ## Wrap an nnsight model
#
# nnsight runs the Hugging Face modules themselves, so everything is available, the KV cache and
# the patching engine's prefix reuse included.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # nnsight 0.8 prefers the name TransformersModel
    lm = LanguageModel(copy.deepcopy(reference.hf), tokenizer=reference.tokenizer)

nn_model = interp.wrap(lm)
print(nn_model)
nn_model.arch.unavailable

# %% [markdown]
# ## The same patching sweep on all three
#
# Denoising: run the corrupted prompts and patch in the clean residual stream at each (layer,
# position); the metric is the logit difference between the indirect object and the subject,
# normalised so that 0 is the corrupted run and 1 the clean run.

# %%
models = {"Hugging Face": reference, "TransformerLens": tl_model, "nnsight": nn_model}
task = ioi_task(reference, 4, seed=0)
layers = list(range(0, reference.dims.n_layers, 5))  # every fifth layer keeps the notebook quick

sweeps, rows = {}, []
for label, model in models.items():
    started = time.perf_counter()
    sweeps[label] = patch_sweep(model, task, "resid_pre", layers=layers)
    cost = sweeps[label].cost
    rows.append(
        {
            "backend": label,
            "seconds": round(time.perf_counter() - started, 1),
            "forward passes": cost.forward_passes,
            "FLOPs vs naive": round(cost.flop_fraction, 3),
            "largest difference from HF": float((sweeps[label].values - sweeps["Hugging Face"].values).abs().max()),
        }
    )
pd.DataFrame(rows)

# %% [markdown]
# The tables agree to float32 precision. The bridge's sweep costs more FLOPs because it cannot
# reuse the shared prompt prefix (no KV cache); the cost in each result says what was spent.

# %%
patching_viz.heatmap(sweeps["TransformerLens"], title="resid_pre patching through a TransformerBridge")

# %% [markdown]
# ## AtP on all three
#
# Attribution patching estimates the whole sweep from two forwards and one backward. The hook
# layer differentiates the exact tensors that flow at each site, on either backend.

# %%
request = SweepRequest("resid_pre", layers=layers)
estimates = {label: atp(model, task, request) for label, model in models.items()}
pd.DataFrame(
    {
        "backend": list(estimates),
        "largest difference from HF": [
            float((estimate.values - estimates["Hugging Face"].values).abs().max()) for estimate in estimates.values()
        ],
    }
)

# %%
attribution_viz.scatter(
    sweeps["Hugging Face"], [estimates["TransformerLens"], estimates["nnsight"]], title="AtP vs exact patching"
)

# %% [markdown]
# ## Your objects keep working
#
# Nothing of ours stays on them: the bridge's own hooks and nnsight's traces run as before.

# %%
ids = reference.to_tokens(["When Mary and John went to the store, John gave a drink to"]).input_ids
logits, cache = bridge.run_with_cache(ids)
with lm.trace(ids):
    nn_logits = lm.lm_head.output.save()
print("bridge run_with_cache:", tuple(cache["blocks.3.hook_resid_pre"].shape))
print("largest logit difference, bridge vs nnsight trace:", float((logits - nn_logits).abs().max()))

# %% [markdown]
# And what a backend cannot do is an error that says so:

# %%
try:
    tl_model.generate("The capital of France is", max_new_tokens=5)
except interp.BackendCapabilityError as error:
    print(error)
print(tl_model.generate("The capital of France is", max_new_tokens=5, use_cache=False).texts)
