"""Concept example sets: the prompts that show a concept, and random sets to test it against.

A concept is given by examples (French sentences, negated sentences, ...). On disk a concept is a
JSONL file, one object per line::

    {"text": "Le chat dort sur le canapé."}
    {"text": "She walked home after the game.", "mark": "walked"}

``mark`` (optional) names the substring whose last token stands for the example when the
``marked`` token selector is used. Random concepts are disjoint-as-possible samples of a pool of
ordinary text (:func:`random_sets`), drawn from a seeded generator so the same seed gives the same
sets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from interp.errors import InvalidArgumentError


@dataclass(frozen=True)
class ConceptSet:
    """A named set of example prompts (and optional marked substrings, one per prompt)."""

    name: str
    prompts: tuple[str, ...]
    marks: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        if not self.prompts or any(not isinstance(p, str) or not p.strip() for p in self.prompts):
            raise InvalidArgumentError(f"concept {self.name!r} needs at least one non-empty prompt string")
        if self.marks is not None:
            object.__setattr__(self, "marks", tuple(self.marks))
            if len(self.marks) != len(self.prompts):
                raise InvalidArgumentError(
                    f"concept {self.name!r} has {len(self.marks)} marks for {len(self.prompts)} prompts; give one each"
                )

    def __len__(self) -> int:
        return len(self.prompts)


def load_concept(path: str | Path, name: str | None = None) -> ConceptSet:
    """A concept from a JSONL file of ``{"text": ..., "mark": ...}`` lines (see the module docstring)."""
    file = Path(path)
    if not file.is_file():
        raise InvalidArgumentError(f"concept file {file} does not exist; give a JSONL file of {{\"text\": ...}} lines")
    prompts: list[str] = []
    marks: list[str | None] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidArgumentError(f"{file} line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record["text"].strip():
            raise InvalidArgumentError(f"{file} line {number}: expected an object with a non-empty string 'text'")
        unknown = set(record) - {"text", "mark"}
        if unknown:
            raise InvalidArgumentError(f"{file} line {number}: unknown keys {sorted(unknown)}; use 'text' and 'mark'")
        mark = record.get("mark")
        if mark is not None and (not isinstance(mark, str) or mark not in record["text"]):
            raise InvalidArgumentError(f"{file} line {number}: 'mark' {mark!r} is not a substring of 'text'")
        prompts.append(record["text"])
        marks.append(mark)
    if not prompts:
        raise InvalidArgumentError(f"concept file {file} has no examples")
    return ConceptSet(name or file.stem, tuple(prompts), tuple(marks) if all(m is not None for m in marks) else None)


def random_sets(pool: ConceptSet | Sequence[str], n_sets: int, size: int, seed: int, prefix: str = "random") -> list[ConceptSet]:
    """``n_sets`` random concepts of ``size`` prompts each, drawn from ``pool`` with generator ``seed``.

    Sets are disjoint while the pool lasts (a pool of ``n_sets * size`` prompts or more gives fully
    disjoint sets); beyond that each set is a fresh sample without replacement within the set.
    """
    prompts = list(pool.prompts if isinstance(pool, ConceptSet) else pool)
    if n_sets < 1 or size < 2:
        raise InvalidArgumentError(f"random sets need n_sets >= 1 and size >= 2 (got {n_sets}, {size})")
    if size > len(prompts):
        raise InvalidArgumentError(f"random sets of {size} prompts need a pool of at least {size}; it has {len(prompts)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(prompts)).tolist()
    sets = []
    for index in range(n_sets):
        chunk = order[index * size : (index + 1) * size]
        if len(chunk) < size:
            chunk = rng.choice(len(prompts), size=size, replace=False).tolist()
        sets.append(ConceptSet(f"{prefix}_{index}", tuple(prompts[i] for i in chunk)))
    return sets
