"""``ActivationHistogramMonitor``: per-layer histograms of activations and of their gradients over training."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from toolkit.stability._checks import check_positive_int

__all__ = ["ActivationHistogramMonitor", "KINDS"]

KINDS = ("activation", "gradient")


def _check_range(name: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in value)
            or not value[0] < value[1]):
        raise ValueError(f"{name} must be a pair of finite numbers (low, high) with low < high, got {value!r}")
    return float(value[0]), float(value[1])


class ActivationHistogramMonitor(pl.Callback):
    r"""Histogram every chosen layer's output and the gradient of the loss with respect to it, every N steps.

    In the spirit of fastai's ``ActivationStats(with_hist=True)`` and its "colorful dimension" plot
    (Howard & Gugger, 2020, *Fastai: A Layered API for Deep Learning*, arXiv:2002.04688; fastbook
    chapter 13): stacking a layer's histograms side by side over the steps shows activations that
    collapse to zero, saturate, or grow, and gradients that vanish toward the input (Glorot & Bengio,
    2010; He et al., 2015, arXiv:1502.01852). Nothing in Lightning or PyTorch does this per step
    (TensorBoard's ``add_histogram`` draws one tensor you hand it).

    On the sampled training steps (``global_step % every_n_steps == 0``) a forward hook on each
    module whose type is in ``module_types`` counts its output :math:`a` into ``bins`` equal bins
    over ``activation_range`` and registers a tensor hook that counts the gradient :math:`g =
    \partial L / \partial a` as :math:`\log_{10}|g|` into ``bins`` bins over ``gradient_log10_range``
    (gradients span orders of magnitude; exact zeros, e.g. behind a dead ReLU, are counted apart in
    ``zero_fraction``). Values outside a range are left out of its histogram, as ``torch.histc``
    does. Evaluation passes are never counted. Under DDP each step's counts are summed over the
    processes (``trainer.strategy.reduce``), so every rank holds the histogram of the whole batch.

    Args:
        module_types: the layer types to watch (their forward output must be a tensor), e.g.
            ``(nn.ReLU,)`` for post-activation values or ``(nn.Linear,)`` for pre-activations.
        every_n_steps: sampling interval in optimizer steps, ``>= 1``.
        bins: bins per histogram, ``>= 1``.
        activation_range: ``(low, high)`` of the activation histogram.
        gradient_log10_range: ``(low, high)`` of the :math:`\log_{10}|g|` histogram.
        gradients: also histogram the gradients.

    Example:
        >>> monitor = ActivationHistogramMonitor((nn.ReLU,), every_n_steps=5, activation_range=(0, 4))
        >>> # fit(..., callbacks=[monitor]); monitor.counts("activation") -> steps x layers x bins
    """

    def __init__(self, module_types: tuple[type, ...] = (nn.ReLU,), every_n_steps: int = 10, bins: int = 40,
                 activation_range: tuple[float, float] = (0.0, 4.0),
                 gradient_log10_range: tuple[float, float] = (-10.0, 0.0), gradients: bool = True) -> None:
        if isinstance(module_types, type):
            module_types = (module_types,)
        if (not isinstance(module_types, (tuple, list)) or not module_types
                or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in module_types)):
            raise TypeError(f"module_types must be a non-empty tuple of nn.Module subclasses, got {module_types!r}")
        check_positive_int("every_n_steps", every_n_steps)
        check_positive_int("bins", bins)
        if not isinstance(gradients, bool):
            raise TypeError(f"gradients must be True or False, got {gradients!r}")
        self.module_types, self.every_n_steps, self.bins = tuple(module_types), every_n_steps, bins
        self.ranges = {"activation": _check_range("activation_range", activation_range),
                       "gradient": _check_range("gradient_log10_range", gradient_log10_range)}
        self.gradients = gradients
        # per sampled step: step, then per kind a (layers, bins) count tensor and (layers,) zero counts and totals
        self.history: list[dict[str, Any]] = []
        self.layer_names: list[str] = []
        self._handles: list[Any] = []
        self._current: dict[str, Tensor] | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(module_types=[t.__name__ for t in self.module_types],
                                        every_n_steps=self.every_n_steps, bins=self.bins)

    def edges(self, kind: str) -> np.ndarray:
        """The ``bins + 1`` bin edges of ``kind`` ("activation", or "gradient" in log10 units)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return np.linspace(*self.ranges[kind], self.bins + 1)

    # ---- hooks ----
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._remove()
        layers = [(name, m) for name, m in pl_module.named_modules() if isinstance(m, self.module_types)]
        if not layers:
            raise ValueError(f"ActivationHistogramMonitor found no module of type "
                             f"{[t.__name__ for t in self.module_types]} in {type(pl_module).__name__}")
        self.layer_names = [name for name, _ in layers]
        for index, (_, module) in enumerate(layers):
            self._handles.append(module.register_forward_hook(self._forward_hook(index)))

    def _forward_hook(self, index: int):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if self._current is None or not module.training or not isinstance(output, Tensor):
                return
            self._count("activation", index, output.detach())
            if self.gradients and output.requires_grad:
                output.register_hook(lambda grad: self._count("gradient", index, grad.detach()))
        return hook

    def _count(self, kind: str, index: int, values: Tensor) -> None:
        values = values.float().flatten()
        self._current[f"{kind}_zeros"][index] += int((values == 0).sum())
        if kind == "gradient":
            values = values.abs().log10()  # zeros become -inf, outside every range
        low, high = self.ranges[kind]
        self._current[kind][index] += torch.histc(values, self.bins, low, high).to(self._current[kind].device)
        self._current[f"{kind}_total"][index] += values.numel()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps:
            self._current = None
            return
        shape = (len(self.layer_names), self.bins)
        self._current = {kind: torch.zeros(shape, dtype=torch.float64) for kind in KINDS}
        for kind in KINDS:
            self._current[f"{kind}_zeros"] = torch.zeros(shape[0], dtype=torch.float64)
            self._current[f"{kind}_total"] = torch.zeros(shape[0], dtype=torch.float64)
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._current is None:
            return
        current, self._current = self._current, None
        if trainer.world_size > 1:  # one collective for all counts (same keys and shapes on every rank)
            keys = sorted(current)
            flat = torch.cat([current[k].flatten() for k in keys]).to(pl_module.device)
            flat = trainer.strategy.reduce(flat, reduce_op="sum").cpu()
            sizes = [current[k].numel() for k in keys]
            current = {k: chunk.view_as(current[k]) for k, chunk in zip(keys, flat.split(sizes))}
        if self.history and self.history[-1]["step"] == self._step:  # gradient accumulation: one entry per step
            for key, value in current.items():
                self.history[-1][key] += value
        else:
            self.history.append({"step": self._step, **current})

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ---- results ----
    def counts(self, kind: str = "activation") -> tuple[np.ndarray, np.ndarray]:
        """``(steps, counts)``: the sampled steps and a ``(steps, layers, bins)`` array of counts of ``kind``."""
        self.edges(kind)  # validates kind
        if not self.history:
            return np.zeros(0, dtype=int), np.zeros((0, len(self.layer_names), self.bins))
        return (np.array([h["step"] for h in self.history]),
                np.stack([h[kind].numpy() for h in self.history]))

    def frame(self) -> pd.DataFrame:
        """Per step and layer: the share of exact zeros (``activation_zero_fraction``, e.g. dead ReLUs,
        and ``gradient_zero_fraction``) and of values inside each histogram's range
        (``activation_in_range``, ``gradient_in_range``)."""
        rows = []
        for h in self.history:
            for depth, layer in enumerate(self.layer_names):
                row = {"step": h["step"], "layer": layer, "depth": depth}
                for kind in KINDS:
                    total = float(h[f"{kind}_total"][depth])
                    row[f"{kind}_zero_fraction"] = float(h[f"{kind}_zeros"][depth]) / total if total else math.nan
                    row[f"{kind}_in_range"] = float(h[kind][depth].sum()) / total if total else math.nan
                rows.append(row)
        return pd.DataFrame(rows)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [{k: (v.clone() if isinstance(v, Tensor) else v) for k, v in h.items()}
                            for h in self.history], "layer_names": list(self.layer_names)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict["history"]]
        self.layer_names = list(state_dict["layer_names"])
