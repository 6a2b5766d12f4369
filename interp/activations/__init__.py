"""Reading activations at scale: many prompts, many sites, one forward per batch, cached on disk.

Every method that learns from a model's activations (SAEs, steering vectors, concept vectors)
reads them here, so they all see the same numbers for the same request::

    from interp.activations import extract, LAST, ALL, SpanMean

    acts = extract(model, prompts, ["blocks.3.hook_resid_post", "blocks.6.hook_resid_post"], LAST)
    acts["blocks.3.hook_resid_post"]            # (n_prompts, d_model)
    spans = extract(model, prompts, "blocks.3.hook_resid_post", SpanMean(["Paris", (2, 5), ...]))
    tokens = extract(model, prompts, "blocks.3.hook_mlp_out", ALL, cache=True)
    prompt, position = tokens.index()           # where each of the (n_tokens, d_model) rows came from

What it does:

* **Inputs** are prompts, a left-padded :class:`~interp.tokenize.TokenBatch`, token ids, or a
  (memory-mapped) numpy array of unpadded token rows; prompts are run in consecutive batches, each
  left-padded to its own longest prompt.
* **Selection** (:mod:`.selection`): the last token, the mean over a span (token range or
  substring per prompt), or every real token. Positions are the prompt's own, so padding is never
  selected, whatever the batch.
* **Batches** (:mod:`.batching`) hold as many prompts as fit a memory budget in bytes
  (``budget_bytes``), optionally capped at ``max_rows``.
* **Capture** (:mod:`.forward`) goes through the hook layer only (``model.hooks(capture=...)``
  with ``stop_after_capture``): every site in one forward, which stops after the last of them.
  Optional LM-loss gradients run the whole forward and a backward.
* **Cache** (:mod:`.disk`, :mod:`.keys`): per site, a raw memory-mapped array plus ``meta.json`` under
  a key of the model's identity (name, config, a fingerprint of every weight), the site, a hash of
  the token ids and the options.

Guarantees:

* selected values equal ``model.run_with_cache`` values at the selected positions (bitwise for
  single tokens in the same batch; batch shapes may change the last bits of a float);
* batching changes no result beyond that rounding, and results keep the inputs' order;
* a cached call runs no forward and returns the same bytes as the call that built the cache; any
  change of model weights, site, tokens, selection, dtype or gradients uses another cache;
* a cache is published by one rename when complete, so no reader ever sees a partial one; an
  interrupted build resumes from its last flushed batch; nothing is pickled.
"""

from interp.activations.batching import DEFAULT_BUDGET_BYTES, plan_batches, row_bytes
from interp.activations.errors import ActivationCacheError, ActivationsError
from interp.activations.extract import Activations, extract
from interp.activations.forward import capture_batch, lm_loss_sum
from interp.activations.keys import model_identity
from interp.activations.selection import ALL, LAST, AllTokens, LastToken, Picks, Selection, SpanMean

__all__ = [
    "ALL",
    "DEFAULT_BUDGET_BYTES",
    "LAST",
    "ActivationCacheError",
    "Activations",
    "ActivationsError",
    "AllTokens",
    "LastToken",
    "Picks",
    "Selection",
    "SpanMean",
    "capture_batch",
    "extract",
    "lm_loss_sum",
    "model_identity",
    "plan_batches",
    "row_bytes",
]
