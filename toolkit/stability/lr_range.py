"""The learning-rate range test through Lightning's ``Tuner.lr_find``, with its divergence threshold."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from toolkit._lightning import is_datamodule, is_lightning_module, namespace_of, submodule
from toolkit.stability._checks import check_positive_float, check_positive_int

__all__ = ["LRRangeResult", "divergence_lr", "lr_range_test", "plot_lr_range"]


def divergence_lr(lrs: Sequence[float], losses: Sequence[float], threshold: float = 4.0) -> float | None:
    """The first learning rate whose (smoothed) loss exceeds ``threshold`` times the best loss before it.

    The rule of Lightning's ``lr_find`` (``early_stop_threshold``), written out so it can be read
    off any recorded curve: from the second point on, ``loss[i] > threshold * min(loss[:i])``, or a
    non-finite loss. None when the curve never diverges.
    """
    check_positive_float("threshold", threshold)
    if len(lrs) != len(losses):
        raise ValueError(f"lrs and losses must have the same length, got {len(lrs)} and {len(losses)}")
    if not len(lrs):
        raise ValueError("lrs and losses are empty: there is no curve to read")
    if any(isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf for lr in lrs):
        raise ValueError(f"lrs must be finite learning rates > 0, got {list(lrs)!r}")
    best = math.inf
    for i, (lr, loss) in enumerate(zip(lrs, losses)):
        if i >= 1 and (not math.isfinite(loss) or loss > threshold * best):
            return float(lr)
        if math.isfinite(loss):
            best = min(best, loss)
    return None


@contextlib.contextmanager
def _quiet_finder(namespace: Any = pl) -> Iterator[None]:
    """Hide lr_find's own progress bar (a tqdm on stderr it always opens) and its information lines."""
    lr_finder = submodule(namespace, "tuner.lr_finder")
    log = logging.getLogger(namespace.__name__)
    level, bar = log.level, lr_finder.tqdm
    log.setLevel(logging.WARNING)
    lr_finder.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        log.setLevel(level)
        lr_finder.tqdm = bar


@dataclass
class LRRangeResult:
    """A range test: ``frame`` (columns ``lr``, ``loss``: Lightning's smoothed training loss), Lightning's
    ``suggestion`` (steepest descent) and ``divergence_lr`` (where the search stopped, or None)."""

    frame: pd.DataFrame
    suggestion: float | None
    divergence_lr: float | None
    early_stop_threshold: float


def lr_range_test(model: pl.LightningModule, data: Any, *, min_lr: float = 1e-5,
                  max_lr: float = 10.0, num_training: int = 100, early_stop_threshold: float = 4.0,
                  seed: int = 0, accelerator: str = "auto") -> LRRangeResult:
    """Run the LR range test (Smith, 2017) on ``model``: ``num_training`` steps with the learning rate
    growing exponentially from ``min_lr`` to ``max_lr``, stopping once the smoothed loss exceeds
    ``early_stop_threshold`` times its best value.

    A thin wrapper on ``Tuner(trainer).lr_find`` (which restores the model's weights afterwards and
    ignores the module's own LR schedule): it builds a quiet Trainer, seeds the run and returns the
    curve as a DataFrame with the divergence threshold read off it by :func:`divergence_lr`.

    Args:
        model: a LightningModule (``pytorch_lightning`` or ``lightning.pytorch``) whose optimizer reads
            ``hparams.lr`` (e.g. ``ClassifierModule``).
        data: its DataModule, or a training DataLoader (any iterable of batches).
        min_lr, max_lr: the range, ``0 < min_lr < max_lr``.
        num_training: steps, ``>= 2`` (may span several epochs).
        early_stop_threshold: ``> 1``.
        seed: seeds the batch order; the caller's global random state (Python, NumPy, torch) is
            restored afterwards.
        accelerator: as for ``Trainer`` ("auto" uses a GPU when there is one).
    """
    if not is_lightning_module(model):
        raise TypeError(f"model must be a LightningModule (pytorch_lightning or lightning.pytorch), "
                        f"got {type(model).__name__}")
    if not is_datamodule(data) and not hasattr(data, "__iter__"):
        raise TypeError(f"data must be a LightningDataModule or a DataLoader of training batches, "
                        f"got {type(data).__name__}")
    check_positive_float("min_lr", min_lr)
    check_positive_float("max_lr", max_lr)
    if min_lr >= max_lr:
        raise ValueError(f"min_lr must be < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    check_positive_int("num_training", num_training)
    if num_training < 2:
        raise ValueError(f"num_training must be an integer >= 2, got {num_training!r}")
    check_positive_float("early_stop_threshold", early_stop_threshold)
    if early_stop_threshold <= 1:
        raise ValueError(f"early_stop_threshold must be a number > 1, got {early_stop_threshold!r}")
    from toolkit.training import quiet_lightning

    lightning = namespace_of(model)
    loaders = {"datamodule": data} if is_datamodule(data) else {"train_dataloaders": data}
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        with quiet_lightning(), _quiet_finder(lightning), tempfile.TemporaryDirectory() as root:
            pl.seed_everything(seed, workers=True, verbose=False)
            trainer = lightning.Trainer(accelerator=accelerator, devices=1, default_root_dir=root, logger=False,
                                        enable_checkpointing=False, enable_progress_bar=False,
                                        enable_model_summary=False, limit_val_batches=0, max_steps=num_training)
            finder = submodule(lightning, "tuner").Tuner(trainer).lr_find(
                model, **loaders, min_lr=min_lr, max_lr=max_lr, num_training=num_training,
                early_stop_threshold=early_stop_threshold, update_attr=False)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
    frame = pd.DataFrame({"lr": finder.results["lr"], "loss": finder.results["loss"]})
    suggestion = finder.suggestion() if len(frame) > 12 else None
    return LRRangeResult(frame=frame, suggestion=suggestion,
                         divergence_lr=divergence_lr(frame["lr"], frame["loss"], early_stop_threshold),
                         early_stop_threshold=float(early_stop_threshold))


def plot_lr_range(result: LRRangeResult, label: str | None = None, ax=None):
    """The range-test curve on a log learning-rate axis, the divergence threshold as a dashed line."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not isinstance(result, LRRangeResult):
        raise TypeError(f"result must be an LRRangeResult, got {type(result).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.8))
    line = sns.lineplot(data=result.frame, x="lr", y="loss", label=label, ax=ax)
    color = line.get_lines()[-1].get_color()
    if result.divergence_lr is not None:
        ax.axvline(result.divergence_lr, color=color, linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed training loss")
    ax.set_title("LR range test (dashed: divergence threshold)")
    return ax
