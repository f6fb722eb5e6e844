"""Adaptive gradient clipping (unit-wise, Brock et al. 2021): ``adaptive_clip_grad_`` and its callback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from toolkit.stability._checks import check_names, check_positive_float, log_metrics, optimizer_index, optimizer_params

__all__ = ["AdaptiveGradientClipping", "adaptive_clip_grad_", "unitwise_norm"]


def unitwise_norm(x: Tensor) -> Tensor:
    """L2 norm of each output unit: the whole tensor for ``ndim <= 1``, else over all dims but the first."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


_TINY32 = torch.finfo(torch.float32).tiny


def _unit_norm32(x: Tensor) -> Tensor:
    """:func:`unitwise_norm` accumulated and returned in float32 (float64 stays float64)."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x, dtype=dtype)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True, dtype=dtype)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[Tensor], clip_factor: float = 0.01, eps: float = 1e-3) -> int:
    """Clip, in place, every unit's gradient to ``clip_factor`` times the unit's weight norm.

    Brock, De, Smith & Simonyan, 2021. *High-Performance Large-Scale Image Recognition Without
    Normalization*, arXiv:2102.06171, eq. (3): for each unit ``i`` (a row of a weight matrix, an
    output channel of a convolution), with ``||W_i||* = max(||W_i||, eps)``,
    ``G_i <- clip_factor * ||W_i||* / ||G_i|| * G_i`` if ``||G_i|| / ||W_i||* > clip_factor``.

    Args:
        parameters: tensors with ``.grad`` (those without one are left out).
        clip_factor: the largest allowed ratio of gradient to weight norm, ``> 0`` (the paper uses
            0.01-0.16 depending on batch size).
        eps: the smallest weight norm, ``> 0``, so zero-initialized units can still move.

    Returns:
        The number of units whose gradient was clipped.

    Example:
        >>> layer = nn.Linear(3, 2); layer(torch.randn(4, 3)).sum().mul(1e3).backward()
        >>> adaptive_clip_grad_(layer.parameters(), clip_factor=0.01) > 0
        True
    """
    check_positive_float("clip_factor", clip_factor)
    check_positive_float("eps", eps)
    params = [param for param in parameters if param.grad is not None]
    if not params:
        return 0
    grads = [param.grad for param in params]
    # per-unit norms need one call per tensor; everything after is one fused call over the list
    # (torch._foreach_*, as torch.nn.utils.clip_grad_norm_ does): on small models the cost is per op.
    # Norms in float32 (an fp16 norm of small units underflows); the decision is the paper's,
    # ||G_i|| > clip_factor * max(||W_i||, eps), with the gradient norm unfloored: the floor of the
    # division below (float32's smallest normal) lies under every bound clip_factor * eps >= 1e-38
    scales = [_unit_norm32(param) for param in params]
    grad_norms = [_unit_norm32(grad) for grad in grads]
    torch._foreach_clamp_min_(scales, eps)
    torch._foreach_mul_(scales, clip_factor)  # the largest allowed gradient norm of each unit
    torch._foreach_clamp_min_(grad_norms, _TINY32)
    torch._foreach_div_(scales, grad_norms)
    torch._foreach_clamp_max_(scales, 1.0)
    torch._foreach_mul_(grads, scales)  # computed in float32, stored in each gradient's own dtype
    # a unit was clipped where its scale is below 1: count the nonzeros of (scale - 1) (the L0 norm)
    clipped = torch._foreach_norm(torch._foreach_sub(scales, 1.0), 0)
    return int(torch.stack(clipped).sum())


class AdaptiveGradientClipping(pl.Callback):
    """Adaptive gradient clipping (AGC) of every parameter before each optimizer step.

    Applies :func:`adaptive_clip_grad_` in ``on_before_optimizer_step`` to the parameters of the
    optimizer being stepped (with several optimizers, only those; a GAN's generator step leaves the
    discriminator's gradients alone) whose name contains none of ``exclude`` (the paper leaves the
    final classifier layer out). Counts steps and clipped units (logged as ``agc_clipped_units``
    through ``LightningModule.log`` at the loggers' interval and each epoch's last step, restored on
    resume).

    How it differs from Lightning's ``Trainer(gradient_clip_val=..., gradient_clip_algorithm=...)``:
    that clips the *global* norm (or each value) to a fixed threshold you must tune per model and
    learning rate; AGC bounds each unit's gradient relative to its own weight norm, so one threshold
    works across layers of very different scale. The two can be combined. Under DDP the gradients are
    all-reduced before this hook, so every rank clips identically without communication.

    Args:
        clip_factor: see :func:`adaptive_clip_grad_`, ``> 0``.
        eps: see :func:`adaptive_clip_grad_`, ``> 0``.
        exclude: parameter-name substrings to leave unclipped, e.g. ``("classifier",)``.

    Example:
        >>> agc = AdaptiveGradientClipping(clip_factor=0.02, exclude=("classifier",))
    """

    def __init__(self, clip_factor: float = 0.01, eps: float = 1e-3, exclude: Sequence[str] = ()) -> None:
        check_positive_float("clip_factor", clip_factor)
        check_positive_float("eps", eps)
        self.clip_factor, self.eps = float(clip_factor), float(eps)
        self.exclude = check_names("exclude", exclude)
        self.steps = 0
        self.clipped_units = 0
        self._params: dict[int, list[Tensor]] = {}
        self._selected_ids: set[int] = set()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(clip_factor=self.clip_factor, eps=self.eps, exclude=self.exclude)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._params = {}
        self._selected_ids = {id(p) for p in self._selected(pl_module)}

    def _selected(self, module: nn.Module) -> list[Tensor]:
        return [p for name, p in module.named_parameters() if not any(part in name for part in self.exclude)]

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: Optimizer) -> None:
        index = optimizer_index(trainer, optimizer)
        if index not in self._params:  # walking the module tree every step is slow: once per optimizer
            self._params[index] = [p for p in optimizer_params(optimizer) if id(p) in self._selected_ids]
        self.clipped_units += adaptive_clip_grad_(self._params[index], self.clip_factor, self.eps)
        self.steps += 1
        log_metrics(pl_module, {"agc_clipped_units": float(self.clipped_units)})

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "clipped_units": self.clipped_units}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps, self.clipped_units = int(state_dict["steps"]), int(state_dict["clipped_units"])
