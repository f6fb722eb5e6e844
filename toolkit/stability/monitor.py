"""``GradientNormMonitor``: the global gradient norm every step, per-parameter norms every N steps."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.optim import Optimizer

from toolkit.stability._checks import check_positive_int, global_norm, log_metrics

__all__ = ["GradientNormMonitor"]


class GradientNormMonitor(pl.Callback):
    """Log the global L2 gradient norm every step and each parameter's norm every ``layer_every_n_steps``.

    Norms are read in ``on_before_optimizer_step``: after backward (and AMP unscaling), before
    Lightning's ``gradient_clip_val`` and before any callback listed after this one (put it first to
    see the raw, un-clipped gradients). The global norm is logged as ``grad_norm`` and kept in
    :attr:`history`; per-parameter norms are kept in :attr:`layer_history`, which
    :meth:`layer_frame` turns into a long table ready for a heatmap (step x parameter).

    How it differs from Lightning: ``LightningModule.log_grad_norm``/``grad_norm`` (utilities) log
    every parameter at every call and keep nothing; ``LearningRateMonitor`` logs learning rates, not
    gradients. This monitor is cheap by default (one fused norm per step) and keeps a history.

    Under DDP the gradients are already all-reduced when the hook runs, so every rank computes the
    same norms; only rank zero logs (to the Trainer's loggers, every ``log_every_n_steps`` steps).

    Args:
        layer_every_n_steps: interval of the per-parameter norms, ``>= 1``.
        weights_only: per-parameter norms for tensors with ``ndim > 1`` only (weights, not biases
            and norm scales), which keeps heatmaps readable.
        log: send ``grad_norm`` to the Trainer's logger (the history is kept either way).

    Example:
        >>> monitor = GradientNormMonitor(layer_every_n_steps=10)
        >>> # fit(..., callbacks=[monitor]); monitor.layer_frame() -> step, parameter, grad_norm
    """

    def __init__(self, layer_every_n_steps: int = 25, weights_only: bool = True, log: bool = True) -> None:
        check_positive_int("layer_every_n_steps", layer_every_n_steps)
        for flag, value in (("weights_only", weights_only), ("log", log)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {value!r}")
        self.layer_every_n_steps = layer_every_n_steps
        self.weights_only = bool(weights_only)
        self.log = bool(log)
        self.history: list[tuple[int, float]] = []
        self.layer_history: list[tuple[int, dict[str, float]]] = []
        self._named: list[tuple[str, torch.nn.Parameter]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._named = list(pl_module.named_parameters())  # walking the module tree every step is slow

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        step = trainer.global_step
        named = [(name, p) for name, p in (self._named or pl_module.named_parameters()) if p.grad is not None]
        with torch.no_grad():
            norm = global_norm([p.grad for _, p in named])
            self.history.append((step, float(norm)))
            if step % self.layer_every_n_steps == 0:
                chosen = [(name, p.grad) for name, p in named if p.ndim > 1 or not self.weights_only]
                norms = torch._foreach_norm([g for _, g in chosen]) if chosen else []
                self.layer_history.append((step, {name: float(n) for (name, _), n in zip(chosen, norms)}))
        if self.log:
            log_metrics(trainer, {"grad_norm": self.history[-1][1]})

    def frame(self) -> pd.DataFrame:
        """The global norm per step: columns ``step``, ``grad_norm``."""
        return pd.DataFrame(self.history, columns=["step", "grad_norm"])

    def layer_frame(self) -> pd.DataFrame:
        """Per-parameter norms: columns ``step``, ``parameter``, ``depth`` (order in the model), ``grad_norm``."""
        rows = [{"step": step, "parameter": name, "depth": depth, "grad_norm": value}
                for step, norms in self.layer_history for depth, (name, value) in enumerate(norms.items())]
        return pd.DataFrame(rows, columns=["step", "parameter", "depth", "grad_norm"])

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "layer_history": list(self.layer_history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [tuple(item) for item in state_dict["history"]]
        self.layer_history = [(step, dict(norms)) for step, norms in state_dict["layer_history"]]
