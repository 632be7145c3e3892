"""Small, exact statistics for paired comparisons on matched seeds (pure Python, no scipy needed).

With 3-5 seeds per cell, asymptotic tests are meaningless, so the rank tests here are exact:

- :func:`sign_test`: exact two-sided binomial sign test (ties dropped).
- :func:`wilcoxon_signed_rank`: exact two-sided Wilcoxon signed-rank test (zero differences dropped,
  tied |differences| get mid-ranks; the null distribution is enumerated over the actual ranks, so it
  stays exact with ties). Matches ``scipy.stats.wilcoxon(d, method="exact")`` when there are no ties.
- :func:`sign_flip_test`: exact paired permutation test of the mean difference (all 2^n sign flips
  enumerated up to n = 20, a seeded Monte-Carlo sample of 200,000 flips above).
- :func:`paired_t_test` and :func:`mean_ci`: Student t test and 95 % t-interval of the mean paired
  difference (the t distribution through the regularised incomplete beta function; matches scipy to
  ~1e-10).
- :func:`holm`: Holm-Bonferroni step-down adjustment over a report's compared cells.
- :func:`min_exact_p`: the smallest two-sided p an exact paired test can reach with n pairs (2/2^n),
  so a report can say when n seeds can never be significant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MeanCI:
    """A mean with its two-sided confidence interval."""

    mean: float
    low: float
    high: float
    level: float = 0.95


@dataclass(frozen=True)
class PairedTest:
    """Result of a paired test; ``p_value`` is None when no non-zero difference exists."""

    name: str  # "sign" | "wilcoxon" | "sign-flip" | "t"
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


def min_exact_p(n: int) -> float:
    """Smallest two-sided p-value an exact paired test (sign, Wilcoxon, sign-flip) can give with n pairs."""
    return 1.0 if n <= 0 else min(1.0, 2.0 / 2**n)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(lbeta)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf_two_sided(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The p-quantile (0.5 < p < 1) of Student's t, by bisection on the exact tail."""
    target = 2.0 * (1.0 - p)  # two-sided tail at the quantile
    lo, hi = 0.0, 1.0
    while t_sf_two_sided(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_sf_two_sided(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def mean_ci(values: Sequence[float], level: float = 0.95) -> MeanCI | None:
    """Mean and its two-sided t-interval; None for fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    m = mean(values)
    sd = sample_std(values) or 0.0
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return MeanCI(m, m - half, m + half, level)


def paired_t_test(differences: Sequence[float]) -> PairedTest | None:
    """Two-sided one-sample t test of mean(differences) = 0; None for fewer than two differences."""
    n = len(differences)
    if n < 2:
        return None
    m = mean(differences)
    sd = sample_std(differences) or 0.0
    if sd == 0.0:
        return PairedTest("t", n, 0.0 if m == 0 else math.copysign(math.inf, m), None if m == 0 else 0.0)
    t = m / (sd / math.sqrt(n))
    return PairedTest("t", n, t, t_sf_two_sided(t, n - 1))


def sign_flip_test(differences: Sequence[float], *, exact_up_to: int = 20, samples: int = 200_000,
                   seed: int = 0) -> PairedTest | None:
    """Paired permutation test of the mean difference: two-sided, p = share of sign flips with
    |sum| >= |observed sum|. Exact (all 2^n flips) up to ``exact_up_to`` pairs, else a seeded
    Monte-Carlo estimate (with the observed flip counted, so p is never 0)."""
    d = [float(x) for x in differences if x != 0]
    n = len(d)
    if n == 0:
        return None
    observed = abs(math.fsum(d)) - 1e-12 * max(1.0, max(abs(x) for x in d))
    if n <= exact_up_to:
        hits = 0
        for mask in range(2**n):
            s = math.fsum(-x if (mask >> i) & 1 else x for i, x in enumerate(d))
            hits += abs(s) >= observed
        return PairedTest("sign-flip", n, math.fsum(d), hits / 2**n)
    import random

    rng = random.Random(seed)
    hits = 1
    for _ in range(samples):
        s = math.fsum(x if rng.random() < 0.5 else -x for x in d)
        hits += abs(s) >= observed
    return PairedTest("sign-flip", n, math.fsum(d), hits / (samples + 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given; monotone; capped at 1)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
