"""``TemperatureScalingCallback``: calibrate any classifier on its validation set; the temperature is
part of the model's state (a buffer), so checkpoints, ``trainer.test(ckpt_path=...)``, ``state_dict``
and exports keep it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from toolkit._structure import batch_to_inputs as default_batch_to_inputs
from toolkit._structure import batch_to_targets as default_batch_to_targets
from toolkit._structure import check_hook, output_logits, replace_logits
from toolkit.calibration._checks import check_positive_int
from toolkit.calibration.scaling import LBFGS_MAX_ITER, TemperatureScaling

__all__ = ["SCALER_ATTRIBUTE", "TemperatureScalingCallback", "attach_temperature_scaling"]

SCALER_ATTRIBUTE = "temperature_scaling"  # the child module of the LightningModule that holds T


def _as_batches(loaders: Any) -> list:
    if loaders is None:
        return []
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


class _ScaleLogits:
    """The forward hook: divide the logits of the output by the scaler's ``T`` (a class, not a closure,
    so ``copy.deepcopy`` of the model gives the copy's hook the copy's scaler).

    Under DDP, Lightning runs ``training_step``/``validation_step`` through the wrapped module's
    ``__call__`` with ``forward`` swapped for the step; :meth:`pre` sees that swap and the hook then
    leaves that call's output (the step's, not logits) alone.
    """

    def __init__(self, scaler: TemperatureScaling) -> None:
        self.scaler = scaler
        self._redirected: list[bool] = []

    def pre(self, module: nn.Module, args: Any) -> None:
        self._redirected.append(getattr(module.forward, "__func__", None) is not type(module).forward)

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        if self._redirected and self._redirected.pop():
            return None
        scaler = self.scaler
        recording = getattr(scaler, "recording", None)
        if recording is not None:
            recording.append(output_logits(output).detach().float().cpu())
        if not getattr(scaler, "applied", True):
            return None
        return replace_logits(output, scaler.scale(output_logits(output)))


def _keep_temperature_if_absent(state_dict: dict, prefix: str, *args: Any, scaler: TemperatureScaling) -> None:
    """A checkpoint written before the scaler was attached (a run without the callback) has no
    temperature: load it as the scaler's current one instead of failing the strict load."""
    key = f"{prefix}log_temperature"
    if key not in state_dict:
        state_dict[key] = scaler.log_temperature.detach().clone()


def _hook_of(hook: Any) -> _ScaleLogits:
    return hook if isinstance(hook, _ScaleLogits) else hook.__self__


def _is_ours(hook: Any) -> bool:
    return isinstance(hook, _ScaleLogits) or isinstance(getattr(hook, "__self__", None), _ScaleLogits)


