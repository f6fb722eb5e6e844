"""Guards that keep one bad step from ruining a run: ``NonFiniteGuard`` and ``LossSpikeGuard``."""

from __future__ import annotations

import copy
import math
import statistics
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer

from toolkit.stability._checks import (check_open_unit, check_positive_float, check_positive_int, global_norm,
                                      grads_of, log_metrics)

__all__ = ["LossSpikeGuard", "NonFiniteGuard", "POLICIES", "skip_optimizer_step"]

POLICIES = ("skip", "rollback", "stop")
MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation


def skip_optimizer_step(module: nn.Module) -> None:
    """Make the coming ``optimizer.step()`` a no-op: drop every gradient (``p.grad = None``).

    PyTorch's optimizers leave a parameter without a gradient untouched: no update, no weight
    decay, no change to its state (Adam's moments and step count), so weights and optimizer state
    stay bitwise as they were. The LR scheduler still advances.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    for param in module.parameters():
        param.grad = None


def _any_rank(trainer: pl.Trainer, flag: bool) -> bool:
    """True on every rank when ``flag`` is true on at least one (a sum over ranks)."""
    if trainer.world_size == 1:
        return flag
    total = trainer.strategy.reduce(torch.tensor(float(flag), device=trainer.strategy.root_device), reduce_op="sum")
    return bool(total > 0)


class NonFiniteGuard(pl.Callback):
    """Catch a NaN/Inf loss or gradient before the optimizer step, and skip, roll back or stop.

    The loss is checked in ``on_before_backward`` and the gradients (their global norm) in
    ``on_before_optimizer_step``, before the weights change. Then, by ``policy``:

    - ``"skip"``: no update this step; weights and optimizer state stay bitwise as they were.
    - ``"rollback"``: restore the last good weights and optimizer state (a snapshot taken every
      ``snapshot_every_n_steps`` finite steps), multiply every learning rate by ``lr_factor``
      (the scheduler's base learning rates too) and skip the step. For a run whose weights have
      themselves gone bad (a learning rate that is too high), where skipping would skip forever.
    - ``"stop"``: skip the step and end training (``trainer.should_stop``), with a warning naming
      the step and the first parameter whose gradient is not finite; also in :attr:`stop_message`.

    The rollback snapshot is not checkpointed (it is a copy of the weights): after a resume the first
    finite step takes a new one.

    Counters (``skipped``, ``rollbacks``, ``stopped``) are logged as ``nonfinite_*`` and restored
    on resume. Under DDP the decision is summed over ranks with ``trainer.strategy.reduce``, so all
    ranks skip (or roll back) together.

    How it differs from Lightning: ``Trainer(detect_anomaly=True)`` raises inside autograd (slow,
    for debugging); ``SpikeDetection(finite_only=False)`` raises after the step and asks for a
    restart; ``gradient_clip_val`` does not help with NaN. This guard acts before the step and keeps
    training.

    Args:
        policy: one of ``POLICIES``.
        lr_factor: learning-rate multiplier of a rollback, in ``(0, 1)``.
        snapshot_every_n_steps: interval of the rollback snapshot, ``>= 1`` (each costs a copy of the
            weights and the optimizer state).
        max_rollbacks: stop after this many rollbacks, ``>= 1``.

    Example:
        >>> guard = NonFiniteGuard("rollback", lr_factor=0.5)
    """

    def __init__(self, policy: str = "skip", lr_factor: float = 0.5, snapshot_every_n_steps: int = 50,
                 max_rollbacks: int = 10) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        check_open_unit("lr_factor", lr_factor)
        check_positive_int("snapshot_every_n_steps", snapshot_every_n_steps)
        check_positive_int("max_rollbacks", max_rollbacks)
        self.policy, self.lr_factor = policy, float(lr_factor)
        self.snapshot_every_n_steps, self.max_rollbacks = snapshot_every_n_steps, max_rollbacks
        self.skipped = self.rollbacks = 0
        self.stopped = False
        self.stop_message: str | None = None
        self.events: list[dict[str, Any]] = []
        self._loss_finite = True
        self._snapshot: dict[str, Any] | None = None
        self._snapshot_step = -1
        self._params: list[nn.Parameter] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._params = list(pl_module.parameters())  # walking the module tree every step is slow

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        self._loss_finite = self._loss_finite and bool(torch.isfinite(loss.detach()).all())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        loss_finite, self._loss_finite = self._loss_finite, True
        with torch.no_grad():
            grads_finite = bool(torch.isfinite(global_norm(grads_of(self._params or pl_module.parameters()))))
        bad = _any_rank(trainer, not (loss_finite and grads_finite))
        step = trainer.global_step
        if not bad:
            if self.policy == "rollback" and (self._snapshot is None
                                              or step - self._snapshot_step >= self.snapshot_every_n_steps):
                self._take_snapshot(pl_module, optimizer, step)
            return
        culprit = "the loss" if not loss_finite else self._first_bad_parameter(pl_module)
        self.events.append({"step": step, "policy": self.policy, "culprit": culprit})
        if self.policy == "rollback" and self._snapshot is not None and self.rollbacks < self.max_rollbacks:
            self._rollback(trainer, pl_module, optimizer)
        elif self.policy == "skip":
            self.skipped += 1
        else:
            self.stopped = True
            trainer.should_stop = True
            reason = ("no good snapshot to roll back to" if self.policy == "rollback" and self._snapshot is None
                      else f"{self.rollbacks} rollbacks already" if self.policy == "rollback" else "policy 'stop'")
            self.stop_message = (f"NonFiniteGuard stopped training at step {step}: non-finite value in {culprit} "
                                 f"({reason})")
            rank_zero_warn(self.stop_message)
        skip_optimizer_step(pl_module)
        log_metrics(trainer, {"nonfinite_skipped": float(self.skipped), "nonfinite_rollbacks": float(self.rollbacks)})

    @staticmethod
    def _first_bad_parameter(module: nn.Module) -> str:
        for name, param in module.named_parameters():
            if param.grad is not None and not bool(torch.isfinite(param.grad).all()):
                return f"the gradient of {name!r}"
        return "the gradients"

    def _take_snapshot(self, module: nn.Module, optimizer: Optimizer, step: int) -> None:
        self._snapshot = {"model": {k: v.detach().clone() for k, v in module.state_dict().items()},
                          "optimizer": copy.deepcopy(optimizer.state_dict())}
        self._snapshot_step = step

    def _rollback(self, trainer: pl.Trainer, module: nn.Module, optimizer: Optimizer) -> None:
        module.load_state_dict(self._snapshot["model"])
        # the scheduler is not rolled back, so the groups keep their current learning rates (scaled)
        current = [{key: group[key] for key in ("lr", "initial_lr") if key in group}
                   for group in optimizer.param_groups]
        # a copy: load_state_dict may alias the tensors it is given, and the step would then edit the snapshot
        optimizer.load_state_dict(copy.deepcopy(self._snapshot["optimizer"]))
        for group, rates in zip(optimizer.param_groups, current):
            group.update({key: value * self.lr_factor for key, value in rates.items()})
        for config in trainer.lr_scheduler_configs:
            schedulers = [config.scheduler, *getattr(config.scheduler, "_schedulers", [])]
            for scheduler in schedulers:
                if hasattr(scheduler, "base_lrs"):
                    scheduler.base_lrs = [lr * self.lr_factor for lr in scheduler.base_lrs]
                if hasattr(scheduler, "_last_lr"):
                    scheduler._last_lr = [lr * self.lr_factor for lr in scheduler._last_lr]
        self.rollbacks += 1

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "rollbacks": self.rollbacks, "stopped": self.stopped,
                "stop_message": self.stop_message, "events": list(self.events)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped, self.rollbacks = int(state_dict["skipped"]), int(state_dict["rollbacks"])
        self.stopped, self.stop_message = bool(state_dict["stopped"]), state_dict["stop_message"]
        self.events = list(state_dict["events"])


class LossSpikeGuard(pl.Callback):
    """Skip the optimizer step of a batch whose loss jumps far above its recent, robust level.

    Keeps the last ``window`` accepted losses; once it holds ``min_history`` of them, a loss with
    ``loss > median + k * max(1.4826 * MAD, rel_floor * |median|)`` is a spike: its step is skipped
    (weights and optimizer state untouched, see :func:`skip_optimizer_step`) and counted. Median and
    MAD (median absolute deviation) are robust: earlier spikes do not inflate the threshold the way
    they inflate a mean and standard deviation. After ``max_consecutive`` skips in a row the next loss
    is accepted, so a lasting change of level (a new phase of training) is learned, not skipped forever.
    Non-finite losses are left to :class:`NonFiniteGuard`.

    Under DDP the loss is averaged over ranks (``trainer.strategy.reduce``) before the test, so every
    rank keeps the same statistics and takes the same decision.

    How it differs from Lightning's ``SpikeDetection``: that compares with a running *mean* and raises
    ``TrainingSpikeException`` after the step (the weights already moved), writing the batches to
    skip after a manual restart. This guard skips the update itself and carries on.

    Args:
        window: accepted losses kept, ``>= 3``.
        k: threshold in robust standard deviations, ``> 0``.
        min_history: losses needed before any test, in ``[3, window]``.
        rel_floor: smallest deviation as a share of the median, ``>= 0`` (guards against MAD = 0).
        max_consecutive: skips in a row before a loss is accepted anyway, ``>= 1``.

    Example:
        >>> guard = LossSpikeGuard(window=50, k=6.0)
    """

    def __init__(self, window: int = 50, k: float = 6.0, min_history: int = 10, rel_floor: float = 0.01,
                 max_consecutive: int = 5) -> None:
        check_positive_int("window", window)
        if window < 3:
            raise ValueError(f"window must be an integer >= 3, got {window!r}")
        check_positive_float("k", k)
        if isinstance(min_history, bool) or not isinstance(min_history, int) or not 3 <= min_history <= window:
            raise ValueError(f"min_history must be an integer in [3, window={window}], got {min_history!r}")
        if isinstance(rel_floor, bool) or not isinstance(rel_floor, (int, float)) or not 0 <= rel_floor < math.inf:
            raise ValueError(f"rel_floor must be a finite number >= 0, got {rel_floor!r}")
        check_positive_int("max_consecutive", max_consecutive)
        self.window, self.k, self.min_history = window, float(k), min_history
        self.rel_floor, self.max_consecutive = float(rel_floor), max_consecutive
        self.losses: list[float] = []
        self.skipped = 0
        self.consecutive = 0
        self.skipped_steps: list[int] = []
        self._skip_pending = False

    def threshold(self) -> float:
        """The loss above which a step is skipped now (``inf`` until ``min_history`` losses are seen)."""
        if len(self.losses) < self.min_history:
            return math.inf
        median = statistics.median(self.losses)
        mad = statistics.median(abs(v - median) for v in self.losses)
        return median + self.k * max(MAD_TO_STD * mad, self.rel_floor * abs(median))

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        value = loss.detach().float()
        if trainer.world_size > 1:
            value = trainer.strategy.reduce(value.to(trainer.strategy.root_device), reduce_op="mean")
        value = float(value)
        if not math.isfinite(value):
            return
        if value > self.threshold() and self.consecutive < self.max_consecutive:
            self._skip_pending = True
            self.consecutive += 1
            return
        self.consecutive = 0
        self.losses.append(value)
        del self.losses[:-self.window]

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        if not self._skip_pending:
            return
        self._skip_pending = False
        self.skipped += 1
        self.skipped_steps.append(trainer.global_step)
        skip_optimizer_step(pl_module)
        log_metrics(trainer, {"spike_skipped": float(self.skipped)})

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses), "skipped": self.skipped, "consecutive": self.consecutive,
                "skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = [float(v) for v in state_dict["losses"]]
        self.skipped, self.consecutive = int(state_dict["skipped"]), int(state_dict["consecutive"])
        self.skipped_steps = list(state_dict["skipped_steps"])
