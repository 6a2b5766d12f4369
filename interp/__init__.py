"""interp: a mechanistic interpretability workbench.

One hook layer over Hugging Face causal LMs (:class:`Model`, sites named as in TransformerLens),
with interventions as serialisable values and activation/gradient capture; methods built on it.
"""

from interp.cache import ActivationCache
from interp.errors import (
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
    MeanAblate,
    Patch,
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

__version__ = "0.1.0"

__all__ = [
    "ActivationCache",
    "Add",
    "GenerationError",
    "HookNotFiredError",
    "InterpError",
    "InterventionError",
    "MeanAblate",
    "Model",
    "ModelLoadError",
    "ModelStateError",
    "Patch",
    "Replace",
    "Scale",
    "TokenBatch",
    "TokenizationError",
    "UnknownSiteError",
    "Zero",
    "load_interventions",
    "load_model",
    "register_replace_fn",
    "save_interventions",
    "site_name",
]
