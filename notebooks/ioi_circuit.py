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
# # IOI circuit discovery: exact patching, AtP* and RelP
#
# Indirect object identification (Wang et al. 2022): in
# *"When Mary and John went to the store, John gave a drink to"* the model should say **Mary**
# (the indirect object, IO), not **John** (the subject, S). The metric is the logit difference
# `logit[IO] - logit[S]` at the last position.
#
# This notebook finds the components that carry the behaviour in the default model
# (SmolLM2-135M-Instruct, 30 layers x 9 heads):
#
# 1. **exact activation patching** of the residual stream (layer x position) and of every
#    attention head's output (layer x head), denoising: each component of the *corrupt* run (ABC
#    prompts with three unrelated names) is set to its value on the *clean* run, and we read how
#    much of the clean logit difference comes back (1 = all of it, 0 = none);
# 2. **AtP\***: the same maps estimated from a few forward and backward passes (attribution
#    patching with the QK fix and GradDrop);
# 3. **RelP**: attribution with LRP rules in the backward pass, against the exact effects;
# 4. **the heads found**: the heads with the largest exact effects, what the estimates say about
#    them, and where they look from the final position.
#
# To run in a few minutes on a 2-core CPU it uses **8 prompt pairs**; all layers, positions and
# heads are swept. More prompts (`n=64` and up) give tighter estimates on a GPU or with time.

# %%
import time

import pandas as pd

import interp
from interp.attribution import agreement, atp_star, relp
from interp.patching import patch_sweep
from interp.tasks import ioi_task
from interp.viz import heatmap
from interp.viz.attribution import scatter

model = interp.load_model()  # the embedded default, SmolLM2-135M-Instruct
model

# %% [markdown]
# ## The task
#
# `ioi_task` draws IOI prompts from Wang et al.'s templates (ABBA and BABA orders alternate) and
# pairs each with its ABC corruption: the same sentence with three other names, so nothing tells
# which name is the IO. Each pair tokenises to the same length, with the names at single
# positions.
#
# Prompts of different templates have different lengths and are aligned at the end (left
# padding), so only the last positions would mean the same thing in every prompt. For a readable
# layer x position map we draw a pool and keep 8 prompts of one template and one token length,
# four of each order (`task.subset`).

# %%
pool = ioi_task(model, n=240, seed=0, corruption="abc")
key = pd.DataFrame({"template": pool.examples["template"], "length": pool.clean.lengths.tolist(),
                    "order": pool.examples["order"]})
balanced = key.groupby(["template", "length"]).order.agg(lambda o: min((o == "ABBA").sum(), (o == "BABA").sum()))
template, length = balanced.idxmax()
same = key[(key.template == template) & (key.length == length)]
picked = same[same.order == "ABBA"].index[:4].tolist() + same[same.order == "BABA"].index[:4].tolist()
task = pool.subset(sorted(picked))
task.to_frame()[["clean", "corrupt", "io", "s", "order"]]

# %% [markdown]
# ## 1. Exact patching of the residual stream (layer x position)
#
# `patch_sweep` patches `resid_pre` of every layer at every position. The result keeps every
# example's metric for every cell; the heatmap shows the mean normalised value. The engine gives
# the same numbers as one full forward per cell but starts each forward at the patched block and
# position (its cost says how much of a naive sweep's FLOPs it spent).

# %%
started = time.perf_counter()
resid = patch_sweep(model, task, "resid_pre")
print(f"{resid.grid_shape[0]} layers x {resid.grid_shape[1]} positions in {time.perf_counter() - started:.0f} s, "
      f"{resid.cost.flop_fraction:.2f} of a naive sweep's FLOPs")
print(f"clean logit diff {resid.clean.mean():.2f}, corrupt {resid.corrupt.mean():.2f}")
heatmap(resid, title="resid_pre: share of the clean logit difference restored")

# %% [markdown]
# The positions where patching restores the behaviour trace where "which name is the IO" is held
# at each depth: at the name positions in early and middle layers (the second mention of S most
# of all; a single clean name in an otherwise corrupt prompt can also push the metric below the
# corrupt baseline, a negative value), and at the final position in the late layers (in this
# model from about layer 24, where patching the last position alone restores the clean logit
# difference).
#
# ## 2. Exact patching of every head (layer x head)
#
# `head_z` patches one head's output (its `z`, before the output projection) at every position.

# %%
started = time.perf_counter()
heads = patch_sweep(model, task, "head_z")
print(f"{heads.grid_shape[0] * heads.grid_shape[1]} heads in {time.perf_counter() - started:.0f} s")
heatmap(heads, title="head_z: share of the clean logit difference restored by one head")

