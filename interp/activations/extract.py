"""``extract``: selected activations of many prompts at many sites, batched by memory, cached on disk.

One call runs the model over the inputs in batches of consecutive prompts (sized by
:mod:`~interp.activations.batching`), reads every site in the same forward through the hook layer
(:mod:`~interp.activations.forward`), keeps the selected tokens (:mod:`~interp.activations.selection`)
and returns them as one flat ``(n_vectors, *site_shape)`` tensor per site, prompts in order.

With ``cache=True`` each site's array lives on disk (:mod:`~interp.activations.disk`), under a
key of the model's identity, the site, the data and the options (:mod:`~interp.activations.keys`);
a later call with the same key runs no forward and returns the very same bytes, and only sites
without a cache are computed. Results then are copy-on-write memory maps in the cache's dtype
(float16 by default), so an array larger than memory can be returned; without a cache they are
in memory, float32 (float64 for a float64 model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.activations.batching import DEFAULT_BUDGET_BYTES, plan_batches, row_bytes
from interp.activations.disk import CacheEntry, CacheWriter
from interp.activations.errors import ActivationsError
from interp.activations.forward import capture_batch
from interp.activations.inputs import Inputs, TokenInput
from interp.activations.keys import cache_key, key_digest, model_identity
from interp.activations.selection import LAST, Picks, Selection, SpanMean, resolve
from interp.model import Model
from interp.models.gguf import default_cache_root

Progress = Callable[[int, int], None]


@dataclass
class Activations:
    """Selected vectors per site, prompts in order; ``picks`` says which tokens each came from."""

    acts: dict[str, Float[Tensor, "n_vec *shape"]]
    grads: dict[str, Float[Tensor, "n_vec *shape"]] | None
    picks: Picks
    cache_dirs: dict[str, Path] | None = None

    def __getitem__(self, site: str) -> Float[Tensor, "n_vec *shape"]:
        if site not in self.acts:
            raise ActivationsError(f"site {site!r} was not extracted (have {list(self.acts)}); pass it in sites=[...]")
        return self.acts[site]

    def index(self) -> tuple[Int[Tensor, " n_vec"], Int[Tensor, " n_vec"]]:
        """For each vector: its prompt and its token (own coordinates; a span's first token)."""
        return self.picks.vector_index()


def _select(
    value: Tensor, batch_lengths: Tensor, width: int, picks: Picks, lo: int, hi: int, dtype: torch.dtype
) -> Tensor:
    """The vectors of prompts ``lo..hi`` from a captured ``(rows, width, ...)`` value."""
    start, stop = picks.start[lo:hi], picks.stop[lo:hi]
    pad = (width - batch_lengths).to(value.device)
    if picks.mean:
        return torch.stack(
            [value[r, int(pad[r] + start[r]) : int(pad[r] + stop[r])].to(dtype).mean(0) for r in range(hi - lo)]
        )
    counts = (stop - start).to(value.device)
    row = torch.repeat_interleave(torch.arange(hi - lo, device=value.device), counts)
    first = torch.cat([torch.zeros(1, dtype=torch.long, device=value.device), counts.cumsum(0)[:-1]])
    column = pad[row] + start.to(value.device)[row] + torch.arange(int(counts.sum()), device=value.device) - first[row]
    return value[row, column].to(dtype)


def _site_shape(model: Model, site: str) -> tuple[int, ...]:
    dims = model.dims
    sizes = {"d_model": dims.d_model, "d_mlp": dims.d_mlp, "d_vocab": dims.d_vocab, "d_head": dims.d_head}
    axes = model.site(site).axes
    if "query_pos" in axes:
        raise ActivationsError(f"{site} is an attention pattern (one row per query and key); read it with run_with_cache")
    return tuple(sizes[a] if a != "head" else model.arch.n_heads_at(model.site(site)) for a in axes[2:])


def extract(
    model: Model,
    inputs: Inputs,
    sites: str | Sequence[str],
    select: Selection = LAST,
    *,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    max_rows: int | None = None,
    lm_loss_grads: bool = False,
    cache: bool = False,
    cache_dir: str | Path | None = None,
    cache_dtype: Literal["float16", "float32"] = "float16",
    data_key: str | None = None,
    progress: Progress | None = None,
) -> Activations:
    """Selected activations of ``inputs`` at ``sites`` (see the module docstring).

    Args:
        model: the model to run.
        inputs: prompts (tokenised one by one and left-padded per batch), a left-padded
            :class:`~interp.tokenize.TokenBatch`, a tensor of token ids, or a 2-D numpy array of
            unpadded token rows (read one batch at a time, so a memory-mapped token file works).
        sites: one site name or several; all are read in the same forward.
        select: :data:`~interp.activations.selection.LAST`, :data:`~interp.activations.selection.ALL`
            or :class:`~interp.activations.selection.SpanMean`.
        budget_bytes: memory budget of one forward's activations; sets the prompts per batch.
        max_rows: at most this many prompts per batch.
        lm_loss_grads: also return the gradient of the summed next-token loss at each site (a full
            forward and a backward per batch).
        cache: read from / write to the disk cache.
        cache_dir: cache root (default ``$INTERP_CACHE_DIR/activations`` or ``~/.cache/interp/activations``).
        cache_dtype: storage dtype of cached arrays.
        data_key: a fingerprint of the token ids that the caller already has (e.g. of a token
            file); replaces hashing them. It must change whenever the ids or the padding change.
        progress: called as ``progress(prompts_done, n_prompts)`` after every batch.
    """
    names = [sites] if isinstance(sites, str) else list(dict.fromkeys(sites))
    if not names:
        raise ActivationsError("no sites given; pass at least one site name, e.g. 'blocks.0.hook_resid_post'")
    shapes = {name: _site_shape(model, name) for name in names}
    tokens = TokenInput.from_inputs(inputs, model.tokenizer, model.prepend_bos)
    lengths = tokens.lengths
    picks = resolve(select, lengths, tokens.texts, model.tokenizer, model.prepend_bos)
    if bool((picks.stop > lengths).any()) or bool((picks.start < 0).any()):
        raise ActivationsError("a span reaches past its prompt's tokens; check the span ranges")
    dtype = torch.float64 if model.dtype == torch.float64 else torch.float32

    writers: dict[str, CacheWriter] = {}
    entries: dict[str, CacheEntry] = {}
    if cache:
        root = Path(cache_dir) if cache_dir is not None else default_cache_root() / "activations"
        root.mkdir(parents=True, exist_ok=True)
        identity = model_identity(model)
        data = data_key if data_key is not None else tokens.fingerprint()
        chosen = picks.describe() if isinstance(select, SpanMean) else select.describe()
        for name in names:
            key = cache_key(identity, name, data, chosen, cache_dtype, lm_loss_grads)
            digest = key_digest(key)
            entry = CacheEntry.find(root, digest, key)
            if entry is not None:
                entries[name] = entry
            else:
                writers[name] = CacheWriter(root, digest, key, (picks.n_vectors, *shapes[name]), tokens.n)
        todo = list(writers)
        start = min((w.rows_done for w in writers.values()), default=tokens.n)
        results = None
    else:
        todo, start = names, 0
        results = {n: torch.empty((picks.n_vectors, *shapes[n]), dtype=dtype) for n in names}
        grads = {n: torch.empty((picks.n_vectors, *shapes[n]), dtype=dtype) for n in names} if lm_loss_grads else None

    if todo:
        offsets = picks.offsets
        cost = lambda width: row_bytes(model, todo, width, lm_loss_grads)  # noqa: E731
        for lo, hi in plan_batches(lengths.tolist(), cost, budget_bytes, max_rows, start):
            batch = tokens.sub_batch(lo, hi)
            acts, gradients = capture_batch(model, todo, batch, lm_loss_grads)
            batch_lengths, width = lengths[lo:hi], batch.shape[1]
            v0, v1 = int(offsets[lo]), int(offsets[hi])
            for name in todo:
                chosen_acts = _select(acts[name], batch_lengths, width, picks, lo, hi, dtype).cpu()
                chosen_grads = _select(gradients[name], batch_lengths, width, picks, lo, hi, dtype).cpu() if gradients else None
                if results is not None:
                    results[name][v0:v1] = chosen_acts
                    if grads is not None and chosen_grads is not None:
                        grads[name][v0:v1] = chosen_grads
                else:
                    to_disk = np.dtype(cache_dtype)
                    writers[name].write(
                        hi, v0, chosen_acts.numpy().astype(to_disk), None if chosen_grads is None else chosen_grads.numpy().astype(to_disk)
                    )
            if progress is not None:
                progress(hi, tokens.n)

    if results is not None:
        return Activations(acts=results, grads=grads, picks=picks)
    for name, writer in writers.items():
        entries[name] = writer.commit()
    return Activations(
        acts={n: torch.from_numpy(entries[n].acts) for n in names},
        grads={n: torch.from_numpy(entries[n].grads) for n in names} if lm_loss_grads else None,
        picks=picks,
        cache_dirs={n: entries[n].directory for n in names},
    )
