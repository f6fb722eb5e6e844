"""Calibration metrics that torchmetrics lacks, as functional forms and stateful ``Metric`` classes.

Top-label ECE/MCE come from torchmetrics' ``CalibrationError`` (``MulticlassCalibrationError``); this
module does not rewrite them. It adds the Brier score, the negative log-likelihood, adaptive
(equal-mass) ECE, classwise ECE and the per-bin data of a reliability diagram. Every metric takes
probabilities ``(N, C)`` (rows summing to 1) and class indices ``(N,)``. As in torchmetrics, inputs
with values outside ``[0, 1]`` are taken for logits and go through ``softmax``; float16/bfloat16
inputs are computed in float32 (bf16 probabilities, e.g. under ``precision="bf16-mixed"``, are
renormalized within their rounding error).

Equal-width bins follow torchmetrics: bin ``b`` holds confidences in ``[b/M, (b+1)/M)``, except that
the last bin is closed (torchmetrics gives a confidence of exactly 1.0 a bin of its own).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from toolkit.calibration._checks import (PROB_SUM_ATOL, as_probs, check_choice, check_positive_int,
                                         check_probs_targets)

__all__ = ["AdaptiveCalibrationError", "BrierScore", "ClasswiseCalibrationError", "NegativeLogLikelihood",
           "ReliabilityBins", "ReliabilityDiagram", "adaptive_calibration_error", "brier_score",
           "classwise_calibration_error", "negative_log_likelihood", "reliability_bins"]

_PROB_SUM_ATOL = PROB_SUM_ATOL  # kept for code that imported it from here
NORMS = ("l1", "max")


def _check_updated(metric: Metric) -> None:
    """Refuse ``compute()`` before any ``update()`` (torchmetrics only warns, then divides 0 by 0)."""
    if not metric.update_called:
        raise RuntimeError(f"{type(metric).__name__}.compute() called before update(): no samples yet; "
                           "call update(probs, targets) first")


def _probs_targets_validation(probs: Tensor, targets: Tensor) -> None:
    """Check ``probs`` is ``(N, C)`` probabilities and ``targets`` ``(N,)`` class indices in ``[0, C)``."""
    check_probs_targets(probs, targets)


def _check_not_empty(targets: Tensor, what: str) -> None:
    if len(targets) == 0:
        raise ValueError(f"probs and targets are empty: the {what} of no samples is undefined")


def _top_label(probs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Top-label confidence and correctness (1.0 or 0.0) of each sample."""
    confidences, predictions = probs.max(dim=1)
    return confidences, predictions.eq(targets).to(confidences.dtype)


def _bin_index(values: Tensor, n_bins: int) -> Tensor:
    """Equal-width bin of each value in ``[0, 1]``, as torchmetrics bins, with the last bin closed."""
    boundaries = torch.linspace(0, 1, n_bins + 1, dtype=values.dtype, device=values.device)
    return (torch.bucketize(values, boundaries, right=True) - 1).clamp_(0, n_bins - 1)


# ---- Brier score ---------------------------------------------------------------------------------
_BRIER_CHUNK = 1 << 20  # values per partial sum (a temporary of at most 4 MB in float32)


