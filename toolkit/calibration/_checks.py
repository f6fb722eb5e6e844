"""Input checks shared by the calibration package: messages name the argument, the value and the rule."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

PROB_SUM_ATOL = 1e-3  # rows of probabilities must sum to 1 within this tolerance


def check_positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    """``value`` must be a real number in the interval ``low..high`` (ends open or closed)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_float_tensor(name: str, x: Any, dims: tuple[int, ...], layout: str) -> None:
    """A floating-point tensor with one of ``dims`` dimensions, no NaN or infinity."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else ""))
    if x.dim() not in dims:
        raise ValueError(f"{name} must have shape {layout}, got {tuple(x.shape)}")
    if x.numel():
        low, high = torch.aminmax(x)  # one pass; NaN propagates into both
        if torch.isnan(low) or torch.isnan(high):
            raise ValueError(f"{name} contains NaN")
        if torch.isinf(low) or torch.isinf(high):
            raise ValueError(f"{name} contains infinite values")


def check_targets(targets: Any, n: int, num_classes: int | None, name: str = "targets",
                  what: str = "probs") -> None:
    """Integer class indices of shape ``(n,)`` in ``[0, num_classes)``."""
    if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.is_complex() \
            or targets.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of class indices, got {type(targets).__name__}"
                        + (f" of dtype {targets.dtype}" if isinstance(targets, Tensor) else ""))
    if targets.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match {what}, got {tuple(targets.shape)}")
    if num_classes is not None and targets.numel():
        low, high = torch.aminmax(targets)
        if low < 0 or high >= num_classes:
            raise ValueError(f"{name} must be class indices in [0, {num_classes}), got range "
                             f"[{low.item()}, {high.item()}]")


def check_probs(probs: Any, name: str = "probs", dims: tuple[int, ...] = (2,), layout: str = "(N, C)") -> None:
    """Probabilities: values in ``[0, 1]``, each row (last dimension) summing to 1."""
    check_float_tensor(name, probs, dims, layout)
    if not probs.numel():
        return
    low, high = torch.aminmax(probs)
    if low < 0 or high > 1:
        raise ValueError(f"{name} must lie in [0, 1] (pass softmax(logits), not logits), got range "
                         f"[{low.item():.3g}, {high.item():.3g}]")
    if probs.numel() and ((probs.sum(-1) - 1).abs() > PROB_SUM_ATOL).any():
        raise ValueError(f"{name} rows must sum to 1 (pass softmax(logits), not logits or one-vs-rest scores)")


LOW_PRECISION = (torch.float16, torch.bfloat16)


def as_probs(preds: Any) -> Any:
    """Probabilities from what a metric is given, as torchmetrics does: ``(N, C)`` values outside
    ``[0, 1]`` (by more than ``PROB_SUM_ATOL``, so probabilities with a rounding error below 0 are
    refused by the checks, not silently softmaxed) are logits and go through ``softmax``; float16/bfloat16 inputs are computed in
    float32, and bfloat16/float16 probabilities (``softmax`` under ``precision="bf16-mixed"`` on a
    CPU leaves rows up to ~C * 2^-8 from 1) are renormalized when their rows are within that
    rounding error of 1. Anything else is returned as it is, for the checks to judge.
    """
    if not isinstance(preds, Tensor) or not preds.is_floating_point() or preds.dim() != 2 or not preds.numel():
        return preds
    low_precision = preds.dtype in LOW_PRECISION
    values = preds.float() if low_precision else preds
    low, high = torch.aminmax(values)
    if torch.isnan(low) or torch.isnan(high) or torch.isinf(low) or torch.isinf(high):
        return values
    if low < -PROB_SUM_ATOL or high > 1 + PROB_SUM_ATOL:  # clearly not probabilities: logits
        return values.softmax(-1)
    if low_precision:
        sums = values.sum(-1, keepdim=True)
        if bool(((sums - 1).abs() <= values.shape[-1] * torch.finfo(preds.dtype).eps).all()):
            return values / sums
    return values


def looks_like_probs(x: Tensor) -> bool:
    """True when every row is in ``[0, 1]`` and sums to 1: probabilities, almost surely not logits."""
    return bool(x.numel()) and x.shape[-1] > 1 and bool(x.min() >= 0) and bool(x.max() <= 1) \
        and bool(((x.sum(-1) - 1).abs() <= PROB_SUM_ATOL).all())


def check_logits(logits: Any, name: str = "logits", dims: tuple[int, ...] = (2,), layout: str = "(N, C)") -> None:
    """Logits: finite floats, and not probabilities passed by mistake."""
    check_float_tensor(name, logits, dims, layout)
    if looks_like_probs(logits):
        raise ValueError(f"{name} look like probabilities (every row in [0, 1] and summing to 1): pass the "
                         "model's logits (pre-softmax outputs), or log(probs) if you only have probabilities")


def check_probs_targets(probs: Any, targets: Any, name: str = "probs") -> None:
    check_probs(probs, name)
    check_targets(targets, probs.shape[0], probs.shape[1], what=name)


def check_logits_targets(logits: Any, targets: Any, name: str = "logits", allow_empty: bool = False) -> None:
    check_logits(logits, name)
    check_targets(targets, logits.shape[0], logits.shape[1], what=name)
    if not allow_empty and logits.shape[0] == 0:
        raise ValueError(f"{name} and targets are empty: fitting needs at least one sample "
                         "(is the validation set empty?)")
    if logits.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 classes (columns), got {logits.shape[1]}")
