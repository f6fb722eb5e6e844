"""Drift detectors: has the data the model sees in production moved away from what it was tested on?

Input drift compares every feature of a live window with a reference sample, by the two-sample
Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) with a Bonferroni correction over features, so the
false-alarm rate of the whole detector stays below ``alpha`` when nothing changed (Rabanser, Günnemann &
Lipton, 2019, "Failing Loudly: An Empirical Study of Methods for Detecting Dataset Shift",
arXiv:1810.11953), or by the population stability index (PSI, a binned symmetric KL divergence used in
credit scoring; rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift), which has no
calibrated false-alarm rate. Output drift compares the model's confidence (top-class probability) on the
two windows with a permutation test (``scipy.stats.permutation_test``): it needs no labels.

Example:
    >>> rng = np.random.default_rng(0)
    >>> input_drift(rng.normal(size=(500, 3)), rng.normal(1.0, size=(200, 3))).drift
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DriftResult", "input_drift", "output_drift", "psi"]

METHODS = ("ks", "psi")
STATISTICS = ("ks", "mean")
_PSI_EPSILON = 1e-4  # share given to an empty bin, so the log stays finite
_PROB_SUM_ATOL = 1e-3


@dataclass
class DriftResult:
    """What a drift test found.

    Attributes:
        drift: the verdict, True when the test rejects "same distribution".
        statistic: the test's statistic (largest per-feature KS or PSI; or the confidence statistic).
        p_value: the smallest per-feature p-value, or the permutation p-value (``nan`` for PSI).
        threshold: what the statistic or p-value was compared with (``alpha / features`` for KS).
        method: "ks", "psi" or "permutation".
        details: one row per feature (input drift) or a one-row summary (output drift).
    """

    drift: bool
    statistic: float
    p_value: float
    threshold: float
    method: str
    details: pd.DataFrame

    @property
    def verdict(self) -> str:
        if self.method == "psi":
            reason = f"largest PSI {self.statistic:.3f} {'>' if self.drift else '<='} {self.threshold:.3g}"
        else:
            reason = f"p = {self.p_value:.2e} {'<' if self.drift else '>='} {self.threshold:.2e}"
        if "drifted" in self.details and len(self.details) > 1:
            reason += f"; {int(self.details['drifted'].sum())}/{len(self.details)} features drifted"
        return f"{'DRIFT' if self.drift else 'no drift'} ({self.method}: {reason})"

    def __bool__(self) -> bool:
        return self.drift


def _as_matrix(name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")
    if x.ndim < 1 or not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array of shape (N, features...), got dtype {x.dtype}, shape {x.shape}")
    x = x.reshape(len(x), int(np.prod(x.shape[1:]))).astype(np.float64)
    if len(x) == 0:
        raise ValueError(f"{name} is an empty window: it needs at least one sample")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _pair(reference: Any, live: Any) -> tuple[np.ndarray, np.ndarray]:
    ref, cur = _as_matrix("reference", reference), _as_matrix("live", live)
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(f"reference and live must have the same number of features, got {ref.shape[1]} "
                         f"and {cur.shape[1]}")
    return ref, cur


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a false-alarm rate in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def psi(reference: Any, live: Any, n_bins: int = 10) -> np.ndarray:
    """Population stability index of every feature: ``sum_b (l_b - r_b) * ln(l_b / r_b)``.

    Bins are the ``n_bins`` quantiles of the reference (merged where values repeat, as for pixels
    that are often 0); live values outside the reference range fall in the end bins.

    Args:
        reference, live: samples ``(N, ...)`` and ``(M, ...)`` with the same number of features.
        n_bins: quantile bins per feature, ``>= 2``.

    Returns:
        ``(features,)`` PSI values, ``>= 0``; 0 for a feature whose binned shares are identical.
    """
    ref, cur = _pair(reference, live)
    n_bins = _check_int("n_bins", n_bins, 2)
    out = np.empty(ref.shape[1])
    quantiles = np.linspace(0, 1, n_bins + 1)[1:-1]
    for j in range(ref.shape[1]):
        edges = np.unique(np.quantile(ref[:, j], quantiles))
        r = np.bincount(np.searchsorted(edges, ref[:, j], side="right"), minlength=len(edges) + 1) / len(ref)
        c = np.bincount(np.searchsorted(edges, cur[:, j], side="right"), minlength=len(edges) + 1) / len(cur)
        r, c = np.maximum(r, _PSI_EPSILON), np.maximum(c, _PSI_EPSILON)
        out[j] = float(np.sum((c - r) * np.log(c / r)))
    return out


def input_drift(reference: Any, live: Any, alpha: float = 0.01, method: str = "ks",
                psi_threshold: float = 0.25, n_bins: int = 10) -> DriftResult:
    """Per-feature input drift between a reference sample and a live window, with one verdict.

    Args:
        reference: inputs the model was validated on, ``(N, ...)`` (flattened to features).
        live: a window of production inputs, ``(M, ...)``, same number of features.
        alpha: false-alarm rate of the whole detector under no drift, in ``(0, 1)``; with "ks" each
            feature is tested at ``alpha / features`` (Bonferroni), so the rate holds even for
            correlated features (it is then conservative).
        method: "ks" (verdict from the corrected KS p-values) or "psi" (verdict: some feature's PSI
            exceeds ``psi_threshold``). Both columns are always in ``details``.
        psi_threshold: PSI above which a feature counts as drifted, ``> 0`` (0.25: "major shift").
        n_bins: PSI bins per feature, ``>= 2``.
    """
    from scipy.stats import ks_2samp

    ref, cur = _pair(reference, live)
    alpha = _check_alpha(alpha)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(psi_threshold, bool) or not isinstance(psi_threshold, (int, float)) \
            or not 0 < psi_threshold < float("inf"):
        raise ValueError(f"psi_threshold must be a finite number > 0, got {psi_threshold!r}")
    features = ref.shape[1]
    ks = ks_2samp(ref, cur, axis=0, method="asymp")
    stats, p_values = np.atleast_1d(ks.statistic), np.atleast_1d(ks.pvalue)
    psis = psi(ref, cur, n_bins)
    per_feature_alpha = alpha / features
    drifted = p_values < per_feature_alpha if method == "ks" else psis > psi_threshold
    details = pd.DataFrame({"ks_statistic": stats, "p_value": p_values, "psi": psis, "drifted": drifted})
    details.index.name = "feature"
    if method == "ks":
        return DriftResult(bool(drifted.any()), float(stats.max()), float(p_values.min()), per_feature_alpha,
                           "ks", details)
    return DriftResult(bool(drifted.any()), float(psis.max()), float("nan"), float(psi_threshold), "psi", details)


def _confidence(name: str, x: Any) -> np.ndarray:
    values = _as_matrix(name, x)
    if values.shape[1] > 1:  # probabilities (N, C): the top-class probability
        if values.min() < 0 or values.max() > 1 or np.abs(values.sum(1) - 1).max() > _PROB_SUM_ATOL:
            raise ValueError(f"{name} must be probabilities whose rows sum to 1 (softmax of logits), "
                             f"or (N,) confidences in [0, 1]")
        return values.max(1)
    values = values[:, 0]
    if values.min() < 0 or values.max() > 1:
        raise ValueError(f"{name} confidences must lie in [0, 1], got range [{values.min():.3g}, {values.max():.3g}]")
    return values


def _ks_statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """Two-sample KS statistic along ``axis``, vectorized over the other axes (for permutation_test)."""
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    both = np.concatenate([a, b], axis=-1)
    order = np.argsort(both, axis=-1, kind="stable")
    values = np.take_along_axis(both, order, axis=-1)
    from_a = order < a.shape[-1]
    gap = np.cumsum(from_a, axis=-1) / a.shape[-1] - np.cumsum(~from_a, axis=-1) / b.shape[-1]
    # the CDFs are compared only after the last of tied values
    last_of_ties = np.ones(values.shape, dtype=bool)
    last_of_ties[..., :-1] = values[..., 1:] != values[..., :-1]
    return np.abs(np.where(last_of_ties, gap, 0.0)).max(axis=-1)


def _mean_gap(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.abs(a.mean(axis=axis) - b.mean(axis=axis))


def output_drift(reference_probs: Any, live_probs: Any, alpha: float = 0.01, statistic: str = "ks",
                 n_permutations: int = 999, seed: int = 0) -> DriftResult:
    """Drift of the model's confidence, by a two-sample permutation test; needs no labels.

    Args:
        reference_probs, live_probs: ``(N, C)`` predicted probabilities (or ``(N,)`` confidences)
            on the reference data and on the live window.
        alpha: false-alarm rate under no drift, in ``(0, 1)``.
        statistic: "ks" (largest gap between the two confidence CDFs: any change of shape) or
            "mean" (gap between mean confidences: a model growing unsure).
        n_permutations: resamples of the test, ``>= 99``; the p-value is at least ``1/(n+1)``.
        seed: seeds the permutations.
    """
    from scipy.stats import permutation_test

    ref_columns, live_columns = (_as_matrix(n, x).shape[1] for n, x in (("reference_probs", reference_probs),
                                                                        ("live_probs", live_probs)))
    if ref_columns != live_columns:
        raise ValueError(f"live_probs must have the {ref_columns} classes (columns) of reference_probs, got "
                         f"{live_columns}")
    ref, cur = _confidence("reference_probs", reference_probs), _confidence("live_probs", live_probs)
    alpha = _check_alpha(alpha)
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    n_permutations = _check_int("n_permutations", n_permutations, 99)
    test = _ks_statistic if statistic == "ks" else _mean_gap
    result = permutation_test((ref, cur), test, vectorized=True, n_resamples=n_permutations,
                              alternative="greater", random_state=np.random.default_rng(seed))
    details = pd.DataFrame([{"reference_mean_confidence": ref.mean(), "live_mean_confidence": cur.mean(),
                             "statistic": float(result.statistic), "p_value": float(result.pvalue)}])
    return DriftResult(bool(result.pvalue < alpha), float(result.statistic), float(result.pvalue), alpha,
                       "permutation", details)
