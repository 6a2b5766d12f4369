"""Packages that import their public names on first use.

``interp`` and its method packages re-export names from their modules, but importing a package
must not import everything below it: reading a stored result should not pull in the model code,
transformers, scipy or plotly. :func:`lazy_exports` builds a module ``__getattr__`` (PEP 562) that
imports a name's module only when the name is first looked up.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, importing ``exports[name]`` when ``name`` is used."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
