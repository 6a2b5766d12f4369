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
# # Steering the default model
#
# A sentiment steering vector on SmolLM2-135M: built from the 120 positive/negative sentence pairs
# shipped in `data/steering/sentiment.jsonl`, swept over strength at two layers, and judged by the
# table that matters: how far it moves the behaviour (log-odds of positive against negative words)
# against how far it pushes the model off its own distribution (KL per generated token).
# Runs top to bottom on a CPU in a few minutes (`python notebooks/steering.py`).

# %%
import interp
from interp.steering import TokenScore, build_vectors, evaluate, load_contrast, steer, strength_sweep
from interp.viz.steering import effect_vs_kl, token_kl_strip

model = interp.load_model()
contrast = load_contrast("data/steering/sentiment.jsonl")
len(contrast), contrast.pairs[0]

# %% [markdown]
# ## Extraction: every method at two layers from one pass over the pairs
#
# The mean difference (CAA) keeps the average shift between the sides; repeng's PCA direction has
# unit norm. Both record the median token norm of each layer, so a strength can be given as a
# fraction of a typical token's norm.

# %%
vectors = build_vectors(model, contrast, "resid_post", layers=[9, 18], methods=("mean_diff", "pca_diff"))
mean = vectors["mean_diff"]
for layer in mean.layers:
    cosine = (mean.unit(layer) @ vectors["pca_diff"].unit(layer)).item()
    print(f"layer {layer}: |mean diff| = {mean.vector(layer).norm():.1f}, median token norm = {mean.token_norms[mean.layers.index(layer)]:.1f}, cos(mean, PCA) = {cosine:.2f}")

# %% [markdown]
# ## A strength sweep: effect against KL per layer

# %%
score = TokenScore.from_words(
    model,
    [" good", " great", " wonderful", " amazing", " excellent", " beautiful", " perfect", " happy", " nice", " best"],
    [" bad", " terrible", " awful", " horrible", " boring", " worst", " poor", " sad", " disappointing", " ugly"],
)
prompts = ["I think the weather today is", "My neighbour told me that the film"]
sweep = strength_sweep(model, mean, prompts, [-0.25, 0.0, 0.125, 0.25, 0.5], max_new_tokens=8, score=score)
sweep.table[["layer", "strength", "kl", "kl_first", "perplexity", "score", "score_delta"]].round(3)

# %%
effect_vs_kl(sweep.table)

# %% [markdown]
# ## Samples: steered next to unsteered, and where the steering acted

# %%
sweep.samples[(sweep.samples.layer == 18)][["strength", "prompt", "baseline", "steered"]]

# %%
run = evaluate(model, prompts[:1], steer(mean, 0.25, "norm", layers=[18], scope="generated"), max_new_tokens=12, score=score)
tokens = [model.tokenizer.decode([t]) for t in run.generation.generated[0].tolist()]
token_kl_strip(tokens, run.kl[0].tolist(), title=f"layer 18, strength 0.25, generated tokens only: {run.generation.texts[0]!r}")
