"""The significance tests against scipy's own functions and a hand-computed BH correction."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from interp.concepts.significance import benjamini_hochberg, bonferroni, compare_scores


def test_t_test_and_interval_equal_scipys():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.6, 0.1, 10), rng.normal(0.5, 0.15, 12)
    out = compare_scores(a, b, n_permutations=999, seed=3)
    reference = stats.ttest_ind(a, b)
    assert out["t"] == pytest.approx(reference.statistic, rel=1e-12)
    assert out["p_t"] == pytest.approx(reference.pvalue, rel=1e-10)
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (out["diff_low"], out["diff_high"]) == pytest.approx((welch.low, welch.high), rel=1e-10)
    perm = stats.permutation_test((a, b), lambda x, y: np.mean(x) - np.mean(y), n_resamples=999,
                                  alternative="two-sided", rng=np.random.default_rng(3))
    assert out["p_perm"] == perm.pvalue


def test_constant_sample_gives_scipys_numbers_without_a_warning():
    a, b = np.ones(10), np.array([1.0, 0.9, 1.0, 0.8, 1.0, 0.95, 1.0, 0.7, 1.0, 0.9])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = stats.ttest_ind(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compare_scores(a, b, n_permutations=99)
    assert out["t"] == pytest.approx(reference.statistic, rel=1e-12)
    assert out["p_t"] == pytest.approx(reference.pvalue, rel=1e-10)


def test_identical_constant_samples_are_not_significant():
    out = compare_scores(np.ones(5), np.ones(5))
    assert (out["t"], out["p_t"], out["p_perm"]) == (0.0, 1.0, 1.0)


def test_corrections():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    assert bonferroni(p) == pytest.approx([0.04, 0.16, 0.12, 0.8])
    # BH by hand: sorted p (0.01, 0.03, 0.04, 0.2) times m/rank = (0.04, 0.06, 0.0533, 0.2), then the
    # running minimum from the largest rank down: (0.04, 0.0533, 0.0533, 0.2)
    assert benjamini_hochberg(p) == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
