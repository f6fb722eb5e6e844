"""Predictive uncertainty from several stochastic predictions: MC dropout, deep ensembles, and the
entropy decomposition ``H[mean p] = E[H[p]] + MI`` (total = aleatoric + epistemic).

Predictions are stacked as ``(S, N, C)`` probabilities: ``S`` stochastic passes or ensemble members.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from toolkit.calibration._checks import check_positive_int, check_probs

__all__ = ["ensemble_predict", "expected_entropy", "mc_dropout_predict", "mutual_information",
           "predictive_entropy"]

DROPOUT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd,)


def _batches(data: Tensor | Iterable) -> list[Tensor]:
    """Input batches from a tensor (one batch) or from a loader of ``(inputs, ...)`` batches."""
    if isinstance(data, Tensor):
        return [data]
    if not isinstance(data, Iterable):
        raise TypeError(f"data must be an input tensor or a loader of (inputs, targets) batches, "
                        f"got {type(data).__name__}")
    return [b[0] if isinstance(b, (tuple, list)) else b for b in data]


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _predict_probs(model: nn.Module, batches: list[Tensor]) -> Tensor:
    device = _device(model)
    with torch.no_grad():
        chunks = [model(x.to(device)).float().softmax(1).cpu() for x in batches]
    if not chunks:
        raise ValueError("data is empty: no batch to predict")
    return torch.cat(chunks)


def mc_dropout_predict(model: nn.Module, data: Tensor | Iterable, n_samples: int = 20, seed: int = 0,
                       dropout_types: Sequence[type[nn.Module]] = DROPOUT_TYPES) -> Tensor:
    """``n_samples`` stochastic forward passes with dropout on and everything else in eval mode.

    Gal & Ghahramani, 2016, "Dropout as a Bayesian Approximation: Representing Model Uncertainty
    in Deep Learning" (arXiv:1506.02142). Batch norm keeps its running statistics (eval mode); only
    modules of ``dropout_types`` are switched to training mode, then every module's mode is restored.

    Args:
        model: a network (``nn.Module`` or LightningModule) returning logits; must contain dropout.
        data: an input tensor, or a loader of ``(inputs, targets)`` batches.
        n_samples: stochastic passes, ``>= 1``.
        seed: seeds the dropout masks (the global torch RNG is saved and restored).
        dropout_types: module classes to keep stochastic (add your own dropout layers here).

    Returns:
        ``(n_samples, N, C)`` softmax probabilities.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
        >>> mc_dropout_predict(net, torch.randn(5, 4), n_samples=10).shape
        torch.Size([10, 5, 3])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_positive_int("n_samples", n_samples)
    dropouts = [m for m in model.modules() if isinstance(m, tuple(dropout_types))]
    if not dropouts:
        raise ValueError(f"model has no dropout layer of dropout_types={tuple(t.__name__ for t in dropout_types)}: "
                         "MC dropout needs one (build it with dropout > 0)")
    modes = {m: m.training for m in model.modules()}
    batches = _batches(data)
    try:
        model.eval()
        for m in dropouts:
            m.train()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            samples = [_predict_probs(model, batches) for _ in range(n_samples)]
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return torch.stack(samples)


def ensemble_predict(models: Sequence[Any], data: Tensor | Iterable) -> Tensor:
    """Softmax predictions of every member of a deep ensemble, each in eval mode.

    Lakshminarayanan et al., 2017, "Simple and Scalable Predictive Uncertainty Estimation using
    Deep Ensembles" (arXiv:1612.01474). Build the members with
    ``toolkit.training.run_seeds(factory, dm, seeds, return_results=True)`` and pass the results.

    Args:
        models: ``nn.Module``s, or ``FitResult``s (their ``.module`` is used).
        data: an input tensor, or a loader of ``(inputs, targets)`` batches.

    Returns:
        ``(M, N, C)`` softmax probabilities; average over dim 0 for the ensemble's prediction.
    """
    members = [getattr(m, "module", m) for m in models]
    if not members:
        raise ValueError("models is empty: an ensemble needs at least one member")
    for i, m in enumerate(members):
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{i}] must be an nn.Module or a FitResult, got {type(m).__name__}")
    batches = _batches(data)
    outputs = []
    for m in members:
        mode = m.training
        m.eval()
        try:
            outputs.append(_predict_probs(m, batches))
        finally:
            m.train(mode)
    return torch.stack(outputs)


def _entropy(probs: Tensor) -> Tensor:
    return -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(-1)


def _check_samples(probs: Tensor, name: str = "probs") -> None:
    check_probs(probs, name, dims=(3,), layout="(S, N, C): S stochastic predictions of N samples")


def predictive_entropy(probs: Tensor) -> Tensor:
    """Entropy (nats) of the mean prediction: total uncertainty, ``H[mean_s p_s]``.

    Args:
        probs: ``(N, C)`` probabilities, or ``(S, N, C)`` samples (averaged over ``S`` first).

    Returns:
        ``(N,)`` entropies in ``[0, log C]``.
    """
    check_probs(probs, "probs", dims=(2, 3), layout="(N, C) or (S, N, C)")
    return _entropy(probs.mean(0) if probs.dim() == 3 else probs)


def expected_entropy(probs: Tensor) -> Tensor:
    """Mean entropy of the individual predictions, ``mean_s H[p_s]`` (aleatoric part); ``(N,)``."""
    _check_samples(probs)
    return _entropy(probs).mean(0)


def mutual_information(probs: Tensor) -> Tensor:
    """Mutual information between the prediction and the model, ``H[mean p] - mean H[p]`` (epistemic part).

    Depeweg et al., 2018, "Decomposition of Uncertainty in Bayesian Deep Learning for Efficient and
    Risk-sensitive Learning" (arXiv:1710.07283); zero when all ``S`` predictions agree.

    Args:
        probs: ``(S, N, C)`` probabilities of ``S`` passes or members.

    Returns:
        ``(N,)`` values in ``[0, log C]`` (clamped at 0 against rounding).
    """
    _check_samples(probs)
    return (_entropy(probs.mean(0)) - _entropy(probs).mean(0)).clamp_min(0.0)
