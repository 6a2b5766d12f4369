"""Steering vectors from a contrast set: every layer, every method, one pass over the data.

:func:`build_vectors` reads both sides of every pair at the chosen site kind and layers in one
batched, hooked pass (:func:`interp.activations.extract`, every token kept), then for each layer

1. selects one activation per text (``token``):

   * ``"last"``: the text's last token (repeng, steering-vectors' default ``read_token_index=-1``);
   * ``"answer"``: the first token of the continuation in completion pairs (CAA's answer letter;
     the pair's texts must differ from there on);
   * ``"span"``: the mean over the continuation's tokens (completion pairs) or over the whole text;
   * an integer: that token in the text's own coordinates (0 is its first token, BOS included when
     the model prepends one; negative counts from the end, so ``-2`` is CAA's letter before ``)``);

2. applies each requested method of :mod:`interp.steering.methods` to the aligned positive and
   negative rows;

3. records the **median token norm** of the site over every token of every training text, so a
   strength can be given as a fraction of a typical token's norm
   (:meth:`~interp.vectors.LayerVectors.scaled` with ``unit="norm"``).

The result is one :class:`~interp.vectors.LayerVectors` per method, carrying the site kind, the
layers, the method, the model's name and shape, the contrast set's hash, the norms and the token
selection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from interp.activations import ALL, extract
from interp.errors import InvalidArgumentError
from interp.model import Model
from interp.sites import BLOCK, site_name
from interp.steering.contrast import ContrastSet
from interp.steering.methods import METHODS, single_pair
from interp.vectors import LayerVectors

TokenChoice = str | int
TOKEN_CHOICES = ("last", "answer", "span")


def model_info(model: Model) -> dict:
    """The identity a vector records: name, layers and width."""
    dims = model.dims
    return {"name": model.name, "n_layers": dims.n_layers, "d_model": dims.d_model, "family": model.arch.family}


def _continuation_start(model: Model, pair_prompt: str, text: str, index: int) -> int:
    """Own-coordinate index of the first token that holds a character after ``pair_prompt``."""
    if not pair_prompt:
        raise InvalidArgumentError(
            f"pair {index} has no prompt, so it has no answer token; use token='last', 'span' or an index, "
            'or give completion pairs {"prompt": ..., "positive": ..., "negative": ...}'
        )
    if not getattr(model.tokenizer, "is_fast", False):
        raise InvalidArgumentError("answer tokens need a fast tokenizer (offset mappings); use token='last' or an index")
    offsets = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    boundary = len(pair_prompt)
    after = [i for i, (_, end) in enumerate(offsets) if end > boundary]
    if not after:
        raise InvalidArgumentError(f"pair {index}: the continuation of {text!r} is empty; give a non-empty completion")
    return after[0] + int(model.prepend_bos)


def _selectors(model: Model, contrast: ContrastSet, token: TokenChoice, lengths: Tensor) -> list[tuple[int, int]]:
    """Per text (positives then negatives), the own-coordinate range ``[start, stop)`` to average."""
    texts = contrast.positives + contrast.negatives
    prompts = [pair.prompt for pair in contrast.pairs] * 2
    ranges = []
    for index, (text, prompt, length) in enumerate(zip(texts, prompts, lengths.tolist(), strict=True)):
        pair = index % len(contrast)
        if isinstance(token, bool) or not isinstance(token, (int, str)):
            raise InvalidArgumentError(f"token {token!r} must be one of {TOKEN_CHOICES} or an integer index")
        if isinstance(token, int):
            position = token + length if token < 0 else token
            if not 0 <= position < length:
                raise InvalidArgumentError(f"token index {token} is outside text {index} of {length} tokens ({text!r})")
            ranges.append((position, position + 1))
        elif token == "last":
            ranges.append((length - 1, length))
        elif token == "answer":
            start = _continuation_start(model, prompt, text, pair)
            ranges.append((start, start + 1))
        elif token == "span":
            start = _continuation_start(model, prompt, text, pair) if prompt else 0
            ranges.append((start, length))
        else:
            raise InvalidArgumentError(f"token {token!r} is unknown; use one of {TOKEN_CHOICES} or an integer index")
    return ranges


def build_vectors(
    model: Model,
    contrast: ContrastSet,
    kind: str = "resid_post",
    layers: Sequence[int] | None = None,
    methods: Sequence[str] = ("mean_diff",),
    token: TokenChoice = "last",
    pair_index: int = 0,
    max_rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, LayerVectors]:
    """Vectors of every method in ``methods`` at ``kind`` for ``layers`` (default all), from one pass.

    ``pair_index`` picks the pair of the ``single_pair`` (ActAdd) method.
    """
    if kind not in BLOCK:
        raise InvalidArgumentError(f"site kind {kind!r} is not a block site kind; use one of {', '.join(BLOCK)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise InvalidArgumentError(f"methods {unknown or list(methods)} are unknown; use some of {sorted(METHODS)}")
    n_layers = model.dims.n_layers
    chosen = list(range(n_layers)) if layers is None else [int(layer) for layer in layers]
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad or not chosen:
        raise InvalidArgumentError(f"layers {bad or chosen} are outside the model's {n_layers} layers (0..{n_layers - 1})")
    texts = contrast.positives + contrast.negatives
    sites = [site_name(kind, layer) for layer in chosen]
    acts = extract(model, texts, sites, ALL, max_rows=max_rows, progress=progress)
    offsets = acts.picks.offsets
    lengths = acts.picks.stop - acts.picks.start
    ranges = _selectors(model, contrast, token, lengths)
    n = len(contrast)
    per_method: dict[str, list[Tensor]] = {m: [] for m in methods}
    norms = []
    for site in sites:
        tokens = acts[site]
        shape = tokens.shape[1:]
        flat = tokens.reshape(tokens.shape[0], -1)
        norms.append(flat.norm(dim=-1).median())
        picked = torch.stack(
            [flat[int(offsets[i]) + a : int(offsets[i]) + b].mean(dim=0) for i, (a, b) in enumerate(ranges)]
        )
        pos, neg = picked[:n], picked[n:]
        for method in methods:
            fn = METHODS[method]
            vector = single_pair(pos, neg, pair_index) if fn is single_pair else fn(pos, neg)
            per_method[method].append(vector.reshape(shape))
    meta = {"token": token, "pairs": n, "pair_index": pair_index if "single_pair" in methods else None}
    return {
        method: LayerVectors(
            kind=kind,
            layers=tuple(chosen),
            vectors=torch.stack(vectors).float(),
            method=method,
            model=model_info(model),
            data_hash=contrast.hash(),
            token_norms=torch.stack(norms).float(),
            meta=meta,
        )
        for method, vectors in per_method.items()
    }


def extract_vectors(
    model: Model,
    contrast: ContrastSet,
    kind: str = "resid_post",
    layers: Sequence[int] | None = None,
    method: str = "mean_diff",
    token: TokenChoice = "last",
    **options,
) -> LayerVectors:
    """One method's vectors (see :func:`build_vectors`, which builds several in the same pass)."""
    return build_vectors(model, contrast, kind, layers, (method,), token, **options)[method]

