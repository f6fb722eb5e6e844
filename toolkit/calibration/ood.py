"""Out-of-distribution detection from a classifier's logits: scores and their AUROC/AUPR/FPR@95TPR.

Convention: every score is *higher for in-distribution* inputs, so an input is flagged as OOD when
its score falls below a threshold. The metrics treat in-distribution as the positive class for
AUROC, AUPR-In and the TPR of FPR@95TPR (Hendrycks & Gimpel, 2017), and OOD as positive for AUPR-Out.
They come from torchmetrics, fed the scores' ranks (rescaled to ``[0, 1]``, ties kept) because
torchmetrics squashes scores outside ``[0, 1]`` with a sigmoid, which would turn large logits into ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc, binary_average_precision, binary_roc

from toolkit.calibration._checks import check_choice, check_float_tensor, check_logits

__all__ = ["OOD_SCORES", "ood_evaluate", "ood_metrics", "ood_score"]

OOD_SCORES = ("msp", "max_logit", "energy", "entropy")
TPR_LEVEL = 0.95


def ood_score(logits: Tensor, method: str = "msp", temperature: float = 1.0) -> Tensor:
    """An in-distribution score per sample from ``(N, C)`` logits (higher = more in-distribution).

    - "msp": maximum softmax probability (Hendrycks & Gimpel, 2017, "A Baseline for Detecting
      Misclassified and Out-of-Distribution Examples in Neural Networks", arXiv:1610.02136).
    - "max_logit": the largest logit (Hendrycks et al., 2022, "Scaling Out-of-Distribution Detection
      for Real-World Settings", arXiv:1911.11132).
    - "energy": negative free energy ``T logsumexp(logits / T)`` (Liu et al., 2020, "Energy-based
      Out-of-distribution Detection", arXiv:2010.03759).
    - "entropy": negative entropy of the softmax.

    Args:
        logits: ``(N, C)`` logits (not probabilities).
        method: one of ``OOD_SCORES``.
        temperature: softmax/energy temperature, ``> 0`` (used by "msp", "energy" and "entropy").

    Example:
        >>> ood_score(torch.tensor([[4.0, 0.0], [0.1, 0.0]]), "msp").round(decimals=3)
        tensor([0.9820, 0.5250])
    """
    check_choice("method", method, OOD_SCORES)
    check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 < temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if method == "max_logit":
        return logits.max(1).values
    if method == "energy":
        return temperature * torch.logsumexp(logits / temperature, dim=1)
    probs = (logits / temperature).softmax(1)
    if method == "msp":
        return probs.max(1).values
    return (probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(1)


def _dense_ranks01(scores: Tensor) -> Tensor:
    """Scores mapped monotonically onto ``[0, 1]`` by their rank among distinct values (ties stay ties)."""
    _, inverse = torch.unique(scores, return_inverse=True)
    top = inverse.max().clamp_min(1)
    return inverse.double() / top


def ood_metrics(scores_in: Tensor, scores_out: Tensor) -> dict[str, float]:
    """AUROC, AUPR-In, AUPR-Out and FPR at 95% TPR of separating in-distribution from OOD scores.

    Args:
        scores_in: ``(N_in,)`` scores of in-distribution inputs (higher = more in-distribution).
        scores_out: ``(N_out,)`` scores of OOD inputs.

    Returns:
        ``{"auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"}``: AUROC 0.5 is chance, 1 perfect;
        FPR@95TPR is the share of OOD inputs accepted when 95% of in-distribution inputs are.

    Example:
        >>> round(ood_metrics(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.75, 0.1]))["auroc"], 4)
        0.8333
    """
    for name, scores in (("scores_in", scores_in), ("scores_out", scores_out)):
        check_float_tensor(name, scores, (1,), "(N,)")
        if len(scores) == 0:
            raise ValueError(f"{name} is empty: both in-distribution and OOD scores are needed")
    ranks = _dense_ranks01(torch.cat([scores_in, scores_out]).double())
    is_in = torch.cat([torch.ones(len(scores_in)), torch.zeros(len(scores_out))]).long()
    fpr, tpr, _ = binary_roc(ranks, is_in)
    return {"auroc": float(binary_auroc(ranks, is_in)),
            "aupr_in": float(binary_average_precision(ranks, is_in)),
            "aupr_out": float(binary_average_precision(1 - ranks, 1 - is_in)),
            "fpr_at_95_tpr": float(fpr[tpr >= TPR_LEVEL].min())}


def ood_evaluate(logits_in: Tensor, logits_out: Tensor, methods: Sequence[str] = OOD_SCORES,
                 temperature: float = 1.0) -> pd.DataFrame:
    """:func:`ood_metrics` of every score in ``methods``: one row per score.

    Args:
        logits_in: ``(N_in, C)`` logits of in-distribution inputs (e.g. the test split).
        logits_out: ``(N_out, C)`` logits of OOD inputs (e.g. ``DigitsDataModule.ood_dataloader()``).
        methods: scores from ``OOD_SCORES``.
        temperature: passed to :func:`ood_score`.
    """
    check_logits(logits_in, "logits_in")
    check_logits(logits_out, "logits_out")
    if isinstance(methods, str) or not all(isinstance(m, str) for m in methods):
        raise TypeError(f"methods must be a sequence of score names from {OOD_SCORES}, got {methods!r}")
    unknown = [m for m in methods if m not in OOD_SCORES]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty sequence of {OOD_SCORES}, got {methods!r}")
    ood_score(logits_in[:1], "msp", temperature)  # checks temperature before any work
    if logits_in.shape[1] != logits_out.shape[1]:
        raise ValueError(f"logits_in and logits_out must have the same classes, got {logits_in.shape[1]} "
                         f"and {logits_out.shape[1]} columns")
    rows = {m: ood_metrics(ood_score(logits_in, m, temperature), ood_score(logits_out, m, temperature))
            for m in methods}
    return pd.DataFrame(rows).T.rename_axis("score")
