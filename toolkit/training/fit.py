"""``fit`` and ``run_seeds``: a Trainer with the course's defaults, one run or many seeds."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import pandas as pd
import pytorch_lightning as pl
import torch

from toolkit._lightning import is_callback, is_datamodule, is_lightning_module, namespace_of, submodule

__all__ = ["FitResult", "evaluate", "fit", "predict_logits", "quiet_lightning", "read_history", "run_seeds",
           "silence_lightning", "summarize"]

ModuleSpec = Union[pl.LightningModule, Callable[[], pl.LightningModule]]
DataSpec = Union[pl.LightningDataModule, Callable[[], pl.LightningDataModule]]

RUNS_DIR_ENV = "TOOLKIT_RUNS_DIR"      # where run folders go (default ./runs)
QUIET_ENV = "TOOLKIT_QUIET"            # set to 1 to hide progress bars (CI sets CI=true)
_LIGHTNING_INFO_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda",
                           "lightning_fabric.utilities.seed", "lightning.fabric.utilities.seed")
_NOISE_WARNINGS = (".*smaller than the logging interval.*", ".*does not have many workers.*",
                   ".*Checkpoint directory .* exists and is not empty.*",
                   r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


@dataclass
class FitResult:
    """What ``fit`` returns: the trained module and where to find everything about the run."""

    module: pl.LightningModule
    trainer: pl.Trainer
    metrics: dict[str, float]
    history: pd.DataFrame
    run_dir: Path
    fit_time_s: float
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)


def _interactive() -> bool:
    if os.environ.get("CI") or os.environ.get(QUIET_ENV, "0") not in ("", "0"):
        return False
    return sys.stdout.isatty() or "ipykernel" in sys.modules


def _ignore_noise_warnings() -> None:
    for pattern in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's start-up chatter (devices found, tips) and known noise warnings, inside a block."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_INFO_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            _ignore_noise_warnings()
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def silence_lightning() -> None:
    """Like :func:`quiet_lightning`, for the rest of the session (notebooks call it once at the top).

    Only information and the known noise warnings are hidden; Lightning's other warnings still show.
    """
    for name in _LIGHTNING_INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    _ignore_noise_warnings()


def read_history(log_dir: str | Path) -> pd.DataFrame:
    """Per-epoch train/val metrics from a CSVLogger folder (one row per epoch)."""
    path = Path(log_dir) / "metrics.csv"
    if not path.exists():
        return pd.DataFrame()
    frame = pd.read_csv(path)
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("test_")])
    if "epoch" not in frame:
        return frame
    metric_columns = [c for c in frame.columns if c not in ("epoch", "step")]
    frame = frame.dropna(subset=["epoch"]).dropna(subset=metric_columns, how="all")
    frame = frame.groupby("epoch", as_index=False).last()
    frame["epoch"] = frame["epoch"].astype(int)
    return frame.dropna(axis=1, how="all")


def _build(spec: Any, kind: str, name: str) -> Any:
    """``spec`` or what its factory returns, a LightningModule/LightningDataModule of either namespace."""
    check = is_lightning_module if kind == "LightningModule" else is_datamodule
    obj = spec() if callable(spec) and not check(spec) else spec
    if not check(obj):
        raise TypeError(f"{name} must be a {kind} (pytorch_lightning or lightning.pytorch) or a zero-argument "
                        f"factory of one, got {type(obj).__name__}")
    return obj


def fit(model: ModuleSpec, data: DataSpec, *, max_epochs: int = 10, seed: int = 0,
        callbacks: Sequence[pl.Callback] = (), name: str = "run", runs_dir: str | Path | None = None,
        test: bool = True, accelerator: str = "auto", devices: int | str = 1, deterministic: bool = True,
        enable_progress_bar: bool | None = None, ckpt_path: str | None = None,
        **trainer_kwargs: Any) -> FitResult:
    """Seed, build a Trainer with the course's defaults, train, test, and return everything.

    Pass factories (``lambda: ClassifierModule(...)``) rather than instances to make weight
    initialization part of the seeded run: ``fit`` seeds everything before calling them.

    Args:
        model: a LightningModule, or a zero-argument factory of one.
        data: a LightningDataModule, or a zero-argument factory of one.
        max_epochs: epochs to train, ``>= 1``.
        seed: seeds Python, NumPy and torch (and so init, dropout and the batch order).
        callbacks: any Lightning callbacks (ours or Lightning's own).
        name: the run's folder under ``runs_dir`` (CSV logs and checkpoints, one version per run).
        runs_dir: default ``$TOOLKIT_RUNS_DIR`` or ``./runs``.
        test: evaluate on the test split after training.
        accelerator, devices: as for ``pl.Trainer`` ("auto" finds a GPU when there is one).
        deterministic: ``torch.use_deterministic_algorithms`` (same seed, same numbers).
        enable_progress_bar: default on in a terminal or notebook, off in CI.
        ckpt_path: resume from a checkpoint ("last" or a path).
        **trainer_kwargs: anything else ``pl.Trainer`` accepts (``precision``, ``gradient_clip_val``...).

    Returns:
        :class:`FitResult` with ``metrics`` (last-epoch ``train_*``/``val_*`` and ``test_*``) and
        ``history`` (one row per epoch).
    """
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be an integer >= 1, got {max_epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    for i, callback in enumerate(callbacks):
        if not is_callback(callback):
            raise TypeError(f"callbacks[{i}] must be a Lightning Callback (pytorch_lightning or lightning.pytorch), "
                            f"got {type(callback).__name__}")
    runs_dir = Path(runs_dir or os.environ.get(RUNS_DIR_ENV, "runs"))
    with quiet_lightning():
        pl.seed_everything(seed, workers=True, verbose=False)
        module = _build(model, "LightningModule", "model")
        datamodule = _build(data, "LightningDataModule", "data")
        lightning = namespace_of(module, datamodule)  # a lightning.pytorch module gets a lightning.pytorch Trainer
        logger = submodule(lightning, "loggers").CSVLogger(save_dir=runs_dir, name=name)
        trainer = lightning.Trainer(
            max_epochs=max_epochs, accelerator=accelerator, devices=devices, deterministic=deterministic,
            logger=logger, callbacks=list(callbacks), log_every_n_steps=trainer_kwargs.pop("log_every_n_steps", 10),
            enable_progress_bar=_interactive() if enable_progress_bar is None else enable_progress_bar,
            enable_model_summary=trainer_kwargs.pop("enable_model_summary", False), **trainer_kwargs)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        fit_time_s = time.perf_counter() - start
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if test and not trainer.interrupted:
            for results in trainer.test(module, datamodule=datamodule, verbose=False):
                metrics.update({k: float(v) for k, v in results.items()})
    return FitResult(module=module, trainer=trainer, metrics=metrics, history=read_history(logger.log_dir),
                     run_dir=Path(logger.log_dir), fit_time_s=fit_time_s, seed=seed)


def _eval_trainer(accelerator: str, module: Any = None) -> pl.Trainer:
    return namespace_of(module).Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)


def evaluate(module: pl.LightningModule, loader: Any, accelerator: str = "auto") -> dict[str, float]:
    """Run ``module``'s test loop over ``loader`` (any loader, e.g. a shifted test set); its metrics.

    With a :class:`~toolkit.training.ClassifierModule` the keys are ``test_acc``, ``test_nll``,
    ``test_ece``, ``test_brier`` and ``test_loss``.
    """
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"module must be a LightningModule, got {type(module).__name__}")
    with quiet_lightning():
        results = _eval_trainer(accelerator, module).test(module, loader, verbose=False)
    return {k: float(v) for k, v in results[0].items()}


def predict_logits(module: pl.LightningModule, loader: Any, accelerator: str = "auto") -> torch.Tensor:
    """Concatenated ``predict_step`` outputs (logits for a ClassifierModule) over ``loader``, on CPU."""
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"module must be a LightningModule, got {type(module).__name__}")
    with quiet_lightning():
        outputs = _eval_trainer(accelerator, module).predict(module, loader)
    return torch.cat([o.detach().cpu() for o in outputs])


def run_seeds(model: Callable[[], pl.LightningModule], data: DataSpec, seeds: Iterable[int] = (0, 1, 2), *,
              config: dict[str, Any] | None = None, return_results: bool = False,
              **fit_kwargs: Any) -> pd.DataFrame | tuple[pd.DataFrame, list[FitResult]]:
    """Run the same experiment once per seed; one row per seed in a DataFrame.

    Args:
        model: a zero-argument factory of a LightningModule (called after seeding, so every
            seed gets its own initialization).
        data: a LightningDataModule (its split stays fixed) or a factory of one.
        seeds: the seeds, distinct integers >= 0.
        config: constant columns to add to every row (e.g. ``{"regularizer": "dropout"}``), handy
            for concatenating the tables of several configurations.
        return_results: also return the list of :class:`FitResult` (e.g. for a deep ensemble).
        **fit_kwargs: passed to :func:`fit`.

    Returns:
        A DataFrame with columns ``seed``, the ``config`` keys, every metric, ``fit_time_s`` and
        ``epochs``; with ``return_results``, the pair ``(frame, results)``.
    """
    if isinstance(model, pl.LightningModule) or not callable(model):
        raise TypeError("model must be a zero-argument factory (e.g. lambda: ClassifierModule(...)), "
                        f"not {type(model).__name__}: every seed needs a freshly initialized model")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty sequence of distinct integers, got {seeds!r}")
    rows, results = [], []
    for seed in seeds:
        result = fit(model, data, seed=seed, **fit_kwargs)
        rows.append({"seed": seed, **(config or {}), **result.metrics, "fit_time_s": result.fit_time_s,
                     "epochs": result.trainer.current_epoch})
        if return_results:
            results.append(result)
    frame = pd.DataFrame(rows)
    return (frame, results) if return_results else frame


def summarize(frame: pd.DataFrame, metrics: Sequence[str], by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metrics`` over seeds (grouped ``by`` columns)."""
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise ValueError(f"metrics {missing} are not columns of the frame; columns are {list(frame.columns)}")
    if by is None:
        return frame[list(metrics)].agg(["mean", "std", "count"]).T
    return frame.groupby(by)[list(metrics)].agg(["mean", "std", "count"])
