"""Feature statistics for browsing latents: top contexts, histograms, density and logit effects.

What a feature page (Neuronpedia, SAEDashboard, our app) shows for latent ``i``, computed once and
stored in the run so the page never recomputes:

* **Top activating contexts**, found by a *streaming top-k*: for every batch of token rows, the
  ``top_k`` largest activations of each latent in that batch are merged with the best so far
  (``topk`` over the concatenation), keeping for each the row, the position, and a window of
  ``context`` tokens on each side *with the latent's activation on every token of the window*, so a
  page can highlight the text without running the model. One pass, memory ``d_sae * top_k * window``.
* **Activation histogram** of the non-zero activations on log-spaced bins shared by all latents
  (edges fixed from the first batch's largest activation, from ``1e-5`` of it to 4x it); a page
  can re-bin or restrict it to the latent's range.
* **Density**: fraction of tokens on which the latent fired, and its log10.
* **Logit effects**: the decoder direction read through the unembedding, ``W_dec[i] @ W_U^T``: which
  next tokens a latent promotes (top) and suppresses (bottom) when it fires. The final norm sits in
  between. For RMSNorm (Llama, SmolLM2, Qwen) we multiply the direction elementwise by the norm's
  weight ``g`` (Gemma: ``1 + g``) and drop the division by the token's RMS, a positive per-token
  scale that changes magnitudes but not the ranking; for LayerNorm (GPT-2, NeoX) we also subtract the
  direction's mean, which LayerNorm removes. This is the usual "direct logit effect"; it ignores the
  norm's dependence on the rest of the residual stream.

``top_rows`` index the rows the statistics were computed on, in the order given (in a training
run: the held-out rows of ``eval_tokens``). Stored per SAE ``<name>`` in the run: tensors
``features-<name>`` (``top_values``, ``top_rows``,
``top_positions``, ``context_tokens``, ``context_acts``, ``hist_counts``, ``hist_edges``, ``density``,
``logit_top_ids``/``_values``, ``logit_bottom_ids``/``_values``) and a table ``features-<name>`` (one
row per latent: density, log10 density, max activation, top and bottom logit tokens as text), plus a
``vocab-<name>`` table mapping every token id appearing in contexts or logit lists to its text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.sae.sae import SAE

HIST_BINS = 64
LOGIT_CHUNK = 256


@dataclass
class FeatureStats:
    """Browsing statistics of every latent of one SAE (shapes: latents first)."""

    top_values: Float[Tensor, "d_sae top_k"]
    top_rows: Int[Tensor, "d_sae top_k"]
    top_positions: Int[Tensor, "d_sae top_k"]
    context_tokens: Int[Tensor, "d_sae top_k window"]
    context_acts: Float[Tensor, "d_sae top_k window"]
    hist_counts: Int[Tensor, "d_sae bins"]
    hist_edges: Float[Tensor, " edges"]
    density: Float[Tensor, " d_sae"]
    logit_top_ids: Int[Tensor, "d_sae n_logits"]
    logit_top_values: Float[Tensor, "d_sae n_logits"]
    logit_bottom_ids: Int[Tensor, "d_sae n_logits"]
    logit_bottom_values: Float[Tensor, "d_sae n_logits"]

    def tensors(self) -> dict[str, Tensor]:
        return {k: v.contiguous() for k, v in self.__dict__.items()}

    def table(self, tokenizer) -> pd.DataFrame:
        """One row per latent: density, max activation, top/bottom logit tokens as text."""
        decode = _decoder(tokenizer)
        density = self.density.numpy()
        return pd.DataFrame(
            {
                "latent": np.arange(len(density)),
                "density": density,
                "log10_density": np.log10(density + 1e-10),
                "max_activation": self.top_values[:, 0].numpy(),
                "top_logits": [[decode(int(i)) for i in row] for row in self.logit_top_ids],
                "top_logit_values": [row.tolist() for row in self.logit_top_values],
                "bottom_logits": [[decode(int(i)) for i in row] for row in self.logit_bottom_ids],
                "bottom_logit_values": [row.tolist() for row in self.logit_bottom_values],
            }
        )

    def vocab(self, tokenizer) -> pd.DataFrame:
        """Text of every token id the stored contexts and logit lists use."""
        decode = _decoder(tokenizer)
        ids = torch.cat([self.context_tokens.flatten(), self.logit_top_ids.flatten(), self.logit_bottom_ids.flatten()])
        unique = sorted(int(i) for i in ids.unique() if i >= 0)
        return pd.DataFrame({"token_id": unique, "text": [decode(i) for i in unique]})


def _decoder(tokenizer):
    cache: dict[int, str] = {}

    def decode(token: int) -> str:
        if token not in cache:
            cache[token] = tokenizer.decode([token])
        return cache[token]

    return decode


class _TopK:
    """Streaming per-latent top-k with context windows."""

    def __init__(self, d_sae: int, top_k: int, context: int) -> None:
        self.k, self.context = top_k, context
        window = 2 * context + 1
        self.values = torch.full((d_sae, top_k), -torch.inf)
        self.rows = torch.full((d_sae, top_k), -1, dtype=torch.long)
        self.positions = torch.full((d_sae, top_k), -1, dtype=torch.long)
        self.tokens = torch.full((d_sae, top_k, window), -1, dtype=torch.long)
        self.acts = torch.zeros((d_sae, top_k, window))

    def add(self, dense: Float[Tensor, "rows pos d_sae"], ids: Int[Tensor, "rows pos"], row_offset: int) -> None:
        rows, pos, d_sae = dense.shape
        k = min(self.k, rows * pos)
        flat = dense.reshape(rows * pos, d_sae)
        best = flat.topk(k, dim=0)  # (k, d_sae)
        values, where = best.values.t(), best.indices.t()  # (d_sae, k)
        row, position = where // pos, where % pos
        offsets = torch.arange(-self.context, self.context + 1)
        window_pos = position.unsqueeze(-1) + offsets  # (d_sae, k, window)
        inside = (window_pos >= 0) & (window_pos < pos)
        clamped = window_pos.clamp(0, pos - 1)
        row_e = row.unsqueeze(-1).expand_as(clamped)
        tokens = torch.where(inside, ids[row_e, clamped], torch.full_like(clamped, -1))
        latent = torch.arange(d_sae).view(d_sae, 1, 1).expand_as(clamped)
        acts = torch.where(inside, dense[row_e, clamped, latent], torch.zeros(()))
        values = torch.where(values > 0, values, torch.full_like(values, -torch.inf))
        merged_values = torch.cat([self.values, values], dim=1)
        keep = merged_values.topk(self.k, dim=1).indices
        self.values = merged_values.gather(1, keep)
        self.rows = torch.cat([self.rows, row + row_offset], dim=1).gather(1, keep)
        self.positions = torch.cat([self.positions, position], dim=1).gather(1, keep)
        window = self.tokens.shape[-1]
        index3 = keep.unsqueeze(-1).expand(-1, -1, window)
        self.tokens = torch.cat([self.tokens, tokens], dim=1).gather(1, index3)
        self.acts = torch.cat([self.acts, acts], dim=1).gather(1, index3)


def logit_effects(
    sae: SAE, model, n_logits: int = 10
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top and bottom ``n_logits`` direct logit effects of every decoder row (see the module docstring)."""
    norm = model.arch.norm(model.arch.final_norm())
    W_U = model.arch.unembedding().detach().float().cpu()
    directions = norm.linear_part(sae.W_dec.detach().float()).cpu()
    parts = ([], [], [], [])
    for start in range(0, directions.shape[0], LOGIT_CHUNK):
        logits = directions[start : start + LOGIT_CHUNK] @ W_U.t()
        top, bottom = logits.topk(n_logits, dim=1), logits.topk(n_logits, dim=1, largest=False)
        for part, value in zip(parts, (top.indices, top.values, bottom.indices, bottom.values), strict=True):
            part.append(value)
    top_ids, top_values, bottom_ids, bottom_values = (torch.cat(p) for p in parts)
    return top_ids, top_values, bottom_ids, bottom_values


