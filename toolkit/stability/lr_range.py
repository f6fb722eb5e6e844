"""The learning-rate range test through Lightning's ``Tuner.lr_find``, its smoothed curve debiased as
fastai does, with the divergence threshold and the usual suggestions read off it."""

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

__all__ = ["LRRangeResult", "debias_lightning_losses", "divergence_lr", "lr_range_test", "plot_lr_range"]

LIGHTNING_BETA = 0.98  # the smoothing of Lightning's _LRCallback (lr_find does not expose it)


def debias_lightning_losses(losses: Sequence[float], beta: float = LIGHTNING_BETA) -> list[float]:
    r"""Lightning's smoothed range-test losses with the bias correction fastai uses.

    The smoothed curve is an exponential moving average debiased as in Adam (Kingma & Ba, 2014,
    arXiv:1412.6980): :math:`a_n = \beta a_{n-1} + (1-\beta)\ell_n`, :math:`s_n = a_n/(1-\beta^n)`, so
    :math:`s_1 = \ell_1`. Lightning's ``_LRCallback`` divides by :math:`1-\beta^{n+1}` (it reads
    ``global_step`` after the step has counted): its first point is :math:`\ell_1/(1+\beta)`, about half
    the first loss, and often the curve's minimum (Lightning issue #14167). This rescales point ``n``
    (1-based) by :math:`(1-\beta^{n+1})/(1-\beta^n)`, which undoes exactly that.

    Args:
        losses: Lightning's ``lr_find`` results (``finder.results["loss"]``) from a fresh trainer
            (``global_step`` 0 at the start), one point per optimizer step.
        beta: the smoothing, in ``(0, 1)``.

    Example:
        >>> round(debias_lightning_losses([2.3 / 1.98, 2.0])[0], 6)  # Lightning's first point is l_1 / (1 + beta)
        2.3
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta < 1:
        raise ValueError(f"beta must be a number in (0, 1), got {beta!r}")
    return [float(loss) * (1 - beta ** (n + 1)) / (1 - beta ** n) for n, loss in enumerate(losses, start=1)]


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
    """A range test.

    ``frame``: columns ``lr``, ``loss`` (the debiased smoothed training loss, see
    :func:`debias_lightning_losses`) and ``loss_lightning`` (Lightning's own, biased, curve), up to and
    including the divergence point. ``suggestion``: the steepest descent of ``loss`` (Lightning's
    ``suggestion()``, which skips the first 10 points and the last). ``min_loss_lr``: the learning rate
    of the lowest ``loss`` after the first 10% of the points (fastai's ``lr_find`` window); fastai's
    "minimum" rule suggests a tenth of it. ``divergence_lr``: where ``loss`` first exceeded
    ``early_stop_threshold`` times its best so far (None if it never did)."""

    frame: pd.DataFrame
    suggestion: float | None
    divergence_lr: float | None
    early_stop_threshold: float
    min_loss_lr: float | None = None


def lr_range_test(model: pl.LightningModule, data: Any, *, min_lr: float = 1e-5,
                  max_lr: float = 10.0, num_training: int = 100, early_stop_threshold: float = 4.0,
                  seed: int = 0, accelerator: str = "auto") -> LRRangeResult:
    """Run the LR range test on ``model``: ``num_training`` steps with the learning rate growing
    exponentially from ``min_lr`` to ``max_lr``; the curve is cut where the smoothed loss exceeds
    ``early_stop_threshold`` times its best value.

    Smith (2017, *Cyclical Learning Rates for Training Neural Networks*, arXiv:1506.01186) ramps the
    rate linearly over a few epochs; the exponential ramp over one short run with a smoothed,
    debiased loss and the 4x stopping rule is fastai's (Howard & Gugger, 2020, *Fastai: A Layered
    API for Deep Learning*, arXiv:2002.04688), which Lightning's ``lr_find`` follows.

    A thin wrapper on ``Tuner(trainer).lr_find`` (which restores the model's weights afterwards and
    ignores the module's own LR schedule): it builds a quiet Trainer, seeds the run, corrects
    Lightning's debiasing (:func:`debias_lightning_losses`) and applies the stopping rule
    (:func:`divergence_lr`) to the corrected curve; Lightning's own early stop is off, since it
    judges against the biased first point.

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
                early_stop_threshold=None, update_attr=False)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
    lightning_losses = list(finder.results["loss"])
    frame = pd.DataFrame({"lr": finder.results["lr"], "loss": debias_lightning_losses(lightning_losses),
                          "loss_lightning": lightning_losses})
    diverged = divergence_lr(frame["lr"], frame["loss"], early_stop_threshold)
    if diverged is not None:  # keep the curve up to the divergence point, as an early stop would
        frame = frame.iloc[:int(np.flatnonzero(frame["lr"].to_numpy() == diverged)[0]) + 1].reset_index(drop=True)
    finder.results = {"lr": frame["lr"].tolist(), "loss": frame["loss"].tolist()}
    suggestion = finder.suggestion() if len(frame) > 12 else None
    window = frame["loss"].iloc[len(frame) // 10:]
    finite = window[np.isfinite(window)]
    min_loss_lr = float(frame["lr"][finite.idxmin()]) if len(finite) else None
    return LRRangeResult(frame=frame, suggestion=suggestion, divergence_lr=diverged,
                         early_stop_threshold=float(early_stop_threshold), min_loss_lr=min_loss_lr)


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
