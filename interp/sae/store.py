"""The activation store: a shuffled, batched, resumable stream of a model's activations at some sites.

SAE training consumes activations one *token* at a time, in batches of thousands, and wants
consecutive batches to be unrelated (tokens of one document are highly correlated). The store
turns packed token rows (:mod:`interp.sae.tokens`) into such a stream:

1. **Rows in random order.** Each epoch visits the training rows in a fresh permutation
   (seeded by ``(seed, epoch)``).
2. **A shuffle buffer.** Rows are taken ``buffer_rows`` at a time; their activations are read
   through :func:`interp.activations.extract` (every token of the rows, every requested site in one
   forward, so several SAEs on several layers share the cost), the positions to skip are dropped (special tokens and
   the attention-sink first positions, see :meth:`TokenRows.keep_mask`), and the remaining tokens
   are permuted (seeded by ``(seed, epoch, chunk)``).
3. **Batches** are consecutive slices of ``batch_size`` tokens of that stream, crossing chunk
   boundaries, so no token is dropped.

Because every step is seeded by position, batch ``i`` is a pure function of ``i``: resuming at batch
``i`` recomputes only the chunk that contains it (the number of kept tokens of each chunk is known
from the token ids alone, without the model). That is what makes killed training resume to exactly
the state an uninterrupted run reaches (SAELens instead re-iterates its dataset; sparsify skips rows
but does not shuffle tokens across documents).

**The forward is truncated** after the last requested site, so a middle-layer SAE pays for half the
model (SAELens's ``stop_at_layer``). For g-SAE training the store also reads the gradient of the
language-model loss (summed next-token cross-entropy) at each site, which needs the full forward and
a backward pass.

**Disk cache**: with ``cache=True``, activations of every row are computed once, in row order, into
the shared activation cache of :mod:`interp.activations` (one memory-mapped array per site, keyed by
the model's identity, the site, the token fingerprint and the options; published by a rename when
complete; an interrupted build continues where it stopped). A second run with the same model, site
and tokens reuses it. float16 halves the disk cost (1,152 bytes per token at d_model 576); the middle
residual of SmolLM2 stays far inside its range.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float

from interp.activations import ALL, DEFAULT_BUDGET_BYTES, extract
from interp.errors import InterpError
from interp.sae.tokens import TokenRows


class StoreError(InterpError, ValueError):
    """An activation store asked for something it cannot provide."""


@dataclass
class ActivationBatch:
    """One training batch: ``batch_size`` tokens' activations at each site (and LM-loss gradients)."""

    index: int
    acts: dict[str, Float[torch.Tensor, "batch d"]]
    grads: dict[str, Float[torch.Tensor, "batch d"]] | None


