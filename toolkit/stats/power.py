"""How many test samples a difference in accuracy needs, and the smallest difference ``n`` samples can detect.

Normal approximation to the two-sided two-proportion z-test (Fleiss, Levin & Paik 2003, ch. 4; the
formula of R's ``power.prop.test``). Two models with accuracies ``p1 = accuracy`` and
``p2 = accuracy + difference`` are each scored on ``n`` independent test samples; with
``p̄ = (p1 + p2)/2``, ``z_a = Φ⁻¹(1 - α/2)`` (``α = 1 - confidence``) and ``z_b = Φ⁻¹(power)``,

    n = ( z_a √(2 p̄ (1 - p̄)) + z_b √(p1 (1 - p1) + p2 (1 - p2)) )² / difference²

(the pooled variance under "no difference", the unpooled one under the alternative; the negligible
opposite tail is ignored). Rounded up to an integer.

Two models scored on the *same* test set are paired, and their errors are positively correlated;
McNemar's test then needs fewer samples than this, so read the figure as the independent-samples
size (an upper bound for typical correlated models). Whatever the test, one test image moves
accuracy by ``1/n``: 0.37 points on 270 images.

References: Fleiss, Levin & Paik (2003), "Statistical Methods for Rates and Proportions", 3rd ed.,
Wiley, section 4.2; Dietterich (1998), "Approximate statistical tests for comparing supervised
classification learning algorithms", Neural Computation 10(7).
"""

from __future__ import annotations

import math
from typing import Any

from scipy import optimize as _optimize
from scipy import stats as _scipy_stats

from toolkit.stats._checks import check_confidence, check_int

__all__ = ["detectable_difference", "samples_needed"]

GRID_POINTS = 200  # coarse scan that brackets the smallest detectable gain before brentq


def _check_probability(name: str, value: Any, *, open_ends: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (0 < value < 1 if open_ends else 0 <= value <= 1):
        raise ValueError(f"{name} must be a number in {'(0, 1)' if open_ends else '[0, 1]'}, got {value!r}")


def _root_n(difference: float, accuracy: float, confidence: float, power: float) -> float:
    p1, p2 = accuracy, accuracy + difference
    mean = (p1 + p2) / 2
    z_a = _scipy_stats.norm.ppf(1 - (1 - confidence) / 2)
    z_b = _scipy_stats.norm.ppf(power)
    return (z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) / abs(difference)


def samples_needed(difference: float, accuracy: float, confidence: float = 0.95, power: float = 0.8) -> int:
    """Test samples per model for a two-sided test at ``1 - confidence`` to detect ``difference`` with ``power``.

    ``n = (z_{1-α/2} √(2 p̄(1-p̄)) + z_{power} √(p1(1-p1) + p2(1-p2)))² / difference²`` with
    ``p1 = accuracy``, ``p2 = accuracy + difference`` (see the module docstring).

    Args:
        difference: accuracy difference to detect, non-zero, with ``accuracy + difference`` in [0, 1]
            (e.g. 0.01 for one point).
        accuracy: the baseline's accuracy, in (0, 1).
        confidence: ``1 - α`` of the test, in (0, 1).
        power: probability of detecting the difference when it is real, in (0, 1).

    Returns:
        The number of test samples (rounded up).

    Example:
        >>> samples_needed(0.25, 0.5, power=0.9)  # R: power.prop.test(p1=.5, p2=.75, power=.9): n = 76.7
        77
    """
    _check_probability("accuracy", accuracy, open_ends=True)
    if not isinstance(difference, (int, float)) or isinstance(difference, bool) or difference == 0 \
            or not 0 <= accuracy + difference <= 1:
        raise ValueError(f"difference must be a non-zero number with accuracy + difference in [0, 1] "
                         f"(accuracy={accuracy!r}), got {difference!r}")
    check_confidence(confidence)
    _check_probability("power", power, open_ends=True)
    return math.ceil(_root_n(difference, accuracy, confidence, power) ** 2 - 1e-9)


def detectable_difference(n: int, accuracy: float, confidence: float = 0.95, power: float = 0.8) -> float:
    """Smallest accuracy *gain* over ``accuracy`` that ``n`` test samples per model detect with ``power``.

    The inverse of ``samples_needed``: solves its formula for ``difference > 0`` (``scipy.optimize.brentq``).
    Returns NaN when even a perfect model (``accuracy + difference = 1``) cannot be detected, as near
    100% accuracy on a small test set. For a drop, use ``detectable_difference(n, 1 - accuracy)``:
    the formula is symmetric in errors and correct answers.

    Args:
        n: test samples per model, ``>= 1``.
        accuracy: the baseline's accuracy, in (0, 1).
        confidence, power: as in ``samples_needed``.

    Example:
        >>> round(detectable_difference(50, 0.5, power=0.9), 4)  # R's power.prop.test: p2 = 0.8026
        0.3026
    """
    check_int("n", n, 1)
    _check_probability("accuracy", accuracy, open_ends=True)
    check_confidence(confidence)
    _check_probability("power", power, open_ends=True)
    root = math.sqrt(n)

    def gap(d: float) -> float:
        return _root_n(d, accuracy, confidence, power) - root

    grid = [(1 - accuracy) * i / GRID_POINTS for i in range(1, GRID_POINTS + 1)]
    first = next((i for i, d in enumerate(grid) if gap(d) <= 0), None)  # brackets the smallest gain
    if first is None:
        return math.nan
    if gap(grid[first]) == 0:
        return float(grid[first])
    low = grid[first - 1] if first else grid[0] * 1e-9
    return float(_optimize.brentq(gap, low, grid[first], xtol=1e-12))
