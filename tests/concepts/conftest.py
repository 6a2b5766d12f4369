"""Fixtures of the concept tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every concept test runs on one torch thread (see ``one_thread``)."""
