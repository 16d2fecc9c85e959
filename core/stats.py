"""Summary statistics the reports share."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# scipy.stats is imported in the two functions that use it: it takes about 0.75 s, and the
# modules that import this one are imported by every task's checks (a usage error's path)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean, t-interval half-width and n of ``values``, None and NaN values skipped.

    The half-width is NaN for fewer than two values; the mean is NaN for none.
    """
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(kept)
    if n == 0:
        return math.nan, math.nan, 0
    mean = math.fsum(kept) / n
    if n < 2:
        return mean, math.nan, n
    from scipy import stats

    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1))
    quantile = float(stats.t.ppf((1 + confidence) / 2, df=n - 1))
    return mean, quantile * sd / math.sqrt(n), n


def welch(before: Sequence[float], after: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p of after - before (NaN with fewer than 2 each)."""
    if len(before) < 2 or len(after) < 2:
        return math.nan, math.nan
    from scipy import stats

    result = stats.ttest_ind(after, before, equal_var=False)
    return float(result.statistic), float(result.pvalue)
