"""Errors of activation extraction; each names the problem and the fix."""

from __future__ import annotations

from interp.errors import InterpError


class ActivationsError(InterpError, ValueError):
    """A request for activations that cannot be served as asked (bad span, site, input or budget)."""


class ActivationCacheError(InterpError, RuntimeError):
    """An activation cache directory on disk that does not hold what its key says."""
