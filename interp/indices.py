"""Checked integer indices: the one rule for every layer, position, head, neuron and row a caller gives.

An index must be an integer (``int``, a numpy integer, or a one-element integer tensor): a float is
never truncated and a bool is never read as 0 or 1. Within an axis of ``size`` entries an index is
valid in ``0 .. size - 1``, or, where negative indices count from the end, in ``-size .. size - 1``;
anything else is an error naming the valid range, never wrapped around.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import numpy as np
import torch

from interp.errors import InterpError, InvalidArgumentError


def as_index(value: object, what: str, context: str, error: type[InterpError] = InvalidArgumentError) -> int:
    """``value`` as a Python int; raises ``error`` if it is not an integer (floats and bools included)."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise error(f"{what} {value!r} {context} is a bool, not an integer index; give an int")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise error(
            f"{what} {value!r} {context} is not an integer ({type(value).__name__}); give a whole number "
            "such as 3 (floats are not rounded)"
        ) from None


def as_indices(
    values: Iterable[object], what: str, context: str, error: type[InterpError] = InvalidArgumentError
) -> list[int]:
    """Every entry of ``values`` as an int (see :func:`as_index`); a lone int or a string is refused."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise error(f"{what} {context} must be a list of integers, got {values!r}")
    return [as_index(v, what, context, error) for v in values]


def check_indices(
    values: Iterable[object],
    size: int,
    what: str,
    context: str,
    negative: bool = False,
    error: type[InterpError] = InvalidArgumentError,
) -> list[int]:
    """Integer indices into an axis of ``size`` entries, returned in ``0 .. size - 1``.

    With ``negative``, ``-size .. -1`` count from the end and are mapped onto the axis; without it
    they are errors. Out-of-range or non-integer entries raise ``error`` naming the valid range.
    """
    indices = as_indices(values, what, context, error)
    low = -size if negative else 0
    bad = [i for i in indices if not low <= i < size]
    if bad:
        valid = f"0..{size - 1}" + (f", or -{size}..-1 from the end" if negative else "")
        if size == 0:
            valid = "none: the axis is empty"
        raise error(f"{what} {bad} out of range {context}: the axis has size {size} (valid: {valid})")
    return [i % size for i in indices]
