"""``GradientNormMonitor``: the global gradient norm every step, per-parameter norms every N steps;
``UpdateRatioMonitor``: each parameter's update-to-weight ratio every N steps."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.optim import Optimizer

from toolkit.stability._checks import check_positive_int, global_norm, log_metrics, optimizer_index, optimizer_params

__all__ = ["GradientNormMonitor", "UpdateRatioMonitor"]


class GradientNormMonitor(pl.Callback):
    """Log the global L2 gradient norm every step and each parameter's norm every ``layer_every_n_steps``.

    Norms are read in ``on_before_optimizer_step``: after backward (and AMP unscaling), before
    Lightning's ``gradient_clip_val`` and before any callback listed after this one (put it first to
    see the raw, un-clipped gradients). The global norm is logged as ``grad_norm`` through
    ``LightningModule.log`` every ``log_every_n_steps`` steps and at each epoch's last step (so
    ``trainer.callback_metrics``, ``EarlyStopping(monitor="grad_norm")`` and
    ``ModelCheckpoint(monitor=...)`` see it) and kept, every step, in :attr:`history`; per-parameter norms are
    kept in :attr:`layer_history`, which :meth:`layer_frame` turns into a long table ready for a
    heatmap (step x parameter).

    Several optimizers (a GAN's generator and discriminator, manual optimization): each step's norm
    is over the parameters of the optimizer being stepped only, kept per optimizer in
    :attr:`histories` (``history`` is the first optimizer's) and logged as ``grad_norm`` for the
    first optimizer and ``grad_norm_optimizer{i}`` for the ``i``-th (the order of
    ``configure_optimizers``).

    How it differs from Lightning: ``LightningModule.log_grad_norm``/``grad_norm`` (utilities) log
    every parameter at every call and keep nothing; ``LearningRateMonitor`` logs learning rates, not
    gradients. This monitor is cheap by default (one fused norm per step) and keeps a history.

    Under DDP the gradients are already all-reduced when the hook runs, so every rank computes the
    same norms.

    Args:
        layer_every_n_steps: interval of the per-parameter norms, ``>= 1``.
        weights_only: per-parameter norms for tensors with ``ndim > 1`` only (weights, not biases
            and norm scales), which keeps heatmaps readable.
        log: log ``grad_norm`` through ``LightningModule.log`` (the history is kept either way).

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
        self.histories: dict[int, list[tuple[int, float]]] = {0: []}
        self.layer_history: list[tuple[int, dict[str, float]]] = []
        self._named: dict[int, list[tuple[str, torch.nn.Parameter]]] = {}

    @property
    def state_key(self) -> str:
        return self._generate_state_key(layer_every_n_steps=self.layer_every_n_steps, weights_only=self.weights_only)

    @property
    def history(self) -> list[tuple[int, float]]:
        """``(step, grad_norm)`` of the first optimizer (the only one, in most modules)."""
        return self.histories.setdefault(0, [])

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._named = {}
        self._module_params = list(pl_module.named_parameters())

    def _named_of(self, index: int, optimizer: Optimizer) -> list[tuple[str, torch.nn.Parameter]]:
        if index not in self._named:  # walking the module tree every step is slow: once per optimizer
            owned = {id(p) for p in optimizer_params(optimizer)}
            self._named[index] = [(name, p) for name, p in self._module_params if id(p) in owned]
        return self._named[index]

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        step = trainer.global_step
        index = optimizer_index(trainer, optimizer)
        named = [(name, p) for name, p in self._named_of(index, optimizer) if p.grad is not None]
        with torch.no_grad():
            norm = global_norm([p.grad for _, p in named])
            self.histories.setdefault(index, []).append((step, float(norm)))
            if step % self.layer_every_n_steps == 0:
                chosen = [(name, p.grad) for name, p in named if p.ndim > 1 or not self.weights_only]
                norms = torch._foreach_norm([g for _, g in chosen]) if chosen else []
                self.layer_history.append((step, {name: float(n) for (name, _), n in zip(chosen, norms)}))
        if self.log:
            log_metrics(pl_module, {"grad_norm" if index == 0 else f"grad_norm_optimizer{index}": norm})

    def frame(self) -> pd.DataFrame:
        """The global norm per step: columns ``step``, ``grad_norm``, ``optimizer`` (its index)."""
        rows = [(step, norm, index) for index, history in sorted(self.histories.items()) for step, norm in history]
        return pd.DataFrame(rows, columns=["step", "grad_norm", "optimizer"])

    def layer_frame(self) -> pd.DataFrame:
        """Per-parameter norms: columns ``step``, ``parameter``, ``depth`` (order in the model), ``grad_norm``."""
        rows = [{"step": step, "parameter": name, "depth": depth, "grad_norm": value}
                for step, norms in self.layer_history for depth, (name, value) in enumerate(norms.items())]
        return pd.DataFrame(rows, columns=["step", "parameter", "depth", "grad_norm"])

    def state_dict(self) -> dict[str, Any]:
        return {"histories": {index: list(h) for index, h in self.histories.items()},
                "layer_history": list(self.layer_history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        histories = state_dict.get("histories", {0: state_dict.get("history", [])})
        self.histories = {int(index): [tuple(item) for item in h] for index, h in histories.items()}
        self.layer_history = [(step, dict(norms)) for step, norms in state_dict["layer_history"]]


class UpdateRatioMonitor(pl.Callback):
    r"""Keep each parameter's update-to-weight ratio :math:`\|W_{t+1} - W_t\| / \|W_t\|` every ``every_n_steps``.

    The step the optimizer actually took (learning rate, momentum, Adam's scaling and weight decay
    included), relative to the weight: the quantity adaptive gradient clipping bounds per unit
    (Brock et al., 2021, arXiv:2102.06171) and the one Karpathy's rule of thumb (about 1e-3 per step)
    reads. The weights are copied in ``on_before_optimizer_step`` of a chosen step and compared in
    ``on_train_batch_end``; :meth:`frame` gives a long table for a heatmap beside
    :meth:`GradientNormMonitor.layer_frame`. A step a guard skipped reads 0.

    Args:
        every_n_steps: interval, ``>= 1`` (each costs one copy of the chosen weights).
        weights_only: tensors with ``ndim > 1`` only (not biases and norm scales).

    Example:
        >>> monitor = UpdateRatioMonitor(every_n_steps=5)
        >>> # fit(..., callbacks=[monitor]); monitor.frame() -> step, parameter, depth, update_ratio
    """

    def __init__(self, every_n_steps: int = 10, weights_only: bool = True) -> None:
        check_positive_int("every_n_steps", every_n_steps)
        if not isinstance(weights_only, bool):
            raise TypeError(f"weights_only must be True or False, got {weights_only!r}")
        self.every_n_steps, self.weights_only = every_n_steps, weights_only
        self.history: list[tuple[int, dict[str, float]]] = []
        self._pending: tuple[int, list[str], list[torch.Tensor], list[torch.Tensor]] | None = None

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or self._pending is not None:
            return
        owned = {id(p) for p in optimizer_params(optimizer)}
        chosen = [(name, p) for name, p in pl_module.named_parameters()
                  if id(p) in owned and (p.ndim > 1 or not self.weights_only)]
        params = [p for _, p in chosen]
        with torch.no_grad():
            self._pending = (step, [name for name, _ in chosen], params, [p.detach().clone() for p in params])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._pending is None:
            return
        step, names, params, before = self._pending
        self._pending = None
        with torch.no_grad():
            moved = torch._foreach_norm(torch._foreach_sub([p.detach() for p in params], before))
            sizes = torch._foreach_norm(before)
            ratios = torch.stack(moved) / torch.stack(sizes).clamp_min(torch.finfo(torch.float32).tiny)
        self.history.append((step, dict(zip(names, ratios.tolist()))))

    def frame(self) -> pd.DataFrame:
        """Long table: ``step``, ``parameter``, ``depth`` (order in the model), ``update_ratio``."""
        rows = [{"step": step, "parameter": name, "depth": depth, "update_ratio": value}
                for step, ratios in self.history for depth, (name, value) in enumerate(ratios.items())]
        return pd.DataFrame(rows, columns=["step", "parameter", "depth", "update_ratio"])

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(step), dict(ratios)) for step, ratios in state_dict["history"]]
