"""Two-sample statistics of ``mean(a) - mean(b)``: ``welch``, ``hedges_g``, ``holm``, the exact
``permutation_test`` and its equivalence test ``tost``; NaN where a test cannot be computed.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

ALPHA = 0.05  # the significance level of every test the project reports
MAX_SPLITS = 200_000  # C(18, 9) = 48,620: every design of this project is enumerated exactly
_TOLERANCE = 1e-12  # relative: a split's statistic this close to the observed one counts as equal


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    return a[np.isfinite(a)], b[np.isfinite(b)]


def welch(a, b, confidence: float = 0.95) -> dict:
    """Welch's t-test: ``diff``, ``se``, ``df``, ``t``, ``p`` (two-sided), ``ci_low`` and
    ``ci_high`` (the ``confidence`` interval of the difference)."""
    from scipy import stats

    a, b = _pair(a, b)
    nan = dict.fromkeys(("diff", "se", "df", "t", "p", "ci_low", "ci_high"), float("nan"))
    if len(a) < 2 or len(b) < 2:
        return {**nan, "diff": float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return {**nan, "diff": diff}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    t = diff / se
    half = stats.t.ppf(0.5 + confidence / 2, df) * se
    return dict(diff=diff, se=se, df=float(df), t=float(t), p=float(2 * stats.t.sf(abs(t), df)),
                ci_low=diff - half, ci_high=diff + half)


def hedges_g(a, b, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(g, low, high)``: Hedges' g of mean(a) - mean(b) and its normal-approximation
    interval (Hedges & Olkin 1985); NaN below 2 values per sample or with no variance."""
    from scipy import stats

    a, b = _pair(a, b)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return (float("nan"),) * 3
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return (float("nan"),) * 3
    g = (1 - 3 / (4 * (na + nb) - 9)) * (a.mean() - b.mean()) / pooled
    se = math.sqrt((na + nb) / (na * nb) + g**2 / (2 * (na + nb)))
    z = stats.norm.ppf(0.5 + confidence / 2)
    return float(g), float(g - z * se), float(g + z * se)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input's order; NaN stays NaN."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    order = finite[np.argsort(p[finite], kind="stable")]
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def permutation_test(a, b, alternative: str = "two-sided") -> float:
    """Exact permutation test of the difference of means: the share of all splits of the
    pooled values as extreme as the observed one, itself included (5 vs 5 separated: 2/252)."""
    a, b = _pair(a, b)
    if not len(a) or not len(b):
        return float("nan")
    pooled, na = np.concatenate([a, b]), len(a)
    count = math.comb(len(pooled), na)
    if count > MAX_SPLITS:
        raise ValueError(f"{count} splits of {len(a)} vs {len(b)} values are too many to "
                         f"enumerate (limit {MAX_SPLITS}); the exact test is for seed counts")
    # the sum of the first group of every split of the pooled values, the observed one included
    first = np.fromiter((pooled[list(c)].sum() for c in combinations(range(len(pooled)), na)),
                        float, count)
    observed, diffs = float(a.mean() - b.mean()), first / na - (pooled.sum() - first) / len(b)
    slack = _TOLERANCE * max(1.0, abs(observed))
    extreme = {"two-sided": np.abs(diffs) >= abs(observed) - slack,
               "greater": diffs >= observed - slack, "less": diffs <= observed + slack}
    if alternative not in extreme:
        raise ValueError(f"alternative={alternative!r}: use 'two-sided', 'greater' or 'less'")
    return float(extreme[alternative].mean())


def tost(a, b, margin: float) -> dict:
    """Schuirmann's TOST within +-``margin`` by two one-sided ``permutation_test``s: ``p`` is
    the larger of ``p_low`` and ``p_high``; NaN unless ``margin`` is positive and finite."""
    a, b = _pair(a, b)
    if not (isinstance(margin, (int, float, np.number)) and math.isfinite(margin) and margin > 0):
        return dict(margin=float("nan"), p_low=float("nan"), p_high=float("nan"), p=float("nan"))
    p_low = permutation_test(a + margin, b, "greater")
    p_high = permutation_test(a - margin, b, "less")
    return dict(margin=float(margin), p_low=p_low, p_high=p_high, p=max(p_low, p_high))


def mean_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its t interval (NaN below 2 values)."""
    from scipy import stats

    values, _ = _pair(values, [])
    n = len(values)
    if n < 2:
        return (float(values.mean()) if n else float("nan")), float("nan")
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean()), float(half)
