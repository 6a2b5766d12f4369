"""Token selection: which tokens of each prompt make the vectors that are returned.

Three selections, all in a prompt's *own* token coordinates (0 is its first real token, BOS
included when the model prepends one; padding has no coordinate, so it is never selected):

* :data:`LAST` (:class:`LastToken`): one vector per prompt, its last token.
* :data:`ALL` (:class:`AllTokens`): one vector per real token, prompts in order, tokens in order.
* :class:`SpanMean`: one vector per prompt, the mean over a span of its tokens. Each prompt's span
  is either a token range ``(start, stop)`` (half-open; negative values count from the end, as in
  Python slices), or a substring of the prompt: the span is every token whose characters overlap
  the substring's first occurrence (a token holding ``" Eiffel"`` belongs to the span ``"Eiffel"``).
  Substrings need the prompts as text and a fast tokenizer (offset mappings).

A selection resolves to :class:`Picks`: per prompt a token range ``[start, stop)`` and whether it
is averaged (one vector) or kept token by token (``stop - start`` vectors). ``offsets`` place each
prompt's vectors in the flat output, so vectors of prompts ``lo..hi`` are one contiguous block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from interp.activations.errors import ActivationsError
from interp.indices import as_indices

Span = tuple[int, int] | str


@dataclass(frozen=True)
class LastToken:
    """The last real token of each prompt."""

    def describe(self) -> dict:
        return {"select": "last"}


@dataclass(frozen=True)
class AllTokens:
    """Every real (non-pad) token of each prompt, each its own vector."""

    def describe(self) -> dict:
        return {"select": "all"}


@dataclass(frozen=True)
class SpanMean:
    """The mean over one span per prompt: a token range ``(start, stop)`` or a substring."""

    spans: tuple[Span, ...]

    def __init__(self, spans: Sequence[Span]) -> None:
        object.__setattr__(self, "spans", tuple(s if isinstance(s, str) else _span_bounds(s) for s in spans))


def _span_bounds(span: Sequence[int]) -> tuple[int, int]:
    """A token range ``(start, stop)`` of two integers (never truncated floats)."""
    bounds = as_indices(span, "span bounds", f"of span {span!r}", ActivationsError)
    if len(bounds) != 2:
        raise ActivationsError(f"span {span!r} has {len(bounds)} bounds; give (start, stop) or a substring")
    return bounds[0], bounds[1]


Selection = LastToken | AllTokens | SpanMean
LAST = LastToken()
ALL = AllTokens()


@dataclass(frozen=True)
class Picks:
    """Per prompt, the token range ``[start, stop)`` it contributes, averaged or token by token."""

    start: Int[Tensor, " n"]
    stop: Int[Tensor, " n"]
    mean: bool

    @property
    def n_prompts(self) -> int:
        return int(self.start.shape[0])

    @property
    def counts(self) -> Int[Tensor, " n"]:
        """Vectors each prompt contributes."""
        return torch.ones_like(self.start) if self.mean else self.stop - self.start

    @property
    def offsets(self) -> Int[Tensor, " n_plus_1"]:
        """Index of each prompt's first vector in the flat output (and the total, last)."""
        return torch.cat([torch.zeros(1, dtype=torch.long), self.counts.cumsum(0)])

    @property
    def n_vectors(self) -> int:
        return int(self.counts.sum())

    def vector_index(self) -> tuple[Int[Tensor, " n_vec"], Int[Tensor, " n_vec"]]:
        """For each output vector: its prompt, and its token (the span's first token for means)."""
        prompt = torch.repeat_interleave(torch.arange(self.n_prompts), self.counts)
        local = torch.arange(self.n_vectors) - self.offsets[:-1][prompt]
        return prompt, self.start[prompt] + local

    def describe(self) -> dict:
        """What the cache key needs: the ranges when they are not implied by the prompt lengths."""
        return {"mean": self.mean, "start": self.start.tolist(), "stop": self.stop.tolist()}


def _range(span: tuple[int, int], length: int, prompt: int) -> tuple[int, int]:
    start, stop, step = slice(*span).indices(length)
    if step != 1 or stop <= start:
        raise ActivationsError(
            f"span {span} of prompt {prompt} selects no token of its {length}; give (start, stop) with start < stop "
            "in the prompt's own token positions (negative values count from the end)"
        )
    return start, stop


def _substring_range(text: str, needle: str, tokenizer, prepend_bos: bool, prompt: int) -> tuple[int, int]:
    begin = text.find(needle)
    if not needle or begin < 0:
        raise ActivationsError(f"span {needle!r} does not occur in prompt {prompt} ({text!r}); give a substring of the prompt")
    if not getattr(tokenizer, "is_fast", False):
        raise ActivationsError("substring spans need a fast tokenizer (offset mappings); give token ranges (start, stop)")
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    end = begin + len(needle)
    inside = [i for i, (a, b) in enumerate(offsets) if b > begin and a < end]
    shift = int(prepend_bos)
    return inside[0] + shift, inside[-1] + 1 + shift


def resolve(
    selection: Selection,
    lengths: Int[Tensor, " n"],
    texts: Sequence[str] | None = None,
    tokenizer=None,
    prepend_bos: bool = False,
) -> Picks:
    """The token ranges ``selection`` picks from prompts of these lengths (see the module docstring)."""
    lengths = lengths.to(torch.long).cpu()
    if isinstance(selection, LastToken):
        return Picks(start=lengths - 1, stop=lengths.clone(), mean=False)
    if isinstance(selection, AllTokens):
        return Picks(start=torch.zeros_like(lengths), stop=lengths.clone(), mean=False)
    if not isinstance(selection, SpanMean):
        raise ActivationsError(f"unknown selection {selection!r}; use LAST, ALL or SpanMean([...])")
    if len(selection.spans) != len(lengths):
        raise ActivationsError(f"{len(selection.spans)} spans for {len(lengths)} prompts; give one span per prompt")
    ranges = []
    for index, (span, length) in enumerate(zip(selection.spans, lengths.tolist(), strict=True)):
        if isinstance(span, str):
            if texts is None:
                raise ActivationsError("substring spans need the prompts as text; pass strings or give token ranges")
            ranges.append(_substring_range(texts[index], span, tokenizer, prepend_bos, index))
        else:
            ranges.append(_range(span, length, index))
    bounds = torch.tensor(ranges, dtype=torch.long).reshape(-1, 2)
    return Picks(start=bounds[:, 0], stop=bounds[:, 1], mean=True)
