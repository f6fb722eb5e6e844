"""Argument checks for the public boundary, shared by every subpackage (internals trust their inputs).

Each check raises with a message that names the argument, the value and what is allowed. Numbers:
a ``bool`` is never a number, NaN never passes a range, infinity passes only where it is allowed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> None:
    """An integer (not a bool) in ``[minimum, maximum]``."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        bound = (f"in [{minimum}, {maximum}]" if minimum is not None and maximum is not None
                 else f">= {minimum}" if minimum is not None else f"<= {maximum}" if maximum is not None else "")
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}".replace("integer ,", "integer,"))


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple | list) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def check_tensor(name: str, x: Any, *, floating: bool | None = None, dims: tuple[int, ...] | None = None,
                 layout: str = "", finite: bool = True) -> None:
    """A ``torch.Tensor`` (floating or integer as asked) with one of ``dims`` dimensions, finite."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating is True and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if floating is False and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    if dims is not None and x.dim() not in dims:
        raise ValueError(f"{name} must have shape {layout or f'with {dims} dimensions'}, got {tuple(x.shape)}")
    if finite and x.is_floating_point() and x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_class_targets(name: str, targets: Any, n: int, num_classes: int) -> None:
    """Integer class indices of shape ``(n,)`` in ``[0, num_classes)``."""
    check_tensor(name, targets, floating=False)
    if targets.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(targets.shape)}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(f"{name} must be class indices in [0, {num_classes}), got range "
                         f"[{int(targets.min())}, {int(targets.max())}]")


def label_array(name: str, labels: Any) -> Any:
    """``labels`` (array, list or tensor) as a 1-D NumPy array of integer class labels ``>= 0``."""
    import numpy as np

    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be a 1-D array of integer class labels, got dtype {labels.dtype} "
                        f"and shape {labels.shape}")
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{name} must be class indices >= 0, got minimum {labels.min()}")
    return labels
