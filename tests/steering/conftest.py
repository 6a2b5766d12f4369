"""Fixtures of the steering tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

import interp
from interp.steering import ContrastSet

NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah"]
PROMPTS = ["When Mary and John went to the store,", "After the lunch, Tom and"]


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every steering test runs on one torch thread (see ``one_thread``)."""


@pytest.fixture(scope="module")
def model() -> interp.Model:
    """A tiny Llama (its tokenizer adds no BOS, as the anchors' plain tokenizer calls do)."""
    return interp.load_model("tiny-llama")


@pytest.fixture(scope="module")
def contrast() -> ContrastSet:
    """Store-vs-park pairs of different lengths (so batches are left-padded)."""
    pairs = []
    for i, a in enumerate(NAMES):
        b = NAMES[(i + 3) % len(NAMES)]
        pairs.append((f"When {a} went to the store, {b} gave a drink to", f"Then {a} and {b} went to the park. {b} handed the book to"))
    return ContrastSet.from_pairs(pairs)
