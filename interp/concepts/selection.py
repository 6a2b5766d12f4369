"""Which tokens of a prompt stand for it: the same choice for reading CAVs and for their gradients.

A CAV lives in the space of one token's activation (or a mean over tokens), so every prompt must
be reduced to one vector, whatever its length. :class:`TokenSelector` says how, and resolves to an
explicit token range ``[start, stop)`` per prompt in the prompt's own coordinates (0 is its first
real token, BOS included when the model prepends one):

* ``last``: the last token (``[n-1, n)``), the usual probe position of a language model;
* ``mean``: the mean over every token after BOS (a prompt of only BOS uses BOS);
* ``marked``: the last token of a marked substring of each prompt (``marks[i]`` in prompt ``i``,
  e.g. the verb that carries the tense), so a concept can sit anywhere in a sentence.

The same ranges are used for the activations a CAV is trained on (averaged over the range) and for
the gradients TCAV reads (summed over the range, see :mod:`interp.concepts.tcav`), so reading and
sensitivity are pooled consistently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from interp.activations.selection import SpanMean, resolve
from interp.errors import InvalidArgumentError
from interp.model import Model

SelectorKind = Literal["last", "mean", "marked"]
SELECTOR_KINDS: tuple[str, ...] = ("last", "mean", "marked")


@dataclass(frozen=True)
class TokenSelector:
    """How a prompt becomes one vector: ``last``, ``mean`` or ``marked`` (see the module docstring)."""

    kind: SelectorKind = "last"

    def __post_init__(self) -> None:
        if self.kind not in SELECTOR_KINDS:
            raise InvalidArgumentError(f"token selector {self.kind!r} is unknown; use one of {', '.join(SELECTOR_KINDS)}")

    def ranges(self, model: Model, prompts: Sequence[str], marks: Sequence[str | None] | None = None) -> list[tuple[int, int]]:
        """One token range ``(start, stop)`` per prompt."""
        lengths = model.to_tokens(list(prompts)).lengths.cpu()
        if self.kind == "last":
            return [(int(n) - 1, int(n)) for n in lengths]
        if self.kind == "mean":
            first = 1 if model.prepend_bos else 0
            return [(min(first, int(n) - 1), int(n)) for n in lengths]
        if marks is None or len(marks) != len(prompts) or any(not m for m in marks):
            raise InvalidArgumentError(
                "the 'marked' token selector needs one marked substring per prompt (a 'mark' field on every "
                "example); use selector 'last' or 'mean' for unmarked data"
            )
        picks = resolve(SpanMean(list(marks)), lengths, list(prompts), model.tokenizer, model.prepend_bos)
        return [(int(stop) - 1, int(stop)) for stop in picks.stop]

    def span_mean(self, model: Model, prompts: Sequence[str], marks: Sequence[str | None] | None = None) -> SpanMean:
        """The selection :func:`interp.activations.extract` reads these ranges with."""
        return SpanMean(self.ranges(model, prompts, marks))


LAST_TOKEN = TokenSelector("last")


def range_mask(ranges: Sequence[tuple[int, int]], lengths: torch.Tensor, width: int) -> torch.Tensor:
    """A ``(batch, width)`` 0/1 float mask of the selected tokens of a left-padded batch."""
    mask = torch.zeros(len(ranges), width)
    for row, ((start, stop), length) in enumerate(zip(ranges, lengths.tolist(), strict=True)):
        pad = width - int(length)
        mask[row, pad + start : pad + stop] = 1.0
    return mask
