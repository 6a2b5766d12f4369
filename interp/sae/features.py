"""Feature statistics for browsing latents: top contexts, histograms, density and logit effects.

What a feature page (Neuronpedia, SAEDashboard, our app) shows for latent ``i``, computed once and
stored in the run so the page never recomputes:

* **Top activating contexts**, found by a *streaming top-k*: for every batch of token rows, the
  ``top_k`` largest activations of each latent in that batch are merged with the best so far
  (``topk`` over the concatenation), keeping for each the row, the position, and a window of
  ``context`` tokens on each side *with the latent's activation on every token of the window*, so a
  page can highlight the text without running the model. One pass, memory ``d_sae * top_k * window``.
* **Examples across the activation range** (SAEDashboard's "interval" examples): the top contexts
  show only what a latent does at its strongest, so the range ``(0, max]`` of each latent is cut
  into ``intervals`` equal intervals (edges at fractions ``0, 1/n, ..., 1`` of the latent's max
  activation; a token with activation ``a`` is in interval ``i`` when ``edges[i] < a <= edges[i+1]``)
  and ``per_interval`` firing tokens are sampled uniformly from each, with the same windows as the
  top contexts. The edges need the latent's max, so the statistics take **two
  streaming passes over the same rows**: the first finds the top-k (whose first entry is the max),
  the second samples. We chose this over bins on the shared log-spaced histogram edges because those
  edges are fixed from the first batch and shared by all latents, so a latent's range would cover an
  arbitrary, uneven handful of them, and because intervals in activation units are what a reader
  compares across pages. The second pass re-encodes the rows (the SAE encoder only, not the model).
  The sample is a *reservoir by random keys* (bottom-k sampling): every firing token gets a key, a
  62-bit integer hash of ``(seed, row, position, latent)``, and each ``(latent, interval)`` keeps the
  ``per_interval`` candidates with the smallest keys, merged batch by batch like the top-k. Keeping
  the smallest of i.i.d. uniform keys is a uniform sample without replacement, memory is
  ``d_sae * intervals * per_interval * window``, and because a key depends only on the token and the
  seed (not on a random stream) the sample is the same for any batching of the rows. Each interval
  also counts its firing tokens, so a page can say how much of the latent's mass it holds.
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
``logit_top_ids``/``_values``, ``logit_bottom_ids``/``_values``, and, unless ``intervals=0``,
``interval_edges`` ``(d_sae, intervals + 1)``, ``interval_counts`` ``(d_sae, intervals)``,
``interval_values``/``_rows``/``_positions`` ``(d_sae, intervals, per_interval)`` and
``interval_tokens``/``_acts`` ``(d_sae, intervals, per_interval, window)``, empty slots holding row
``-1``, value 0 and tokens ``-1``; runs written before these existed simply lack them) and a table ``features-<name>`` (one
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

from interp.errors import InvalidArgumentError
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
    interval_edges: Float[Tensor, "d_sae edges"] | None = None
    interval_counts: Int[Tensor, "d_sae intervals"] | None = None
    interval_values: Float[Tensor, "d_sae intervals per_interval"] | None = None
    interval_rows: Int[Tensor, "d_sae intervals per_interval"] | None = None
    interval_positions: Int[Tensor, "d_sae intervals per_interval"] | None = None
    interval_tokens: Int[Tensor, "d_sae intervals per_interval window"] | None = None
    interval_acts: Float[Tensor, "d_sae intervals per_interval window"] | None = None

    def tensors(self) -> dict[str, Tensor]:
        """Every statistic by name (the interval examples only when they were collected)."""
        return {k: v.contiguous() for k, v in self.__dict__.items() if v is not None}

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
        parts = [self.context_tokens, self.logit_top_ids, self.logit_bottom_ids, self.interval_tokens]
        ids = torch.cat([part.flatten() for part in parts if part is not None])
        unique = sorted(int(i) for i in ids.unique() if i >= 0)
        return pd.DataFrame({"token_id": unique, "text": [decode(i) for i in unique]})


def _decoder(tokenizer):
    cache: dict[int, str] = {}

    def decode(token: int) -> str:
        if token not in cache:
            cache[token] = tokenizer.decode([token])
        return cache[token]

    return decode


def _windows(
    dense: Float[Tensor, "rows pos d_sae"], ids: Int[Tensor, "rows pos"], row: Tensor, position: Tensor, latent: Tensor,
    context: int,
) -> tuple[Tensor, Tensor]:
    """Token ids and the latent's activations on ``context`` tokens either side of each
    ``(row, position, latent)`` (index tensors of one shape ``S``); both ``(*S, 2 * context + 1)``,
    tokens ``-1`` and activations 0 outside the row."""
    pos = ids.shape[1]
    offsets = torch.arange(-context, context + 1)
    window_pos = position.unsqueeze(-1) + offsets
    inside = (window_pos >= 0) & (window_pos < pos)
    clamped = window_pos.clamp(0, pos - 1)
    row_e = row.unsqueeze(-1).expand_as(clamped)
    latent_e = latent.unsqueeze(-1).expand_as(clamped)
    tokens = torch.where(inside, ids[row_e, clamped], torch.full_like(clamped, -1))
    acts = torch.where(inside, dense[row_e, clamped, latent_e], torch.zeros(()))
    return tokens, acts


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
        latent = torch.arange(d_sae).view(d_sae, 1).expand_as(row)
        tokens, acts = _windows(dense, ids, row, position, latent, self.context)
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


_MASK32 = 0xFFFFFFFF
EMPTY_KEY = torch.iinfo(torch.long).max


def _mix(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xor-shift-multiply rounds) of int64 values in ``[0, 2**32)``; the
    multipliers are below ``2**31`` so no product leaves int64."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x31848BAB) & _MASK32
    return x ^ (x >> 16)


def sample_keys(seed: int, row: Tensor, position: Tensor, latent: Tensor) -> Int[Tensor, " n"]:
    """The random key of each firing token: a 62-bit hash of ``(seed, row, position, latent)``."""
    h = _mix(torch.full_like(row, seed & _MASK32))
    for part in (row, position, latent):
        h = _mix(h ^ (part & _MASK32))
    low = _mix(h ^ 0x9E3779B9)
    return (h << 30) | (low >> 2)


class _IntervalSample:
    """Streaming uniform sample of ``per_interval`` firing tokens per (latent, interval), by random keys."""

    def __init__(self, edges: Float[Tensor, "d_sae edges"], per_interval: int, context: int, seed: int) -> None:
        d_sae, n_edges = edges.shape
        self.edges, self.n, self.per, self.context, self.seed = edges, n_edges - 1, per_interval, context, seed
        groups, window = d_sae * self.n, 2 * context + 1
        self.keys = torch.full((groups, per_interval), EMPTY_KEY, dtype=torch.long)
        self.values = torch.zeros((groups, per_interval))
        self.rows = torch.full((groups, per_interval), -1, dtype=torch.long)
        self.positions = torch.full((groups, per_interval), -1, dtype=torch.long)
        self.tokens = torch.full((groups, per_interval, window), -1, dtype=torch.long)
        self.acts = torch.zeros((groups, per_interval, window))
        self.counts = torch.zeros(groups, dtype=torch.long)

    def add(self, dense: Float[Tensor, "rows pos d_sae"], ids: Int[Tensor, "rows pos"], row_offset: int) -> None:
        row, position, latent = (dense > 0).nonzero(as_tuple=True)
        if row.numel() == 0:
            return
        value = dense[row, position, latent]
        interval = torch.searchsorted(self.edges[latent], value.unsqueeze(1)).squeeze(1) - 1
        group = latent * self.n + interval.clamp(0, self.n - 1)
        self.counts += torch.bincount(group, minlength=self.counts.shape[0])
        key = sample_keys(self.seed, row + row_offset, position, latent)
        # the batch's `per` smallest keys of each group: sort by key, then (stably) by group, and rank
        order = key.argsort(stable=True)
        order = order[group[order].argsort(stable=True)]
        sizes = torch.unique_consecutive(group[order], return_counts=True)[1]
        starts = torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
        rank = torch.arange(order.numel()) - starts
        chosen, slot = order[rank < self.per], rank[rank < self.per]
        new_keys = torch.full_like(self.keys, EMPTY_KEY)
        new_keys[group[chosen], slot] = key[chosen]
        new_index = torch.full_like(self.keys, -1)
        new_index[group[chosen], slot] = torch.arange(chosen.numel())
        merged = torch.cat([self.keys, new_keys], dim=1)
        keep = merged.topk(self.per, dim=1, largest=False).indices
        self.keys = merged.gather(1, keep)
        blank = self.keys == EMPTY_KEY  # an empty slot, old or new (ties among empties pick either)
        source = keep.where(keep < self.per, 0)
        self.values, self.rows, self.positions = (t.gather(1, source) for t in (self.values, self.rows, self.positions))
        index3 = source.unsqueeze(-1).expand(-1, -1, self.tokens.shape[-1])
        self.tokens, self.acts = self.tokens.gather(1, index3), self.acts.gather(1, index3)
        self.values[blank], self.rows[blank], self.positions[blank] = 0.0, -1, -1
        self.tokens[blank], self.acts[blank] = -1, 0.0
        g, j = ((keep >= self.per) & ~blank).nonzero(as_tuple=True)
        pick = chosen[new_index[g, keep[g, j] - self.per]]
        tokens, acts = _windows(dense, ids, row[pick], position[pick], latent[pick], self.context)
        self.values[g, j] = value[pick]
        self.rows[g, j] = row[pick] + row_offset
        self.positions[g, j] = position[pick]
        self.tokens[g, j], self.acts[g, j] = tokens, acts

    def stats(self) -> dict[str, Tensor]:
        """The samples, strongest first within each interval (empty slots last), shaped per latent."""
        order = self.values.argsort(dim=1, descending=True, stable=True)
        index3 = order.unsqueeze(-1).expand(-1, -1, self.tokens.shape[-1])
        d_sae = self.edges.shape[0]
        per_latent = (d_sae, self.n, self.per)
        return {
            "interval_edges": self.edges,
            "interval_counts": self.counts.view(d_sae, self.n),
            "interval_values": self.values.gather(1, order).view(per_latent),
            "interval_rows": self.rows.gather(1, order).view(per_latent),
            "interval_positions": self.positions.gather(1, order).view(per_latent),
            "interval_tokens": self.tokens.gather(1, index3).view(*per_latent, -1),
            "interval_acts": self.acts.gather(1, index3).view(*per_latent, -1),
        }


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


def _dense(sae: SAE, acts: Tensor, keep: Tensor) -> Float[Tensor, "rows pos d_sae"]:
    """The SAE's latents on a batch, zero on positions ``keep`` leaves out."""
    rows, pos = keep.shape
    dense = sae.encode(acts.to(sae.device)).dense().float().cpu().reshape(rows, pos, sae.d_sae)
    return dense * keep.unsqueeze(-1)


