"""Evaluate a trained classifier along every axis of the course, over seeds, into one table.

The axes and the notebook that teaches each: accuracy and NLL (00), calibration before and after
temperature scaling (03, ``toolkit.calibration``), accuracy and ECE under the Digits-C or MNIST-1D-C
shift (00, 03), OOD detection AUROC on held-out classes (03), robust accuracy under PGD (05,
``toolkit.security``), latency and size (04, ``toolkit.cost``). Each row of the result is one model of
one seed; its metric names match the regression gate's rules (``toolkit.monitoring.DEFAULT_RULES``), so a
row can be gated, with :func:`gate_rules` widening the latency tolerance by the measured timing noise.
The data is any DataModule (the course's, or a ``LightningDataModule``), a ``DataLoader`` or an
``(inputs, targets)`` pair; a column the data cannot give (no validation split, no shift) is left out.

An axis whose topic package is not installed is left out, and :func:`missing_axes` says which; the
report never re-implements another topic's method.

Example:
    >>> frame = report_card({"mlp": [run.module for run in runs]}, dm)  # doctest: +SKIP
    >>> summarize_card(frame)                                           # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.monitoring.gate import GateRule

__all__ = ["METRICS", "evaluate_model", "gate_rules", "missing_axes", "report_card", "summarize_card"]

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
LATENCY_REPEATS = 30     # timed calls per model; the card reports their median and quartiles
LATENCY_WARMUP = 3
_LATENCY_COLUMNS = ("latency_ms", "latency_p25_ms", "latency_p75_ms")


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


# ---- the data: any DataModule or loader --------------------------------------------------------------
@dataclass
class _Data:
    """What the card reads from the data: test (and optional val, shifted, OOD) tensors."""

    test: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor] | None
    shifted: list[tuple[Tensor, Tensor]]
    ood: Tensor | None
    input_range: tuple[float, float] | None
    batch_size: int


def _is_loader(data: Any) -> bool:
    return isinstance(data, Iterable) and not isinstance(data, (Tensor, str, bytes, Mapping))


def _collect(loader: Any, what: str) -> tuple[Tensor, Tensor]:
    """Every batch of ``loader`` (``(x, y, ...)``, ``{"x": ..., "y": ...}``...) concatenated into (inputs, targets)."""
    from toolkit._structure import batch_to_inputs, batch_to_targets

    inputs, targets = [], []
    for batch in loader:
        x, y = batch_to_inputs(batch), batch_to_targets(batch)
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(f"{what} batches must hold tensors (inputs, targets), got {type(x).__name__} and "
                            f"{type(y).__name__}")
        inputs.append(x)
        targets.append(y)
    if not inputs:
        raise ValueError(f"{what} is empty: it yielded no batch")
    return torch.cat(inputs), torch.cat(targets).long()


def _loader_of(datamodule: Any, hook: str) -> Any:
    method = getattr(datamodule, hook, None)
    if method is None:
        return None
    try:
        loader = method()
    except Exception:  # Lightning's default hooks raise when a split is not implemented
        return None
    return loader if _is_loader(loader) else None


def _default_corruptions(datamodule: Any) -> tuple[str, ...]:
    from toolkit.data import CORRUPTIONS, MNIST1D_CORRUPTIONS, MNIST1DDataModule

    return tuple(MNIST1D_CORRUPTIONS) if isinstance(datamodule, MNIST1DDataModule) else tuple(sorted(CORRUPTIONS))


def _data(datamodule: Any, corruptions: Sequence[str] | None, severity: int,
          shift: Any = None) -> _Data:
    """Read the test, validation, shifted and OOD data of a DataModule, a DataLoader or an ``(x, y)`` pair."""
    batch = int(getattr(datamodule, "eval_batch_size", 512))
    if isinstance(datamodule, (tuple, list)) and len(datamodule) == 2 and all(isinstance(t, Tensor) for t in datamodule):
        test, val, shifted, ood = (datamodule[0], datamodule[1].long()), None, [], None
    elif callable(getattr(datamodule, "tensors", None)):  # the course's DataModules
        test, val = datamodule.tensors("test"), datamodule.tensors("val")
        val = val if len(val[1]) else None
        shifted = []
        if shift is None and callable(getattr(datamodule, "shifted_tensors", None)):
            names = _default_corruptions(datamodule) if corruptions is None else list(corruptions)
            shifted = [datamodule.shifted_tensors(c, severity) for c in names]
        ood = datamodule.ood_tensors() if getattr(datamodule, "ood_classes", ()) else None
    elif callable(getattr(datamodule, "test_dataloader", None)):  # any LightningDataModule
        for stage in ("fit", "test"):
            setup = getattr(datamodule, "setup", None)
            if callable(setup):
                setup(stage)
        loader = _loader_of(datamodule, "test_dataloader")
        if loader is None:
            raise TypeError(f"datamodule {type(datamodule).__name__} has no usable test_dataloader()")
        test = _collect(loader, "test_dataloader()")
        val_loader = _loader_of(datamodule, "val_dataloader")
        val = None if val_loader is None else _collect(val_loader, "val_dataloader()")
        shifted, ood = [], None
    elif _is_loader(datamodule):  # a DataLoader of test batches
        test, val, shifted, ood = _collect(datamodule, "datamodule (a loader)"), None, [], None
    else:
        raise TypeError("datamodule must be a DataModule (the course's, or any LightningDataModule with "
                        "test_dataloader), a DataLoader of (inputs, targets) batches or an (inputs, targets) pair, "
                        f"got {type(datamodule).__name__}")
    if shift is not None:
        loaders = dict(shift) if isinstance(shift, Mapping) else {"shift": shift}
        shifted = [_collect(loader, f"shift[{name!r}]") for name, loader in loaders.items()]
    input_range = getattr(datamodule, "input_range", None)  # read after setup: it depends on the normalization
    return _Data(test, val, shifted, ood, None if input_range is None else tuple(input_range), batch)


def _check_args(model: Any, severity: Any, epsilon: Any, adversarial_samples: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module mapping inputs to logits, got {type(model).__name__}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be an integer in 1-5, got {severity!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 <= epsilon < float("inf"):
        raise ValueError(f"epsilon must be a finite number >= 0 (pixel units), got {epsilon!r}")
    if isinstance(adversarial_samples, bool) or not isinstance(adversarial_samples, int) or adversarial_samples < 1:
        raise ValueError(f"adversarial_samples must be an integer >= 1, got {adversarial_samples!r}")


def _check_corruptions(datamodule: Any, corruptions: Any) -> None:
    if corruptions is None:
        return
    if isinstance(corruptions, str):
        raise TypeError(f"corruptions must be a sequence of corruption names, got the string {corruptions!r}")
    known = _default_corruptions(datamodule)
    corruptions = list(corruptions)
    unknown = [c for c in corruptions if c not in known]
    if unknown or not corruptions:
        raise ValueError(f"corruptions must be a non-empty subset of {list(known)}, got {corruptions!r}")


def _check_ints(**values: Any) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _evaluate(model: nn.Module, data: _Data, *, epsilon: float, pgd_steps: int, adversarial_samples: int,
              n_bins: int) -> dict[str, float]:
    batch = data.batch_size
    was_training = model.training
    model.eval()
    try:
        x_test, y_test = data.test
        logits = _logits(model, x_test, batch)
        row: dict[str, float] = {"accuracy": _accuracy(logits, y_test), "nll": F.cross_entropy(logits, y_test).item(),
                                 "ece": _ece(logits, y_test, n_bins)}
        calibration = _optional("toolkit.calibration")
        if calibration is not None and data.val is not None:
            x_val, y_val = data.val
            scaler = calibration.TemperatureScaling().fit(_logits(model, x_val, batch), y_val)
            row["ece_ts"] = _ece(scaler(logits), y_test, n_bins)
            row["temperature"] = scaler.temperature
        if data.shifted:
            shifted_logits = [(_logits(model, x, batch), y) for x, y in data.shifted]
            row["shift_accuracy"] = sum(_accuracy(lg, y) for lg, y in shifted_logits) / len(shifted_logits)
            row["shift_ece"] = sum(_ece(lg, y, n_bins) for lg, y in shifted_logits) / len(shifted_logits)
        if calibration is not None and data.ood is not None:
            ood = _logits(model, data.ood, batch)
            scores = calibration.ood_evaluate(logits, ood, methods=("msp",))
            row["ood_auroc"] = float(scores["auroc"].iloc[0])
        security = _optional("toolkit.security")
        if security is not None:
            n = min(adversarial_samples, len(y_test))
            robust = security.robust_accuracy(model, (x_test[:n], y_test[:n]), security.pgd, epsilons=(epsilon,),
                                              steps=pgd_steps, input_range=data.input_range, seed=0)
            row["robust_accuracy"] = float(robust["robust_acc"].iloc[0])
        cost = _optional("toolkit.cost")
        if cost is not None:
            row["size_kb"] = cost.model_size_bytes(model) / _BYTES_PER_KB
        row["parameters"] = float(sum(p.numel() for p in model.parameters()))
    finally:
        model.train(was_training)
    return row


def _latency(models: Mapping[str, nn.Module], example: Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """Median and quartiles of ``repeats`` timed calls of every model, timed side by side (interleaved)."""
    cost = _optional("toolkit.cost")
    if cost is None:
        return {name: {} for name in models}
    frame = cost.compare_latency(dict(models), example, batch_sizes=(len(example),), warmup=LATENCY_WARMUP,
                                 repeats=repeats).set_index("model")
    return {name: {column: float(frame.loc[name, column]) for column in _LATENCY_COLUMNS} for name in models}


def evaluate_model(model: nn.Module, datamodule: Any, *, corruptions: Sequence[str] | None = None,
                   severity: int = 3, epsilon: float = 0.1, pgd_steps: int = 10, adversarial_samples: int = 200,
                   latency_batch: int = 64, latency_repeats: int = LATENCY_REPEATS, n_bins: int = 15,
                   shift: Any = None) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one trained model (see the module docstring).

    Args:
        model: maps inputs to logits (a ``ClassifierModule`` or any ``nn.Module``); evaluated in eval mode.
        datamodule: the data. A course DataModule (``DigitsDataModule``, ``MNIST1DDataModule``: its
            test split is graded, its validation split fits the temperature, its shifted sets give the
            shift columns and its ``ood_classes`` the OOD AUROC); any ``LightningDataModule`` with a
            ``test_dataloader`` (and optionally ``val_dataloader``); a ``DataLoader`` of test batches;
            or an ``(inputs, targets)`` pair. Batches may be ``(inputs, targets, ...)`` or dicts
            (``{"x"|"inputs"|...: ..., "y"|"label"|...: ...}``). Columns without data are left out.
        corruptions: corruptions of the DataModule's shifted sets averaged for the shift columns
            (default: all of them: ``CORRUPTIONS`` for digits, ``MNIST1D_CORRUPTIONS`` for MNIST-1D).
        severity: their severity, 1-5.
        epsilon: L-inf PGD budget, ``>= 0``: in pixel units when the data has an ``input_range``, else in
            model-input units.
        pgd_steps: PGD steps.
        adversarial_samples: test samples attacked (the first ones), ``>= 1``: PGD is the slow axis.
        latency_batch: batch size at which latency is timed.
        latency_repeats: timed calls (their median is ``latency_ms``, quartiles ``latency_p25_ms``/``_p75_ms``).
        n_bins: ECE bins.
        shift: shifted data instead of the DataModule's own: a loader, or a mapping of name to loader.
    """
    _check_args(model, severity, epsilon, adversarial_samples)
    _check_ints(pgd_steps=pgd_steps, latency_batch=latency_batch, latency_repeats=latency_repeats, n_bins=n_bins)
    _check_corruptions(datamodule, corruptions)
    data = _data(datamodule, corruptions, severity, shift)
    row = _evaluate(model, data, epsilon=epsilon, pgd_steps=pgd_steps, adversarial_samples=adversarial_samples,
                    n_bins=n_bins)
    row.update(_latency({"model": model}, data.test[0][:latency_batch], latency_repeats)["model"])
    return row


