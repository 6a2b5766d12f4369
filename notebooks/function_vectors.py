# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Function vectors on the default model
#
# A few attention heads carry the task that demonstrations in a prompt show (Todd et al. 2024).
# Here we find them for the antonym task on SmolLM2-135M, sum their mean outputs into a function
# vector, and add it to zero-shot prompts (`"Q: fast\nA:"`) to see whether the model then answers
# with an antonym, against a vector built from as many random heads.
#
# The settings are smaller than the paper's (5 shots instead of 10, fewer prompts) so that the
# notebook runs in a few minutes on a CPU.

# %%
import interp
from interp.steering.fv_tasks import load_icl_task, single_token_fraction
from interp.steering.function_vectors import evaluate_function_vector, extract_function_vector
from interp.viz.function_vectors import accuracy_by_layer, aie_heatmap

model = interp.load_model()
task = load_icl_task("antonyms")
print(model)
print(f"{len(task)} pairs, {single_token_fraction(model.tokenizer, task):.0%} of answers are one token")

# %% [markdown]
# ## Which heads carry the task?
#
# Mean last-token head activations over 5-shot prompts the model answers correctly, then each
# head's average indirect effect: how much setting that one head to its mean raises the probability
# of the right answer on prompts whose demonstration labels were shuffled.

# %%
found = extract_function_vector(model, task, n_shots=5, n_mean_prompts=32, n_effect_prompts=8, n_top_heads=10)
print(f"kept {found.n_kept} of {found.n_clean} clean prompts; top heads: {found.heads}")
aie_heatmap(found.head_table(), title="antonyms: average indirect effect per head")

# %% [markdown]
# ## Does the vector alone do the task?
#
# Zero-shot accuracy on held-out words, with the function vector added to the last token's
# residual stream after each layer of a sweep, against the random-heads vector, no vector, and
# 5-shot in-context prompts.

# %%
accuracy = evaluate_function_vector(model, found, layers=[4, 8, 10, 12, 14, 16, 20])
accuracy

# %%
accuracy_by_layer(accuracy, title="antonyms: zero-shot accuracy with the function vector")