class RowCache:
    """One site's cached activations (and gradients) seen as ``(n_rows, context_size, d)`` rows."""

    complete = True

    def __init__(
        self, directory: Path, acts: torch.Tensor, grads: torch.Tensor | None, n_rows: int, context_size: int
    ) -> None:
        self.directory = directory
        self.acts = acts.reshape(n_rows, context_size, -1)
        self.grads = grads.reshape(n_rows, context_size, -1) if grads is not None else None

    def read(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Activations (and gradients) of some rows, as float32 tensors, in the order given."""
        order = np.argsort(rows)
        inverse = torch.from_numpy(np.argsort(order))
        index = torch.from_numpy(np.asarray(rows)[order])
        acts = self.acts[index].float()[inverse]
        grads = self.grads[index].float()[inverse] if self.grads is not None else None
        return acts, grads


class ActivationStore:
    """A deterministic shuffled stream of activation batches over the training rows (see the module doc).

    Args:
        model: the :class:`interp.Model` to run.
        sites: the sites to capture (one forward serves them all).
        tokens: packed token rows.
        train_rows: row indices the stream draws from (the rest can be held out for evaluation).
        batch_size: tokens per batch.
        buffer_rows: rows per shuffle chunk.
        model_batch_size: rows per model forward.
        seed: seeds every permutation.
        exclude_special, skip_first: which positions to drop (see :meth:`TokenRows.keep_mask`).
        with_grads: also provide LM-loss gradients at each site (for g-SAEs).
        cache: compute every row once into a disk cache and read from it (reused across runs).
        cache_dir: the cache root (default ``$INTERP_CACHE_DIR/activations`` or ``~/.cache/interp/activations``).
        cache_dtype: storage dtype of the cache.
        progress: a callable ``(done_rows, total_rows)`` called while a cache is built.
        budget_bytes: memory budget of one model forward (rows per forward: at most ``model_batch_size``).
    """

    def __init__(
        self,
        model,
        sites: Sequence[str],
        tokens: TokenRows,
        train_rows: np.ndarray | None = None,
        batch_size: int = 4096,
        buffer_rows: int = 256,
        model_batch_size: int = 16,
        seed: int = 0,
        exclude_special: bool = True,
        skip_first: int = 2,
        with_grads: bool = False,
        cache: bool = False,
        cache_dir: str | Path | None = None,
        cache_dtype: Literal["float16", "float32"] = "float16",
        progress=None,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ) -> None:
        if not sites:
            raise StoreError("an activation store needs at least one site")
        for name in sites:
            model.site(name)
        self.model = model
        self.sites = list(dict.fromkeys(sites))
        self.tokens = tokens
        self.train_rows = np.arange(tokens.n_rows) if train_rows is None else np.asarray(train_rows)
        self.batch_size = batch_size
        self.buffer_rows = buffer_rows
        self.model_batch_size = model_batch_size
        self.seed = seed
        self.exclude_special = exclude_special
        self.skip_first = skip_first
        self.with_grads = with_grads
        self.budget_bytes = budget_bytes
        self.d = {s: self._width(s) for s in self.sites}
        self.caches: dict[str, RowCache] | None = None
        if cache:
            self.caches = self._cached(cache_dir, cache_dtype, progress)
        keep = self.keep_mask(self.tokens.rows(self.train_rows))
        self.tokens_per_epoch = int(keep.sum())
        if self.tokens_per_epoch == 0:
            raise StoreError("no token positions are left after excluding special tokens and the first positions")
        self._chunk_counts: dict[int, list[int]] = {}

    # --- activations of given rows -----------------------------------------------------------
    def _width(self, name: str) -> int:
        site = self.model.site(name)
        dims = self.model.dims
        if "head" in site.axes:
            raise StoreError(f"site {name!r} has a head axis {site.axes}; train SAEs on d_model or MLP sites")
        return {"d_model": dims.d_model, "d_mlp": dims.d_mlp, "d_vocab": dims.d_vocab}[site.axes[-1]]

    def keep_mask(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens.keep_mask(ids, self.exclude_special, self.skip_first)

    def _cached(self, cache_dir: str | Path | None, dtype: str, progress) -> dict[str, RowCache]:
        """Every row's activations from the disk cache, computing (or finishing) it first if needed."""
        read = extract(
            self.model,
            self.tokens.ids,
            self.sites,
            ALL,
            max_rows=self.model_batch_size,
            lm_loss_grads=self.with_grads,
            cache=True,
            cache_dir=cache_dir,
            cache_dtype=dtype,
            data_key=self.tokens.fingerprint,
            progress=progress,
            budget_bytes=self.budget_bytes,
        )
        n_rows, context = self.tokens.n_rows, self.tokens.context_size
        assert read.cache_dirs is not None
        return {
            s: RowCache(read.cache_dirs[s], read.acts[s], read.grads[s] if read.grads else None, n_rows, context)
            for s in self.sites
        }

    def row_activations(
        self, rows: np.ndarray | Sequence[int]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Activations ``(len(rows), pos, d)`` per site (and gradients), from the cache or the model."""
        rows = np.asarray(rows)
        if self.caches is not None:
            acts, grads = {}, {} if self.with_grads else None
            for site, cache in self.caches.items():
                acts[site], g = cache.read(rows)
                if grads is not None:
                    grads[site] = g
            return acts, grads
        ids = self.tokens.rows(rows)
        read = extract(
            self.model,
            ids,
            self.sites,
            ALL,
            budget_bytes=self.budget_bytes,
            max_rows=self.model_batch_size,
            lm_loss_grads=self.with_grads,
        )
        shape = (*ids.shape, -1)
        acts = {s: read.acts[s].float().reshape(shape) for s in self.sites}
        grads = {s: read.grads[s].float().reshape(shape) for s in self.sites} if read.grads is not None else None
        return acts, grads

    # --- the stream --------------------------------------------------------------------------
    def _epoch_rows(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.train_rows)

    def _chunks(self, epoch: int) -> list[np.ndarray]:
        rows = self._epoch_rows(epoch)
        return [rows[i : i + self.buffer_rows] for i in range(0, len(rows), self.buffer_rows)]

    def _counts(self, epoch: int) -> list[int]:
        if epoch not in self._chunk_counts:
            self._chunk_counts[epoch] = [int(self.keep_mask(self.tokens.rows(c)).sum()) for c in self._chunks(epoch)]
        return self._chunk_counts[epoch]

    def _locate(self, token: int) -> tuple[int, int, int]:
        epoch, offset = divmod(token, self.tokens_per_epoch)
        for chunk, count in enumerate(self._counts(epoch)):
            if offset < count:
                return epoch, chunk, offset
            offset -= count
        raise AssertionError("token offset beyond the epoch")

    def _chunk_tokens(self, epoch: int, chunk: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        rows = self._chunks(epoch)[chunk]
        acts, grads = self.row_activations(rows)
        keep = self.keep_mask(self.tokens.rows(rows))
        generator = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, epoch, chunk]).integers(2**62)))
        order = torch.randperm(int(keep.sum()), generator=generator)
        acts = {s: a[keep][order] for s, a in acts.items()}
        if grads is not None:
            grads = {s: g[keep][order] for s, g in grads.items()}
        return acts, grads

    def batches(self, start: int = 0, stop: int | None = None, rank: int = 0, world: int = 1) -> Iterator[ActivationBatch]:
        """Batches ``start, start + 1, ...`` (up to ``stop``, else forever), each of ``batch_size`` tokens.

        With ``world`` > 1 (data-parallel training), each batch is process ``rank``'s part of the
        global batch: the ``rank``-th of ``world`` equal consecutive slices.
        """
        if self.batch_size % world:
            raise StoreError(
                f"a batch of {self.batch_size} tokens does not split evenly over {world} processes; "
                "choose a batch_size divisible by the number of processes"
            )
        part = self.batch_size // world
        index = start
        epoch, chunk, offset = self._locate(start * self.batch_size)
        acts: dict[str, torch.Tensor] | None = None
        grads: dict[str, torch.Tensor] | None = None
        used = 0  # tokens of the current buffer already served
        while stop is None or index < stop:
            new_acts, new_grads = self._chunk_tokens(epoch, chunk)
            if acts is None:
                acts = {s: a[offset:] for s, a in new_acts.items()}
                grads = {s: g[offset:] for s, g in new_grads.items()} if new_grads is not None else None
            else:  # one concatenation per chunk: the unserved tail, then the new chunk
                acts = {s: torch.cat([acts[s][used:], new_acts[s]]) for s in self.sites}
                if grads is not None and new_grads is not None:
                    grads = {s: torch.cat([grads[s][used:], new_grads[s]]) for s in self.sites}
            used = 0
            chunk += 1
            if chunk == len(self._chunks(epoch)):
                epoch, chunk = epoch + 1, 0
            held = next(iter(acts.values())).shape[0]
            while held - used >= self.batch_size and (stop is None or index < stop):
                window = slice(used + rank * part, used + (rank + 1) * part)
                yield ActivationBatch(
                    index=index,
                    acts={s: a[window] for s, a in acts.items()},
                    grads={s: g[window] for s, g in grads.items()} if grads is not None else None,
                )
                index += 1
                used += self.batch_size
