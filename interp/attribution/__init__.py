"""Attribution methods: AtP, AtP*, RelP and integrated gradients, validated against exact patching.

Exact activation patching costs one forward per component; these methods estimate a whole sweep
from a few passes and return :class:`AttributionResult` objects with the same axes, coordinates
and baselines as :func:`interp.patching.patch_sweep`'s results, so tables and heatmaps read both.

    >>> from interp.attribution import atp, atp_star, relp, integrated_gradients, compare
    >>> estimate = relp(model, task, "mlp_out")                  # 2 forwards + 1 backward
    >>> report = compare(model, task, ["resid_pre", "head_z"])   # exact vs every method
    >>> report.to_frame(); interp.viz.attribution.comparison_scatter(report, "head_z")

Modules: :mod:`.atp`, :mod:`.atp_star` (QK fix, GradDrop), :mod:`.qk`, :mod:`.relp` (LRP rules),
:mod:`.ig`, :mod:`.diagnostics` (false-negative bound), :mod:`.compare` (validation harness),
:mod:`.comparison` (the stored comparison, read without importing any method),
:mod:`.nodes` (sweep geometry), :mod:`.runs` / :mod:`.attention` (the forward runs behind them).
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
    from interp.attribution.ig import integrated_gradients
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
    "FalseNegativeReport",
    "MethodOptions",
    "RelPRules",
    "SweepRequest",
    "agreement",
    "atp",
    "atp_star",
    "compare",
    "false_negative_bound",
    "integrated_gradients",
    "load_comparison",
    "record",
    "save_comparison",
    "relp",
    "relp_rules",
]

lazy_exports(__name__, _EXPORTS)
