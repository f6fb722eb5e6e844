"""Live drift monitoring of served traffic, and the false-alarm rate of that monitor on clean traffic.

:class:`LiveDrift` keeps the last ``window`` served inputs and probabilities and runs the detectors
of :mod:`toolkit.monitoring` on them against the reference sample registered with the version:
per-feature Kolmogorov-Smirnov with a Bonferroni correction (``input_drift``; Rabanser, Günnemann &
Lipton, 2019, "Failing Loudly", arXiv:1810.11953) and a permutation test on the top-class confidence
(``output_drift``). The KS statistic of a feature is
:math:`D = \\sup_x |F_{\\mathrm{ref}}(x) - F_{\\mathrm{live}}(x)|`; the permutation p-value is
:math:`(1 + \\#\\{b: T_b \\ge T\\}) / (B + 1)` over ``B`` relabellings of the pooled samples.

:func:`false_alarm_rate` measures how often that monitor fires when nothing changed: it cuts clean
traffic into non-overlapping windows (overlapping windows are correlated, and their share of alarms
has no binomial error bar), runs the detectors on each and reports the share that fired with its
exact (Clopper-Pearson) 95% interval, which should cover the nominal ``alpha`` or lie below it.

Example:
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(500, 3)); probs = np.full((500, 2), 0.5)
    >>> table = false_alarm_rate(ref, probs, rng.normal(size=(2000, 3)), np.full((2000, 2), 0.5), window=200)
    >>> int(table.loc["input_ks", "windows"])
    10
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np
import pandas as pd

from toolkit.monitoring.drift import DriftResult, input_drift, output_drift

__all__ = ["LiveDrift", "clopper_pearson", "false_alarm_rate"]

DRIFT_WINDOW = 200
DRIFT_EVERY = 50
DRIFT_ALPHA = 0.01
DRIFT_PERMUTATIONS = 999
CONFIDENCE_LEVEL = 0.95


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _detect(reference_inputs: np.ndarray, reference_probs: np.ndarray, inputs: np.ndarray, probs: np.ndarray,
            alpha: float, n_permutations: int, seed: int) -> dict[str, DriftResult]:
    return {"input_ks": input_drift(reference_inputs, inputs, alpha=alpha),
            "output_confidence": output_drift(reference_probs, probs, alpha=alpha, n_permutations=n_permutations,
                                              seed=seed)}


class LiveDrift:
    """Drift tests on a sliding window of served inputs and probabilities (thread-safe).

    A test is due each time the count of served inputs reaches a multiple of ``every`` (with at least
    a full window served); it tests the window that ended exactly there, whenever :meth:`test` runs, so
    the same traffic gives the same windows and p-values however the requests were timed (a later
    window replaces an untested earlier one).

    Args:
        reference_inputs: ``(N, ...)`` model inputs the version was validated on.
        reference_probs: ``(N, C)`` the version's probabilities on them.
        window: served inputs tested together, ``>= 10``.
        every: a test every ``every`` served inputs, ``>= 1``.
        alpha: false-alarm rate of each detector per test, in ``(0, 1)``.
        n_permutations: resamples of the output test, ``>= 99``.
    """

    def __init__(self, reference_inputs: Any, reference_probs: Any, window: int = DRIFT_WINDOW,
                 every: int = DRIFT_EVERY, alpha: float = DRIFT_ALPHA, n_permutations: int = DRIFT_PERMUTATIONS) -> None:
        self.reference_inputs = np.asarray(reference_inputs, dtype=np.float64)
        self.reference_probs = np.asarray(reference_probs, dtype=np.float64)
        self.window, self.every = _check_int("window", window, 10), _check_int("every", every, 1)
        self.alpha, self.n_permutations = alpha, n_permutations
        self._inputs: deque = deque(maxlen=self.window)
        self._probs: deque = deque(maxlen=self.window)
        self._pending: tuple[np.ndarray, np.ndarray, int] | None = None
        self._tests = 0
        self.seen = 0         # inputs added so far
        self.tested_at = 0    # ``seen`` at the end of the last tested window
        self._lock = threading.Lock()

    def update(self, inputs: np.ndarray, probs: np.ndarray) -> None:
        """Add served inputs ``(n, ...)`` and their probabilities ``(n, C)``."""
        with self._lock:
            i = 0
            while i < len(inputs):
                take = min(self.every - self.seen % self.every, len(inputs) - i)
                self._inputs.extend(inputs[i:i + take])
                self._probs.extend(probs[i:i + take])
                self.seen += take
                i += take
                if self.seen % self.every == 0 and len(self._inputs) >= self.window:
                    self._pending = (np.stack(self._inputs), np.stack(self._probs), self.seen)

    def due(self) -> bool:
        return self._pending is not None

    def test(self) -> dict[str, DriftResult] | None:
        """Run both detectors on the latest due window; None when no test is due."""
        with self._lock:
            if self._pending is None:
                return None
            inputs, probs, self.tested_at = self._pending
            self._pending = None
            self._tests += 1
        # the permutations are seeded by the window's end, so a replay gets the same p-values
        return _detect(self.reference_inputs, self.reference_probs, inputs, probs, self.alpha,
                       self.n_permutations, seed=self.tested_at)


def clopper_pearson(successes: int, trials: int, confidence_level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Exact binomial interval of a proportion (Clopper & Pearson, 1934), via ``scipy.stats.binomtest``."""
    from scipy.stats import binomtest

    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level, method="exact")
    return float(interval.low), float(interval.high)