Batches = Iterable[tuple[Float[Tensor, "rows pos d_in"], Int[Tensor, "rows pos"], Tensor]]


@torch.no_grad()
def feature_stats(
    sae: SAE,
    model,
    batches: Batches,
    top_k: int = 20,
    context: int = 8,
    n_logits: int = 10,
    intervals: int = 5,
    per_interval: int = 5,
    seed: int = 0,
) -> FeatureStats:
    """Statistics over batches of ``(activations, token ids, keep mask)`` (rows in a fixed order).

    The SAE encodes on its own device; the statistics are gathered and returned on CPU, so the
    batches' tensors may be on any device.

    With ``intervals > 0`` the batches are read twice (see the module docstring), so they must be a
    sequence or another re-iterable collection (a list of slices of the activations), not a generator;
    ``intervals=0`` skips the examples across the range and reads them once. ``seed`` fixes which
    tokens those examples are.
    """
    if intervals < 0 or per_interval <= 0:
        raise InvalidArgumentError(
            f"intervals must be >= 0 and per_interval > 0 (got {intervals} and {per_interval})"
        )
    if intervals and iter(batches) is batches:
        raise InvalidArgumentError(
            "feature_stats reads the batches twice to sample examples across each latent's activation "
            "range, but got a one-shot iterator; pass a list of batches, or intervals=0"
        )
    tracker = _TopK(sae.d_sae, top_k, context)
    counts = torch.zeros((sae.d_sae, HIST_BINS), dtype=torch.long)
    fired = torch.zeros(sae.d_sae, dtype=torch.float64)
    edges: Tensor | None = None
    n_tokens, row_offset = 0, 0
    for acts, ids, keep in batches:
        ids, keep = ids.cpu(), keep.cpu()
        dense = _dense(sae, acts, keep)
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
        row_offset += ids.shape[0]
    top_ids, top_values, bottom_ids, bottom_values = logit_effects(sae, model, n_logits)
    empty = ~torch.isfinite(tracker.values)  # slots no firing token filled
    top = tracker.values.masked_fill(empty, 0.0)
    examples = {}
    if intervals:
        sampler = _IntervalSample(top[:, :1] * torch.linspace(0, 1, intervals + 1), per_interval, context, seed)
        row_offset = 0
        for acts, ids, keep in batches:
            sampler.add(_dense(sae, acts, keep.cpu()), ids.cpu(), row_offset)
            row_offset += ids.shape[0]
        examples = sampler.stats()
    return FeatureStats(
        top_values=top,
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
        **examples,
    )


def save_features(run, name: str, stats: FeatureStats, tokenizer) -> None:
    """Store ``stats`` in a run (tensors, a per-latent table and the vocabulary they use)."""
    run.write_tensors(f"features-{name}", stats.tensors())
    run.write_table(f"features-{name}", stats.table(tokenizer))
    run.write_table(f"vocab-{name}", stats.vocab(tokenizer))
