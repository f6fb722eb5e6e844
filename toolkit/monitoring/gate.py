"""A regression gate: may this candidate model replace the one in production?

Each rule names a metric, which direction is better and how much worsening is tolerated (absolute,
or relative to production). The gate compares every rule and fails if any metric regressed beyond its
tolerance, so a candidate that is more accurate but worse calibrated, less robust or slower does not
ship silently (the "ML test score" idea of Breck et al., 2017, "The ML Test Score: A Rubric for ML
Production Readiness and Technical Debt Reduction").

Example:
    >>> result = regression_gate({"accuracy": 0.97, "ece": 0.08}, {"accuracy": 0.96, "ece": 0.02},
    ...                          rules=[GateRule("accuracy", True, 0.005), GateRule("ece", False, 0.01)])
    >>> result.passed, result.failures
    (False, ['ece'])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["DEFAULT_RULES", "GateResult", "GateRule", "regression_gate"]

_FLOAT_SLACK = 1e-12  # a worsening equal to the tolerance passes, despite rounding


@dataclass(frozen=True)
class GateRule:
    """One metric of the gate.

    Args:
        metric: key in the metric mappings, e.g. "accuracy".
        higher_is_better: direction of improvement.
        tolerance: largest worsening that still passes, ``>= 0``: in the metric's units, or a
            fraction of the production value when ``relative``.
        relative: read ``tolerance`` as a fraction of production (for latency, size).
    """

    metric: str
    higher_is_better: bool
    tolerance: float = 0.0
    relative: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise TypeError(f"metric must be a non-empty string, got {self.metric!r}")
        for flag in ("higher_is_better", "relative"):  # a string such as "False" would read as True
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} of {self.metric!r} must be True or False, got {getattr(self, flag)!r}")
        if isinstance(self.tolerance, bool) or not isinstance(self.tolerance, (int, float)) \
                or not 0 <= self.tolerance < math.inf:
            raise ValueError(f"tolerance of {self.metric!r} must be a finite number >= 0, got {self.tolerance!r}")

    def allowed(self, production: float) -> float:
        return self.tolerance * abs(production) if self.relative else self.tolerance


DEFAULT_RULES = (
    GateRule("accuracy", higher_is_better=True, tolerance=0.005),       # half a point
    GateRule("ece", higher_is_better=False, tolerance=0.01),            # one point of calibration error
    GateRule("robust_accuracy", higher_is_better=True, tolerance=0.01),
    GateRule("latency_ms", higher_is_better=False, tolerance=0.2, relative=True),  # 20% slower at most
)


@dataclass
class GateResult:
    """The gate's verdict: ``passed``, the failing metrics, and one table row per rule."""

    passed: bool
    failures: list[str]
    table: pd.DataFrame

    @property
    def verdict(self) -> str:
        return "PASS: ship the candidate" if self.passed else f"BLOCK: regressed on {', '.join(self.failures)}"

    def __bool__(self) -> bool:
        return self.passed


def _scalar(value: Any) -> Any:
    """A one-element tensor or NumPy scalar (``trainer.callback_metrics`` holds 0-d tensors) as a float."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and not isinstance(value, bool):
        try:
            return float(value.item())
        except (TypeError, ValueError):
            return value
    return value


def _value(side: str, metrics: Mapping[str, Any], metric: str) -> float:
    if metric not in metrics:
        raise ValueError(f"{side} has no metric {metric!r}; it has {sorted(metrics)}")
    value = _scalar(metrics[metric])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{side}[{metric!r}] must be a finite number, got {value!r}")
    return float(value)


def regression_gate(candidate: Mapping[str, float], production: Mapping[str, float],
                    rules: Sequence[GateRule] = DEFAULT_RULES) -> GateResult:
    """Compare a candidate's metrics with production's, rule by rule.

    Args:
        candidate, production: metric name to value (a dict, or a pandas Series such as a row of
            the report card); every rule's metric must be in both.
        rules: the :class:`GateRule` list (default ``DEFAULT_RULES``: accuracy, ECE, robust accuracy,
            latency).

    Returns:
        A :class:`GateResult` whose ``table`` has, per rule: ``production``, ``candidate``,
        ``change`` (candidate minus production), ``worsening`` (in the bad direction, >= 0 is worse),
        ``allowed`` and ``passed``.
    """
    for name, side in (("candidate", candidate), ("production", production)):
        if not isinstance(side, (Mapping, pd.Series)):
            raise TypeError(f"{name} must be a mapping of metric name to value, got {type(side).__name__}")
    rules = list(rules)
    if not rules or not all(isinstance(r, GateRule) for r in rules):
        raise TypeError("rules must be a non-empty sequence of GateRule")
    if len({r.metric for r in rules}) != len(rules):
        raise ValueError(f"rules name a metric twice: {[r.metric for r in rules]}")
    rows = []
    for rule in rules:
        prod, cand = _value("production", production, rule.metric), _value("candidate", candidate, rule.metric)
        worsening = (prod - cand) if rule.higher_is_better else (cand - prod)
        allowed = rule.allowed(prod)
        rows.append({"metric": rule.metric, "better": "higher" if rule.higher_is_better else "lower",
                     "production": prod, "candidate": cand, "change": cand - prod, "worsening": worsening,
                     "allowed": allowed, "passed": worsening <= allowed + _FLOAT_SLACK})
    table = pd.DataFrame(rows).set_index("metric")
    failures = table.index[~table["passed"]].tolist()
    return GateResult(not failures, failures, table)
