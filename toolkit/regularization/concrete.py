"""Concrete dropout: a dropout rate learned by gradient descent through a relaxed Bernoulli mask."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from toolkit.regularization._checks import (check_nonnegative_number, check_positive_number, check_prob,
                                            check_tensor)

__all__ = ["ConcreteDropout", "concrete_dropout"]

_EPS = 1e-7


def concrete_dropout(x: Tensor, p_logit: Tensor, temperature: float = 0.1, training: bool = True) -> Tensor:
    """Dropout with the drop probability ``sigmoid(p_logit)`` and a Concrete (relaxed Bernoulli) mask,
    differentiable in ``p_logit``; survivors are scaled by ``1 / (1 - p)``. Identity in eval mode.

    ``z = sigmoid((logit(p) + log u - log(1 - u)) / temperature)`` with ``u ~ U(0, 1)`` is the relaxed
    "dropped" indicator; as ``temperature -> 0`` it becomes ``Bernoulli(p)``.
    """
    check_positive_number("temperature", temperature)
    check_tensor("x", x)
    check_tensor("p_logit", p_logit)
    if not training:
        return x
    p = torch.sigmoid(p_logit)
    u = torch.rand_like(x).clamp_(_EPS, 1 - _EPS)
    dropped = torch.sigmoid((p_logit + torch.log(u) - torch.log1p(-u)) / temperature)
    return x * (1 - dropped) / (1 - p)


class ConcreteDropout(nn.Module):
    """Dropout whose rate is a parameter, trained with the rest of the network.

    Gal, Hron & Kendall, 2017. *Concrete Dropout*, NeurIPS, arXiv:1705.07832. The rate enters the loss
    through ``penalty()`` (added times ``1 / num_train`` by
    :class:`~toolkit.regularization.RegularizedClassifierModule`):
    ``weight_regularizer * ||W||^2 / (1 - p) + dropout_regularizer * K * (p log p + (1 - p) log(1 - p))``,
    the paper's KL with ``K`` input features and prior length scale ``l`` (``weight_regularizer = l**2``,
    ``dropout_regularizer = 2`` for classification). The weight term needs the layer that follows the
    dropout: pass it as ``layer`` (the module then computes ``layer(dropout(x))``). Used alone, e.g. as
    ``MLP(..., dropout=lambda: ConcreteDropout())``, only the entropy term is added and weight decay is
    left to the optimizer.

    Args:
        p_init: initial drop probability, in ``(0, 1)``.
        temperature: of the Concrete relaxation, ``> 0`` (the paper uses 0.1).
        weight_regularizer: ``>= 0``; only used with ``layer``.
        dropout_regularizer: ``>= 0``.
        layer: optional module applied after the dropout.

    Example:
        >>> layer = ConcreteDropout(p_init=0.2)
        >>> round(layer.drop_prob.item(), 3)
        0.2
    """

    def __init__(self, p_init: float = 0.1, temperature: float = 0.1, weight_regularizer: float = 1e-4,
                 dropout_regularizer: float = 2.0, layer: nn.Module | None = None) -> None:
        super().__init__()
        check_prob("p_init", p_init)
        if p_init == 0:
            raise ValueError("p_init must be a probability in (0, 1), got 0 (the logit would be -inf)")
        check_positive_number("temperature", temperature)
        check_nonnegative_number("weight_regularizer", weight_regularizer)
        check_nonnegative_number("dropout_regularizer", dropout_regularizer)
        if layer is not None and not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be an nn.Module or None, got {type(layer).__name__}")
        self.p_logit = nn.Parameter(torch.tensor(math.log(p_init) - math.log1p(-p_init)))
        self.temperature = float(temperature)
        self.weight_regularizer = float(weight_regularizer)
        self.dropout_regularizer = float(dropout_regularizer)
        self.layer = layer
        self.num_features = 0  # K, read from the last input's feature (channel) dimension

    @property
    def drop_prob(self) -> Tensor:
        """The current drop probability ``sigmoid(p_logit)``."""
        return torch.sigmoid(self.p_logit)

    def forward(self, x: Tensor) -> Tensor:
        self.num_features = x.shape[1] if x.dim() > 1 else x.shape[0]
        out = concrete_dropout(x, self.p_logit, self.temperature, self.training)
        return out if self.layer is None else self.layer(out)

    def penalty(self) -> Tensor:
        """The KL term of Gal et al. (before the division by the number of training samples)."""
        p = self.drop_prob
        neg_entropy = p * torch.log(p + _EPS) + (1 - p) * torch.log1p(-p + _EPS)
        total = self.dropout_regularizer * self.num_features * neg_entropy
        if self.layer is not None and self.weight_regularizer > 0:
            squares = sum(w.square().sum() for w in self.layer.parameters())
            total = total + self.weight_regularizer * squares / (1 - p)
        return total

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob.item():.3f}, temperature={self.temperature}"
