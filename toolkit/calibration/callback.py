"""``TemperatureScalingCallback``: calibrate any classifier on its validation set when ``fit`` ends."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from toolkit.calibration._checks import check_positive_int
from toolkit.calibration.scaling import LBFGS_MAX_ITER, TemperatureScaling

__all__ = ["TemperatureScalingCallback"]


def _as_batches(loaders: Any) -> list:
    if loaders is None:
        return []
    return list(loaders) if isinstance(loaders, (list, tuple)) else [loaders]


def _checked_logits(output: Any) -> Tensor:
    if not isinstance(output, Tensor) or not output.is_floating_point():
        raise TypeError("TemperatureScalingCallback needs a module whose forward returns a tensor of logits, "
                        f"got {type(output).__name__}")
    return output


class TemperatureScalingCallback(pl.Callback):
    """Fit :class:`TemperatureScaling` on the validation logits at the end of ``fit``; then the module's
    forward returns ``logits / T``, so its test metrics, ``predict_step`` and softmax are calibrated.

    Works with any LightningModule whose ``forward`` returns ``(N, C)`` logits and whose validation
    batches are ``(inputs, targets, ...)``. The temperature is applied by a forward hook (the module's
    weights and ``state_dict`` are untouched); the hook is removed when a new ``fit`` starts, so
    training always sees raw logits. Under DDP the validation logits of all ranks are gathered,
    so every rank fits the same temperature.

    Guo et al., 2017, "On Calibration of Modern Neural Networks" (arXiv:1706.04599).

    Args:
        max_iter: LBFGS iterations of the fit, ``>= 1``.

    Example:
        >>> callback = TemperatureScalingCallback()
        >>> # fit(model_factory, datamodule, callbacks=[callback]); callback.temperature
    """

    def __init__(self, max_iter: int = LBFGS_MAX_ITER) -> None:
        check_positive_int("max_iter", max_iter)
        self.max_iter = max_iter
        self.calibrator = TemperatureScaling(max_iter=max_iter)
        self.fitted = False
        self.num_validation_samples = 0
        self._handle: RemovableHandle | None = None

    @property
    def temperature(self) -> float:
        return self.calibrator.temperature

    # ---- hooks -------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._detach()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logits, targets = self._validation_logits(trainer, pl_module)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (logits, targets))
            logits = torch.cat([g[0] for g in gathered])
            targets = torch.cat([g[1] for g in gathered])
        if len(targets) == 0:
            raise ValueError("TemperatureScalingCallback: the validation set is empty; temperature scaling "
                             "needs held-out samples (give the DataModule a val_fraction > 0)")
        self.calibrator.fit(logits, targets)
        self.num_validation_samples = len(targets)
        self.fitted = True
        self._attach(pl_module)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # a module restored with this callback's state (e.g. trainer.test(ckpt_path=...)) is calibrated too
        if stage != "fit" and self.fitted:
            self._attach(pl_module)

    # ---- helpers -----------------------------------------------------------------------------------
    def _validation_logits(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Tensor, Tensor]:
        loaders = _as_batches(trainer.val_dataloaders)
        if not loaders and trainer.datamodule is not None and hasattr(trainer.datamodule, "val_dataloader"):
            loaders = _as_batches(trainer.datamodule.val_dataloader())
        if not loaders:
            raise ValueError("TemperatureScalingCallback needs a validation set: pass val_dataloaders to "
                             "trainer.fit or a datamodule with val_dataloader()")
        self._detach()
        was_training = pl_module.training
        pl_module.eval()
        all_logits, all_targets = [], []
        with torch.no_grad():
            for loader in loaders:
                for batch in loader:
                    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                        raise TypeError("TemperatureScalingCallback expects validation batches "
                                        f"(inputs, targets, ...), got {type(batch).__name__}")
                    inputs = batch[0].to(pl_module.device)
                    all_logits.append(_checked_logits(pl_module(inputs)).detach().float().cpu())
                    all_targets.append(batch[1].detach().cpu())
        pl_module.train(was_training)
        if not all_logits:
            return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
        return torch.cat(all_logits), torch.cat(all_targets)

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> Tensor:
        return self.calibrator.scale(_checked_logits(output))

    def _attach(self, pl_module: pl.LightningModule) -> None:
        self._detach()
        self._handle = pl_module.register_forward_hook(self._hook)

    def _detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # ---- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "fitted": self.fitted,
                "num_validation_samples": self.num_validation_samples}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.calibrator = TemperatureScaling(temperature=state_dict["temperature"], max_iter=self.max_iter)
        self.fitted = state_dict["fitted"]
        self.num_validation_samples = state_dict["num_validation_samples"]