def report_card(models: Mapping[str, nn.Module | Sequence[nn.Module]], datamodule: Any,
                **evaluate_kwargs: Any) -> pd.DataFrame:
    """:func:`evaluate_model` for several models, each given as one module or one per seed.

    Every model is timed in the same loop as the others, call by call in rotating order
    (:func:`toolkit.cost.compare_latency`), never on its own: a load spike on a shared machine then
    slows all of them alike, and two identical models get the same latency up to the spread of single
    calls (``latency_p25_ms`` to ``latency_p75_ms``), which :func:`gate_rules` turns into the gate's
    latency tolerance.

    Args:
        models: name to a trained model, or to a list of them (one per seed, e.g. the ``module`` of
            every ``FitResult`` of ``run_seeds(..., return_results=True)``).
        datamodule: see :func:`evaluate_model` (any DataModule, a DataLoader or an ``(x, y)`` pair).
        **evaluate_kwargs: passed to :func:`evaluate_model`.

    Returns:
        One row per model and seed: ``model``, ``seed`` (position in the list), then the metrics.
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty mapping of name to model or list of models")
    kwargs = dict(evaluate_kwargs)
    unknown = set(kwargs) - set(inspect.signature(evaluate_model).parameters) - {"model", "datamodule"}
    if unknown:
        raise TypeError(f"report_card got unknown arguments {sorted(unknown)}")
    latency_batch, repeats = kwargs.pop("latency_batch", 64), kwargs.pop("latency_repeats", LATENCY_REPEATS)
    corruptions, severity, shift = kwargs.pop("corruptions", None), kwargs.pop("severity", 3), kwargs.pop("shift", None)
    kwargs = {"epsilon": 0.1, "pgd_steps": 10, "adversarial_samples": 200, "n_bins": 15, **kwargs}
    _check_ints(pgd_steps=kwargs["pgd_steps"], latency_batch=latency_batch, latency_repeats=repeats,
                n_bins=kwargs["n_bins"])
    members: dict[tuple[str, int], nn.Module] = {}
    for name, given in models.items():
        listed = [given] if isinstance(given, nn.Module) else list(given)
        if not listed:
            raise ValueError(f"models[{name!r}] is empty: give at least one trained model")
        for seed, model in enumerate(listed):
            _check_args(model, severity, kwargs["epsilon"], kwargs["adversarial_samples"])
            members[(name, seed)] = model
    _check_corruptions(datamodule, corruptions)
    data = _data(datamodule, corruptions, severity, shift)
    rows = {key: {"model": key[0], "seed": key[1], **_evaluate(model, data, **kwargs)}
            for key, model in members.items()}
    timed = _latency({f"{name}#{seed}": model for (name, seed), model in members.items()},
                     data.test[0][:latency_batch], repeats)
    for (name, seed), row in rows.items():
        row.update(timed[f"{name}#{seed}"])
    return pd.DataFrame(list(rows.values()))


def gate_rules(frame: pd.DataFrame, rules: Sequence[GateRule] | None = None) -> list[GateRule]:
    """The gate's rules for models timed together by :func:`report_card`, latency tolerance widened by the noise.

    A relative latency rule's tolerance becomes ``tolerance + spread``, where ``spread`` is the widest
    relative interquartile range of single timed calls over the card's rows,
    :math:`\\max_m (q_{75,m} - q_{25,m}) / q_{50,m}`: a median that moved by less than the spread of
    single calls is timing noise, not a regression. Other rules are returned unchanged.

    Args:
        frame: a :func:`report_card` frame with the ``latency_p25_ms``/``latency_p75_ms`` columns.
        rules: the rules to adapt (default ``toolkit.monitoring.DEFAULT_RULES``).
    """
    from toolkit.monitoring import DEFAULT_RULES

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a DataFrame from report_card, got {type(frame).__name__}")
    rules = list(DEFAULT_RULES if rules is None else rules)
    if not all(isinstance(r, GateRule) for r in rules):
        raise TypeError("rules must be a sequence of GateRule")
    if not {"latency_ms", *_LATENCY_COLUMNS} <= set(frame.columns):
        return [r for r in rules if r.metric != "latency_ms"]
    spread = float(((frame["latency_p75_ms"] - frame["latency_p25_ms"]) / frame["latency_ms"]).max())
    return [replace(r, tolerance=r.tolerance + spread) if r.metric == "latency_ms" and r.relative else r
            for r in rules]


def summarize_card(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, one row per model (columns ``(metric, stat)``)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a DataFrame from report_card, got {type(frame).__name__}")
    if "model" not in frame.columns:
        raise ValueError(f"frame must come from report_card (a 'model' column), got columns {list(frame.columns)}")
    metrics = [m for m in METRICS if m in frame.columns]
    return frame.groupby("model", sort=False)[metrics].agg(["mean", "std"])
