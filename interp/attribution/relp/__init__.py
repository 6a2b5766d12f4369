"""RelP: relevance patching with LRP rules as modified backward passes."""

from interp.attribution.relp.install import relp_rules
from interp.attribution.relp.method import relp
from interp.attribution.relp.rules import RelPRules

__all__ = ["RelPRules", "relp", "relp_rules"]