def attach_temperature_scaling(module: nn.Module, temperature: float = 1.0,
                               logits_module: str | None = None) -> TemperatureScaling:
    """Give ``module`` a :class:`TemperatureScaling` child (``module.temperature_scaling``, a buffer
    ``log_temperature`` in its ``state_dict``) and a forward hook on ``logits_module`` that divides
    the logits it returns by ``T``. Returns the scaler; calling it again returns the same one.

    This is how :class:`TemperatureScalingCallback` makes the calibration part of the model, and
    how to restore a calibrated model outside a Trainer: the module class does not know the scaler,
    so attach it first, then load the weights (``M.load_from_checkpoint`` alone refuses the
    checkpoint's ``temperature_scaling.log_temperature`` key as unexpected)::

        model = M()
        attach_temperature_scaling(model)
        model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])

    The hook is recorded by ``torch.export``/``torch.jit.trace``, so exported graphs include ``/ T``.
    A state dict without the temperature (written before the scaler was attached) loads with the
    current ``T`` kept.

    Args:
        module: any ``nn.Module`` (a LightningModule or a plain network).
        temperature: initial ``T > 0`` (1 is the identity).
        logits_module: name of the submodule whose output holds the logits (e.g. ``"head"``, as in
            ``module.get_submodule``), or None for ``module`` itself. Hook a submodule when the
            steps call it directly (``self.head(self.encoder(x))``) instead of ``self(x)``. Its
            output may be a tensor, a dict with ``"logits"``, an object with ``.logits`` or a
            tuple ``(logits, ...)``; the hook returns the same structure with scaled logits.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if logits_module is not None and not isinstance(logits_module, str):
        raise TypeError(f"logits_module must be a submodule name (str) or None, got {type(logits_module).__name__}")
    try:
        target = module.get_submodule(logits_module or "")
    except AttributeError as error:
        raise ValueError(f"logits_module={logits_module!r} is not a submodule of {type(module).__name__}") from error
    scaler = getattr(module, SCALER_ATTRIBUTE, None)
    if scaler is not None and not isinstance(scaler, TemperatureScaling):
        raise TypeError(f"module.{SCALER_ATTRIBUTE} exists and is a {type(scaler).__name__}, not a TemperatureScaling")
    if scaler is None:
        scaler = TemperatureScaling(temperature=temperature)
        scaler._register_load_state_dict_pre_hook(functools.partial(_keep_temperature_if_absent, scaler=scaler))
        module.add_module(SCALER_ATTRIBUTE, scaler)
    scaler.applied, scaler.recording = getattr(scaler, "applied", True), getattr(scaler, "recording", None)
    for other in module.modules():  # one hook, on the chosen submodule
        for hooks in (other._forward_hooks, other._forward_pre_hooks):
            for key, hook in list(hooks.items()):
                if _is_ours(hook) and (other is not target or _hook_of(hook).scaler is not scaler):
                    del hooks[key]
    if not any(_is_ours(hook) for hook in target._forward_hooks.values()):
        hook = _ScaleLogits(scaler)
        target.register_forward_pre_hook(hook.pre)
        target.register_forward_hook(hook)
    return scaler


class TemperatureScalingCallback(pl.Callback):
    """Fit a temperature ``T`` on the validation logits of every validation epoch of ``fit``; outside
    ``fit`` (test, predict, plain calls) the module's logits are ``logits / T``.

    The temperature is a buffer of a child module (``pl_module.temperature_scaling``, see
    :func:`attach_temperature_scaling`), applied by a forward hook on the module (or on
    ``logits_module``). So it is part of the model's state: every checkpoint that
    ``ModelCheckpoint`` writes holds the temperature fitted on *that* checkpoint's weights (it is
    fitted at the end of each validation epoch, before ``ModelCheckpoint`` saves), and
    ``trainer.test(ckpt_path="best")`` tests the best weights with their own temperature;
    ``state_dict()``, ``ModelRegistry`` and ``torch.export`` keep it.

    The logits come from the module's own ``validation_step`` (the hook records what the
    module returns), so any batch structure works; the targets come from ``batch_to_targets``.
    During ``fit`` the hook leaves logits raw (training and the validation metrics see raw logits).
    If the weights changed after the last validation (no validation at the last epoch), ``fit``
    ends with one more pass over the validation set (``pl_module(batch_to_inputs(batch))``). Under
    DDP the logits of all ranks are gathered, so every rank fits the same temperature.

    Guo et al., 2017, "On Calibration of Modern Neural Networks" (arXiv:1706.04599). The model
    wrapper design follows torch-uncertainty's ``TemperatureScaler``.

    Args:
        max_iter: LBFGS iterations of the fit, ``>= 1``.
        logits_module: submodule whose output holds the logits (see :func:`attach_temperature_scaling`).
        batch_to_targets: ``batch -> (N,)`` class indices; the default reads ``batch[1]`` or a dict's
            ``"y"``/``"target"``/``"label"``... key.
        batch_to_inputs: ``batch -> inputs of pl_module(...)``, only for the final pass; the default
            reads a tensor, ``batch[0]`` or a dict's ``"x"``/``"inputs"``/``"features"``... key.

    Example:
        >>> callback = TemperatureScalingCallback()
        >>> # trainer.fit(model, train, val); trainer.test(ckpt_path="best"); callback.temperature
    """

    def __init__(self, max_iter: int = LBFGS_MAX_ITER, logits_module: str | None = None,
                 batch_to_targets: Callable[[Any], Tensor] | None = None,
                 batch_to_inputs: Callable[[Any], Any] | None = None) -> None:
        check_positive_int("max_iter", max_iter)
        if logits_module is not None and not isinstance(logits_module, str):
            raise TypeError(f"logits_module must be a submodule name (str) or None, got {logits_module!r}")
        check_hook("batch_to_targets", batch_to_targets)
        check_hook("batch_to_inputs", batch_to_inputs)
        self.max_iter, self.logits_module = max_iter, logits_module
        self.batch_to_targets = batch_to_targets or default_batch_to_targets
        self.batch_to_inputs = batch_to_inputs or default_batch_to_inputs
        self.calibrator = TemperatureScaling(max_iter=max_iter)  # replaced by the module's own at setup
        self.calibrator.applied, self.calibrator.recording = True, None
        self.fitted = False
        self.num_validation_samples = 0
        self._targets: list[Tensor] = []
        self._fitted_at_step = -1

    @property
    def state_key(self) -> str:
        return self._generate_state_key(logits_module=self.logits_module)

    @property
    def temperature(self) -> float:
        return self.calibrator.temperature

    # ---- hooks -------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # before any checkpoint is restored, so trainer.test(ckpt_path=...) loads the buffer strictly
        self.calibrator = attach_temperature_scaling(pl_module, logits_module=self.logits_module)
        self.calibrator.max_iter = self.max_iter
        self.calibrator.applied = stage != "fit"

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not self._fitting(trainer):
            return
        self._targets, self.calibrator.recording = [], []

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                                  batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.calibrator.recording is not None:
            self._targets.append(torch.as_tensor(self.batch_to_targets(batch)).detach().cpu())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.calibrator.recording is None:
            return
        self._fit_recorded(trainer, pl_module, source="validation_step")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitted_at_step != trainer.global_step:  # weights changed since the last fit of T
            self._final_pass(trainer, pl_module)
        self.calibrator.applied = True

    # ---- helpers -----------------------------------------------------------------------------------
    @staticmethod
    def _fitting(trainer: pl.Trainer) -> bool:
        return trainer.state.fn is not None and str(trainer.state.fn.value) == "fit"

    def _fit_recorded(self, trainer: pl.Trainer, pl_module: pl.LightningModule, source: str) -> None:
        recorded, self.calibrator.recording = self.calibrator.recording, None
        targets_list, self._targets = self._targets, []
        logits = torch.cat(recorded) if recorded else torch.empty(0, 0)
        targets = torch.cat(targets_list) if targets_list else torch.empty(0, dtype=torch.long)
        if len(logits) != len(targets):
            raise ValueError(
                f"TemperatureScalingCallback recorded {len(logits)} rows of logits from {source} for "
                f"{len(targets)} targets: the hooked module ({self.logits_module or 'the LightningModule'}) "
                "must run once per validation sample; pass logits_module='<submodule>' to hook the one that does")
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (logits, targets))
            logits = torch.cat([g[0] for g in gathered if len(g[1])]) if any(len(g[1]) for g in gathered) else logits
            targets = torch.cat([g[1] for g in gathered])
        if len(targets) == 0:
            raise ValueError("TemperatureScalingCallback: the validation set is empty; temperature scaling "
                             "needs held-out samples (give the DataModule a val_fraction > 0)")
        with torch.inference_mode(False):  # validation runs under inference mode; LBFGS needs autograd tensors
            self.calibrator.fit(logits.clone(), targets.clone().long())
        self.num_validation_samples = len(targets)
        self.fitted = True
        self._fitted_at_step = trainer.global_step

    def _final_pass(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = _as_batches(trainer.val_dataloaders)
        if not loaders and trainer.datamodule is not None and hasattr(trainer.datamodule, "val_dataloader"):
            loaders = _as_batches(trainer.datamodule.val_dataloader())
        if not loaders:
            raise ValueError("TemperatureScalingCallback needs a validation set: pass val_dataloaders to "
                             "trainer.fit or a datamodule with val_dataloader()")
        was_training = pl_module.training
        pl_module.eval()
        self._targets, self.calibrator.recording = [], []
        self.calibrator.applied = False
        try:
            with torch.no_grad():
                for loader in loaders:
                    for batch in loader:
                        batch = trainer.strategy.batch_to_device(batch)
                        self._targets.append(torch.as_tensor(self.batch_to_targets(batch)).detach().cpu())
                        pl_module(self.batch_to_inputs(batch))
        finally:
            pl_module.train(was_training)
        self._fit_recorded(trainer, pl_module, source="the final pass over the validation set")

    # ---- checkpointing -----------------------------------------------------------------------------
    # the temperature itself is in the module's state_dict; the callback keeps its bookkeeping
    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "fitted": self.fitted,
                "num_validation_samples": self.num_validation_samples}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.fitted = bool(state_dict["fitted"])
        self.num_validation_samples = int(state_dict["num_validation_samples"])
