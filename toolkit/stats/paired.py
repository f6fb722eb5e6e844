"""The paired difference of two methods run on the same seeds: its mean, t-interval and p-value.

Two methods trained on the same seeds (same initialisation stream, same data order) give pairs
``(a_i, b_i)``; the seed-to-seed spread they share cancels in ``d_i = a_i - b_i``, so the paired
interval is much narrower than comparing two means. With ``n`` seeds, mean ``d̄`` and standard
deviation ``s`` of the differences, the t-interval (Student 1908) is

    d̄ ± t_{n-1, 1-α/2} · s / √n,        α = 1 - confidence,

and the p-value is that of the paired t-test of ``d̄ = 0``: both come from ``scipy.stats.ttest_rel``.
It assumes the ``d_i`` are independent draws from a roughly normal distribution; with ``n >= 5``
seeds it is robust to moderate skew.

What it measures: variation over *seeds* on a *fixed* test set. It does not include the test set's
own sampling noise (a 270-image test set moves accuracy by 1/270 = 0.37 points per image); for that
see ``bootstrap_ci`` and ``samples_needed``.

References: Student (1908), "The probable error of a mean", Biometrika 6(1); Bouthillier et al.
(2021), "Accounting for variance in machine learning benchmarks", arXiv:2103.03098.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from toolkit.stats._checks import TableRow, check_confidence, check_sample

__all__ = ["PairedDifference", "paired_difference"]


@dataclass(frozen=True)
class PairedDifference(TableRow):
    """Mean paired difference ``a - b`` with its t-interval; displays as a one-row table.

    Attributes:
        difference: mean of ``a_i - b_i``.
        low, high: the ``confidence`` t-interval of the mean difference.
        p_value: two-sided paired t-test of "mean difference = 0".
        n: number of pairs (seeds).
        confidence: the interval's confidence level.
        sd: standard deviation of the differences (``ddof=1``).
    """

    difference: float
    low: float
    high: float
    p_value: float
    n: int
    confidence: float
    sd: float

    _properties = ("excludes_zero",)

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0: the difference is detectable."""
        return bool(self.low > 0 or self.high < 0)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paired_difference(a: Any, b: Any, confidence: float = 0.95) -> PairedDifference:
    """Mean of ``a - b`` over paired seeds, its t-interval and p-value (``scipy.stats.ttest_rel``).

    The interval is ``d̄ ± t_{n-1,1-α/2} s/√n`` with ``d_i = a_i - b_i``, ``s`` their standard deviation
    and ``α = 1 - confidence``; the numbers are scipy's (``ttest_rel(a, b)`` and its
    ``confidence_interval(confidence)``).

    Zero variance: when every difference is the same value ``d`` (``s = 0``), the interval collapses to
    ``[d, d]`` (scipy's limit). scipy's p-value is then 0 for ``d != 0`` and NaN for ``d = 0``; here it is
    0 and 1 respectively, so two identical methods read as "no detectable difference" (p = 1,
    ``excludes_zero`` False), and a method that is better by exactly ``d`` on every seed reads as better.
    A zero-width interval says only that seeds do not move the difference; test-set noise is not in it.

    Args:
        a, b: per-seed results of two methods, 1-D, same length ``n >= 2``, finite, paired by position
            (``a[i]`` and ``b[i]`` are the same seed; ``compare`` pairs a DataFrame by its seed column).
        confidence: confidence level in (0, 1).

    Returns:
        A frozen ``PairedDifference`` (``.excludes_zero``, ``.to_dict()``; prints as a table row).

    Example:
        >>> r = paired_difference([0.91, 0.93, 0.92, 0.94, 0.92], [0.90, 0.91, 0.91, 0.92, 0.90])
        >>> round(r.difference, 3), r.n, r.excludes_zero
        (0.016, 5, True)
    """
    a, b = check_sample("a", a), check_sample("b", b)
    if len(a) != len(b):
        raise ValueError(f"a and b must have the same length (one value per shared seed), got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired difference needs at least 2 pairs (the course asks for >= 5 seeds), got {len(a)}")
    check_confidence(confidence)
    differences = a - b
    constant = bool(np.all(differences == differences[0]))
    with warnings.catch_warnings():
        if constant:  # scipy warns about catastrophic cancellation and returns nan/inf; handled below
            warnings.simplefilter("ignore", RuntimeWarning)
        result = _scipy_stats.ttest_rel(a, b)
        interval = result.confidence_interval(confidence_level=confidence)
    p_value = float(result.pvalue)
    low, high = float(interval.low), float(interval.high)
    if constant:
        d = float(differences[0])
        p_value, low, high = (1.0 if d == 0 else 0.0), d, d
    return PairedDifference(difference=float(differences.mean()), low=low, high=high, p_value=p_value,
                            n=len(a), confidence=float(confidence), sd=float(differences.std(ddof=1)))
