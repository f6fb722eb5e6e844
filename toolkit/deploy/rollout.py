"""Shadow and canary rollouts: which requests a candidate answers, and when it is rolled back.

A canary answers a fixed share of the traffic, chosen by a hash of the request id, so the same
request always goes to the same version (replays and retries are reproducible). While it runs,
production also scores the canary's inputs, and every ``check_every`` canary inputs the
:func:`~toolkit.monitoring.regression_gate` compares the two on the last ``window`` of them: label
free, the candidate's agreement with production (production agrees with itself, 1.0); with labels
sent in the requests (``"targets"``), accuracy and expected calibration error as well. A breached rule
stops the canary (production answers everything again) and is written as an incident.

The decision rule for a rule with tolerance ``t``: roll back when ``worsening > t``, where
``worsening = production - candidate`` for higher-is-better metrics and ``candidate - production``
otherwise (Breck et al., 2017, "The ML Test Score: A Rubric for ML Production Readiness and Technical
Debt Reduction").

Example:
    >>> in_canary("request-42", share=0.1) == in_canary("request-42", share=0.1)
    True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.monitoring.gate import GateResult, GateRule, regression_gate

__all__ = ["CANARY_RULES", "CanaryMonitor", "in_canary", "utc_now"]

CANARY_RULES = (
    GateRule("agreement", higher_is_better=True, tolerance=0.10),  # the candidate changes <= 10% of answers
    GateRule("accuracy", higher_is_better=True, tolerance=0.02),   # when labels come with the requests
    GateRule("ece", higher_is_better=False, tolerance=0.03),
)
_HASH_SPACE = float(1 << 64)
ECE_BINS = 15


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def in_canary(request_id: str, share: float) -> bool:
    """Whether ``request_id`` goes to the canary: the first 8 bytes of its SHA-256, read as a fraction,
    fall below ``share`` (uniform over ids, and the same answer for the same id every time)."""
    if not isinstance(request_id, str):
        raise TypeError(f"request_id must be a string, got {type(request_id).__name__}")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ValueError(f"share must be a fraction in [0, 1], got {share!r}")
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _HASH_SPACE < share


def _ece(probs: np.ndarray, targets: np.ndarray) -> float:
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    return float(multiclass_calibration_error(torch.from_numpy(probs).float(), torch.from_numpy(targets).long(),
                                              num_classes=probs.shape[1], n_bins=ECE_BINS))


class CanaryMonitor:
    """The live regression gate of a canary on a sliding window of its inputs.

    Args:
        rules: the gate's rules over "agreement", "accuracy", "ece" (those without data are skipped).
        window: canary inputs the gate looks at, ``>= 10``.
        check_every: canary inputs between two checks, ``>= 1``; the first check waits for a full window.
    """

    def __init__(self, rules: Sequence[GateRule] = CANARY_RULES, window: int = 200, check_every: int = 50) -> None:
        for name, value, low in (("window", window, 10), ("check_every", check_every, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.rules = tuple(rules)
        self.window, self.check_every = window, check_every
        self._candidate: deque = deque(maxlen=window)
        self._production: deque = deque(maxlen=window)
        self._targets: deque = deque(maxlen=window)
        self._since_check = 0

    def update(self, candidate_probs: np.ndarray, production_probs: np.ndarray,
               targets: Sequence[int] | None = None) -> GateResult | None:
        """Add canary inputs (probabilities of both versions, optional labels); return the gate's
        verdict when a check is due, else None."""
        for i in range(len(candidate_probs)):
            self._candidate.append(candidate_probs[i])
            self._production.append(production_probs[i])
            self._targets.append(None if targets is None else int(targets[i]))
        self._since_check += len(candidate_probs)
        if len(self._candidate) < self.window or self._since_check < self.check_every:
            return None
        self._since_check = 0
        return self.check()

    def metrics(self) -> tuple[dict[str, float], dict[str, float]]:
        """(candidate, production) metrics on the current window."""
        cand, prod = np.stack(self._candidate), np.stack(self._production)
        candidate = {"agreement": float((cand.argmax(1) == prod.argmax(1)).mean())}
        production = {"agreement": 1.0}
        labelled = [i for i, t in enumerate(self._targets) if t is not None]
        if len(labelled) >= min(self.window, 10):
            y = np.array([self._targets[i] for i in labelled])
            for side, probs in ((candidate, cand[labelled]), (production, prod[labelled])):
                side["accuracy"] = float((probs.argmax(1) == y).mean())
                side["ece"] = _ece(probs, y)
        return candidate, production

    def check(self) -> GateResult:
        candidate, production = self.metrics()
        rules = [r for r in self.rules if r.metric in candidate]
        return regression_gate(candidate, production, rules=rules)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (one ``write`` call, so concurrent appenders do not interleave lines)."""
    line = json.dumps(record, default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else str(v))
    with open(path, "a") as f:
        f.write(line + "\n")
