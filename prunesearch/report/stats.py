"""Small, exact statistics for paired comparisons on matched seeds (pure Python, no scipy needed).

With 3-5 seeds per cell, asymptotic tests are meaningless, so both tests here are exact:

- :func:`sign_test`: exact two-sided binomial sign test (ties dropped).
- :func:`wilcoxon_signed_rank`: exact two-sided Wilcoxon signed-rank test (zero differences dropped,
  tied |differences| get mid-ranks; the null distribution is enumerated over the actual ranks, so it
  stays exact with ties). Matches ``scipy.stats.wilcoxon(d, method="exact")`` when there are no ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired test; ``p_value`` is None when no non-zero difference exists."""

    name: str  # "sign" | "wilcoxon"
    n: int  # number of non-zero differences used
    statistic: float  # sign: number of positive differences; wilcoxon: min(W+, W-)
    p_value: float | None


def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def sample_std(values: Sequence[float]) -> float | None:
    """Sample standard deviation (ddof=1); None for fewer than two values."""
    if len(values) < 2:
        return None
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def sign_test(differences: Sequence[float]) -> PairedTest:
    """Exact two-sided sign test: p = min(1, 2 * P(X <= min(k, n - k))), X ~ Binomial(n, 1/2)."""
    nonzero = [d for d in differences if d != 0]
    n = len(nonzero)
    k = sum(1 for d in nonzero if d > 0)
    if n == 0:
        return PairedTest("sign", 0, 0.0, None)
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return PairedTest("sign", n, float(k), min(1.0, 2.0 * tail))


def _midranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n of ``values``; tied values share the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon_signed_rank(differences: Sequence[float]) -> PairedTest:
    """Exact two-sided Wilcoxon signed-rank test on paired differences.

    Statistic W = min(W+, W-). Under H0 every rank's sign is +/- with probability 1/2; the exact
    distribution of W+ is built by dynamic programming over the (doubled, hence integer) mid-ranks.
    """
    # Round away float noise so that e.g. 0.1 - 0.3 and 0.3 - 0.5 count as tied |differences|.
    nonzero = [round(d, 12) for d in differences if round(d, 12) != 0]
    n = len(nonzero)
    if n == 0:
        return PairedTest("wilcoxon", 0, 0.0, None)
    ranks = _midranks([abs(d) for d in nonzero])
    doubled = [int(round(2 * r)) for r in ranks]  # mid-ranks are multiples of 1/2
    w_plus2 = sum(r for r, d in zip(doubled, nonzero) if d > 0)
    total2 = sum(doubled)
    # counts[s] = number of sign assignments whose doubled W+ equals s.
    counts = [0] * (total2 + 1)
    counts[0] = 1
    for r in doubled:
        for s in range(total2, r - 1, -1):
            counts[s] += counts[s - r]
    all_ = 2**n
    lower = sum(counts[: w_plus2 + 1]) / all_
    upper = sum(counts[w_plus2:]) / all_
    w = min(w_plus2, total2 - w_plus2) / 2
    return PairedTest("wilcoxon", n, w, min(1.0, 2.0 * min(lower, upper)))


def normalized_auc(points: Sequence[tuple[float, float]], lo: float, hi: float) -> float | None:
    """Mean of a piecewise-linear curve y(x) over [lo, hi] (area / (hi - lo)).

    ``points`` are (x, y) pairs; the curve is linear between points and undefined outside them, so
    [lo, hi] must lie inside the points' x-range. When lo == hi the limit is y(lo).
    """
    pts = sorted(points)
    if not pts or lo > hi or lo < pts[0][0] - 1e-12 or hi > pts[-1][0] + 1e-12:
        return None

    def y_at(x: float) -> float:
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x0 <= x <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return pts[0][1] if abs(x - pts[0][0]) <= 1e-12 else pts[-1][1]

    if hi - lo <= 1e-12:
        return y_at(lo)
    xs = [lo] + [x for x, _ in pts if lo < x < hi] + [hi]
    area = math.fsum((b - a) * (y_at(a) + y_at(b)) / 2 for a, b in zip(xs, xs[1:]))
    return area / (hi - lo)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (params, accuracy) points not dominated by another (fewer-or-equal params
    and higher-or-equal accuracy, one strictly), sorted by params."""
    front = []
    for i, (p, a) in enumerate(points):
        dominated = any(
            (q <= p and b >= a) and (q < p or b > a) for j, (q, b) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))
