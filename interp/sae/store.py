"""The activation store: a shuffled, batched, resumable stream of a model's activations at some sites.

SAE training consumes activations one *token* at a time, in batches of thousands, and wants
consecutive batches to be unrelated (tokens of one document are highly correlated). The store
turns packed token rows (:mod:`interp.sae.tokens`) into such a stream:

1. **Rows in random order.** Each epoch visits the training rows in a fresh permutation
   (seeded by ``(seed, epoch)``).
2. **A shuffle buffer.** Rows are taken ``buffer_rows`` at a time; their activations are computed
   (one truncated forward pass per model batch, capturing every requested site at once, so several
   SAEs on several layers share the cost), the positions to skip are dropped (special tokens and
   the attention-sink first positions, see :meth:`TokenRows.keep_mask`), and the remaining tokens
   are permuted (seeded by ``(seed, epoch, chunk)``).
3. **Batches** are consecutive slices of ``batch_size`` tokens of that stream, crossing chunk
   boundaries, so no token is dropped.

Because every step is seeded by position, batch ``i`` is a pure function of ``i``: resuming at batch
``i`` recomputes only the chunk that contains it (the number of kept tokens of each chunk is known
from the token ids alone, without the model). That is what makes killed training resume to exactly
the state an uninterrupted run reaches (SAELens instead re-iterates its dataset; sparsify skips rows
but does not shuffle tokens across documents).

**The forward is truncated**: a hook after the last block any requested site lives in raises, so a
middle-layer SAE pays for half the model (SAELens's ``stop_at_layer``). For g-SAE training the store
also captures the gradient of the language-model loss (summed next-token cross-entropy) at each site,
which needs the full forward and a backward pass.

**Disk cache**: with ``cache=True``, activations of every row are computed once, in row order,
into ``<cache root>/activations/<key>/`` as raw ``numpy.memmap`` arrays (``acts.bin``, and
``grads.bin`` when asked) described by ``meta.json`` (shape, dtype, model, site, token
fingerprint, rows done). The key hashes everything the numbers depend on, so a second run with the
same model, site and tokens reuses the cache, and an interrupted cache build continues where it
stopped. Nothing is pickled. float16 halves the disk cost (1,152 bytes per token at d_model 576);
the middle residual of SmolLM2 stays far inside its range.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float

from interp.errors import InterpError
from interp.models.gguf import default_cache_root
from interp.sae.tokens import TokenRows
from interp.tokenize import TokenBatch

CACHE_FORMAT = 1


class StoreError(InterpError, ValueError):
    """An activation store asked for something it cannot provide."""


class _StopForward(Exception):
    """Raised by the truncation hook once every requested site has been captured."""


@dataclass
class ActivationBatch:
    """One training batch: ``batch_size`` tokens' activations at each site (and LM-loss gradients)."""

    index: int
    acts: dict[str, Float[torch.Tensor, "batch d"]]
    grads: dict[str, Float[torch.Tensor, "batch d"]] | None


def _last_layer(model, sites: Sequence[str]) -> int | None:
    layers = []
    for name in sites:
        site = model.site(name)
        if site.layer is None:
            return None
        layers.append(site.layer)
    return max(layers)


def _stop(module: torch.nn.Module, args: object, output: object) -> None:
    raise _StopForward


def lm_loss_sum(ids: torch.Tensor):
    """A metric for ``run_with_cache(grads=...)``: next-token cross-entropy summed over tokens."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten().to(logits.device), reduction="sum"
        )

    return metric


def model_activations(
    model, sites: Sequence[str], ids: torch.Tensor, with_grads: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Activations (and optionally LM-loss gradients) at ``sites`` for rows of token ids, on CPU."""
    batch = TokenBatch.from_ids(ids.to(model.device))
    if with_grads:
        _, cache = model.run_with_cache(batch, sites=list(sites), grads=lm_loss_sum(batch.input_ids), device="cpu")
        return {s: cache[s].float() for s in sites}, {s: cache.grads[s].float() for s in sites}
    last = _last_layer(model, sites)
    with torch.no_grad(), model.hooks(capture=list(sites), device="cpu") as session:
        handle = model.arch.layers()[last].register_forward_hook(_stop) if last is not None else None
        try:
            model.forward(batch, session)
        except _StopForward:
            pass
        finally:
            if handle is not None:
                handle.remove()
        captured = session.cache
        return {s: captured[s].float() for s in sites}, None


def _atomic_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    os.replace(tmp, path)


