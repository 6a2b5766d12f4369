"""Activation patching: exact sweeps (:func:`patch_sweep`, :func:`patch_cells`) and their results.

A patching run's sweeps are computed in shards by :class:`ShardWorker` (from a :class:`PatchConfig`)
and joined by :func:`assemble`; other methods' runners (attribution's exact sweeps) use the same.

Names are imported on first use, so reading a stored result (:func:`load_result`) does not import
the engine, the model code or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:
    from interp.cells import SWEEPS, Cell
    from interp.interventions import MaskedPatch
    from interp.patching.config import PatchConfig
    from interp.patching.engine import PatchingEngine
    from interp.patching.persist import load_result, result_names, save_result
    from interp.patching.result import Cost, PatchingResult
    from interp.patching.runner import ShardWorker, assemble
    from interp.patching.sweep import patch_cells, patch_sweep

_EXPORTS = {
    "SWEEPS": "interp.cells",
    "Cell": "interp.cells",
    "MaskedPatch": "interp.interventions",
    "PatchConfig": "interp.patching.config",
    "PatchingEngine": "interp.patching.engine",
    "load_result": "interp.patching.persist",
    "result_names": "interp.patching.persist",
    "save_result": "interp.patching.persist",
    "Cost": "interp.patching.result",
    "PatchingResult": "interp.patching.result",
    "ShardWorker": "interp.patching.runner",
    "assemble": "interp.patching.runner",
    "patch_cells": "interp.patching.sweep",
    "patch_sweep": "interp.patching.sweep",
}

__all__ = [
    "SWEEPS",
    "Cell",
    "Cost",
    "MaskedPatch",
    "PatchConfig",
    "PatchingEngine",
    "PatchingResult",
    "ShardWorker",
    "assemble",
    "load_result",
    "patch_cells",
    "patch_sweep",
    "result_names",
    "save_result",
]

lazy_exports(__name__, _EXPORTS)
