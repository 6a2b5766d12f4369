"""Activation patching: exact sweeps (:func:`patch_sweep`, :func:`patch_cells`) and their results."""

from interp.patching.cells import SWEEPS, Cell
from interp.patching.engine import Cost, MaskedPatch, PatchingEngine
from interp.patching.result import PatchingResult
from interp.patching.sweep import patch_cells, patch_sweep

__all__ = ["SWEEPS", "Cell", "Cost", "MaskedPatch", "PatchingEngine", "PatchingResult", "patch_cells", "patch_sweep"]


def __getattr__(name: str):
    """``interp.patching.compare``: the approximation-vs-exact harness (imported lazily: it imports us)."""
    if name == "compare":
        from interp.attribution.compare import compare

        return compare
    raise AttributeError(f"module 'interp.patching' has no attribute {name!r}")
