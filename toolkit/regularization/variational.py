"""Sparse variational dropout: a learned Gaussian dropout rate per weight, and pruning by that rate.

Kingma, Salimans & Welling, 2015. *Variational Dropout and the Local Reparameterization Trick*,
arXiv:1506.02557 (Gaussian dropout as variational inference, noise sampled on pre-activations).
Molchanov, Ashukha & Vetrov, 2017. *Variational Dropout Sparsifies Deep Neural Networks*,
arXiv:1701.05369 (one ``alpha`` per weight, unbounded, with an accurate approximation of the KL term;
weights with ``log alpha > 3`` carry almost pure noise and are pruned).

Each weight ``w ~ N(theta, alpha * theta**2)``. In training the layers sample pre-activations with the
local reparameterization trick; in eval they use ``theta`` with the high-``alpha`` weights set to zero.
The loss is ``cross_entropy + KL / num_train``:
:class:`~toolkit.regularization.RegularizedClassifierModule` adds the ``penalty()`` of every layer.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

from toolkit.regularization._checks import check_positive_int, check_tensor

__all__ = ["LOG_ALPHA_THRESHOLD", "VariationalConv2d", "VariationalLinear", "layer_sparsity", "prune_variational",
           "sparse_vd_kl", "sparsity"]

LOG_ALPHA_THRESHOLD = 3.0       # Molchanov et al.: log alpha > 3 means a drop rate above 95%
LOG_ALPHA_CLIP = (-10.0, 10.0)  # keeps alpha finite where theta is zero
LOG_SIGMA2_INIT = -10.0
_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695  # Molchanov et al. (2017), eq. 14
_EPS = 1e-8


def sparse_vd_kl(log_alpha: Tensor) -> Tensor:
    """Elementwise ``KL(q(w | theta, alpha) || p(w))`` for the log-uniform prior, Molchanov et al. eq. 14:

    ``-KL ~= k1 * sigmoid(k2 + k3 * log_alpha) - 0.5 * log(1 + 1 / alpha) - k1``
    with ``k1, k2, k3 = 0.63576, 1.87320, 1.48695``. It is positive, decreasing in ``alpha`` and tends
    to 0 as ``alpha`` grows, so minimizing it pushes weights towards pure noise (and pruning).
    """
    check_tensor("log_alpha", log_alpha)
    if log_alpha.numel() and bool(torch.isnan(log_alpha).any()):
        raise ValueError("log_alpha contains NaN")
    return _sparse_vd_kl(log_alpha)


def _sparse_vd_kl(log_alpha: Tensor) -> Tensor:
    """:func:`sparse_vd_kl` without the checks (the layers call it on every training step)."""
    return _K1 - _K1 * torch.sigmoid(_K2 + _K3 * log_alpha) + 0.5 * F.softplus(-log_alpha)


class _SparseVariational:
    """What the linear and convolutional layers share: ``log_alpha``, the mask, the KL, the checks."""

    weight: Tensor
    log_sigma2: nn.Parameter
    threshold: float

    def _init_variational(self, threshold: float) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
            raise ValueError(f"threshold must be a number, not NaN (a log alpha, typically 3.0; inf never prunes), "
                             f"got {threshold!r}")
        self.log_sigma2 = nn.Parameter(torch.full_like(self.weight, LOG_SIGMA2_INIT))
        self.threshold = float(threshold)

    @property
    def log_alpha(self) -> Tensor:
        """``log(sigma^2 / theta^2)`` per weight, clipped to ``LOG_ALPHA_CLIP``."""
        return (self.log_sigma2 - torch.log(self.weight.square() + _EPS)).clamp(*LOG_ALPHA_CLIP)

    def mask(self, threshold: float | None = None) -> Tensor:
        """1 for the weights kept at inference, 0 for those with ``log_alpha >= threshold``."""
        limit = self.threshold if threshold is None else threshold
        return (self.log_alpha < limit).to(self.weight.dtype)

    def kl(self) -> Tensor:
        """The KL term of this layer's weights (a sum over weights)."""
        return _sparse_vd_kl(self.log_alpha).sum()

    def penalty(self) -> Tensor:
        """What :class:`~toolkit.regularization.RegularizedClassifierModule` adds to the loss (times 1/N)."""
        return self.kl()

    def _noise_variance_weight(self) -> Tensor:
        return self.log_alpha.exp() * self.weight.square()

    @staticmethod
    def _sample(mean: Tensor, variance: Tensor) -> Tensor:
        return mean + (variance + _EPS).sqrt() * torch.randn_like(mean)