@torch.no_grad()
def feature_stats(
    sae: SAE,
    model,
    batches: Iterable[tuple[Float[Tensor, "rows pos d_in"], Int[Tensor, "rows pos"], torch.Tensor]],
    top_k: int = 20,
    context: int = 8,
    n_logits: int = 10,
) -> FeatureStats:
    """Statistics over batches of ``(activations, token ids, keep mask)`` (rows in a fixed order)."""
    tracker = _TopK(sae.d_sae, top_k, context)
    counts = torch.zeros((sae.d_sae, HIST_BINS), dtype=torch.long)
    fired = torch.zeros(sae.d_sae, dtype=torch.float64)
    edges: Tensor | None = None
    n_tokens, row_offset = 0, 0
    for acts, ids, keep in batches:
        rows, pos = ids.shape
        dense = sae.encode(acts.to(sae.device)).dense().float().cpu().reshape(rows, pos, sae.d_sae)
        dense = dense * keep.unsqueeze(-1)
        tracker.add(dense, ids, row_offset)
        flat = dense.reshape(-1, sae.d_sae)[keep.reshape(-1)]
        n_tokens += flat.shape[0]
        fired += (flat > 0).sum(dim=0).double()
        if edges is None:
            top = max(float(flat.max()), 1e-6)
            edges = torch.logspace(np.log10(top * 1e-5), np.log10(top * 4), HIST_BINS + 1)
        latent, value = (flat > 0).t().nonzero(as_tuple=True)
        bins = (torch.bucketize(flat.t()[latent, value], edges) - 1).clamp(0, HIST_BINS - 1)
        counts.view(-1).index_add_(0, latent * HIST_BINS + bins, torch.ones_like(bins))
        row_offset += rows
    top_ids, top_values, bottom_ids, bottom_values = logit_effects(sae, model, n_logits)
    empty = ~torch.isfinite(tracker.values)  # slots no firing token filled
    return FeatureStats(
        top_values=tracker.values.masked_fill(empty, 0.0),
        top_rows=tracker.rows.masked_fill(empty, -1),
        top_positions=tracker.positions.masked_fill(empty, -1),
        context_tokens=tracker.tokens.masked_fill(empty.unsqueeze(-1), -1),
        context_acts=tracker.acts.masked_fill(empty.unsqueeze(-1), 0.0),
        hist_counts=counts,
        hist_edges=edges if edges is not None else torch.zeros(HIST_BINS + 1),
        density=(fired / max(n_tokens, 1)).float(),
        logit_top_ids=top_ids,
        logit_top_values=top_values,
        logit_bottom_ids=bottom_ids,
        logit_bottom_values=bottom_values,
    )


def save_features(run, name: str, stats: FeatureStats, tokenizer) -> None:
    """Store ``stats`` in a run (tensors, a per-latent table and the vocabulary they use)."""
    run.write_tensors(f"features-{name}", stats.tensors())
    run.write_table(f"features-{name}", stats.table(tokenizer))
    run.write_table(f"vocab-{name}", stats.vocab(tokenizer))
