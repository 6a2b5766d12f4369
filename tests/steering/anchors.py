"""Importing the anchor packages the steering tests compare against, with the shims they need.

repeng 0.4 still uses ``numpy.float_``, which numpy 2 removed; it is the same type as
``numpy.float64``, so the alias is restored before repeng is imported.
"""

from __future__ import annotations

from types import ModuleType

import numpy


def repeng() -> ModuleType:
    """The ``repeng`` package, importable under numpy 2."""
    if not hasattr(numpy, "float_"):
        numpy.float_ = numpy.float64  # type: ignore[attr-defined]
    import repeng as package

    return package
