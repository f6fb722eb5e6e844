"""DropConnect: dropout on the weights of a linear layer instead of on its activations."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit.regularization._checks import check_positive_int, check_prob, check_tensor

__all__ = ["DropConnectLinear", "drop_connect_linear"]


def drop_connect_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, p: float = 0.5,
                        training: bool = True) -> Tensor:
    """``F.linear`` with each weight zeroed with probability ``p`` (one mask per batch) and the kept
    weights scaled by ``1 / (1 - p)``, so the expected pre-activation equals the plain layer's.
    The bias is never dropped. In eval mode it is ``F.linear(x, weight, bias)``."""
    check_prob("p", p)
    check_tensor("x", x)
    check_tensor("weight", weight)
    if weight.dim() != 2 or x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"weight must have shape (out_features, in_features={x.shape[-1] if x.dim() else '?'}) to "
                         f"match x of shape {tuple(x.shape)}, got {tuple(weight.shape)}")
    if not training or p == 0.0:
        return F.linear(x, weight, bias)
    mask = torch.empty_like(weight).bernoulli_(1.0 - p).div_(1.0 - p)
    return F.linear(x, weight * mask, bias)


class DropConnectLinear(nn.Linear):
    """A linear layer whose weights are dropped at random in training.

    Wan, Zeiler, Zhang, LeCun & Fergus, 2013. *Regularization of Neural Networks using DropConnect*,
    ICML. Differences from the paper, for speed: one weight mask per batch (the paper draws one per
    sample), and inference uses the expected weights (the paper's "mean" inference) rather than its
    Gaussian moment matching.

    Args:
        in_features, out_features, bias: as for ``nn.Linear``.
        p: drop probability of each weight, in ``[0, 1)``.

    Example:
        >>> layer = DropConnectLinear(8, 4, p=0.5)
        >>> layer(torch.randn(2, 8)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5) -> None:
        check_prob("p", p)
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        super().__init__(in_features, out_features, bias=bias)
        self.p = float(p)

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float = 0.5) -> DropConnectLinear:
        """A DropConnect copy of ``linear`` (same weights), e.g. for :func:`replace_modules`."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, p=p)
        layer.load_state_dict(linear.state_dict())
        return layer.to(linear.weight.device, linear.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return drop_connect_linear(x, self.weight, self.bias, self.p, self.training)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, p={self.p:.3f}"