# %% [markdown]
# ## 3. AtP*: the same maps from a few passes
#
# Attribution patching estimates every cell's effect as `(n(clean) - n(corrupt)) . dm/dn` on the
# corrupt run: 2 forwards and 1 backward for all cells of all sweeps. AtP* adds the QK fix
# (attention-probability changes computed exactly through the softmax) and GradDrop (a ranking
# score robust to cancelling direct and indirect effects). Its `values` are the signed estimate,
# so the heatmap reads like the exact one.

# %%
started = time.perf_counter()
star = atp_star(model, task, ["resid_pre", "head_z"])
print(f"AtP* on both sweeps in {time.perf_counter() - started:.0f} s "
      f"({star['head_z'].cost.forward_passes} forwards, {star['head_z'].cost.backward_passes:.1f} backwards)")
heatmap(star["head_z"], title="AtP* estimate, head_z")

# %% [markdown]
# ## 4. RelP vs exact
#
# RelP replaces the gradient by LRP relevance coefficients (LayerNorm/RMSNorm and the nonlinearity
# treated as linear in the backward pass, the gated product split evenly), which follow the
# patching effects more faithfully where the gradient is local. Each point below is one head:
# the estimate (x) against the exact effect (y), in logit-difference units; the diagonal is
# perfect agreement. The table gives Pearson and Spearman r over the cells, the recall of the ten
# heads with the largest exact effects among each method's top ten, and the sign agreement on them.

# %%
started = time.perf_counter()
relevance = relp(model, task, ["resid_pre", "head_z"])
print(f"RelP on both sweeps in {time.perf_counter() - started:.0f} s")
scatter(heads, [star["head_z"], relevance["head_z"]], title="Heads: estimated vs exact effect")

# %%
rows = []
for sweep, exact in [("resid_pre", resid), ("head_z", heads)]:
    for name, estimate in [("AtP*", star[sweep]), ("RelP", relevance[sweep])]:
        rows.append({"sweep": sweep, "method": name, **agreement(exact, estimate, top_k=10)})
pd.DataFrame(rows).round(3)

# %% [markdown]
# ## 5. The heads found
#
# The heads whose patching restores the most of the clean logit difference, with the estimates of
# both methods and AtP*'s rank (by its GradDrop score, out of 270 heads). For each head, the
# attention from the final position to the IO token and to the second mention of S on the clean
# prompts: in Wang et al.'s GPT-2 circuit, *name movers* attend to the IO and copy it, while
# *S-inhibition* heads attend to S2 and steer the name movers away from S.

# %%
summary = heads.summary_frame()
star_effect = star["head_z"].effects().mean(dim=0)
relp_effect = relevance["head_z"].effects().mean(dim=0)
gap = float(heads.clean.mean() - heads.corrupt.mean())
star_rank = star["head_z"].ranking().flatten().argsort(descending=True).argsort() + 1
summary["atp*"] = [float(star_effect[layer, head]) / gap for layer, head in zip(summary["layer"], summary["head"])]
summary["relp"] = [float(relp_effect[layer, head]) / gap for layer, head in zip(summary["layer"], summary["head"])]
summary["atp*_rank"] = star_rank.tolist()
top = summary.reindex(summary.normalized_mean.abs().sort_values(ascending=False).index).head(10)

# attention from the last position to the IO and to S2 (positions counted from the end)
layers = sorted(set(top["layer"]))
_, cache = model.run_with_cache(task.clean, sites=[f"blocks.{layer}.attn.hook_pattern" for layer in layers])
examples = range(len(task))
orders = task.examples["order"]
names = task.examples["name_positions"]  # the three name positions, sorted: ABBA = IO, S1, S2; BABA = S1, IO, S2
io_at = [names[e][0] if orders[e] == "ABBA" else names[e][1] for e in examples]
s2_at = [names[e][2] for e in examples]


def attention_to(layer: int, head: int, at: list[int]) -> float:
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
    return float(sum(pattern[e, head, -1, at[e]] for e in examples) / len(task))


top["attn_to_IO"] = [attention_to(layer, head, io_at) for layer, head in zip(top["layer"], top["head"])]
top["attn_to_S2"] = [attention_to(layer, head, s2_at) for layer, head in zip(top["layer"], top["head"])]
top[["layer", "head", "normalized_mean", "normalized_sem", "atp*", "relp", "atp*_rank", "attn_to_IO", "attn_to_S2"]].round(3)

# %% [markdown]
# `normalized_mean` is the exact effect (share of the clean-corrupt logit-difference gap restored,
# with its standard error over the 8 prompts); `atp*` and `relp` are the estimates on the same
# scale. With 8 prompts the ranking of the weaker heads is noisy; verify a candidate circuit by
# patching the chosen heads together (`interp.patching.patch_cells` with a tuple of cells) on a
# larger, held-out prompt set.
