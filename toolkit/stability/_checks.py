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


def log_metrics(trainer, metrics: dict[str, float]) -> None:
    """Send ``metrics`` to the Trainer's loggers, on rank zero, every ``log_every_n_steps`` steps.

    Straight to the loggers rather than through ``LightningModule.log``, whose per-call bookkeeping
    (~1 ms on a CPU) would cost more than the callbacks' own work.
    """
    step = trainer.global_step
    if not trainer.loggers or not trainer.is_global_zero or step % max(1, trainer.log_every_n_steps) != 0:
        return
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)
