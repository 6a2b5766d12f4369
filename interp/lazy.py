"""Packages that import their public names on first use.

``interp`` and its method packages re-export names from their modules, but importing a package
must not import everything below it: reading a stored result should not pull in the model code,
transformers, scipy or plotly. :func:`lazy_exports` turns a package into one whose exported names
are imported when first looked up (PEP 562 ``__getattr__``).

A function may share its module's name (``interp.attribution.atp`` is both): importing the module
would normally rebind the package attribute to the module. A lazy package keeps such a name bound
to the exported object, as an eager ``from .atp import atp`` in ``__init__`` would.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package module that resolves its exports on first use and keeps them bound."""

    _exports: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        exports = self.__dict__.get("_exports", {})
        if name not in exports:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_exports", {}):
            return  # a submodule named like an exported object: the export keeps the name
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *self.__dict__.get("_exports", {})})


def lazy_exports(package: str, exports: dict[str, str]) -> None:
    """Make ``package`` (an imported module) import ``exports[name]`` when ``name`` is first used."""
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module.__dict__["_exports"] = dict(exports)
