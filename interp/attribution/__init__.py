"""Attribution methods: AtP, AtP*, RelP and integrated gradients, validated against exact patching.

Exact activation patching costs one forward per component; these methods estimate a whole sweep
from a few passes and return :class:`AttributionResult` objects with the same axes, coordinates
and baselines as :func:`interp.patching.patch_sweep`'s results, so tables and heatmaps read both.

    >>> from interp.attribution import atp, atp_star, relp, integrated_gradients, compare
    >>> estimate = relp(model, task, "mlp_out")                  # 2 forwards + 1 backward
    >>> report = compare(model, task, ["resid_pre", "head_z"])   # exact vs every method
    >>> report.to_frame(); interp.viz.attribution.comparison_scatter(report, "head_z")
    >>> interp.viz.attribution.recall_cost(report.recall, "head_z")  # recall vs cost (AtP* protocol)
    >>> effects = feature_attribution(model, task, saes, "relp")     # over SAE latents and error nodes
    >>> curves = faithfulness_curves(model, task, saes, {"relp": effects.ranking()})

Modules: :mod:`.atp`, :mod:`.atp_star` (QK fix, GradDrop), :mod:`.qk`, :mod:`.relp` (LRP rules),
:mod:`.ig`, :mod:`.diagnostics` (false-negative bound), :mod:`.compare` (validation harness),
:mod:`.comparison` (the stored comparison, read without importing any method),
:mod:`.nodes` (sweep geometry), :mod:`.runs` / :mod:`.attention` (the forward runs behind them),
:mod:`.recall` (recall of the exact top components against cost), :mod:`.features` /
:mod:`.faithfulness` / :mod:`.circuit` (sparse feature circuits over SAE latents).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.lazy import lazy_exports

if TYPE_CHECKING:
    from interp.attribution.atp import atp
    from interp.attribution.atp_star import atp_star
    from interp.attribution.compare import METHODS, MethodOptions, agreement, compare
    from interp.attribution.comparison import Comparison, load_comparison, record, save_comparison
    from interp.attribution.diagnostics import FalseNegativeReport, false_negative_bound
    from interp.attribution.faithfulness import FaithfulnessCurves, faithfulness_curves
    from interp.attribution.features import FeatureEffects, FeatureNodes, exact_feature_effects, feature_attribution
    from interp.attribution.ig import integrated_gradients
    from interp.attribution.recall import recall_summary, recall_table, verify_in_order
    from interp.cells import SweepRequest
    from interp.attribution.relp import RelPRules, relp, relp_rules
    from interp.attribution.result import AttributionCost, AttributionResult

_EXPORTS = {
    "atp": "interp.attribution.atp",
    "atp_star": "interp.attribution.atp_star",
    "METHODS": "interp.attribution.compare",
    "MethodOptions": "interp.attribution.compare",
    "agreement": "interp.attribution.compare",
    "compare": "interp.attribution.compare",
    "Comparison": "interp.attribution.comparison",
    "load_comparison": "interp.attribution.comparison",
    "record": "interp.attribution.comparison",
    "save_comparison": "interp.attribution.comparison",
    "FalseNegativeReport": "interp.attribution.diagnostics",
    "false_negative_bound": "interp.attribution.diagnostics",
    "integrated_gradients": "interp.attribution.ig",
    "FaithfulnessCurves": "interp.attribution.faithfulness",
    "faithfulness_curves": "interp.attribution.faithfulness",
    "FeatureEffects": "interp.attribution.features",
    "FeatureNodes": "interp.attribution.features",
    "exact_feature_effects": "interp.attribution.features",
    "feature_attribution": "interp.attribution.features",
    "recall_summary": "interp.attribution.recall",
    "recall_table": "interp.attribution.recall",
    "verify_in_order": "interp.attribution.recall",
    "SweepRequest": "interp.cells",
    "RelPRules": "interp.attribution.relp",
    "relp": "interp.attribution.relp",
    "relp_rules": "interp.attribution.relp",
    "AttributionCost": "interp.attribution.result",
    "AttributionResult": "interp.attribution.result",
}

__all__ = [
    "METHODS",
    "AttributionCost",
    "AttributionResult",
    "Comparison",
    "FaithfulnessCurves",
    "FalseNegativeReport",
    "FeatureEffects",
    "FeatureNodes",
    "MethodOptions",
    "RelPRules",
    "SweepRequest",
    "agreement",
    "atp",
    "atp_star",
    "compare",
    "exact_feature_effects",
    "faithfulness_curves",
    "false_negative_bound",
    "feature_attribution",
    "integrated_gradients",
    "load_comparison",
    "recall_summary",
    "recall_table",
    "record",
    "save_comparison",
    "relp",
    "relp_rules",
    "verify_in_order",
]

lazy_exports(__name__, _EXPORTS)
