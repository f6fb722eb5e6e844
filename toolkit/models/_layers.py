"""Factories for the swappable parts of the course models: normalization and dropout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

from torch import nn

__all__ = ["NORMS", "DropoutSpec", "make_dropout", "make_norm", "check_dropout"]

NORMS = ("batch", "layer", "group", "none")
GROUPS = 8  # channels per group for group norm when the width allows it

#: a drop probability in [0, 1) for ``nn.Dropout``, or a zero-argument factory of any layer
DropoutSpec = Union[float, Callable[[], nn.Module]]


def check_norm(norm: str) -> None:
    if not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def check_dropout(dropout: DropoutSpec) -> None:
    if isinstance(dropout, nn.Module):
        raise TypeError(f"dropout must be a probability in [0, 1) or a zero-argument factory of a layer (e.g. "
                        f"lambda: {type(dropout).__name__}(...)), got the layer {type(dropout).__name__} itself: "
                        "every place in the model needs its own layer")
    if callable(dropout):
        return
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1) or a factory returning an nn.Module, "
                         f"got {dropout!r}")


def make_dropout(dropout: DropoutSpec) -> nn.Module:
    """A fresh dropout layer: ``nn.Dropout(p)`` for a float (identity for 0), else ``dropout()``."""
    check_dropout(dropout)
    if callable(dropout):
        layer = dropout()
        if not isinstance(layer, nn.Module):
            raise TypeError(f"dropout factory must return an nn.Module, got {type(layer).__name__}")
        return layer
    return nn.Dropout(dropout) if dropout > 0 else nn.Identity()


def make_norm(norm: str, num_features: int, spatial: bool) -> nn.Module:
    """A normalization layer over ``num_features`` channels or features.

    ``layer`` on feature maps normalizes over (C, H, W), i.e. ``GroupNorm`` with one group.
    ``group`` uses groups of ``GROUPS`` channels (or one group per channel for narrow layers).
    """
    check_norm(norm)
    check_positive_int("num_features", num_features)
    if not isinstance(spatial, bool):
        raise TypeError(f"spatial must be True or False, got {spatial!r}")
    if norm == "batch":
        return nn.BatchNorm2d(num_features) if spatial else nn.BatchNorm1d(num_features)
    if norm == "layer":
        return nn.GroupNorm(1, num_features) if spatial else nn.LayerNorm(num_features)
    if norm == "group":
        groups = max(1, num_features // GROUPS) if num_features % GROUPS == 0 else num_features
        return nn.GroupNorm(groups, num_features)
    return nn.Identity()


def check_positive_ints(name: str, values: tuple[int, ...] | list[int], allow_empty: bool = False) -> None:
    if not isinstance(values, (tuple, list)):
        raise TypeError(f"{name} must be a sequence (tuple or list) of integers >= 1, got {values!r}")
    if not isinstance(values, (tuple, list)) or (not values and not allow_empty) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a {'possibly empty ' if allow_empty else ''}sequence of "
                         f"integers >= 1, got {values!r}")


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
