"""A worker for executor tests, in a module of its own so that Ray actors import nothing heavy to build it."""

from __future__ import annotations


class Echo:
    """A worker that reports the device it was built for."""

    def __init__(self, device: str) -> None:
        self.device = device

    def where(self) -> str:
        return self.device
