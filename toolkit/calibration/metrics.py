"""Calibration metrics that torchmetrics lacks, as functional forms and stateful ``Metric`` classes.

Top-label ECE/MCE come from torchmetrics' ``CalibrationError``; this module does not rewrite them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["BrierScore", "brier_score"]

_PROB_SUM_ATOL = 1e-3  # rows of probabilities must sum to 1 within this tolerance


def _probs_targets_validation(probs: Tensor, targets: Tensor) -> None:
    """Check ``probs`` is ``(N, C)`` probabilities and ``targets`` ``(N,)`` class indices in ``[0, C)``."""
    if not isinstance(probs, Tensor) or not probs.is_floating_point():
        raise TypeError(f"probs must be a floating-point tensor, got {type(probs).__name__}"
                        + (f" of dtype {probs.dtype}" if isinstance(probs, Tensor) else ""))
    if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must be an integer tensor of class indices, got {type(targets).__name__}"
                        + (f" of dtype {targets.dtype}" if isinstance(targets, Tensor) else ""))
    if probs.dim() != 2:
        raise ValueError(f"probs must have shape (N, C), got {tuple(probs.shape)}")
    if targets.shape != probs.shape[:1]:
        raise ValueError(f"targets must have shape ({probs.shape[0]},) to match probs, got {tuple(targets.shape)}")
    if torch.isnan(probs).any():
        raise ValueError("probs contains NaN")
    if probs.numel() and (probs.min() < 0 or probs.max() > 1):
        raise ValueError(f"probs must lie in [0, 1] (pass softmax(logits), not logits), got range "
                         f"[{probs.min().item():.3g}, {probs.max().item():.3g}]")
    if probs.numel() and ((probs.sum(1) - 1).abs() > _PROB_SUM_ATOL).any():
        raise ValueError("probs rows must sum to 1 (pass softmax(logits), not logits or one-vs-rest scores)")
    if targets.numel() and (targets.min() < 0 or targets.max() >= probs.shape[1]):
        raise ValueError(f"targets must be class indices in [0, {probs.shape[1]}), got range "
                         f"[{targets.min().item()}, {targets.max().item()}]")


def _brier_update(probs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """Sum over samples of the squared distance to the one-hot target, and the sample count."""
    one_hot = torch.nn.functional.one_hot(targets, probs.shape[1]).to(probs.dtype)
    return ((probs - one_hot) ** 2).sum(), len(targets)


def _brier_compute(sum_squares: Tensor, total: Tensor | int) -> Tensor:
    return sum_squares / total


def brier_score(probs: Tensor, targets: Tensor) -> Tensor:
    """Multiclass Brier score: ``mean_i sum_c (p_ic - 1[y_i = c])^2``, in ``[0, 2]``.

    Brier, 1950, "Verification of forecasts expressed in terms of probability". This is the
    original multiclass form (scikit-learn's ``brier_score_loss(..., scale_by_half=False)``);
    for two classes it is twice the binary form ``mean (p_1 - y)^2``.

    Args:
        probs: ``(N, C)`` predicted probabilities (rows sum to 1).
        targets: ``(N,)`` class indices.

    Example:
        >>> brier_score(torch.tensor([[0.8, 0.2], [0.4, 0.6]]), torch.tensor([0, 0]))
        tensor(0.4000)
    """
    _probs_targets_validation(probs, targets)
    if len(targets) == 0:
        raise ValueError("probs and targets are empty: the Brier score of no samples is undefined")
    return _brier_compute(*_brier_update(probs, targets))


class BrierScore(Metric):
    """Stateful multiclass Brier score (see :func:`brier_score`); sums sync across processes.

    Args:
        validate_args: check every batch (shapes, range, rows summing to 1); turn off only for
            inputs already validated, e.g. softmax outputs inside a training loop.

    Example:
        >>> metric = BrierScore()
        >>> metric.update(torch.tensor([[0.8, 0.2]]), torch.tensor([0]))
        >>> metric.update(torch.tensor([[0.4, 0.6]]), torch.tensor([0]))
        >>> metric.compute()
        tensor(0.4000)
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False
    sum_squares: Tensor
    total: Tensor

    def __init__(self, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        self.add_state("sum_squares", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        if self.validate_args:
            _probs_targets_validation(probs, targets)
        sum_squares, total = _brier_update(probs, targets)
        self.sum_squares += sum_squares.to(self.sum_squares.dtype)
        self.total += total

    def compute(self) -> Tensor:
        return _brier_compute(self.sum_squares, self.total)
