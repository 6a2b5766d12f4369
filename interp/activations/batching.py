"""Batches sized by a memory budget: as many prompts per forward as fit in ``budget_bytes``.

The cost of a batch of ``rows`` prompts padded to ``width`` tokens is estimated as
``rows * row_bytes(width)``, where one row costs

* the captured values, kept until selection: ``width`` x (elements per token of every site) x the
  model's element size (attention patterns: heads x width x width);
* the forward's working set: about ``6 d_model + 3 d_mlp`` values per token of one block (the
  residual, normalised input, q/k/v/o and MLP activations, freed block by block) and one block's
  attention scores, ``heads x width x width`` float32 values;
* when logits are computed (a site past the blocks, or LM-loss gradients): ``width x d_vocab``
  float32 values; with gradients every block's working set is kept for the backward pass.

It is an estimate of the activations, not of the weights (they are already resident), and errs on
the high side for inference. Batches take consecutive prompts in order, so results never depend on
the budget beyond floating-point rounding of different batch shapes; a prompt too large for the
budget on its own still runs, alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from interp.activations.errors import ActivationsError
from interp.model import Model

DEFAULT_BUDGET_BYTES = 1 << 30


def _site_elements(model: Model, name: str, width: int) -> int:
    site = model.site(name)
    dims = model.dims
    sizes = {
        "batch": 1,
        "pos": width,
        "query_pos": width,
        "key_pos": width,
        "d_model": dims.d_model,
        "d_mlp": dims.d_mlp,
        "d_vocab": dims.d_vocab,
        "d_head": dims.d_head,
        "head": model.arch.n_heads_at(site) or 1,
    }
    return math.prod(sizes[axis] for axis in site.axes)


def row_bytes(model: Model, sites: Sequence[str], width: int, lm_loss_grads: bool = False) -> int:
    """Estimated memory of one prompt of ``width`` tokens in a forward reading ``sites``."""
    dims = model.dims
    element = torch.finfo(model.dtype).bits // 8
    captured = sum(_site_elements(model, name, width) for name in sites) * element
    block = width * (6 * dims.d_model + 3 * dims.d_mlp) * element + dims.n_heads * width * width * 4
    past_blocks = any(model.site(name).layer is None and model.site(name).kind not in ("embed", "pos_embed") for name in sites)
    logits = width * dims.d_vocab * 4 if (past_blocks or lm_loss_grads) else 0
    if lm_loss_grads:
        return 2 * captured + dims.n_layers * block + 3 * logits
    return captured + block + logits


def plan_batches(
    lengths: Sequence[int],
    cost: Callable[[int], int],
    budget_bytes: int,
    max_rows: int | None = None,
    start: int = 0,
) -> list[tuple[int, int]]:
    """Consecutive ranges ``(lo, hi)`` of prompts from ``start`` whose estimated cost fits the budget.

    ``cost(width)`` is the cost of one prompt padded to ``width``; a batch is as wide as its
    longest prompt. ``max_rows`` caps the prompts per batch.
    """
    if budget_bytes <= 0:
        raise ActivationsError(f"budget_bytes must be positive, got {budget_bytes}")
    if max_rows is not None and max_rows <= 0:
        raise ActivationsError(f"max_rows must be positive, got {max_rows}")
    lengths = [int(n) for n in lengths]
    known: dict[int, int] = {}

    def fits(rows: int, width: int) -> bool:
        if width not in known:
            known[width] = cost(width)
        return rows * known[width] <= budget_bytes

    batches = []
    lo = start
    while lo < len(lengths):
        hi, width = lo + 1, lengths[lo]
        while hi < len(lengths) and (max_rows is None or hi - lo < max_rows):
            wider = max(width, lengths[hi])
            if not fits(hi + 1 - lo, wider):
                break
            hi, width = hi + 1, wider
        batches.append((lo, hi))
        lo = hi
    return batches
