"""Selective prediction: abstain on the least confident inputs, and measure the risk that remains.

Geifman & El-Yaniv, 2017, "Selective Classification for Deep Neural Networks" (arXiv:1705.08500);
the area under the risk-coverage curve (AURC) and its excess over an oracle (E-AURC) from Geifman
et al., 2019, "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers" (arXiv:1805.08206).
"""

from __future__ import annotations

import torch
from torch import Tensor

from toolkit.calibration._checks import check_float_tensor

__all__ = ["aurc", "excess_aurc", "risk_coverage_curve"]


def _check(confidences: Tensor, correct: Tensor) -> Tensor:
    check_float_tensor("confidences", confidences, (1,), "(N,)")
    if not isinstance(correct, Tensor) or correct.is_floating_point() and not ((correct == 0) | (correct == 1)).all():
        raise TypeError("correct must be a tensor of booleans or 0/1 values (is the prediction right?), got "
                        + (f"dtype {correct.dtype}" if isinstance(correct, Tensor) else type(correct).__name__))
    if correct.shape != confidences.shape:
        raise ValueError(f"correct must have shape {tuple(confidences.shape)} to match confidences, "
                         f"got {tuple(correct.shape)}")
    if len(confidences) == 0:
        raise ValueError("confidences and correct are empty: the risk of no prediction is undefined")
    if not correct.is_floating_point() and correct.dtype != torch.bool and ((correct < 0) | (correct > 1)).any():
        raise ValueError("correct must hold only 0/1 (or booleans)")
    return correct.double()


def risk_coverage_curve(confidences: Tensor, correct: Tensor) -> tuple[Tensor, Tensor]:
    """Risk (error rate) of the ``k`` most confident predictions, against coverage ``k / N``.

    Args:
        confidences: ``(N,)`` any confidence score (higher = keep first): MSP, -entropy, ...
        correct: ``(N,)`` booleans, is each prediction right. Ties in confidence are ordered as given.

    Returns:
        ``(coverage, risk)``, each ``(N,)``; coverage runs ``1/N .. 1``.

    Example:
        >>> risk_coverage_curve(torch.tensor([0.9, 0.5, 0.7]), torch.tensor([True, False, True]))
        (tensor([0.3333, 0.6667, 1.0000], dtype=torch.float64), tensor([0.0000, 0.0000, 0.3333], dtype=torch.float64))
    """
    right = _check(confidences, correct)
    order = torch.argsort(confidences, descending=True, stable=True)
    kept = torch.arange(1, len(order) + 1, dtype=torch.float64, device=confidences.device)
    errors = torch.cumsum(1 - right[order], 0)
    return kept / len(order), errors / kept


def aurc(confidences: Tensor, correct: Tensor) -> float:
    """Area under the risk-coverage curve: the mean of the risk over the ``N`` coverage levels (lower is better)."""
    return float(risk_coverage_curve(confidences, correct)[1].mean())


def excess_aurc(confidences: Tensor, correct: Tensor) -> float:
    """AURC minus that of an oracle that ranks every correct prediction first (0 = perfect ranking)."""
    right = _check(confidences, correct)
    return aurc(confidences, correct) - aurc(right.float(), correct)
