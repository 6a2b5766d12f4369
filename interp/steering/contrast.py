"""Contrast sets: the paired examples a steering vector is read from.

A contrast set holds pairs that differ only in the property to steer. Two forms, one JSONL line
per pair (:func:`load_contrast`):

* **prompt pairs** ``{"positive": "I love this film", "negative": "I hate this film"}``: two whole
  texts (ActAdd's "Love"/"Hate", repeng's persona pairs);
* **completion pairs** ``{"prompt": "Q: ... A:", "positive": " (A", "negative": " (B"}``: one prompt
  with two continuations (CAA's multiple-choice items). The texts run through the model are
  ``prompt + positive`` and ``prompt + negative``, and the *answer token* is the first token of the
  continuation.

Every pair contributes one activation per side, so the methods of :mod:`interp.steering.methods`
see two aligned ``(pairs, d)`` matrices.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.errors import InvalidArgumentError
from interp.vectors import data_hash


@dataclass(frozen=True)
class ContrastPair:
    """One pair: ``prompt`` (may be empty) followed by the ``positive`` or the ``negative`` text."""

    positive: str
    negative: str
    prompt: str = ""

    @property
    def texts(self) -> tuple[str, str]:
        """The two full texts the model reads (prompt + positive, prompt + negative)."""
        return self.prompt + self.positive, self.prompt + self.negative


@dataclass(frozen=True)
class ContrastSet:
    """An ordered collection of :class:`ContrastPair`."""

    pairs: tuple[ContrastPair, ...]

    def __post_init__(self) -> None:
        if not self.pairs:
            raise InvalidArgumentError("a contrast set needs at least one pair of positive and negative examples")

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def has_prompts(self) -> bool:
        """True when pairs are completions of a shared prompt."""
        return any(pair.prompt for pair in self.pairs)

    @property
    def positives(self) -> list[str]:
        return [pair.texts[0] for pair in self.pairs]

    @property
    def negatives(self) -> list[str]:
        return [pair.texts[1] for pair in self.pairs]

    def hash(self) -> str:
        """A short stable hash of the pairs, stored with every vector built from them."""
        return data_hash((pair.prompt, pair.positive, pair.negative) for pair in self.pairs)

    def take(self, n: int | None) -> ContrastSet:
        """The first ``n`` pairs (all when None)."""
        return self if n is None else ContrastSet(self.pairs[:n])

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str] | Mapping[str, Any] | ContrastPair]) -> ContrastSet:
        """From ``(positive, negative)`` tuples, dicts with the JSONL fields, or pairs."""
        built = []
        for index, pair in enumerate(pairs):
            if isinstance(pair, ContrastPair):
                built.append(pair)
            elif isinstance(pair, Mapping):
                built.append(_from_record(pair, f"pair {index}"))
            elif isinstance(pair, Sequence) and not isinstance(pair, str) and len(pair) == 2:
                built.append(ContrastPair(positive=str(pair[0]), negative=str(pair[1])))
            else:
                raise InvalidArgumentError(
                    f"pair {index} is {pair!r}; give (positive, negative) or a dict with 'positive' and 'negative'"
                )
        return cls(tuple(built))


def _from_record(record: Mapping[str, Any], where: str) -> ContrastPair:
    missing = [key for key in ("positive", "negative") if key not in record]
    if missing:
        raise InvalidArgumentError(
            f"{where} has no {' or '.join(repr(m) for m in missing)} field; each line needs "
            '{"positive": ..., "negative": ...} and optionally "prompt"'
        )
    values = {key: record.get(key, "") for key in ("positive", "negative", "prompt")}
    for key, value in values.items():
        if not isinstance(value, str):
            raise InvalidArgumentError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if not values["prompt"] and (not values["positive"] or not values["negative"]):
        raise InvalidArgumentError(f"{where}: a pair without a prompt needs non-empty positive and negative texts")
    return ContrastPair(**values)


def load_contrast(path: str | Path) -> ContrastSet:
    """Read a JSONL contrast set (see the module docstring for the two line formats)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidArgumentError(f"contrast set {file} does not exist; give a JSONL file of positive/negative pairs")
    pairs = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidArgumentError(f"{file}:{number} is not valid JSON ({error})") from None
        if not isinstance(record, Mapping):
            raise InvalidArgumentError(f"{file}:{number} is not a JSON object")
        pairs.append(_from_record(record, f"{file}:{number}"))
    if not pairs:
        raise InvalidArgumentError(f"{file} holds no pairs")
    return ContrastSet(tuple(pairs))
