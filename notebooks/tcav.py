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
# # TCAV with significance, and GCAV, on the default model
#
# Do French, negation and past tense matter when SmolLM2-135M answers " No" to a false yes/no
# question ("Question: Is fire cold? Answer:")? For each concept we train a CAV at several layers,
# measure the directional derivative of the logit difference " No" - " Yes" along it (TCAV), and
# test each layer against random concepts. Runs as a plain script in a few minutes on a CPU.

# %%
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from pathlib import Path

import interp
from interp.concepts import TokenSelector, load_concept, load_target, run_tcav
from interp.concepts.gcav import gcav
from interp.viz.concepts import probe_accuracy, random_distribution, tcav_grid, tcav_lines

ROOT = Path.cwd() if (Path.cwd() / "data" / "concepts").is_dir() else Path.cwd().parent
DATA = ROOT / "data" / "concepts"
model = interp.load_model()
concepts = [load_concept(DATA / f"{name}.jsonl") for name in ("french", "negation", "past_tense")]
pool = load_concept(DATA / "random.jsonl")
target = load_target(model, DATA / "yes_no.jsonl")
len(target.prompts), [len(c) for c in concepts], len(pool)

# %% [markdown]
# One call reads every layer for every concept and random set in one pass, trains 10 CAVs per
# concept per layer on disjoint parts of the concept against disjoint random sets (the null:
# 10 random-vs-random CAVs), takes the target's gradients once, and tests. The mean-difference
# classifier keeps it quick; `classifier="sgd"` is the reference TCAV's.

# %%
result = run_tcav(
    model, concepts, pool, target, layers=[2, 6, 10, 14, 18, 22, 26], selector=TokenSelector("mean"),
    classifier="mean_diff", n_random=10, n_permutations=1000, seed=0,
)
result.tests[["concept", "layer", "concept_mean", "random_mean", "diff_low", "diff_high", "p_t", "p_perm", "p_bh",
              "significant", "accuracy"]].round(3)

# %% [markdown]
# The grid: a star marks a (concept, layer) that differs from random after Bonferroni correction.

# %%
tcav_grid(result.tests)

# %%
tcav_lines(result.tests)

# %% [markdown]
# A TCAV score only means something if the CAV reads the concept: held-out accuracy per layer.

# %%
probe_accuracy(result.tests)

# %% [markdown]
# What one test compares: the concept's 10 runs against the 10 random-vs-random runs.

# %%
best = result.tests.sort_values("p_t").iloc[0]
random_distribution(result.scores, best.concept, int(best.layer))

# %% [markdown]
# ## GCAV: one concept vector across layers
#
# Align each concept's per-layer CAVs into one global vector, decode it into every layer, and
# compare the spread of TCAV scores across layers before and after.

# %%
aligned = gcav({c.name: result.cavs[c.name] for c in concepts}, result.cavs["random"], result.sens, dim=32, seed=0)
aligned.variance.round(4)

# %%
aligned.table.round(3)