class DiskCache:
    """Activations of every row of a token set at one site, as a memory-mapped array on disk."""

    def __init__(self, directory: Path, meta: dict) -> None:
        self.directory = directory
        self.meta = meta
        shape = (meta["n_rows"], meta["context_size"], meta["d"])
        mode = "r" if meta["rows_done"] == meta["n_rows"] else "r+"
        self.acts = np.memmap(directory / "acts.bin", dtype=meta["dtype"], mode=mode, shape=shape)
        self.grads = np.memmap(directory / "grads.bin", dtype=meta["dtype"], mode=mode, shape=shape) if meta["with_grads"] else None

    @property
    def complete(self) -> bool:
        return self.meta["rows_done"] == self.meta["n_rows"]

    @classmethod
    def open(cls, root: Path, identity: dict, n_rows: int, context_size: int, d: int) -> DiskCache:
        """Open (or create) the cache for ``identity`` (model, site, tokens, dtype, grads)."""
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
        directory = root / key
        meta_path = directory / "meta.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != CACHE_FORMAT or meta.get("identity") != identity:
                raise StoreError(f"activation cache {directory} does not match its key; delete it")
            return cls(directory, meta)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": CACHE_FORMAT,
            "identity": identity,
            "n_rows": n_rows,
            "context_size": context_size,
            "d": d,
            "dtype": identity["dtype"],
            "with_grads": identity["with_grads"],
            "rows_done": 0,
        }
        for name in ["acts.bin"] + (["grads.bin"] if identity["with_grads"] else []):
            np.memmap(directory / name, dtype=meta["dtype"], mode="w+", shape=(n_rows, context_size, d)).flush()
        _atomic_json(meta_path, meta)
        return cls(directory, meta)

    def write(self, start: int, acts: torch.Tensor, grads: torch.Tensor | None) -> None:
        """Store rows ``start..start+len(acts)`` (in order) and record them as done."""
        stop = start + acts.shape[0]
        self.acts[start:stop] = acts.numpy().astype(self.meta["dtype"])
        if self.grads is not None and grads is not None:
            self.grads[start:stop] = grads.numpy().astype(self.meta["dtype"])
        self.acts.flush()
        if self.grads is not None:
            self.grads.flush()
        self.meta["rows_done"] = stop
        _atomic_json(self.directory / "meta.json", self.meta)

    def read(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Activations (and gradients) of some rows, as float32 tensors, in the order given."""
        order = np.argsort(rows)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        acts = torch.from_numpy(np.asarray(self.acts[rows[order]], dtype=np.float32))[inverse]
        grads = None
        if self.grads is not None:
            grads = torch.from_numpy(np.asarray(self.grads[rows[order]], dtype=np.float32))[inverse]
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
        self.d = {s: self._width(s) for s in self.sites}
        self.caches: dict[str, DiskCache] | None = None
        if cache:
            root = Path(cache_dir) if cache_dir is not None else default_cache_root() / "activations"
            self.caches = self._open_caches(root, cache_dtype)
            self.build_cache(progress)
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

    def _open_caches(self, root: Path, dtype: str) -> dict[str, DiskCache]:
        caches = {}
        for site in self.sites:
            identity = {
                "model": self.model.name,
                "model_dtype": str(self.model.dtype),
                "site": site,
                "tokens": self.tokens.fingerprint,
                "context_size": self.tokens.context_size,
                "dtype": dtype,
                "with_grads": self.with_grads,
            }
            caches[site] = DiskCache.open(root, identity, self.tokens.n_rows, self.tokens.context_size, self.d[site])
        return caches

    def build_cache(self, progress=None) -> None:
        """Fill the disk caches (all rows, in order), continuing an interrupted build."""
        assert self.caches is not None
        start = min(cache.meta["rows_done"] for cache in self.caches.values())
        total = self.tokens.n_rows
        for begin in range(start, total, self.model_batch_size):
            stop = min(total, begin + self.model_batch_size)
            acts, grads = model_activations(self.model, self.sites, self.tokens.rows(slice(begin, stop)), self.with_grads)
            for site, cache in self.caches.items():
                if cache.meta["rows_done"] <= begin:
                    cache.write(begin, acts[site], grads[site] if grads else None)
            if progress is not None:
                progress(stop, total)

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
        parts = [
            model_activations(self.model, self.sites, self.tokens.rows(rows[i : i + self.model_batch_size]), self.with_grads)
            for i in range(0, len(rows), self.model_batch_size)
        ]
        acts = {s: torch.cat([p[0][s] for p in parts]) for s in self.sites}
        grads = {s: torch.cat([p[1][s] for p in parts]) for s in self.sites} if self.with_grads else None
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

    def batches(self, start: int = 0, stop: int | None = None) -> Iterator[ActivationBatch]:
        """Batches ``start, start + 1, ...`` (up to ``stop``, else forever), each of ``batch_size`` tokens."""
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
                window = slice(used, used + self.batch_size)
                yield ActivationBatch(
                    index=index,
                    acts={s: a[window] for s, a in acts.items()},
                    grads={s: g[window] for s, g in grads.items()} if grads is not None else None,
                )
                index += 1
                used += self.batch_size
