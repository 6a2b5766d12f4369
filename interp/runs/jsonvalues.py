"""JSON values: checking that something can go into a manifest, and comparing two configs.

Manifests and JSON artifacts hold JSON only, never pickles, so that any tool can read them and
reading one can never run code. JSON holds ``None``, booleans, numbers, strings, lists and
string-keyed objects; anything else (a ``numpy.int64``, a tensor, a ``Path``, a dataclass) is
refused up front with the path to the offending value, rather than failing deep inside
``json.dumps`` or being silently turned into something else. Tuples are accepted and stored as
lists. Non-string keys are refused, since JSON would turn ``3`` into ``"3"`` and a resumed config
would no longer match. NaN and infinities are kept (Python's JSON reads them back), which matters
for summaries whose metric came out undefined.

Configs are compared in their *stored* form (:func:`normalise`: what a JSON round trip gives), so
``(1, 2)`` and ``[1, 2]`` are the same config, and NaN equals NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any

from interp.runs.errors import NotSerializableError



class _Missing:
    """Marks a key present in only one of two configs."""

    def __repr__(self) -> str:
        return "<absent>"


MISSING = _Missing()


def _find_problem(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = _find_problem(item, f"{path}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has key {key!r} of type {type(key).__name__}; JSON keys must be strings"
            problem = _find_problem(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    return (
        f"{path} is a {kind}, which JSON cannot hold; convert it to a plain value first "
        "(int(x) / float(x) for numpy scalars, tensor.tolist(), str(path), dataclasses.asdict(obj))"
    )


def check_json(value: Any, what: str) -> None:
    """Raise :class:`NotSerializableError` naming the first value under ``what`` that JSON cannot hold."""
    problem = _find_problem(value, what)
    if problem:
        raise NotSerializableError(problem)


def normalise(value: Any, what: str) -> Any:
    """``value`` as it will read back from JSON (tuples become lists), after :func:`check_json`."""
    check_json(value, what)
    return json.loads(json.dumps(value))


def dumps(value: Any) -> bytes:
    """Encode a checked value as UTF-8 JSON, indented so that manifests read well in an editor."""
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _same(a: Any, b: Any) -> bool:
    """Equality of JSON values where NaN equals NaN and ``True`` differs from ``1``."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects as ``{"a.b.c": leaf}`` under ``prefix`` (an empty object is a leaf; lists too)."""
    if not (isinstance(value, dict) and value):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
    return out


def differences(stored: Any, given: Any) -> list[tuple[str, Any, Any]]:
    """The leaves where two normalised configs differ, as ``(dotted.key, stored, given)``.

    A key present on one side only shows :data:`MISSING` on the other. Lists are compared whole.
    """
    left, right = flatten(stored), flatten(given)
    out = []
    for key in sorted(left.keys() | right.keys()):
        a, b = left.get(key, MISSING), right.get(key, MISSING)
        if not _same(a, b):
            out.append((key or "<config>", a, b))
    return out
