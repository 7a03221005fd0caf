"""Mean, standard deviation and Student-t confidence interval of a few values (numpy only).

Used for results over seeds: `mean_interval(values)` of one arm's scores, or of the paired
differences (one per seed) between two arms. The t quantile is computed exactly from the closed
form of Student's t distribution for integer degrees of freedom (Abramowitz & Stegun 26.7.3-4),
inverted by bisection, so no table and no scipy are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class MeanInterval:
    """Mean of `n` values, their sample standard deviation (ddof 1) and the t interval of the mean;
    sd and interval are NaN for n < 2 (undefined), everything is NaN for n = 0."""

    mean: float
    sd: float
    ci_low: float
    ci_high: float
    n: int
    level: float = 0.95  # two-sided coverage of [ci_low, ci_high]

    @property
    def excludes_zero(self) -> bool:
        """True when the interval is defined and 0 lies outside it."""
        return bool(self.ci_low > 0 or self.ci_high < 0)


def t_coverage(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` >= 1 degrees of freedom (exact closed form)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 c2 + 2*4/(3*5) c2^2 + ...)), (df - 1) / 2 terms
        k = np.arange(1, (df - 1) // 2)
        series = 1 + np.cumprod(2 * k / (2 * k + 1) * c2).sum() if df > 1 else 0.0
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)
    k = np.arange(1, df // 2)  # even: sin (1 + 1/2 c2 + 1*3/(2*4) c2^2 + ...), df / 2 terms
    return math.sin(theta) * (1 + np.cumprod((2 * k - 1) / (2 * k) * c2).sum())


def t_critical(level: float, df: int) -> float:
    """The t with P(|T| <= t) = `level` for `df` degrees of freedom: the two-sided quantile of a
    `level` confidence interval (e.g. 4.303 for 0.95 and df = 2)."""
    if not 0 < level < 1 or df < 1:
        raise ValueError(f"t_critical: level must be in (0, 1) and df >= 1, got {level}, {df}")
    lo, hi = 0.0, math.pi / 2  # bisection on theta = atan(t / sqrt(df)), coverage rises with it
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_coverage(math.sqrt(df) * math.tan(mid), df) < level else (lo, mid)
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def mean_interval(values: ArrayLike, level: float = 0.95) -> MeanInterval:
    """Mean, sample sd and `level` t interval of the mean (mean +- t * sd / sqrt(n)) of `values`;
    NaN values are left out (`n` counts the others)."""
    x = np.asarray(values, np.float64).ravel()
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return MeanInterval(math.nan, math.nan, math.nan, math.nan, 0, level)
    mean = float(x.mean())
    if n == 1:
        return MeanInterval(mean, math.nan, math.nan, math.nan, 1, level)
    sd = float(x.std(ddof=1))
    half = t_critical(level, n - 1) * sd / math.sqrt(n)
    return MeanInterval(mean, sd, mean - half, mean + half, n, level)


__all__ = ["MeanInterval", "mean_interval", "t_critical", "t_coverage"]