def false_alarm_rate(reference_inputs: Any, reference_probs: Any, clean_inputs: Any, clean_probs: Any,
                     window: int = DRIFT_WINDOW, alpha: float = DRIFT_ALPHA,
                     n_permutations: int = DRIFT_PERMUTATIONS) -> pd.DataFrame:
    """Share of non-overlapping clean windows on which each live detector fires, with its exact 95% CI.

    Args:
        reference_inputs, reference_probs: the monitor's reference, as for :class:`LiveDrift`.
        clean_inputs, clean_probs: traffic from the reference's distribution (e.g. held-out test
            inputs and the model's probabilities on them), at least one full window.
        window: inputs per window, ``>= 10``; ``len(clean) // window`` windows are tested.
        alpha, n_permutations: as for :class:`LiveDrift`.

    Returns:
        One row per detector: ``windows``, ``alarms``, ``rate``, ``ci_low``, ``ci_high``, ``alpha`` and
        ``p_above_alpha``, the exact one-sided binomial p-value of "the rate exceeds ``alpha``"
        (``scipy.stats.binomtest(alarms, windows, alpha, alternative="greater")``): small means too many alarms.
    """
    window = _check_int("window", window, 10)
    clean_inputs, clean_probs = np.asarray(clean_inputs), np.asarray(clean_probs)
    if len(clean_inputs) != len(clean_probs):
        raise ValueError(f"clean_inputs and clean_probs must have the same length, got {len(clean_inputs)} "
                         f"and {len(clean_probs)}")
    n_windows = len(clean_inputs) // window
    if n_windows < 1:
        raise ValueError(f"clean traffic holds {len(clean_inputs)} inputs, fewer than one window of {window}")
    alarms = {"input_ks": 0, "output_confidence": 0}
    for w in range(n_windows):
        part = slice(w * window, (w + 1) * window)
        results = _detect(np.asarray(reference_inputs), np.asarray(reference_probs), clean_inputs[part],
                          clean_probs[part], alpha, n_permutations, seed=w)
        for name, result in results.items():
            alarms[name] += int(result.drift)
    from scipy.stats import binomtest

    rows = []
    for name, k in alarms.items():
        low, high = clopper_pearson(k, n_windows)
        rows.append({"detector": name, "windows": n_windows, "alarms": k, "rate": k / n_windows,
                     "ci_low": low, "ci_high": high, "alpha": alpha,
                     "p_above_alpha": float(binomtest(k, n_windows, alpha, alternative="greater").pvalue)})
    return pd.DataFrame(rows).set_index("detector")
