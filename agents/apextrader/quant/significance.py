"""The walk-forward gate's test: is the out-of-sample (OOS) edge more than luck after N trials?

Method `oos-t-bonferroni` (docs/backtest.md explains the choice):

* **Statistic.** The one-sample t-statistic of the OOS per-trade returns against the required
  expectancy m: `t = (mean - m) / (std(ddof=1) / sqrt(n))`.
* **Threshold.** The Student-t quantile with n - 1 degrees of freedom at `1 - alpha / N`, where
  `alpha` is `backtest.significance` and N the number of parameter sets the walk-forward tried (the
  grid points). A pair is accepted when `t > threshold`.
* **What it bounds.** With per-trade returns roughly independent with finite variance, a strategy
  with no edge (true mean <= m) passes with probability <= alpha even if the reported OOS result
  were the best of N tries (Bonferroni holds under any dependence among the trials). The OOS windows
  are never used for the choice, so this is conservative: the price is power, not false positives.

The t distribution is computed here (regularised incomplete beta, Lentz's continued fraction) so
the agents need no scipy; the tests compare it with scipy's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

METHOD: Final = "oos-t-bonferroni"
_EPS: Final = 1e-14
_TINY: Final = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for aa in (even, odd):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln_front) * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, dof: float) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom."""
    tail = 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, dof: float) -> float:
    """The t with P(T <= t) = p (bisection on `t_sf`; p in (0, 1))."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_sf(hi, dof) > 1.0 - p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, dof) > 1.0 - p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Significance:
    statistic: float | None  # None: fewer than 2 trades or zero spread (no t-statistic exists)
    threshold: float | None  # None: fewer than 2 trades
    trials: int
    method: str
    significant: bool


def significance_of(
    mean: float, se: float | None, n: int, minimum: float, alpha: float, trials: int
) -> Significance:
    """The gate's test for n OOS trades with mean `mean` and standard error `se`."""
    trials = max(1, trials)
    if n < 2:
        return Significance(None, None, trials, METHOD, False)
    threshold = t_quantile(1.0 - alpha / trials, n - 1)
    if not se:
        # every trade returned the same: a t-statistic is undefined; no spread is no evidence
        return Significance(None, threshold, trials, METHOD, False)
    statistic = (mean - minimum) / se
    return Significance(statistic, threshold, trials, METHOD, statistic > threshold)
