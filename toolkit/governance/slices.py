"""Metrics per slice (class or any group) and the worst slice: what a global number hides.

Accuracy and top-label ECE per slice come from torchmetrics (``multiclass_accuracy``,
``multiclass_calibration_error``); a slice with fewer than ``min_size`` samples is reported but not
ranked, since its metrics are mostly noise.

Example:
    >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    >>> frame = slice_metrics(probs, torch.tensor([0, 0, 1, 1]), min_size=1)
    >>> frame["accuracy"].tolist()  # slices 0 and 1, then the whole set as the row "all"
    [1.0, 0.5, 0.75]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

PROB_SUM_ATOL = 1e-3  # rows of probabilities must sum to 1 within this tolerance

__all__ = ["slice_metrics", "worst_slice"]


def slice_metrics(probs: Tensor, targets: Tensor, groups: Any = None, n_bins: int = 15,
                  min_size: int = 20) -> pd.DataFrame:
    """Accuracy and top-label ECE of every slice, plus the whole set as a row named "all".

    Args:
        probs: ``(N, C)`` predicted probabilities (softmax of logits).
        targets: ``(N,)`` class indices.
        groups: ``(N,)`` slice name of every sample (any hashable values); default: the true class.
        n_bins: equal-width bins of the ECE, ``>= 1``.
        min_size: slices smaller than this are kept but marked ``ranked=False``.

    Returns:
        A DataFrame indexed by slice with ``n``, ``accuracy``, ``ece``, ``accuracy_gap`` (slice minus
        all) and ``ranked``.
    """
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

    if not isinstance(probs, Tensor) or not probs.is_floating_point() or probs.dim() != 2:
        raise TypeError(f"probs must be a floating-point (N, C) tensor, got {type(probs).__name__}"
                        + (f" of shape {tuple(probs.shape)}" if isinstance(probs, Tensor) else ""))
    if not isinstance(targets, Tensor) or targets.is_floating_point() or targets.shape != probs.shape[:1]:
        raise TypeError(f"targets must be an integer tensor of shape ({len(probs)},)")
    if len(targets) == 0:
        raise ValueError("probs and targets are empty: there is nothing to slice")
    if not bool(torch.isfinite(probs).all()):
        raise ValueError("probs contains NaN or infinite values")
    if probs.min() < 0 or probs.max() > 1 or ((probs.sum(1) - 1).abs() > PROB_SUM_ATOL).any():
        raise ValueError("probs must be probabilities: values in [0, 1], each row summing to 1 "
                         "(pass softmax(logits))")
    if int(targets.min()) < 0 or int(targets.max()) >= probs.shape[1]:
        raise ValueError(f"targets must be class indices in [0, {probs.shape[1]}), got range "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise ValueError(f"min_size must be an integer >= 1, got {min_size!r}")
    groups = targets.cpu().numpy() if groups is None else np.asarray(
        groups.cpu().numpy() if hasattr(groups, "cpu") else groups)
    if groups.shape != (len(targets),):
        raise ValueError(f"groups must have shape ({len(targets)},) like targets, got {groups.shape}")
    num_classes = probs.shape[1]

    def row(mask: np.ndarray) -> dict[str, float]:
        index = torch.as_tensor(np.flatnonzero(mask))
        p, t = probs[index], targets[index]
        return {"n": int(len(index)),
                "accuracy": multiclass_accuracy(p, t, num_classes, average="micro").item(),
                "ece": multiclass_calibration_error(p, t, num_classes, n_bins=n_bins, norm="l1").item()}

    rows = {str(g): row(groups == g) for g in pd.unique(groups)}
    frame = pd.DataFrame.from_dict(dict(sorted(rows.items())), orient="index")
    overall = row(np.ones(len(targets), dtype=bool))
    frame["accuracy_gap"] = frame["accuracy"] - overall["accuracy"]
    frame["ranked"] = frame["n"] >= min_size
    frame.loc["all"] = {**overall, "accuracy_gap": 0.0, "ranked": False}
    frame.index.name = "slice"
    return frame.astype({"n": int, "ranked": bool})


def worst_slice(frame: pd.DataFrame, metric: str = "accuracy") -> tuple[str, float]:
    """The ranked slice with the lowest ``metric`` (highest for "ece") and its value."""
    if metric not in ("accuracy", "ece"):
        raise ValueError(f"metric must be 'accuracy' or 'ece', got {metric!r}")
    if "ranked" not in frame.columns or metric not in frame.columns:
        raise ValueError(f"frame must come from slice_metrics (columns ranked and {metric}), got {list(frame.columns)}")
    ranked = frame.loc[frame["ranked"], metric]
    if ranked.empty:
        raise ValueError("no slice is large enough to rank: lower min_size in slice_metrics")
    name = ranked.idxmax() if metric == "ece" else ranked.idxmin()
    return str(name), float(ranked[name])
