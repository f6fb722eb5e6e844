"""Evaluate a trained classifier along every axis of the course, over seeds, into one table.

The axes and the notebook that teaches each: accuracy and NLL (00), calibration before and after
temperature scaling (03, ``toolkit.calibration``), accuracy and ECE under the Digits-C shift (00, 03),
OOD detection AUROC on held-out classes (03), robust accuracy under PGD (05, ``toolkit.security``),
latency and size (04, ``toolkit.cost``). Each row of the result is one model of one seed; its metric
names match the regression gate's rules (``toolkit.monitoring.DEFAULT_RULES``), so a row can be gated.

An axis whose topic package is not installed is left out, and :func:`missing_axes` says which; the
report never re-implements another topic's method.

Example:
    >>> frame = report_card({"mlp": [run.module for run in runs]}, dm)  # doctest: +SKIP
    >>> summarize_card(frame)                                           # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["METRICS", "evaluate_model", "missing_axes", "report_card", "summarize_card"]

# metric -> (label, higher is better (None: neither), the notebook that teaches it)
METRICS: dict[str, tuple[str, bool | None, str]] = {
    "accuracy": ("test accuracy", True, "00"),
    "nll": ("test NLL", False, "00"),
    "ece": ("test ECE", False, "03"),
    "ece_ts": ("ECE after temperature scaling", False, "03"),
    "temperature": ("fitted temperature", None, "03"),
    "shift_accuracy": ("accuracy under shift", True, "00/03"),
    "shift_ece": ("ECE under shift", False, "03"),
    "ood_auroc": ("OOD AUROC (MSP)", True, "03"),
    "robust_accuracy": ("PGD robust accuracy", True, "05"),
    "latency_ms": ("latency per batch (ms)", False, "04"),
    "size_kb": ("checkpoint size (kB)", False, "04"),
    "parameters": ("parameters", False, "04"),
}
_AXES = {"toolkit.calibration": ("ece_ts", "temperature", "ood_auroc"),
         "toolkit.security": ("robust_accuracy",), "toolkit.cost": ("latency_ms", "size_kb")}
_BYTES_PER_KB = 1024


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def missing_axes() -> dict[str, tuple[str, ...]]:
    """Topic packages that cannot be imported here, with the report columns left out because of them."""
    return {module: metrics for module, metrics in _AXES.items() if _optional(module) is None}


@torch.no_grad()
def _logits(model: nn.Module, inputs: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)]).float()


def _ece(logits: Tensor, targets: Tensor, n_bins: int) -> float:
    from torchmetrics.functional.classification import multiclass_calibration_error

    return multiclass_calibration_error(logits.softmax(1), targets, logits.shape[1], n_bins=n_bins, norm="l1").item()


def _accuracy(logits: Tensor, targets: Tensor) -> float:
    return (logits.argmax(1) == targets).float().mean().item()


def _check_args(model: Any, datamodule: Any, severity: Any, epsilon: Any, adversarial_samples: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module mapping inputs to logits, got {type(model).__name__}")
    if not hasattr(datamodule, "tensors") or not hasattr(datamodule, "shifted_tensors"):
        raise TypeError(f"datamodule must be a DigitsDataModule (tensors, shifted_tensors), "
                        f"got {type(datamodule).__name__}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be an integer in 1-5, got {severity!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 <= epsilon < float("inf"):
        raise ValueError(f"epsilon must be a finite number >= 0 (pixel units), got {epsilon!r}")
    if isinstance(adversarial_samples, bool) or not isinstance(adversarial_samples, int) or adversarial_samples < 1:
        raise ValueError(f"adversarial_samples must be an integer >= 1, got {adversarial_samples!r}")


def evaluate_model(model: nn.Module, datamodule: Any, *, corruptions: Sequence[str] | None = None,
                   severity: int = 3, epsilon: float = 0.1, pgd_steps: int = 10, adversarial_samples: int = 200,
                   latency_batch: int = 64, n_bins: int = 15) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one trained model (see the module docstring).

    Args:
        model: maps inputs to logits (a ``ClassifierModule`` or any ``nn.Module``); evaluated in eval mode.
        datamodule: a :class:`~toolkit.data.DigitsDataModule`; its test split is graded, its validation
            split fits the temperature, its ``ood_classes`` (if any) give the OOD AUROC.
        corruptions: Digits-C corruptions averaged for the shift columns (default: all of them).
        severity: their severity, 1-5.
        epsilon: L-inf PGD budget in pixel units (fraction of the black-to-white range), ``>= 0``.
        pgd_steps: PGD steps.
        adversarial_samples: test samples attacked (the first ones), ``>= 1``: PGD is the slow axis.
        latency_batch: batch size at which latency is timed.
        n_bins: ECE bins.
    """
    from toolkit.data import CORRUPTIONS

    _check_args(model, datamodule, severity, epsilon, adversarial_samples)
    for name, value in (("pgd_steps", pgd_steps), ("latency_batch", latency_batch), ("n_bins", n_bins)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if isinstance(corruptions, str):
        raise TypeError(f"corruptions must be a sequence of corruption names, got the string {corruptions!r}")
    corruptions = sorted(CORRUPTIONS) if corruptions is None else list(corruptions)
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown or not corruptions:
        raise ValueError(f"corruptions must be a non-empty subset of {sorted(CORRUPTIONS)}, got {corruptions!r}")
    batch = getattr(datamodule, "eval_batch_size", 512)
    was_training = model.training
    model.eval()
    try:
        x_test, y_test = datamodule.tensors("test")
        logits = _logits(model, x_test, batch)
        row: dict[str, float] = {"accuracy": _accuracy(logits, y_test), "nll": F.cross_entropy(logits, y_test).item(),
                                 "ece": _ece(logits, y_test, n_bins)}
        calibration = _optional("toolkit.calibration")
        if calibration is not None:
            x_val, y_val = datamodule.tensors("val")
            scaler = calibration.TemperatureScaling().fit(_logits(model, x_val, batch), y_val)
            row["ece_ts"] = _ece(scaler(logits), y_test, n_bins)
            row["temperature"] = scaler.temperature
        shifted = [datamodule.shifted_tensors(c, severity) for c in corruptions]
        shifted_logits = [(_logits(model, x, batch), y) for x, y in shifted]
        row["shift_accuracy"] = sum(_accuracy(lg, y) for lg, y in shifted_logits) / len(shifted_logits)
        row["shift_ece"] = sum(_ece(lg, y, n_bins) for lg, y in shifted_logits) / len(shifted_logits)
        if calibration is not None and getattr(datamodule, "ood_classes", ()):
            ood = _logits(model, datamodule.ood_tensors(), batch)
            scores = calibration.ood_evaluate(logits, ood, methods=("msp",))
            row["ood_auroc"] = float(scores["auroc"].iloc[0])
        security = _optional("toolkit.security")
        if security is not None:
            n = min(adversarial_samples, len(y_test))
            robust = security.robust_accuracy(model, (x_test[:n], y_test[:n]), security.pgd, epsilons=(epsilon,),
                                              steps=pgd_steps, input_range=datamodule.input_range, seed=0)
            row["robust_accuracy"] = float(robust["robust_acc"].iloc[0])
        cost = _optional("toolkit.cost")
        if cost is not None:
            latency = cost.measure_latency(model, x_test[:latency_batch], batch_sizes=(latency_batch,))
            row["latency_ms"] = float(latency["latency_ms"].iloc[0])
            row["size_kb"] = cost.model_size_bytes(model) / _BYTES_PER_KB
        row["parameters"] = float(sum(p.numel() for p in model.parameters()))
    finally:
        model.train(was_training)
    return row


def report_card(models: Mapping[str, nn.Module | Sequence[nn.Module]], datamodule: Any,
                **evaluate_kwargs: Any) -> pd.DataFrame:
    """:func:`evaluate_model` for several models, each given as one module or one per seed.

    Args:
        models: name to a trained model, or to a list of them (one per seed, e.g. the ``module`` of
            every ``FitResult`` of ``run_seeds(..., return_results=True)``).
        datamodule: see :func:`evaluate_model`.
        **evaluate_kwargs: passed to :func:`evaluate_model`.

    Returns:
        One row per model and seed: ``model``, ``seed`` (position in the list), then the metrics.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty mapping of name to model or list of models")
    rows = []
    for name, members in models.items():
        members = [members] if isinstance(members, nn.Module) else list(members)
        if not members:
            raise ValueError(f"models[{name!r}] is empty: give at least one trained model")
        for seed, model in enumerate(members):
            rows.append({"model": name, "seed": seed, **evaluate_model(model, datamodule, **evaluate_kwargs)})
    return pd.DataFrame(rows)


def summarize_card(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, one row per model (columns ``(metric, stat)``)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a DataFrame from report_card, got {type(frame).__name__}")
    if "model" not in frame.columns:
        raise ValueError(f"frame must come from report_card (a 'model' column), got columns {list(frame.columns)}")
    metrics = [m for m in METRICS if m in frame.columns]
    return frame.groupby("model", sort=False)[metrics].agg(["mean", "std"])
