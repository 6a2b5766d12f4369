# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Sparse autoencoders: train, browse, load, splice
#
# A sparse autoencoder (SAE) rewrites a site's activation `x` as a sparse, non-negative
# combination of many learned directions (latents) plus a bias: `x ~ b_dec + sum_i f_i(x) W_dec[i]`.
# This notebook, on the default model (SmolLM2-135M-Instruct):
#
# 1. **trains** a small TopK SAE on the middle residual stream (`blocks.15.hook_resid_post`) from
#    the demo corpus shipped with `interp` (`interp.sae.train`, the same pipeline as
#    `interp sae train CONFIG`);
# 2. **browses latents**: the contexts on which a few latents fire most, their activation
#    histograms and the tokens they promote;
# 3. **loads SAELens-format files** into analysis code with `interp.sae.load`: a file written by
#    SAELens itself, and our SAE, which training saved in SAELens's layout;
# 4. **splices** the SAE into the model and measures the **CE loss recovered**.
#
# To take a few minutes on a 2-core CPU the SAE is small (2,048 latents, k = 32), sees about
# 400k tokens (a few passes over 320 rows of the corpus) and is evaluated on 16 held-out rows.
# It is a demonstration of the workflow, not a good SAE: `data/sae_topk.yaml` trains a 4,096-latent
# SAE on the whole corpus and a million tokens.

# %%
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch
from IPython.display import HTML

import interp
from interp.runs import RunStore
from interp.sae import TrainConfig
from interp.viz.latents import activation_histogram, context_html, logit_effects, stored_intervals_html, training_curves

workdir = Path(tempfile.mkdtemp(prefix="interp-sae-notebook-"))  # runs and the activation cache go here

# %% [markdown]
# ## 1. Train
#
# A training job is one validated config (the fields of `data/sae_topk.yaml`). Activations are
# computed once into a float16 disk cache and shuffled across rows; the run in the results store
# holds the training log, metrics on held-out rows, per-latent statistics and the SAE itself.

# %%
config = TrainConfig.model_validate({
    "model": "smollm2-135m",
    "device": "cpu",
    "training_tokens": 400_000,
    "checkpoint_every": 0,
    "seed": 0,
    "data": {"source": {"kind": "demo"}, "context_size": 128, "max_rows": 336, "eval_rows": 16},
    "store": {"batch_size": 4096, "buffer_rows": 64, "model_batch_size": 16, "cache": True,
              "cache_dir": str(workdir / "activations")},
    "optim": {"warmup_steps": 10, "decay_steps": 20, "dead_after_tokens": 100_000},
    "saes": [{"name": "topk", "site": "blocks.15.hook_resid_post", "d_sae": 2048,
              "activation": {"kind": "topk", "k": 32}}],
    "features": {"top_k": 10, "context": 8, "n_logits": 8},
})
runs = RunStore(workdir / "runs")
run = interp.sae.train(config, runs, progress=False)
pd.DataFrame(run.read_json("metrics")).T[["l0", "fvu", "explained_variance", "dead_fraction", "ce_recovered"]]

# %%
training_curves(run.read_table("train_log"))

# %% [markdown]
# ## 2. Browse latents
#
# After training, the pipeline computed per-latent statistics on the held-out rows: density,
# the top activating contexts (with the activation on every token of the window), a histogram of
# non-zero activations and the direct logit effects (the decoder direction read through the final
# norm's weight and the unembedding). The app's SAE page reads the same tables. We pick a few
# latents that fire on some, but not most, tokens.

# %%
stats = run.read_tensors("features-topk")
table = run.read_table("features-topk")
vocab = dict(run.read_table("vocab-topk")[["token_id", "text"]].itertuples(index=False))
alive = table[(table.density > 0.002) & (table.density < 0.05)]
chosen = alive.sort_values("max_activation", ascending=False).latent.head(4).tolist()
table.loc[chosen, ["latent", "density", "max_activation", "top_logits"]]


