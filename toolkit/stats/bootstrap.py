"""Bootstrap confidence interval of any per-sample metric (accuracy, ECE, AUROC, coverage, a slice's accuracy).

The test set is one sample of the data the model will meet; resampling its ``n`` samples with
replacement (Efron 1979) shows how much the metric would move on another test set of the same size.
The samples are resampled *jointly* (the same indices for every array: targets, probabilities,
groups), so a metric of ``(y_true, y_prob)`` keeps each prediction with its label. The resampling and
the interval (percentile, basic, or the bias-corrected and accelerated BCa of Efron 1987) are
``scipy.stats.bootstrap``'s: this module only feeds it an index vector, which is how scipy itself
implements ``paired=True``, so arrays of any trailing shape (``(N, C)`` probabilities) and torch
tensors work.

References: Efron (1979), "Bootstrap methods: another look at the jackknife", Annals of Statistics
7(1); Efron (1987), "Better bootstrap confidence intervals", JASA 82(397); Efron & Tibshirani (1993),
"An Introduction to the Bootstrap".
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from toolkit.stats._checks import TableRow, as_numpy, check_choice, check_confidence, check_int, is_tensor

__all__ = ["BOOTSTRAP_METHODS", "BootstrapCI", "bootstrap_ci"]

BOOTSTRAP_METHODS = ("percentile", "basic", "BCa")
MAX_BATCH_ELEMENTS = 2**22  # resampled array elements per batched metric call (about 32 MiB of float64)
_RNG_ARGUMENT = "rng" if "rng" in inspect.signature(_scipy_stats.bootstrap).parameters else "random_state"


@dataclass(frozen=True)
class BootstrapCI(TableRow):
    """A metric on the full sample with its bootstrap interval; displays as a one-row table.

    Attributes:
        estimate: the metric on all ``n`` samples.
        low, high: the ``confidence`` bootstrap interval.
        confidence: the interval's level.
        n: number of samples.
        standard_error: standard deviation of the bootstrap distribution.
        n_resamples, method: as passed to ``bootstrap_ci``.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    n: int
    standard_error: float
    n_resamples: int
    method: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _take(array: Any, index: np.ndarray) -> Any:
    if is_tensor(array):
        import torch

        return array[torch.from_numpy(index).to(array.device)]
    return array[index]


def _as_float_array(value: Any) -> np.ndarray:
    return np.asarray(as_numpy(value), dtype=np.float64)


def _scalar(value: Any) -> float:
    array = _as_float_array(value)
    if array.size != 1:
        raise ValueError(f"metric must return one number per call, got shape {array.shape} (for a metric that "
                         f"evaluates many resamples at once pass batched=True)")
    return float(array.reshape(()))


