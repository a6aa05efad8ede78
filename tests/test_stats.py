import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from resvae_keras import stats


def test_exact_permutation_p_of_fully_separated_five_against_five_is_two_in_252():
    a, b = [10.0, 11.0, 12.0, 13.0, 14.0], [1.0, 2.0, 3.0, 4.0, 5.0]
    assert math.comb(10, 5) == 252
    assert stats.permutation_test(a, b) == pytest.approx(2 / 252)
    assert stats.permutation_test(a, b, "greater") == pytest.approx(1 / 252)
    assert stats.permutation_test(a, b, "less") == pytest.approx(1.0)
    assert stats.permutation_test(b, a) == pytest.approx(2 / 252)  # symmetric
    with pytest.raises(ValueError, match="too many"):  # C(22, 11) = 705,432 splits
        stats.permutation_test(np.arange(11.0), np.arange(11.0) + 1)


def test_permutation_p_counts_every_split_as_extreme_as_the_observed_one():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.5, 1, 4), rng.normal(0, 1, 5)
    pooled, observed = np.concatenate([a, b]), a.mean() - b.mean()
    count = sum(abs(pooled[list(c)].mean() - np.delete(pooled, list(c)).mean()) >= abs(observed)
                - 1e-12 for c in combinations(range(9), 4))
    assert stats.permutation_test(a, b) == pytest.approx(count / math.comb(9, 4))
    assert stats.permutation_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0  # no difference
    assert math.isnan(stats.permutation_test([], [1.0]))
    with pytest.raises(ValueError, match="alternative"):
        stats.permutation_test(a, b, "bigger")


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 -> max(0.06, 0.04)
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert stats.holm([0.5, 0.9])[1] == 1.0  # capped at 1


def test_tost_shows_equivalence_only_when_the_whole_difference_lies_within_the_margin():
    a = np.array([1.00, 1.01, 0.99, 1.02, 0.98, 1.00])
    b = a[::-1] + 0.005
    close = stats.tost(a, b, margin=0.1)
    # a + 0.1 lies above b entirely and a - 0.1 below it: each one-sided p is 1/924
    assert close["p_low"] == pytest.approx(1 / 924) and close["p_high"] == pytest.approx(1 / 924)
    assert close["p"] < 0.05
    far = stats.tost(a + 0.5, b, margin=0.1)  # a real difference of 0.5: not equivalent
    assert far["p"] > 0.5
    tight = stats.tost(a, b, margin=0.005)  # the margin below the spread: not shown either
    assert tight["p"] > 0.05
    assert math.isnan(stats.tost(a, b, margin=float("nan"))["p"])


def test_welch_interval_and_p_match_scipy_and_hedges_g_matches_hand_computation():
    a, b = np.array([20.6, 20.7, 20.65]), np.array([18.6, 18.7, 18.5, 18.65])
    ours = stats.welch(a, b)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert ours["t"] == pytest.approx(ref.statistic) and ours["p"] == pytest.approx(ref.pvalue)
    half = scipy_stats.t.ppf(0.975, ours["df"]) * ours["se"]
    assert ours["ci_low"] == pytest.approx(ours["diff"] - half)
    pooled = math.sqrt((2 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 5)
    g = (1 - 3 / (4 * 7 - 9)) * (a.mean() - b.mean()) / pooled
    half = 1.959964 * math.sqrt(7 / 12 + g**2 / 14)
    assert stats.hedges_g(a, b) == pytest.approx((g, g - half, g + half), rel=1e-5)
    assert math.isnan(stats.welch([1.0], b)["p"])
    assert math.isnan(stats.welch([1.0, 1.0], [2.0, 2.0])["p"])  # no variance: not testable


def test_mean_interval_is_the_t_interval_of_the_mean():
    mean, half = stats.mean_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
    assert math.isnan(stats.mean_interval([4.0])[1])
