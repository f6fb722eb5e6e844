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
                                      grads_of, log_metrics, optimizer_index, optimizer_params)

__all__ = ["LossSpikeGuard", "NonFiniteGuard", "POLICIES", "SkippedStepWarning", "skip_optimizer_step"]

POLICIES = ("skip", "rollback", "stop")
MAD_TO_STD = 1.4826  # MAD of a normal distribution times this is its standard deviation


class SkippedStepWarning(UserWarning):
    """A guard skipped (or rolled back) an optimizer step; filter this category to silence the guards only."""


def skip_optimizer_step(target: nn.Module | Optimizer) -> None:
    """Make the coming ``optimizer.step()`` a no-op: drop every gradient (``p.grad = None``) of
    ``target``, a module or the optimizer about to step (then only its parameters).

    PyTorch's optimizers leave a parameter without a gradient untouched: no update, no weight
    decay, no change to its state (Adam's moments and step count), so weights and optimizer state
    stay bitwise as they were. The LR scheduler still advances.
    """
    if not isinstance(target, (nn.Module, Optimizer)):
        raise TypeError(f"target must be an nn.Module or an Optimizer, got {type(target).__name__}")
    params = optimizer_params(target) if isinstance(target, Optimizer) else target.parameters()
    for param in params:
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

    - ``"skip"``: no update this step; weights, optimizer state and buffers (batch norm's running
      statistics, which the bad batch's forward pass already changed) stay bitwise as they were
      before the step's first batch (every buffer is copied before each step: one fused copy).
    - ``"rollback"``: restore the last good weights and optimizer state (a snapshot taken every
      ``snapshot_every_n_steps`` finite steps), multiply every learning rate by ``lr_factor``
      (the scheduler's base learning rates too) and skip the step. For a run whose weights have
      themselves gone bad (a learning rate that is too high), where skipping would skip forever.
    - ``"stop"``: skip the step and end training (``trainer.should_stop``), with a warning naming
      the step and the first parameter whose gradient is not finite; also in :attr:`stop_message`.

    Never silent: every skipped or rolled-back step raises a :class:`SkippedStepWarning` (step,
    optimizer, culprit; the "stop" policy's warning is a plain ``UserWarning``) and
    is logged through ``LightningModule.log`` as ``nonfinite_skipped``/``nonfinite_rollbacks``
    (``trainer.callback_metrics``), and ``max_consecutive_skips`` skips in a row of one optimizer
    raise ``RuntimeError``: a run whose every step is non-finite does not finish "normally".
    At the end of training, :attr:`summary` counts the steps that made no update; when their share
    exceeds ``max_skipped_fraction`` a plain ``UserWarning`` (rank zero; not filtered with
    :class:`SkippedStepWarning`) says so, and every epoch logs the share as ``nonfinite_skipped_share``.

    Several optimizers (a GAN, manual optimization): everything is per optimizer. The check,
    the skip and the rollback act on the parameters of the optimizer being stepped; each
    optimizer has its own snapshot (its parameters, the buffers of the layers it owns wholly, its
    own state) and its own learning-rate cut.

    The rollback snapshot is not checkpointed (it is a copy of the weights): after a resume the first
    finite step takes a new one. Counters (``skipped``, ``rollbacks``, ``stopped``, ``events``)
    are restored on resume. Under DDP the decision is summed over ranks with
    ``trainer.strategy.reduce``, so all ranks skip (or roll back) together.

    How it differs from Lightning: ``Trainer(detect_anomaly=True)`` raises inside autograd (slow,
    for debugging); ``SpikeDetection(finite_only=False)`` raises after the step and asks for a
    restart; ``gradient_clip_val`` does not help with NaN. This guard acts before the step and keeps
    training.

    Args:
        policy: one of ``POLICIES``.
        lr_factor: learning-rate multiplier of a rollback, in ``(0, 1)``.
        snapshot_every_n_steps: interval of the rollback snapshot, in steps of that optimizer, ``>= 1``
            (each costs a copy of the weights and the optimizer state).
        max_rollbacks: stop after this many rollbacks, ``>= 1``.
        max_consecutive_skips: raise ``RuntimeError`` after this many skipped steps in a row of one
            optimizer, ``>= 1``, or None to skip without limit (each skip still warns).
        max_skipped_fraction: the share of optimizer steps, in ``(0, 1)``, that may make no update
            before the end-of-training summary warns.

    Example:
        >>> guard = NonFiniteGuard("rollback", lr_factor=0.5)
    """

    def __init__(self, policy: str = "skip", lr_factor: float = 0.5, snapshot_every_n_steps: int = 50,
                 max_rollbacks: int = 10, max_consecutive_skips: int | None = 20,
                 max_skipped_fraction: float = 0.05) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        check_open_unit("lr_factor", lr_factor)
        check_positive_int("snapshot_every_n_steps", snapshot_every_n_steps)
        check_positive_int("max_rollbacks", max_rollbacks)
        if max_consecutive_skips is not None:
            check_positive_int("max_consecutive_skips", max_consecutive_skips)
        check_open_unit("max_skipped_fraction", max_skipped_fraction)
        self.max_skipped_fraction = float(max_skipped_fraction)
        self.guarded_steps = 0
        self.policy, self.lr_factor = policy, float(lr_factor)
        self.snapshot_every_n_steps, self.max_rollbacks = snapshot_every_n_steps, max_rollbacks
        self.max_consecutive_skips = max_consecutive_skips
        self.skipped = self.rollbacks = 0
        self.stopped = False
        self.stop_message: str | None = None
        self.events: list[dict[str, Any]] = []
        self._consecutive: dict[int, int] = {}
        self._loss_finite = True
        self._snapshots: dict[int, dict[str, Any]] = {}
        self._steps: dict[int, int] = {}
        self._owned: dict[int, tuple[list[nn.Parameter], dict[str, Tensor]]] = {}
        self._batch_buffers: dict[str, Tensor] = {}
        self._take_buffers = True

    @property
    def state_key(self) -> str:
        return self._generate_state_key(policy=self.policy)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._owned, self._snapshots, self._steps = {}, {}, {}
        self._batch_buffers, self._take_buffers = {}, True

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        """Copy every buffer before the forward pass of a step's first batch (gradient accumulation:
        of the first micro-batch), so a skipped step can undo what the forward pass wrote into them."""
        if not self._take_buffers:
            return
        self._take_buffers = False
        buffers = {name: value.detach() for name, value in pl_module.named_buffers()}
        same = buffers.keys() == self._batch_buffers.keys() and all(
            value.shape == self._batch_buffers[name].shape and value.dtype == self._batch_buffers[name].dtype
            for name, value in buffers.items())
        if same and buffers:  # reuse the copies: one fused copy instead of an allocation per buffer
            torch._foreach_copy_(list(self._batch_buffers.values()), list(buffers.values()))
        else:
            self._batch_buffers = {name: value.clone() for name, value in buffers.items()}

    def _owned_by(self, index: int, module: nn.Module, optimizer: Optimizer) -> tuple[list, dict[str, Tensor]]:
        """The optimizer's parameters and the buffers of the layers all of whose parameters it owns."""
        if index not in self._owned:  # walking the module tree every step is slow: once per optimizer
            params = optimizer_params(optimizer)
            ids = {id(p) for p in params}
            buffers = {}
            for name, layer in module.named_modules():
                own = list(layer.parameters(recurse=False))
                if own and all(id(p) in ids for p in own):
                    buffers.update({f"{name}.{b}": t for b, t in layer.named_buffers(recurse=False)})
            if all(id(p) in ids for p in module.parameters()):
                buffers = dict(module.named_buffers())  # it owns the whole model: every buffer
            self._owned[index] = (params, buffers)
        return self._owned[index]

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        self._loss_finite = self._loss_finite and bool(torch.isfinite(loss.detach()).all())

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        loss_finite, self._loss_finite = self._loss_finite, True
        self._take_buffers = True  # the next batch starts a new step
        self.guarded_steps += 1
        index = optimizer_index(trainer, optimizer)
        params, buffers = self._owned_by(index, pl_module, optimizer)
        with torch.no_grad():
            grads_finite = bool(torch.isfinite(global_norm(grads_of(params))))
        bad = _any_rank(trainer, not (loss_finite and grads_finite))
        step = trainer.global_step
        if not bad:
            self._consecutive[index] = 0
            count = self._steps.get(index, 0)
            if self.policy == "rollback" and (index not in self._snapshots or count % self.snapshot_every_n_steps == 0):
                self._snapshots[index] = {"params": [p.detach().clone() for p in params],
                                          "buffers": {k: v.detach().clone() for k, v in buffers.items()},
                                          "optimizer": copy.deepcopy(optimizer.state_dict())}
            self._steps[index] = count + 1
            return
        culprit = "the loss" if not loss_finite else self._first_bad_parameter(pl_module, params)
        self.events.append({"step": step, "optimizer": index, "policy": self.policy, "culprit": culprit})
        where = f"step {step}" + (f" (optimizer {index})" if len(trainer.optimizers) > 1 else "")
        with torch.no_grad():  # undo the forward pass's writes (running statistics); a rollback then goes further
            for name, value in buffers.items():
                if name in self._batch_buffers:
                    value.copy_(self._batch_buffers[name])
        if self.policy == "rollback" and index in self._snapshots and self.rollbacks < self.max_rollbacks:
            self._rollback(trainer, optimizer, index, params, buffers)
            rank_zero_warn(f"NonFiniteGuard: non-finite value in {culprit} at {where}; rolled back to the last "
                           f"good weights and scaled the learning rate by {self.lr_factor} "
                           f"(rollback {self.rollbacks} of at most {self.max_rollbacks})", category=SkippedStepWarning)
        elif self.policy == "skip":
            self.skipped += 1
            self._consecutive[index] = self._consecutive.get(index, 0) + 1
            rank_zero_warn(f"NonFiniteGuard: non-finite value in {culprit} at {where}; step skipped "
                           f"({self.skipped} skipped so far)", category=SkippedStepWarning)
            if self.max_consecutive_skips is not None and self._consecutive[index] >= self.max_consecutive_skips:
                raise RuntimeError(f"NonFiniteGuard: {self._consecutive[index]} steps in a row had a non-finite "
                                   f"loss or gradient (last at {where}, in {culprit}); training cannot recover "
                                   "by skipping. Lower the learning rate, use policy='rollback', or raise "
                                   "max_consecutive_skips")
        else:
            self.stopped = True
            trainer.should_stop = True
            reason = ("no good snapshot to roll back to" if self.policy == "rollback" and index not in self._snapshots
                      else f"{self.rollbacks} rollbacks already" if self.policy == "rollback" else "policy 'stop'")
            self.stop_message = (f"NonFiniteGuard stopped training at {where}: non-finite value in {culprit} "
                                 f"({reason})")
            rank_zero_warn(self.stop_message)
        skip_optimizer_step(optimizer)
        log_metrics(pl_module, {"nonfinite_skipped": float(self.skipped),
                                "nonfinite_rollbacks": float(self.rollbacks)}, every_step=True)

    @property
    def summary(self) -> dict[str, Any]:
        """Guarded optimizer steps, those that made no update (skipped, rolled back or stopped), their
        share, and whether that share exceeds ``max_skipped_fraction``."""
        no_update = len(self.events)
        share = no_update / self.guarded_steps if self.guarded_steps else 0.0
        return {"guarded_steps": self.guarded_steps, "no_update_steps": no_update, "skipped": self.skipped,
                "rollbacks": self.rollbacks, "stopped": self.stopped, "skipped_share": share,
                "max_skipped_fraction": self.max_skipped_fraction,
                "too_many_skipped": share > self.max_skipped_fraction}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.guarded_steps:
            pl_module.log("nonfinite_skipped_share", self.summary["skipped_share"], on_step=False, on_epoch=True,
                          logger=True, batch_size=1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        summary = self.summary
        if summary["too_many_skipped"]:
            rank_zero_warn(f"NonFiniteGuard summary: {summary['no_update_steps']} of {summary['guarded_steps']} "
                           f"optimizer steps ({summary['skipped_share']:.0%}) had a non-finite loss or gradient and "
                           f"made no update ({summary['skipped']} skipped, {summary['rollbacks']} rolled back), more "
                           f"than max_skipped_fraction={self.max_skipped_fraction:g}: the run trained on few of its "
                           "batches. Lower the learning rate, look for a NaN source (log(0), fp16 overflow) or use "
                           "policy='rollback'")

    @staticmethod
    def _first_bad_parameter(module: nn.Module, params: list[nn.Parameter]) -> str:
        ids = {id(p) for p in params}
        for name, param in module.named_parameters():
            if id(param) in ids and param.grad is not None and not bool(torch.isfinite(param.grad).all()):
                return f"the gradient of {name!r}"
        return "the gradients"

    def _rollback(self, trainer: pl.Trainer, optimizer: Optimizer, index: int, params: list[nn.Parameter],
                  buffers: dict[str, Tensor]) -> None:
        snapshot = self._snapshots[index]
        with torch.no_grad():
            torch._foreach_copy_(params, snapshot["params"])
            for name, value in snapshot["buffers"].items():
                buffers[name].copy_(value)
        # the scheduler is not rolled back, so the groups keep their current learning rates (scaled)
        current = [{key: group[key] for key in ("lr", "initial_lr") if key in group}
                   for group in optimizer.param_groups]
        # a copy: load_state_dict may alias the tensors it is given, and the step would then edit the snapshot
        optimizer.load_state_dict(copy.deepcopy(snapshot["optimizer"]))
        for group, rates in zip(optimizer.param_groups, current):
            group.update({key: value * self.lr_factor for key, value in rates.items()})
        for config in trainer.lr_scheduler_configs:
            schedulers = [config.scheduler, *getattr(config.scheduler, "_schedulers", [])]
            for scheduler in schedulers:
                if getattr(scheduler, "optimizer", optimizer) is not optimizer:
                    continue  # another optimizer's schedule
                if hasattr(scheduler, "base_lrs"):
                    scheduler.base_lrs = [lr * self.lr_factor for lr in scheduler.base_lrs]
                if hasattr(scheduler, "_last_lr"):
                    scheduler._last_lr = [lr * self.lr_factor for lr in scheduler._last_lr]
        self.rollbacks += 1

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "rollbacks": self.rollbacks, "stopped": self.stopped,
                "stop_message": self.stop_message, "events": list(self.events), "guarded_steps": self.guarded_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped, self.rollbacks = int(state_dict["skipped"]), int(state_dict["rollbacks"])
        self.stopped, self.stop_message = bool(state_dict["stopped"]), state_dict["stop_message"]
        self.events = list(state_dict["events"])
        self.guarded_steps = int(state_dict.get("guarded_steps", 0))


class LossSpikeGuard(pl.Callback):
    """Skip the optimizer step of a batch whose loss jumps far above its recent, robust level.

    Keeps the last ``window`` accepted losses; once it holds ``min_history`` of them, a loss with
    ``loss > median + k * max(1.4826 * MAD, rel_floor * |median|)`` is a spike: its step is skipped
    (weights and optimizer state untouched, see :func:`skip_optimizer_step`) and counted. Median and
    MAD (median absolute deviation) are robust: earlier spikes do not inflate the threshold the way
    they inflate a mean and standard deviation. After ``max_consecutive`` skips in a row the next loss
    is accepted, so a lasting change of level (a new phase of training) is learned, not skipped forever.
    Non-finite losses are left to :class:`NonFiniteGuard`.

    Never silent: each skip raises a :class:`SkippedStepWarning` (step, loss, threshold) and is logged through
    ``LightningModule.log`` as ``spike_skipped`` (``trainer.callback_metrics``).

    Several optimizers (a GAN, manual optimization): each optimizer has its own window, threshold
    and run of skips (:attr:`windows`, keyed by its index in ``configure_optimizers``; ``losses``
    is the first one's). The losses backpropagated since an optimizer's last step are judged
    against *its* window when it steps, and a skip drops only its parameters' gradients. A
    discriminator's spike cannot then freeze it, as one shared window of generator and
    discriminator losses would.

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
        self.windows: dict[int, list[float]] = {0: []}
        self.consecutive_by_optimizer: dict[int, int] = {}
        self.skipped = 0
        self.skipped_steps: list[int] = []
        self._pending: list[float] = []

    @property
    def state_key(self) -> str:
        return self._generate_state_key(window=self.window, k=self.k, min_history=self.min_history)

    @property
    def losses(self) -> list[float]:
        """The accepted losses of the first optimizer (the only one, in most modules)."""
        return self.windows.setdefault(0, [])

    @property
    def consecutive(self) -> int:
        return self.consecutive_by_optimizer.get(0, 0)

    def threshold(self, optimizer_idx: int = 0) -> float:
        """The loss above which a step of optimizer ``optimizer_idx`` is skipped now (``inf`` until
        ``min_history`` losses are seen)."""
        losses = self.windows.get(optimizer_idx, [])
        if len(losses) < self.min_history:
            return math.inf
        median = statistics.median(losses)
        mad = statistics.median(abs(v - median) for v in losses)
        return median + self.k * max(MAD_TO_STD * mad, self.rel_floor * abs(median))

    def is_spike(self, value: float, optimizer_idx: int = 0) -> bool:
        """Judge one finite loss of optimizer ``optimizer_idx`` and update its window: True for a spike
        to skip (not added to the window), False for a loss accepted into it."""
        window = self.windows.setdefault(optimizer_idx, [])
        run = self.consecutive_by_optimizer.get(optimizer_idx, 0)
        if value > self.threshold(optimizer_idx) and run < self.max_consecutive:
            self.consecutive_by_optimizer[optimizer_idx] = run + 1
            return True
        self.consecutive_by_optimizer[optimizer_idx] = 0
        window.append(value)
        del window[:-self.window]
        return False

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        value = loss.detach().float()
        if trainer.world_size > 1:
            value = trainer.strategy.reduce(value.to(trainer.strategy.root_device), reduce_op="mean")
        value = float(value)
        if math.isfinite(value):
            self._pending.append(value)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        pending, self._pending = self._pending, []
        index = optimizer_index(trainer, optimizer)
        spikes = [value for value in pending if self.is_spike(value, index)]
        if not spikes:
            return
        self.skipped += 1
        self.skipped_steps.append(trainer.global_step)
        skip_optimizer_step(optimizer)
        where = f"step {trainer.global_step}" + (f" (optimizer {index})" if len(trainer.optimizers) > 1 else "")
        rank_zero_warn(f"LossSpikeGuard: loss {max(spikes):.4g} above the threshold {self.threshold(index):.4g} "
                       f"at {where}; step skipped ({self.skipped} skipped so far)", category=SkippedStepWarning)
        log_metrics(pl_module, {"spike_skipped": float(self.skipped)}, every_step=True)

    def state_dict(self) -> dict[str, Any]:
        return {"windows": {index: list(w) for index, w in self.windows.items()},
                "consecutive_by_optimizer": dict(self.consecutive_by_optimizer), "skipped": self.skipped,
                "skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        windows = state_dict.get("windows", {0: state_dict.get("losses", [])})
        self.windows = {int(index): [float(v) for v in w] for index, w in windows.items()}
        runs = state_dict.get("consecutive_by_optimizer", {0: state_dict.get("consecutive", 0)})
        self.consecutive_by_optimizer = {int(index): int(n) for index, n in runs.items()}
        self.skipped = int(state_dict["skipped"])
        self.skipped_steps = list(state_dict["skipped_steps"])
