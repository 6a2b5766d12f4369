"""One forward pass that reads sites through the hook layer, stopping as soon as it has them all.

Without gradients the forward is *truncated*: the session is opened with
``stop_after_capture=True``, so the hook that captures the last requested site ends the pass
(a middle-layer read costs half the model, and no logits are computed). Values are bitwise those of
``model.run_with_cache`` on the same batch, since the same hooks capture the same tensors.

With ``lm_loss_grads`` the whole forward runs and a backward pass gives, at every site, the
gradient of the language-model loss: next-token cross-entropy summed over the tokens whose input
and target are both real (padding is neither predicted nor used as a target).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.hooks import CaptureComplete
from interp.model import Model
from interp.tokenize import TokenBatch


def lm_loss_sum(batch: TokenBatch) -> Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, ""]]:
    """A ``run_with_cache(grads=...)`` metric: next-token cross-entropy summed over real tokens."""
    ids, mask = batch.input_ids, batch.attention_mask

    def metric(logits: Float[Tensor, "batch pos vocab"]) -> Float[Tensor, ""]:
        target = ids[:, 1:].to(logits.device)
        valid = (mask[:, 1:] * mask[:, :-1]).to(logits.device).bool()
        target = torch.where(valid, target, torch.full_like(target, -100))
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), target.flatten(), reduction="sum", ignore_index=-100
        )

    return metric


def capture_batch(
    model: Model,
    sites: Sequence[str],
    batch: TokenBatch | Int[Tensor, "batch pos"],
    lm_loss_grads: bool = False,
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Activations at ``sites`` for one batch (and LM-loss gradients), on the model's device.

    Tensors keep the site's shape ``(batch, pos, ...)`` and the model's dtype.
    """
    if isinstance(batch, torch.Tensor):
        batch = TokenBatch.from_ids(batch)
    batch = batch.to(model.device)
    sites = list(dict.fromkeys(sites))
    if lm_loss_grads:
        _, cache = model.run_with_cache(batch, sites=sites, grads=lm_loss_sum(batch))
        return {s: cache[s] for s in sites}, {s: cache.grads[s] for s in sites}
    with torch.no_grad(), model.hooks(capture=sites, stop_after_capture=True) as session:
        try:
            model.forward(batch, session)
        except CaptureComplete:
            pass
        cache = session.cache
    return {s: cache[s] for s in sites}, None