def _brier_update(probs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    """Sum over samples of the squared distance to the one-hot target, and the sample count.

    Each chunk of rows: a copy with 1 subtracted at the targets (``scatter_add_``, no one-hot
    matrix), squared in place and summed by torch's cascade summation; the chunks' sums add up in
    float64. Every term is a square, so nothing cancels: the identity
    ``sum_c p_c^2 - 2 p_y + 1`` (what this computed before) subtracts numbers near 1 and, in
    float32, gave a negative score (-2e-7 for a true 3e-10) on a confident model. The cost is
    1.1-1.2x that identity's on 1e3-1e5 rows and 0.25x on 1e6 rows
    (``benchmarks/bench_calibration.py``).
    """
    rows = max(1, _BRIER_CHUNK // max(1, probs.shape[1]))
    total = torch.zeros((), dtype=torch.float64, device=probs.device)
    for start in range(0, len(targets), rows):
        distance = probs[start:start + rows].clone()
        at = targets[start:start + rows, None]
        distance.scatter_add_(1, at, torch.full(at.shape, -1.0, dtype=distance.dtype, device=distance.device))
        total = total + distance.square_().sum().double()
    return total.to(probs.dtype), len(targets)


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
    probs = as_probs(probs)
    _probs_targets_validation(probs, targets)
    _check_not_empty(targets, "Brier score")
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
        probs = as_probs(probs)
        if self.validate_args:
            _probs_targets_validation(probs, targets)
        sum_squares, total = _brier_update(probs, targets)
        self.sum_squares += sum_squares.to(self.sum_squares.dtype)
        self.total += total

    def compute(self) -> Tensor:
        _check_updated(self)
        return _brier_compute(self.sum_squares, self.total)


# ---- negative log-likelihood ---------------------------------------------------------------------
def _nll_update(probs: Tensor, targets: Tensor) -> tuple[Tensor, int]:
    p_true = probs.gather(1, targets[:, None]).squeeze(1)
    # a probability of exactly 0 for the true class would give +inf; floor it at the smallest normal float
    return -p_true.clamp_min(torch.finfo(probs.dtype).tiny).log().sum(), len(targets)


def negative_log_likelihood(probs: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of the true class, ``-mean_i log p_{i, y_i}`` (in nats).

    Equals ``F.cross_entropy(logits, targets)`` when ``probs = softmax(logits)``; a probability of
    0 for the true class counts as the smallest positive float of the dtype (finite, very large).

    Args:
        probs: ``(N, C)`` predicted probabilities (rows sum to 1).
        targets: ``(N,)`` class indices.

    Example:
        >>> negative_log_likelihood(torch.tensor([[0.5, 0.5], [0.25, 0.75]]), torch.tensor([0, 1])).round(decimals=4)
        tensor(0.4904)
    """
    probs = as_probs(probs)
    _probs_targets_validation(probs, targets)
    _check_not_empty(targets, "negative log-likelihood")
    total, count = _nll_update(probs, targets)
    return total / count


class NegativeLogLikelihood(Metric):
    """Stateful :func:`negative_log_likelihood`; sums sync across processes."""

    is_differentiable = True
    higher_is_better = False
    full_state_update = False
    sum_nll: Tensor
    total: Tensor

    def __init__(self, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.validate_args = validate_args
        self.add_state("sum_nll", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        probs = as_probs(probs)
        if self.validate_args:
            _probs_targets_validation(probs, targets)
        total, count = _nll_update(probs, targets)
        self.sum_nll += total.to(self.sum_nll.dtype)
        self.total += count

    def compute(self) -> Tensor:
        _check_updated(self)
        return (self.sum_nll / self.total).float()


# ---- reliability diagram bins --------------------------------------------------------------------
class ReliabilityBins(NamedTuple):
    """Per-bin data of a reliability diagram; ``confidence``/``accuracy`` are NaN in empty bins."""

    lower: Tensor
    upper: Tensor
    confidence: Tensor
    accuracy: Tensor
    count: Tensor

    @property
    def ece(self) -> Tensor:
        """Top-label ECE of these bins: ``sum_b (n_b / N) |acc_b - conf_b|``."""
        gap = (self.accuracy - self.confidence).abs().nan_to_num(0.0)
        return (gap * self.count).sum() / self.count.sum()

    @property
    def mce(self) -> Tensor:
        """Maximum calibration error: the largest gap over non-empty bins."""
        return (self.accuracy - self.confidence).abs().nan_to_num(0.0).max()


def _reliability_update(probs: Tensor, targets: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    confidences, correct = _top_label(probs, targets)
    index = _bin_index(confidences, n_bins)
    count = torch.zeros(n_bins, dtype=torch.float64, device=probs.device)
    conf_sum, acc_sum = torch.zeros_like(count), torch.zeros_like(count)
    count.scatter_add_(0, index, torch.ones_like(confidences, dtype=torch.float64))
    conf_sum.scatter_add_(0, index, confidences.double())
    acc_sum.scatter_add_(0, index, correct.double())
    return count, conf_sum, acc_sum


def _reliability_compute(count: Tensor, conf_sum: Tensor, acc_sum: Tensor) -> ReliabilityBins:
    n_bins = len(count)
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=count.device)
    return ReliabilityBins(edges[:-1], edges[1:], conf_sum / count, acc_sum / count, count.long())


def reliability_bins(probs: Tensor, targets: Tensor, n_bins: int = 15) -> ReliabilityBins:
    """Per-bin mean confidence, accuracy and count of the top-label prediction (equal-width bins).

    The data of a reliability diagram (DeGroot & Fienberg, 1983; Guo et al., 2017, "On Calibration
    of Modern Neural Networks", arXiv:1706.04599). ``.ece`` of the result equals torchmetrics'
    ``MulticlassCalibrationError(norm="l1")`` whenever no confidence is exactly 1.0.

    Args:
        probs: ``(N, C)`` predicted probabilities.
        targets: ``(N,)`` class indices.
        n_bins: number of equal-width bins over ``[0, 1]``, ``>= 1``.

    Example:
        >>> bins = reliability_bins(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]), n_bins=2)
        >>> bins.count.tolist(), bins.accuracy.tolist()
        ([0, 2], [nan, 0.5])
    """
    check_positive_int("n_bins", n_bins)
    probs = as_probs(probs)
    _probs_targets_validation(probs, targets)
    _check_not_empty(targets, "reliability diagram")
    return _reliability_compute(*_reliability_update(probs, targets, n_bins))


class ReliabilityDiagram(Metric):
    """Stateful :func:`reliability_bins`: per-bin sums sync across processes; ``compute`` gives the bins."""

    is_differentiable = False
    higher_is_better = None
    full_state_update = False
    count: Tensor
    conf_sum: Tensor
    acc_sum: Tensor

    def __init__(self, n_bins: int = 15, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive_int("n_bins", n_bins)
        self.n_bins = n_bins
        self.validate_args = validate_args
        for name in ("count", "conf_sum", "acc_sum"):
            self.add_state(name, default=torch.zeros(n_bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        probs = as_probs(probs)
        if self.validate_args:
            _probs_targets_validation(probs, targets)
        count, conf_sum, acc_sum = _reliability_update(probs, targets, self.n_bins)
        self.count += count
        self.conf_sum += conf_sum
        self.acc_sum += acc_sum

    def compute(self) -> ReliabilityBins:
        _check_updated(self)
        return _reliability_compute(self.count, self.conf_sum, self.acc_sum)


# ---- adaptive (equal-mass) ECE -------------------------------------------------------------------
def _adaptive_compute(confidences: Tensor, correct: Tensor, n_bins: int, norm: str) -> Tensor:
    order = confidences.argsort(stable=True)
    n = len(order)
    # sorted position i goes to bin floor(i * M / N): M bins whose sizes differ by at most one
    index = torch.arange(n, device=confidences.device) * n_bins // n
    count = torch.zeros(n_bins, dtype=torch.float64, device=confidences.device)
    conf_sum, acc_sum = torch.zeros_like(count), torch.zeros_like(count)
    count.scatter_add_(0, index, torch.ones(n, dtype=torch.float64, device=confidences.device))
    conf_sum.scatter_add_(0, index, confidences[order].double())
    acc_sum.scatter_add_(0, index, correct[order].double())
    filled = count > 0
    gap = (acc_sum[filled] - conf_sum[filled]).abs() / count[filled]
    value = (gap * count[filled]).sum() / n if norm == "l1" else gap.max()
    return value.to(confidences.dtype)


def adaptive_calibration_error(probs: Tensor, targets: Tensor, n_bins: int = 15, norm: str = "l1") -> Tensor:
    """Top-label calibration error over equal-mass bins (adaptive ECE).

    Sort samples by confidence and cut them into ``n_bins`` bins of (nearly) equal size, so every
    bin holds ``N / n_bins`` samples instead of most samples falling in the last equal-width bin.
    Nguyen & O'Connor, 2015, "Posterior calibration and exploratory analysis for natural language
    processing models" (arXiv:1508.05154); Nixon et al., 2019, "Measuring Calibration in Deep
    Learning" (arXiv:1904.01685).

    Args:
        probs: ``(N, C)`` predicted probabilities.
        targets: ``(N,)`` class indices.
        n_bins: number of bins, ``>= 1`` (with ``N < n_bins`` some bins stay empty and are skipped).
        norm: "l1" (weighted mean gap, the ECE) or "max" (largest gap).

    Example:
        >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.05, 0.95]])
        >>> adaptive_calibration_error(probs, torch.tensor([1, 1, 1, 1]), n_bins=2)
        tensor(0.4625)
    """
    check_positive_int("n_bins", n_bins)
    check_choice("norm", norm, NORMS)
    probs = as_probs(probs)
    _probs_targets_validation(probs, targets)
    _check_not_empty(targets, "adaptive calibration error")
    return _adaptive_compute(*_top_label(probs, targets), n_bins, norm)


class AdaptiveCalibrationError(Metric):
    """Stateful :func:`adaptive_calibration_error`.

    Equal-mass bins need every confidence, so the states are lists (``dist_reduce_fx="cat"``):
    memory grows with the number of samples (two floats per sample).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, n_bins: int = 15, norm: str = "l1", validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive_int("n_bins", n_bins)
        check_choice("norm", norm, NORMS)
        self.n_bins, self.norm, self.validate_args = n_bins, norm, validate_args
        self.add_state("confidences", default=[], dist_reduce_fx="cat")
        self.add_state("correct", default=[], dist_reduce_fx="cat")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        probs = as_probs(probs)
        if self.validate_args:
            _probs_targets_validation(probs, targets)
        confidences, correct = _top_label(probs, targets)
        self.confidences.append(confidences)
        self.correct.append(correct)

    def compute(self) -> Tensor:
        _check_updated(self)
        confidences = dim_zero_cat(self.confidences)
        return _adaptive_compute(confidences, dim_zero_cat(self.correct), self.n_bins, self.norm)


