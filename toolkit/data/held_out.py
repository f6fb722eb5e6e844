"""Ten digit classes of which some are held out as out-of-distribution data (``ood_classes``).

Shared by :class:`~toolkit.data.DigitsDataModule` and :class:`~toolkit.data.MNIST1DDataModule`: the
held-out digits never enter train/val/test, all their samples form ``ood_dataloader()``, and the
remaining classes are relabelled ``0..k-1`` in increasing order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from toolkit.data.loader import TensorBatchLoader

__all__ = ["HeldOutClassesMixin"]

NUM_DIGITS = 10


def check_ood_classes(ood_classes: Any) -> tuple[int, ...]:
    """``ood_classes`` as a sorted tuple of distinct digits 0-9 that leaves at least 2 classes."""
    if isinstance(ood_classes, (str, bytes)) or not isinstance(ood_classes, Iterable):
        raise TypeError(f"ood_classes must be a sequence of integer digits 0-9, got {ood_classes!r}")
    ood = tuple(ood_classes)
    if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in ood):
        raise ValueError(f"ood_classes must be a sequence of integer digits 0-9, got {ood_classes!r}")
    if any(c not in range(NUM_DIGITS) for c in ood) or len(set(ood)) != len(ood) or len(ood) > NUM_DIGITS - 2:
        raise ValueError(f"ood_classes must be distinct digits 0-9 leaving at least 2 classes, got {ood_classes!r}")
    return tuple(sorted(int(c) for c in ood))


class HeldOutClassesMixin:
    """``ood_classes`` for an ``ArrayDataModule`` over the ten digits (``load_arrays``, ``transform``, ``loader``)."""

    ood_classes: tuple[int, ...] = ()

    def _hold_out(self, ood_classes: Any) -> None:
        self.ood_classes = check_ood_classes(ood_classes)
        self.in_classes = tuple(c for c in range(NUM_DIGITS) if c not in self.ood_classes)
        self.class_names = tuple(str(c) for c in self.in_classes)
        self._relabel = np.full(NUM_DIGITS, -1, dtype=np.int64)
        self._relabel[list(self.in_classes)] = np.arange(len(self.in_classes))

    def split_labels(self, y: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kept = index[np.isin(y[index], self.in_classes)]
        return kept, self._relabel[y[kept]]

    def ood_tensors(self) -> Tensor:
        """Model inputs of every sample of the held-out ``ood_classes``."""
        if not self.ood_classes:
            raise ValueError("ood_classes is empty: build the module with e.g. ood_classes=(8, 9)")
        self.setup()
        x, y = self.load_arrays()
        return self.transform(x[np.isin(y, self.ood_classes)])

    def ood_dataloader(self) -> TensorBatchLoader:
        """Out-of-distribution inputs (held-out digits), with label ``-1`` for each."""
        inputs = self.ood_tensors()
        return self.loader(inputs, torch.full((len(inputs),), -1, dtype=torch.long))