class VariationalLinear(_SparseVariational, nn.Linear):
    """A linear layer with sparse variational dropout (see the module docstring for the papers).

    Args:
        in_features, out_features, bias: as for ``nn.Linear``.
        threshold: weights with ``log_alpha >= threshold`` are zero in eval mode (default 3.0).

    Example:
        >>> layer = VariationalLinear(8, 4)
        >>> layer(torch.randn(2, 8)).shape, layer.kl().item() > 0
        (torch.Size([2, 4]), True)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 threshold: float = LOG_ALPHA_THRESHOLD) -> None:
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        super().__init__(in_features, out_features, bias=bias)
        self._init_variational(threshold)

    @classmethod
    def from_linear(cls, linear: nn.Linear, threshold: float = LOG_ALPHA_THRESHOLD) -> VariationalLinear:
        """A variational copy of ``linear`` (same ``theta`` and bias), e.g. for :func:`replace_modules`."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, threshold=threshold)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer.to(linear.weight.device, linear.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return F.linear(x, self.weight * self.mask(), self.bias)
        return self._sample(F.linear(x, self.weight, self.bias), F.linear(x.square(), self._noise_variance_weight()))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, threshold={self.threshold}"


class VariationalConv2d(_SparseVariational, nn.Conv2d):
    """A 2-d convolution with sparse variational dropout (see the module docstring for the papers).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as for ``nn.Conv2d``.
        threshold: weights with ``log_alpha >= threshold`` are zero in eval mode (default 3.0).

    Example:
        >>> VariationalConv2d(1, 4, 3, padding=1)(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride: int = 1,
                 padding: int | str = 0, dilation: int = 1, groups: int = 1, bias: bool = True,
                 threshold: float = LOG_ALPHA_THRESHOLD) -> None:
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            check_positive_int(name, value)
        for size in (kernel_size if isinstance(kernel_size, tuple) else (kernel_size,)):
            check_positive_int("kernel_size", size)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)
        self._init_variational(threshold)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, threshold: float = LOG_ALPHA_THRESHOLD) -> VariationalConv2d:
        """A variational copy of ``conv`` (same ``theta``, bias and geometry)."""
        if not isinstance(conv, nn.Conv2d) or conv.padding_mode != "zeros":
            raise TypeError(f"conv must be an nn.Conv2d with zero padding, got {conv!r}")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, threshold=threshold)
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer.to(conv.weight.device, conv.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return self._conv_forward(x, self.weight * self.mask(), self.bias)
        mean = self._conv_forward(x, self.weight, self.bias)
        return self._sample(mean, self._conv_forward(x.square(), self._noise_variance_weight(), None))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, threshold={self.threshold}"


def check_threshold(threshold: float | None) -> None:
    """A log-alpha threshold: any number but NaN (``inf`` prunes nothing, ``-inf`` everything), or None.
    A NaN threshold would compare false everywhere and mask every weight."""
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or math.isnan(threshold)):
        raise ValueError(f"threshold must be a number (not NaN) or None, got {threshold!r}")


def _variational_layers(model: nn.Module, threshold: float | None = None) -> list[tuple[str, _SparseVariational]]:
    check_threshold(threshold)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _SparseVariational)]


@torch.no_grad()
def layer_sparsity(model: nn.Module, threshold: float | None = None) -> dict[str, float]:
    """Share of pruned weights (``log_alpha >= threshold``) of each variational layer, by module name."""
    layers = _variational_layers(model, threshold)
    return {name: 1.0 - layer.mask(threshold).mean().item() for name, layer in layers}


@torch.no_grad()
def sparsity(model: nn.Module, threshold: float | None = None) -> float:
    """Share of all variational weights of ``model`` that are pruned at ``threshold`` (each layer's own
    threshold by default); 0.0 when the model has no variational layer."""
    layers = _variational_layers(model, threshold)
    total = sum(layer.weight.numel() for _, layer in layers)
    if total == 0:
        return 0.0
    pruned = sum((1.0 - layer.mask(threshold)).sum().item() for _, layer in layers)
    return pruned / total


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


@torch.no_grad()
def prune_variational(model: nn.Module, threshold: float | None = None) -> nn.Module:
    """A deterministic copy of ``model``: every variational layer becomes a plain ``nn.Linear`` /
    ``nn.Conv2d`` holding ``theta``, pruned with ``torch.nn.utils.prune.custom_from_mask`` where
    ``log_alpha >= threshold``. ``model`` itself is left unchanged.
    """
    check_threshold(threshold)
    pruned = copy.deepcopy(model)
    for name, layer in _variational_layers(pruned):
        if isinstance(layer, nn.Conv2d):
            plain: nn.Module = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                                         layer.padding, layer.dilation, layer.groups, bias=layer.bias is not None)
        else:
            plain = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        plain = plain.to(layer.weight.device, layer.weight.dtype)
        plain.weight.copy_(layer.weight)
        if layer.bias is not None:
            plain.bias.copy_(layer.bias)
        prune.custom_from_mask(plain, "weight", layer.mask(threshold))
        plain.train(layer.training)
        _set_submodule(pruned, name, plain)
    return pruned