def bootstrap_ci(metric: Callable[..., Any], *arrays: Any, n_resamples: int = 9999, confidence: float = 0.95,
                 seed: int | np.random.Generator = 0, method: str = "percentile",
                 batched: bool = False) -> BootstrapCI:
    """Bootstrap interval of ``metric(*arrays)``, resampling the samples of all arrays jointly.

    ``scipy.stats.bootstrap`` draws ``n_resamples`` index vectors of length ``n`` with replacement
    (the same for every array, as its ``paired=True``), evaluates the metric on each resample and
    returns the ``confidence`` interval by ``method``: "percentile" (the α/2 and 1-α/2 quantiles of the
    bootstrap distribution), "basic" (reflected percentile) or "BCa" (bias-corrected and accelerated,
    Efron 1987; better coverage for skewed metrics, costs ``n`` extra jackknife evaluations).

    Degenerate case: when every resample gives the same value (accuracy 1.0 on a test set with no
    error), the interval is ``[estimate, estimate]`` (scipy's BCa would return NaN). A metric that is
    not finite on some resamples (AUROC of a resample with one class) raises a ValueError.

    Args:
        metric: function of the arrays returning a number, e.g. ``lambda y, p: (p.argmax(1) == y).mean()``,
            ``sklearn.metrics.roc_auc_score``, or a torchmetrics functional on tensors. It receives the
            arrays as given (NumPy arrays, or torch tensors when a tensor was passed), indexed along axis 0.
        *arrays: one or more arrays with the same length ``n >= 2`` along axis 0 (any trailing shape).
        n_resamples: number of bootstrap resamples, ``>= 2`` (9999 by default; 999 is enough for a figure).
        confidence: confidence level in (0, 1).
        seed: seed (or ``numpy.random.Generator``) of the resampling; same seed, same interval.
        method: one of ``BOOTSTRAP_METHODS``.
        batched: True when ``metric`` evaluates many resamples at once: it then receives arrays with a
            leading resample axis, shape ``(B, n, ...)``, and returns ``B`` values, e.g.
            ``lambda y, p: (p.argmax(-1) == y).mean(-1)``; about ``2**22`` elements go into each call.
            Much faster than one call per resample.

    Returns:
        A frozen ``BootstrapCI`` (``estimate, low, high, confidence, n, standard_error, ...``).

    Example:
        >>> y = np.array([0, 1, 1, 0, 1, 1, 0, 1])
        >>> p = np.array([0.2, 0.9, 0.6, 0.4, 0.7, 0.3, 0.1, 0.8])
        >>> r = bootstrap_ci(lambda y, p: ((p > 0.5) == y).mean(), y, p, n_resamples=999)
        >>> r.estimate, r.low <= r.estimate <= r.high
        (0.875, True)
    """
    if not callable(metric):
        raise TypeError(f"metric must be a callable of the arrays, got {type(metric).__name__} {metric!r}")
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array after the metric, "
                         "e.g. bootstrap_ci(metric, y_true, y_prob)")
    lengths = []
    data = []
    for i, array in enumerate(arrays):
        if not is_tensor(array):
            array = np.asarray(array)
            if array.dtype == object:
                raise TypeError(f"arrays[{i}] must be a numeric array or tensor, got dtype object")
        if array.ndim == 0:
            raise ValueError(f"arrays[{i}] must have a sample axis (axis 0), got a scalar")
        lengths.append(int(array.shape[0]))
        data.append(array.detach() if is_tensor(array) else array)
    if len(set(lengths)) != 1:
        raise ValueError(f"all arrays must have the same number of samples along axis 0, got lengths {lengths}")
    n = lengths[0]
    if n < 2:
        raise ValueError(f"bootstrap_ci needs at least 2 samples, got {n}")
    check_int("n_resamples", n_resamples, 2)
    check_confidence(confidence)
    check_choice("method", method, BOOTSTRAP_METHODS)
    integer_seed = isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
    if not (integer_seed or isinstance(seed, np.random.Generator)):
        raise TypeError(f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__} {seed!r}")
    if not isinstance(batched, bool):
        raise TypeError(f"batched must be True or False, got {batched!r}")

    def statistic(index: np.ndarray, axis: int = -1) -> np.ndarray:
        index = np.asarray(index)
        rows = index.reshape(-1, index.shape[-1])
        if batched:
            values = _as_float_array(metric(*(_take(a, rows) for a in data))).reshape(-1)
            if values.shape[0] != rows.shape[0]:
                raise ValueError(f"with batched=True the metric must return one value per resample: given "
                                 f"{rows.shape[0]} resamples it returned shape {values.shape}")
        else:
            values = np.array([_scalar(metric(*(_take(a, row) for a in data))) for row in rows])
        return values.reshape(index.shape[:-1])

    everything = np.arange(n)
    estimate = float(statistic(everything))
    if not np.isfinite(estimate):
        raise ValueError(f"metric is not finite on the full sample (got {estimate}); "
                         f"check the arrays' order and values")
    batch = max(1, min(n_resamples, MAX_BATCH_ELEMENTS // max(1, sum(int(np.prod(a.shape)) for a in data))))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(int(seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _scipy_stats.bootstrap((everything,), statistic, n_resamples=n_resamples, batch=batch,
                                        vectorized=True, confidence_level=confidence, method=method,
                                        **{_RNG_ARGUMENT: rng})
    distribution = np.asarray(result.bootstrap_distribution)
    bad = int((~np.isfinite(distribution)).sum())
    if bad:
        raise ValueError(f"metric was not finite on {bad} of {n_resamples} resamples (e.g. AUROC of a resample "
                         f"with one class); use a larger sample or a metric defined on every resample")
    degenerate = bool(np.ptp(distribution) == 0)
    for warning in caught:  # scipy's warnings about a degenerate distribution are handled below
        if not degenerate:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if degenerate:
        low = high = estimate
    return BootstrapCI(estimate=estimate, low=low, high=high, confidence=float(confidence), n=n,
                       standard_error=float(result.standard_error), n_resamples=int(n_resamples), method=method)
