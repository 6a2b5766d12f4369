"""Concepts: concept activation vectors (CAVs), TCAV with significance tests, GCAV and NMF concepts.

A *concept* is given by examples (French sentences, negations, ...). Its CAV at a layer is the
normal of a linear classifier that separates the concept's pooled activations from a contrast set
(:mod:`.cav`); it is an :class:`interp.vectors.LayerVectors`, the same value steering uses, so a
CAV can be added as a steering vector and saved as safetensors + JSON. TCAV (:mod:`.tcav`) asks
whether moving the activation along the CAV changes a scalar metric of the output, and
:mod:`.significance` says whether that differs from random concepts. :func:`run_tcav` runs the whole
protocol from one seed::

    from interp.concepts import ConceptSet, Target, TokenSelector, load_concept, run_tcav

    result = run_tcav(model, [load_concept("data/concepts/french.jsonl")], load_concept(
        "data/concepts/random.jsonl"), target, layers=[3, 6, 9], selector=TokenSelector("mean"))
    result.tests[["concept", "layer", "concept_mean", "random_mean", "p_bonferroni", "significant"]]

Further: :mod:`.gcav` aligns per-layer CAVs into one global concept vector; :mod:`.nmf` finds
concepts without labels by non-negative matrix factorisation; :mod:`.causal` measures what adding
a CAV at its layer does to the output, so a direction that reads well can be checked to steer.
"""

from interp.concepts.causal import SteerResult, steer_effect
from interp.concepts.cav import CLASSIFIERS, CAVFit, fit_cav, train_cavs
from interp.concepts.data import ConceptSet, load_concept, random_sets
from interp.concepts.experiment import NULL, TCAVResult, analyse, run_tcav
from interp.concepts.gcav import GCAVResult, gcav
from interp.concepts.nmf import NMFConcepts, nmf_concepts, prediction_fidelity, top_examples
from interp.concepts.reading import read_layers
from interp.concepts.selection import TokenSelector
from interp.concepts.significance import benjamini_hochberg, bonferroni, compare_scores
from interp.concepts.tcav import Sensitivities, Target, load_target, sensitivities, tcav_scores

__all__ = [
    "CLASSIFIERS",
    "NULL",
    "CAVFit",
    "ConceptSet",
    "GCAVResult",
    "NMFConcepts",
    "Sensitivities",
    "SteerResult",
    "TCAVResult",
    "Target",
    "TokenSelector",
    "analyse",
    "benjamini_hochberg",
    "bonferroni",
    "compare_scores",
    "fit_cav",
    "gcav",
    "load_concept",
    "load_target",
    "nmf_concepts",
    "prediction_fidelity",
    "random_sets",
    "read_layers",
    "run_tcav",
    "sensitivities",
    "steer_effect",
    "tcav_scores",
    "top_examples",
    "train_cavs",
]