# ---- classwise ECE -------------------------------------------------------------------------------
def _bincount(index: Tensor, size: int, weights: Tensor | None = None) -> Tensor:
    """Float64 histogram of ``index`` (optionally weighted). ``torch.bincount`` on the CPU (fast);
    ``scatter_add_`` elsewhere, which has a deterministic CUDA kernel where bincount has none."""
    if index.device.type == "cpu":
        return torch.bincount(index, weights=weights, minlength=size).double()
    return _scatter_count(index, size, weights)


def _scatter_count(index: Tensor, size: int, weights: Tensor | None = None) -> Tensor:
    out = torch.zeros(size, dtype=torch.float64, device=index.device)
    ones = torch.ones(len(index), dtype=torch.float64, device=index.device)
    return out.scatter_add_(0, index, weights.double() if weights is not None else ones)


def _classwise_update(probs: Tensor, targets: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    num_classes = probs.shape[1]
    size = num_classes * n_bins
    # flat index class * n_bins + bin of every (sample, class) probability
    index = _bin_index(probs, n_bins) + torch.arange(num_classes, device=probs.device) * n_bins
    count = _bincount(index.flatten(), size)
    prob_sum = _bincount(index.flatten(), size, weights=probs.flatten().double())
    # a label is 1 only at (sample, its class): count those cells alone
    label_sum = _bincount(index.gather(1, targets[:, None]).flatten(), size)
    shape = (num_classes, n_bins)
    return count.view(shape), prob_sum.view(shape), label_sum.view(shape)


def _classwise_compute(count: Tensor, prob_sum: Tensor, label_sum: Tensor) -> Tensor:
    """Mean over classes of ``sum_b (n_cb / N) |freq_cb - conf_cb|`` = ``sum_b |label_sum - prob_sum| / N``."""
    per_class = (label_sum - prob_sum).abs().sum(1) / count.sum(1)
    return per_class.mean().float()


def classwise_calibration_error(probs: Tensor, targets: Tensor, n_bins: int = 15) -> Tensor:
    """Classwise ECE: the one-vs-rest calibration error of every class's probability, averaged.

    For each class ``c``, bin ``p_ic`` into equal-width bins and compare the mean of ``p_ic`` with
    the frequency of ``y_i = c`` in each bin. Kull et al., 2019, "Beyond temperature scaling:
    Obtaining well-calibrated multiclass probabilities with Dirichlet calibration"
    (arXiv:1910.12656). Per class it equals torchmetrics' ``BinaryCalibrationError`` on
    ``(p[:, c], y == c)``.

    Args:
        probs: ``(N, C)`` predicted probabilities.
        targets: ``(N,)`` class indices.
        n_bins: equal-width bins per class, ``>= 1``.

    Example:
        >>> classwise_calibration_error(torch.tensor([[0.75, 0.25]]), torch.tensor([0]), n_bins=4)
        tensor(0.2500)
    """
    check_positive_int("n_bins", n_bins)
    probs = as_probs(probs)
    _probs_targets_validation(probs, targets)
    _check_not_empty(targets, "classwise calibration error")
    return _classwise_compute(*_classwise_update(probs, targets, n_bins))


class ClasswiseCalibrationError(Metric):
    """Stateful :func:`classwise_calibration_error`; per-class, per-bin sums sync across processes."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    count: Tensor
    prob_sum: Tensor
    label_sum: Tensor

    def __init__(self, num_classes: int, n_bins: int = 15, validate_args: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        check_positive_int("num_classes", num_classes, minimum=2)
        check_positive_int("n_bins", n_bins)
        self.num_classes, self.n_bins, self.validate_args = num_classes, n_bins, validate_args
        for name in ("count", "prob_sum", "label_sum"):
            self.add_state(name, default=torch.zeros(num_classes, n_bins, dtype=torch.float64),
                           dist_reduce_fx="sum")

    def update(self, probs: Tensor, targets: Tensor) -> None:
        probs = as_probs(probs)
        if self.validate_args:
            _probs_targets_validation(probs, targets)
            if probs.shape[1] != self.num_classes:
                raise ValueError(f"probs must have num_classes={self.num_classes} columns, got {probs.shape[1]}")
        count, prob_sum, label_sum = _classwise_update(probs, targets, self.n_bins)
        self.count += count
        self.prob_sum += prob_sum
        self.label_sum += label_sum

    def compute(self) -> Tensor:
        _check_updated(self)
        return _classwise_compute(self.count, self.prob_sum, self.label_sum)


