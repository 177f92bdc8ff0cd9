"""The count test behind every flag: is a pair (or a claim group) cited by bad answers more often
than the bad-answer base rate explains?

Of the N finished items, B are bad; the pair is cited by n of them, k bad. Under the null those n
are a random draw, so p = P(X ≥ k), X ~ Hypergeometric(N, B, n) (one-sided Fisher's exact test).
Only *testable* counts enter the Benjamini–Hochberg correction: those with n ≥ ``min_bad`` whose
smallest achievable p (all n bad) is ≤ alpha (Tarone's filter, as adapted to FDR by Gilbert
2005). The filter looks at n alone, never at the verdicts, so it keeps the FDR guarantee;
untestable counts get q = 1.
"""

from __future__ import annotations

import numpy as np

from ...settings import FlagSettings

__all__ = ["benjamini_hochberg", "count_test", "upper_tail"]


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values of `p_values` (scipy's ``false_discovery_control``)."""
    from scipy.stats import false_discovery_control

    if p_values.size == 0:
        return p_values
    return false_discovery_control(p_values, method="bh")


def upper_tail(k: np.ndarray, n: np.ndarray, population: int, bad: int) -> np.ndarray:
    """P(X ≥ k), X ~ Hypergeometric(population, bad, n), elementwise.

    Once per distinct n, for every k at once: scipy's sf sums the pmf afresh for every (k, n),
    about a millisecond each, and a run of millions of cited pairs has tens of thousands of
    distinct (k, n) but far fewer distinct n. The log-pmf is carried from term to term by the
    ratio pmf(j+1)/pmf(j) = (B-j)(n-j) / ((j+1)(N-B-n+j+1)) over the mode ± 40 standard
    deviations and the values asked for (the mass outside is below e⁻⁸⁰⁰), normalised to sum
    to 1, and summed from the top in log space, so tails of 10⁻³⁰⁰ keep their digits. Agrees
    with scipy's sf to a relative 10⁻¹¹ (tests/test_flagging.py).
    """
    k, n = np.asarray(k, dtype=np.int64).ravel(), np.asarray(n, dtype=np.int64).ravel()
    out = np.empty(k.shape, dtype=float)
    order = np.argsort(n, kind="stable")
    sorted_n = n[order]
    starts = np.flatnonzero(np.r_[True, sorted_n[1:] != sorted_n[:-1]]) if n.size else np.zeros(0, int)
    good = population - bad
    for start, stop in zip(starts, np.r_[starts[1:], n.size].astype(int)):
        rows = order[start:stop]
        size = int(sorted_n[start])
        first, last = max(0, size - good), min(size, bad)       # where X can be
        asked = k[rows]
        mode = min(max((size + 1) * (bad + 1) // (population + 2), first), last)
        spread = 40 * int(np.sqrt(size * bad * good * max(population - size, 0)
                                   / (population ** 2 * max(population - 1, 1)))) + 50
        begin = max(first, mode - spread)
        end = min(last, max(int(asked.max()), mode) + spread)
        j = np.arange(begin, end, dtype=float)
        steps = np.log((bad - j) * (size - j)) - np.log((j + 1) * (good - size + j + 1))
        log_pmf = np.concatenate([[0.0], np.cumsum(steps)])
        log_upper = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
        upper = np.minimum(np.exp(log_upper - log_upper[0]), 1.0)
        at = np.clip(asked - begin, 0, end - begin)
        out[rows] = np.where(asked <= begin, 1.0, np.where(asked > end, 0.0, upper[at]))
    return out


def count_test(k: np.ndarray, n: np.ndarray, population: int, bad: int, settings: FlagSettings
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, q, testable) of counts k bad of n citing items; Tarone's filter on n alone."""
    p = np.where(n > 0, upper_tail(k, np.maximum(n, k), population, bad), 1.0) if k.size else np.zeros(0)
    p_min = np.where(n > 0, upper_tail(n, n, population, bad), 1.0) if n.size else np.zeros(0)
    testable = (n >= settings.min_bad) & (p_min <= settings.alpha)
    q = np.ones(len(k))
    q[testable] = benjamini_hochberg(p[testable])
    return p, q, testable
