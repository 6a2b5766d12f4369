"""Steering: vectors from contrast sets, applied through the hook layer, measured against the unsteered model.

* :mod:`~interp.steering.contrast`: contrast sets (JSONL of prompt pairs or completion pairs);
* :mod:`~interp.steering.methods` / :mod:`~interp.steering.extract`: CAA mean difference, ActAdd
  single pair, repeng's PCA of differences, a logistic probe; every layer in one pass, with the
  site's median token norm so strengths compare across layers (:class:`~interp.vectors.LayerVectors`);
* :mod:`~interp.steering.apply`: interventions that add vectors, project directions out, add or
  clamp SAE latents, scoped to prompt or generated tokens by absolute position;
* :mod:`~interp.steering.evaluate` / :mod:`~interp.steering.sweep`: per-step KL(steered ||
  unsteered), entropy, perplexity under the unsteered model, behaviour scores; strength sweeps;
* :mod:`~interp.steering.dac`: Dynamic Activation Composition (per-step, per-property intensities);
* :mod:`~interp.steering.convert`: repeng GGUF control vectors and steering-vectors objects;
* :mod:`~interp.steering.function_vectors`: function vectors of in-context tasks (heads by average
  indirect effect through the patching engine, the vector from the top heads, zero-shot injection).

Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:
    from interp.steering.apply import LatentClamp, ablate, clamp_latent, steer, steer_latent
    from interp.steering.contrast import ContrastPair, ContrastSet, load_contrast
    from interp.steering.convert import from_gguf, from_steering_vector, to_steering_vector
    from interp.steering.dac import DACProperty, DACResult, dac_deltas, dac_generate
    from interp.steering.evaluate import SteeredRun, TokenScore, VectorScore, evaluate
    from interp.steering.extract import build_vectors, extract_vectors
    from interp.steering.function_vectors import (
        FunctionVectorResult,
        baseline_accuracies,
        evaluate_function_vector,
        extract_function_vector,
    )
    from interp.steering.fv_tasks import ICLTask, build_prompts, load_icl_task
    from interp.steering.fv_vector import function_vector, injection, random_heads, top_heads
    from interp.steering.methods import METHODS
    from interp.steering.sweep import SweepResult, strength_sweep

_EXPORTS = {
    "LatentClamp": "interp.steering.apply",
    "ablate": "interp.steering.apply",
    "clamp_latent": "interp.steering.apply",
    "steer": "interp.steering.apply",
    "steer_latent": "interp.steering.apply",
    "ContrastPair": "interp.steering.contrast",
    "ContrastSet": "interp.steering.contrast",
    "load_contrast": "interp.steering.contrast",
    "from_gguf": "interp.steering.convert",
    "from_steering_vector": "interp.steering.convert",
    "to_steering_vector": "interp.steering.convert",
    "DACProperty": "interp.steering.dac",
    "DACResult": "interp.steering.dac",
    "dac_deltas": "interp.steering.dac",
    "dac_generate": "interp.steering.dac",
    "SteeredRun": "interp.steering.evaluate",
    "TokenScore": "interp.steering.evaluate",
    "VectorScore": "interp.steering.evaluate",
    "evaluate": "interp.steering.evaluate",
    "build_vectors": "interp.steering.extract",
    "extract_vectors": "interp.steering.extract",
    "FunctionVectorResult": "interp.steering.function_vectors",
    "baseline_accuracies": "interp.steering.function_vectors",
    "evaluate_function_vector": "interp.steering.function_vectors",
    "extract_function_vector": "interp.steering.function_vectors",
    "ICLTask": "interp.steering.fv_tasks",
    "build_prompts": "interp.steering.fv_tasks",
    "load_icl_task": "interp.steering.fv_tasks",
    "function_vector": "interp.steering.fv_vector",
    "injection": "interp.steering.fv_vector",
    "random_heads": "interp.steering.fv_vector",
    "top_heads": "interp.steering.fv_vector",
    "METHODS": "interp.steering.methods",
    "SweepResult": "interp.steering.sweep",
    "strength_sweep": "interp.steering.sweep",
}

__all__ = [
    "ContrastPair",
    "ContrastSet",
    "DACProperty",
    "DACResult",
    "FunctionVectorResult",
    "ICLTask",
    "LatentClamp",
    "METHODS",
    "SteeredRun",
    "SweepResult",
    "TokenScore",
    "VectorScore",
    "ablate",
    "baseline_accuracies",
    "build_prompts",
    "build_vectors",
    "clamp_latent",
    "dac_deltas",
    "dac_generate",
    "evaluate",
    "evaluate_function_vector",
    "extract_function_vector",
    "extract_vectors",
    "from_gguf",
    "from_steering_vector",
    "function_vector",
    "injection",
    "load_contrast",
    "load_icl_task",
    "random_heads",
    "steer",
    "steer_latent",
    "strength_sweep",
    "to_steering_vector",
    "top_heads",
]

lazy_exports(__name__, _EXPORTS)
