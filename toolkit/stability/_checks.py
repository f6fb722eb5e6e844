"""Argument checks shared by the stability callbacks (public boundary only)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_open_unit(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")


def check_names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a sequence of strings (parameter-name substrings), got {value!r}")
    return tuple(value)


def grads_of(parameters: Any) -> list[Tensor]:
    """The existing gradients of ``parameters`` (params without a gradient are left out)."""
    return [p.grad for p in parameters if p.grad is not None]


def global_norm(grads: list[Tensor]) -> Tensor:
    """The L2 norm of all ``grads`` together (0 when there are none), in float32 or wider."""
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def optimizer_index(trainer, optimizer: Any) -> int:
    """Position of ``optimizer`` in ``trainer.optimizers`` (the order of ``configure_optimizers``), 0 if absent."""
    for index, candidate in enumerate(getattr(trainer, "optimizers", None) or []):
        if candidate is optimizer or getattr(candidate, "optimizer", None) is optimizer:
            return index
    return 0


def optimizer_params(optimizer: Any) -> list[Tensor]:
    """The parameters that ``optimizer`` updates, in its param-group order."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def log_metrics(pl_module, metrics: dict[str, Any], every_step: bool = False) -> None:
    """Log ``metrics`` through ``LightningModule.log`` (on step), so they reach the loggers and
    ``trainer.callback_metrics``, where ``EarlyStopping``, ``ModelCheckpoint(monitor=...)`` and the
    progress bar read them. Values are equal on every rank (decided after a reduce): no ``sync_dist``.

    Unless ``every_step``, only on the steps the loggers write (every ``log_every_n_steps``) and on
    an epoch's last batch: each ``log`` call costs ~0.5-1 ms on a CPU, a few percent of a small
    model's step. ``callback_metrics`` is then exact at the end of every epoch (where
    ``EarlyStopping`` and ``ModelCheckpoint`` read it by default) and at most ``log_every_n_steps``
    steps old in between.
    """
    trainer = pl_module.trainer
    if not every_step and trainer.global_step % max(1, trainer.log_every_n_steps) and not trainer.is_last_batch:
        return
    for name, value in metrics.items():
        pl_module.log(name, value, on_step=True, on_epoch=False, logger=True, batch_size=1)
