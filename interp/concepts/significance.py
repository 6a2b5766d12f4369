"""Is a concept's TCAV score different from what random directions give? Tests and corrections.

A single TCAV score means little: a CAV trained on noise still gives some fraction of positive
derivatives, often far from 0.5 when the target's gradients share a direction. The reference
protocol (Kim et al. 2018) therefore trains the concept's CAV against ``N`` different random sets,
and builds a null of ``N`` random-vs-random CAVs (the held-back random set ``random_0`` against
each ``random_i``), then compares the two lists of scores. We report, per (concept, layer):

* a two-sided Student's t-test (the statistic of ``scipy.stats.ttest_ind``, equal variances, as the
  reference);
* a two-sided permutation test of the difference of means (``scipy.stats.permutation_test``,
  seeded), which does not assume normal scores;
* the effect: the difference of mean scores with a 95% t interval (Welch), and Hedges' g with an
  approximate 95% interval (normal, standard error ``sqrt((n1+n2)/(n1 n2) + g^2 / (2 (n1+n2)))``);
* p-values corrected across all layers x concepts of a run by Bonferroni (``min(1, m p)``) and by
  Benjamini-Hochberg (``scipy.stats.false_discovery_control``).

Caveat: the ``N`` concept scores share the concept set (and the null scores share ``random_0``),
so they are not independent draws; both tests treat them as such, as the reference does. The
false-positive rate of this protocol is measured in the tests on a planted model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from interp.errors import InvalidArgumentError


def compare_scores(
    concept: Sequence[float], random: Sequence[float], n_permutations: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The tests and effect sizes of ``concept`` scores against ``random`` scores (module docstring)."""
    a, b = np.asarray(concept, dtype=float), np.asarray(random, dtype=float)
    if len(a) < 2 or len(b) < 2:
        raise InvalidArgumentError(
            f"a significance test needs at least 2 concept and 2 random scores (got {len(a)}, {len(b)}); "
            "use n_random >= 2 (10 or more for a meaningful test)"
        )
    diff = float(a.mean() - b.mean())
    var_a, var_b = a.var(ddof=1), b.var(ddof=1)
    n1, n2 = len(a), len(b)
    pooled = math.sqrt(((n1 - 1) * var_a + (n2 - 1) * var_b) / (n1 + n2 - 2))
    if pooled == 0:
        t, p_t = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    else:  # ttest_ind's equal-variance statistic, written out: scipy warns on a constant sample (all 1.0)
        t = diff / (pooled * math.sqrt(1 / n1 + 1 / n2))
        p_t = float(2 * stats.t.sf(abs(t), n1 + n2 - 2))
    p_perm = 1.0 if diff == 0 and var_a + var_b == 0 else float(
        stats.permutation_test(
            (a, b), lambda x, y: np.mean(x) - np.mean(y), n_resamples=n_permutations,
            alternative="two-sided", rng=np.random.default_rng(seed),
        ).pvalue
    )
    se = math.sqrt(var_a / len(a) + var_b / len(b))
    if se > 0:
        dof = se**4 / ((var_a / len(a)) ** 2 / (len(a) - 1) + (var_b / len(b)) ** 2 / (len(b) - 1))
        half = float(stats.t.ppf(0.975, dof)) * se
    else:
        half = 0.0
    if pooled > 0:
        g = diff / pooled * (1 - 3 / (4 * (n1 + n2) - 9))
        g_se = math.sqrt((n1 + n2) / (n1 * n2) + g**2 / (2 * (n1 + n2)))
    else:
        g, g_se = (0.0 if diff == 0 else math.copysign(math.inf, diff)), 0.0
    return {
        "concept_mean": float(a.mean()), "random_mean": float(b.mean()),
        "concept_std": float(a.std(ddof=1)), "random_std": float(b.std(ddof=1)),
        "t": float(t), "p_t": float(p_t), "p_perm": p_perm,
        "diff": diff, "diff_low": diff - half, "diff_high": diff + half,
        "hedges_g": g, "g_low": g - 1.96 * g_se, "g_high": g + 1.96 * g_se,
    }


def bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Bonferroni-adjusted p-values: ``min(1, m p)``."""
    p = np.asarray(pvalues, dtype=float)
    return np.minimum(1.0, p * len(p))


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate)."""
    p = np.asarray(pvalues, dtype=float)
    return stats.false_discovery_control(p, method="bh") if len(p) else p
