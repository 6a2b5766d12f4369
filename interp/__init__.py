"""interp: a mechanistic interpretability workbench.

One hook layer over Hugging Face causal LMs (:class:`Model`, sites named as in TransformerLens;
TransformerLens and nnsight models through :func:`wrap`),
with interventions as serialisable values and activation/gradient capture; methods built on it.
Names are imported on first use (``interp.Model`` imports the model code; ``import interp.runs``
does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:
    from interp.cache import ActivationCache
    from interp.errors import (
        BackendCapabilityError,
        GenerationError,
        HookNotFiredError,
        InterpError,
        InterventionError,
        ModelLoadError,
        ModelStateError,
        TokenizationError,
        UnknownSiteError,
    )
    from interp.interventions import (
        Add,
        MaskedPatch,
        MeanAblate,
        Patch,
        ProjectOut,
        Replace,
        Scale,
        Zero,
        load_interventions,
        register_replace_fn,
        save_interventions,
    )
    from interp.model import Model
    from interp.models import load_model
    from interp.sites import site_name
    from interp.tokenize import TokenBatch
    from interp.backends import wrap

__version__ = "0.1.0"

_EXPORTS = {
    "ActivationCache": "interp.cache",
    "BackendCapabilityError": "interp.errors",
    "HookNotFiredError": "interp.errors",
    "InterpError": "interp.errors",
    "InterventionError": "interp.errors",
    "ModelLoadError": "interp.errors",
    "ModelStateError": "interp.errors",
    "TokenizationError": "interp.errors",
    "UnknownSiteError": "interp.errors",
    "GenerationError": "interp.errors",
    "Add": "interp.interventions",
    "MaskedPatch": "interp.interventions",
    "MeanAblate": "interp.interventions",
    "Patch": "interp.interventions",
    "ProjectOut": "interp.interventions",
    "Replace": "interp.interventions",
    "Scale": "interp.interventions",
    "Zero": "interp.interventions",
    "load_interventions": "interp.interventions",
    "register_replace_fn": "interp.interventions",
    "save_interventions": "interp.interventions",
    "Model": "interp.model",
    "load_model": "interp.models",
    "site_name": "interp.sites",
    "TokenBatch": "interp.tokenize",
    "wrap": "interp.backends",
}

__all__ = [
    "ActivationCache",
    "Add",
    "BackendCapabilityError",
    "GenerationError",
    "GenerationError",
    "HookNotFiredError",
    "InterpError",
    "InterventionError",
    "MaskedPatch",
    "MeanAblate",
    "Model",
    "ModelLoadError",
    "ModelStateError",
    "Patch",
    "ProjectOut",
    "Replace",
    "Scale",
    "TokenBatch",
    "TokenizationError",
    "UnknownSiteError",
    "Zero",
    "load_interventions",
    "load_model",
    "register_replace_fn",
    "register_replace_fn",
    "save_interventions",
    "site_name",
    "wrap",
]

lazy_exports(__name__, _EXPORTS)
