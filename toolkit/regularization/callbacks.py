"""``DropBlockSchedule``: ramp the drop rate of DropBlock (or any drop layer) linearly over training."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch import nn

from toolkit.regularization._checks import check_prob
from toolkit.regularization.drop import DropBlock2d

__all__ = ["DropBlockSchedule"]


class DropBlockSchedule(pl.Callback):
    """Set ``drop_prob`` of every ``DropBlock2d`` to ``start + (target - start) * min(1, step / ramp_steps)``
    before each training batch, as Ghiasi et al. (2018) recommend (a fixed rate from the start hurts).

    Works on any LightningModule (the layers are found among its modules) and on the stacked members
    of :func:`toolkit.training.train_members` (``callbacks=[DropBlockSchedule(...)]``: every member's
    layers follow the same ramp).

    Args:
        drop_prob: the final rate of every layer, in ``[0, 1)``; None keeps each layer's own
            ``drop_prob`` (read when training starts) as its target.
        start_drop_prob: the rate at step 0, in ``[0, 1)``.
        ramp_fraction: share of all training steps spent ramping, in ``(0, 1]``.
        layer_types: the layer classes to schedule (anything with a ``drop_prob`` float attribute,
            e.g. ``(DropBlock2d, DropPath)``).

    Example:
        >>> schedule = DropBlockSchedule(drop_prob=0.1, ramp_fraction=0.5)
    """

    def __init__(self, drop_prob: float | None = None, start_drop_prob: float = 0.0, ramp_fraction: float = 1.0,
                 layer_types: tuple[type, ...] = (DropBlock2d,)) -> None:
        if drop_prob is not None:
            check_prob("drop_prob", drop_prob)
        check_prob("start_drop_prob", start_drop_prob)
        if isinstance(ramp_fraction, bool) or not isinstance(ramp_fraction, (int, float)) or not 0 < ramp_fraction <= 1:
            raise ValueError(f"ramp_fraction must be a number in (0, 1], got {ramp_fraction!r}")
        if not isinstance(layer_types, tuple) or not layer_types or not all(isinstance(t, type) for t in layer_types):
            raise TypeError(f"layer_types must be a non-empty tuple of classes, got {layer_types!r}")
        self.drop_prob, self.start_drop_prob, self.ramp_fraction = drop_prob, float(start_drop_prob), float(ramp_fraction)
        self.layer_types = layer_types
        self.targets: list[float] | None = None
        self._layers: list[Any] = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(drop_prob=self.drop_prob, layer_types=[t.__name__ for t in self.layer_types])

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # toolkit.training.train_members' stacked members run one shared network (not a submodule)
        shared = getattr(pl_module, "shared_network", None)
        modules = [*pl_module.modules(), *(shared.modules() if isinstance(shared, nn.Module) else ())]
        self._layers = [m for m in modules if isinstance(m, self.layer_types)]
        if not self._layers:
            raise ValueError(f"DropBlockSchedule found no layer of type {[t.__name__ for t in self.layer_types]} "
                             "in the module")
        if self.targets is None or len(self.targets) != len(self._layers):
            self.targets = [self.drop_prob if self.drop_prob is not None else float(m.drop_prob) for m in self._layers]

    def rate(self, step: int, total_steps: int, target: float) -> float:
        """The scheduled rate at ``step`` of ``total_steps``."""
        ramp = max(1.0, self.ramp_fraction * total_steps)
        return self.start_drop_prob + (target - self.start_drop_prob) * min(1.0, step / ramp)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        total = max(1, int(trainer.estimated_stepping_batches))
        for layer, target in zip(self._layers, self.targets or []):
            layer.drop_prob = self.rate(trainer.global_step, total, target)

    def state_dict(self) -> dict[str, Any]:
        return {"targets": self.targets}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.targets = state_dict["targets"]
