"""Fixtures of the SAE tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest

import interp


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every SAE test runs on one torch thread (see ``one_thread``)."""


@pytest.fixture(scope="module")
def model() -> interp.Model:
    """A tiny Llama (float32), shared by the tests of one module; modules needing another override it."""
    return interp.load_model("tiny-llama")