# %%
def contexts(latent: int, n: int = 5) -> str:
    """The latent's top contexts as shaded HTML (darker = stronger activation; the top token outlined)."""
    values = stats["top_values"][latent]
    lines = []
    for slot in range(n):
        if values[slot] <= 0:
            break
        tokens = [vocab.get(int(t)) if t >= 0 else None for t in stats["context_tokens"][latent, slot]]
        acts = stats["context_acts"][latent, slot].tolist()
        lines.append(context_html(tokens, acts, float(values[0]), centre=len(tokens) // 2))
    return f"<h4>latent {latent}</h4>" + "".join(lines)


HTML("".join(contexts(latent) for latent in chosen))

# %% [markdown]
# Top contexts show a latent only at its strongest. The run also keeps a uniform sample of tokens
# from each fifth of every latent's activation range `(0, max]`, highest first, to see whether
# weaker activations mean the same thing:

# %%
HTML(stored_intervals_html(stats, vocab, chosen[0]))

# %%
first = chosen[0]
activation_histogram(stats["hist_counts"][first].tolist(), stats["hist_edges"].tolist(),
                     title=f"latent {first}: non-zero activations on held-out tokens")

# %%
row = table.loc[first]
logit_effects(row.top_logits, row.top_logit_values, row.bottom_logits, row.bottom_logit_values,
              title=f"latent {first}: direct logit effects")

# %% [markdown]
# The same contexts as plain text, the top token in `[[ ]]`, for a terminal:

# %%
def plain(latent: int, slot: int) -> str:
    ids = stats["context_tokens"][latent, slot].tolist()
    centre = len(ids) // 2
    return "".join(f"[[{vocab[t]}]]" if i == centre else vocab[t] for i, t in enumerate(ids) if t >= 0)


pd.DataFrame([{"latent": latent, "activation": float(stats["top_values"][latent, slot]), "context": plain(latent, slot)}
              for latent in chosen for slot in range(3) if stats["top_values"][latent, slot] > 0])

# %% [markdown]
# ## 3. Load SAELens-format SAEs into analysis code
#
# `interp.sae.load(path)` reads SAELens's layout (`cfg.json` + `sae_weights.safetensors`, every
# SAELens architecture and version 5 and 6 configs) and sparsify's. Two examples:
#
# * a TopK SAE that **SAELens 6 itself wrote** for a tiny test model (shipped with the tests,
#   together with SAELens's own encodings of 32 inputs): loaded here, it reproduces SAELens's
#   latents and reconstructions;
# * **our SAE**, which training saved under `<run>/saes/topk/` in the same layout (so SAELens's
#   `SAE.load_from_disk` reads it too).

# %%
saelens_dir = Path("tests/fixtures/sae/saelens_topk")
from_saelens = interp.sae.load(saelens_dir)
from safetensors.torch import load_file

reference = load_file(str(saelens_dir / "expected.safetensors"))  # SAELens's outputs on inputs x
with torch.no_grad():
    latents = from_saelens.encode(reference["x"]).dense()
    recon = from_saelens(reference["x"])
print(from_saelens)
print("max |latents - SAELens latents| =", float((latents - reference["latents"]).abs().max()))
print("max |recon - SAELens recon|     =", float((recon - reference["recon"]).abs().max()))

# %%
sae_dir = run.path / "saes" / "topk"
print(sorted(p.name for p in sae_dir.iterdir()))
sae = interp.sae.load(sae_dir)
sae

# %% [markdown]
# The loaded SAE is an ordinary module: encode any activations of its site.

# %%
model = interp.load_model()
prompt = "The Python interpreter reads the source file and compiles it to bytecode."
_, cache = model.run_with_cache([prompt], sites=[sae.site])
with torch.no_grad():
    dense = sae.encode(cache[sae.site][0]).dense()  # (position, latent)
tokens = [model.tokenizer.decode([t]) for t in model.to_tokens([prompt]).input_ids[0].tolist()]
strongest = dense.max(dim=0).values.topk(5).indices.tolist()
pd.DataFrame({f"latent {i}": dense[:, i].tolist() for i in strongest}, index=tokens).round(2)

# %% [markdown]
# ## 4. Splice the SAE in and measure CE loss recovered
#
# `interp.sae.splice(sae)` is an intervention that replaces the site's value by the SAE's
# reconstruction. The next-token cross-entropy of the spliced model, against the clean model and
# against zero-ablating the site, gives the **CE loss recovered**
# `(CE_zero - CE_sae) / (CE_zero - CE_clean)`: 1 means the SAE loses nothing the model uses.
# We compute it by hand on the held-out rows (leaving the first positions, which the SAE was not
# trained on, untouched) and compare with `interp.sae.evaluate`, which the training run used.
# `splice(sae, error_term=True)` adds the reconstruction error back: the forward is then
# unchanged, but latents can be edited on the computation path.

# %%
held_out = run.read_tensors("eval_tokens")
ids, keep = held_out["token_ids"], held_out["keep"]


def next_token_ce(interventions) -> float:
    logits = model.run(ids, interventions).double()
    return float(torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()))


zero = interp.Replace(site=sae.site, fn=lambda value, site: torch.where(keep.unsqueeze(-1), 0.0, value))
with torch.no_grad():
    ce = {
        "clean": next_token_ce([]),
        "sae": next_token_ce([interp.sae.splice(sae, mask=keep)]),
        "zero": next_token_ce([zero]),
        "sae + error term": next_token_ce([interp.sae.splice(sae, mask=keep, error_term=True)]),
    }
recovered = (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["clean"])
metrics, _ = interp.sae.evaluate(model, {"topk": sae}, ids, keep)["topk"]
print({name: round(value, 4) for name, value in ce.items()})
print(f"CE loss recovered: {recovered:.3f} by hand, {metrics.ce_recovered:.3f} from interp.sae.evaluate")

# %% [markdown]
# The run lives in a temporary directory. To browse it in the app instead, run
# `python -m interp app --runs <workdir>/runs` before this cell, or train into a lasting
# `RunStore("data/runs")`. Here we remove it.

# %%
shutil.rmtree(workdir)
