"""Modular addition ``(a + b) mod p`` over all ``p**2`` pairs: the task on which networks grok.

Power, Burda, Edwards, Babuschkin & Misra, 2022, "Grokking: Generalization Beyond Overfitting on
Small Algorithmic Datasets" (arXiv:2201.02177): train on a random fraction of the table of a binary
operation, test on the rest; with weight decay the network first memorizes the training pairs and
generalizes to the held-out ones long afterwards. Settings for small models: Nanda, Chan, Lieberum,
Smith & Steinhardt, 2023, "Progress measures for grokking via mechanistic interpretability"
(arXiv:2301.05217; a 1-layer transformer on token ids), Gromov, 2023, "Grokking modular arithmetic"
(arXiv:2301.02679; a 2-layer MLP on the one-hot pair) and Liu, Michaud & Tegmark, 2022, "Omnigrok:
Grokking Beyond Algorithmic Data" (arXiv:2210.01117).

The dataset is a closed form: pair number ``i = a * p + b`` (``a, b`` in ``0..p-1``) has label
``(a + b) mod p``. The split is a seeded uniform permutation of the ``p**2`` pairs (as in Power et
al.; not stratified by label): the first ``round(train_fraction * p**2)`` pairs train, the next
``round(val_fraction * p**2)`` validate and the rest test.

Example:
    >>> dm = ModularAdditionDataModule(modulus=7, train_fraction=0.5)
    >>> x, y = dm.tensors("train")
    >>> x.shape, y.shape, dm.batch_size, dm.num_classes
    (torch.Size([24, 14]), torch.Size([24]), 24, 7)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from toolkit._validate import check_int
from toolkit._lightning import DataModuleBase
from toolkit.data.base import TensorLoaders
from toolkit.data.splits import build_manifest

__all__ = ["MODULAR_ENCODINGS", "ModularAdditionDataModule", "modular_addition_table"]

MODULAR_ENCODINGS = ("one_hot", "tokens")
MAX_MODULUS = 1000  # p**2 pairs; the one-hot inputs hold 2 * p**3 floats (8 GB at p = 1000)
_SPLITS = ("train", "val", "test")


def modular_addition_table(modulus: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``modulus**2`` pairs ``(a, b)`` as an ``(N, 2)`` int64 array and their labels ``(a + b) mod p``.

    Row ``i`` is ``(i // p, i % p)``, so every pair appears exactly once, in row-major order.

    Args:
        modulus: ``p``, an integer in ``[2, 1000]`` (the papers use primes: 97, 113, 59).

    Example:
        >>> pairs, labels = modular_addition_table(3)
        >>> pairs[:4].tolist(), labels.tolist()
        ([[0, 0], [0, 1], [0, 2], [1, 0]], [0, 1, 2, 1, 2, 0, 2, 0, 1])
    """
    check_int("modulus", modulus, 2, MAX_MODULUS)
    index = np.arange(modulus * modulus, dtype=np.int64)
    pairs = np.stack([index // modulus, index % modulus], axis=1)
    return pairs, pairs.sum(axis=1) % modulus


def _check_fraction(name: str, value: Any, low_open: bool) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (0 < value < 1 if low_open else 0 <= value < 1):
        raise ValueError(f"{name} must be a number in {'(0' if low_open else '[0'}, 1), got {value!r}")


def _check_batch_size(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None (the whole split in one batch), got {value!r}")


class ModularAdditionDataModule(TensorLoaders, DataModuleBase):
    """The table of ``(a + b) mod p`` split into seeded train/val/test pairs (Power et al., 2022).

    Inputs, by ``encoding``:

    - ``"one_hot"``: float32 ``(N, 2p)``, the one-hot code of ``a`` followed by that of ``b``
      (the input of Gromov's 2-layer MLP; a first linear layer on it adds an embedding of ``a``
      and one of ``b``), for :class:`toolkit.models.MLP` ``(2p, p, ...)``;
    - ``"tokens"``: int64 ``(N, 2)``, the token ids ``[a, b]`` in ``0..p-1`` (for an embedding layer
      or a transformer, as in Power et al. and Nanda et al., who also append an "=" token).

    Targets are int64 ``(a + b) mod p``; ``num_classes`` is ``p``. The same interface as the
    course's other DataModules (``tensors(split)``, ``batch_size``, ``loader``, ``split_indices``,
    ``manifest``), so :func:`toolkit.training.fit` and :func:`toolkit.training.train_members` train on it.

    Args:
        modulus: ``p``, an integer in ``[2, 1000]``.
        train_fraction: share of the ``p**2`` pairs used for training, in ``(0, 1)`` (grokking needs
            enough of them: about 0.3-0.5 at p = 97-113, more for small p).
        val_fraction: share held out for validation, in ``[0, 1)``; with 0 (the default) the
            validation split *is* the test split (all held-out pairs, so the accuracy logged during
            training is the held-out accuracy, as in Power et al.'s curves).
        encoding: ``"one_hot"`` or ``"tokens"`` (above).
        batch_size: training batch size, an integer ``>= 1``, or ``None`` (the default) for
            full-batch training: ``batch_size`` is then the number of training pairs, one optimizer
            step per epoch.
        eval_batch_size: batch size of the validation/test/predict loaders, ``None`` for one batch.
        seed: fixes the split (an integer ``>= 0``); the training loader's shuffle follows the global
            torch seed, as in the other DataModules (irrelevant for full batches).

    Example:
        >>> dm = ModularAdditionDataModule(modulus=5, train_fraction=0.6, encoding="tokens", seed=1)
        >>> [len(dm.tensors(split)[1]) for split in ("train", "val", "test")]
        [15, 10, 10]
    """

    name = "modular_addition"

    def __init__(self, modulus: int = 97, train_fraction: float = 0.5, val_fraction: float = 0.0,
                 encoding: str = "one_hot", batch_size: int | None = None, eval_batch_size: int | None = None,
                 seed: int = 0) -> None:
        super().__init__()
        check_int("modulus", modulus, 2, MAX_MODULUS)
        _check_fraction("train_fraction", train_fraction, low_open=True)
        _check_fraction("val_fraction", val_fraction, low_open=False)
        total = modulus * modulus
        n_train, n_val = round(train_fraction * total), round(val_fraction * total)
        if n_train < 1 or total - n_train - n_val < 1:
            raise ValueError(f"train_fraction={train_fraction!r} and val_fraction={val_fraction!r} must leave at "
                             f"least one of the {total} pairs for training and one for testing "
                             f"(got {n_train} train, {total - n_train - n_val} test)")
        if encoding not in MODULAR_ENCODINGS:
            raise ValueError(f"encoding must be one of {MODULAR_ENCODINGS}, got {encoding!r}")
        _check_batch_size("batch_size", batch_size)
        _check_batch_size("eval_batch_size", eval_batch_size)
        check_int("seed", seed, 0, 2**32 - 1)
        self.modulus, self.train_fraction, self.val_fraction = modulus, float(train_fraction), float(val_fraction)
        self.encoding, self.seed = encoding, seed
        self.full_batch = batch_size is None
        self.batch_size = n_train if batch_size is None else batch_size
        self.eval_batch_size = total if eval_batch_size is None else eval_batch_size
        self._counts = (n_train, n_val)
        self._splits: dict[str, np.ndarray] | None = None
        self._data: dict[str, tuple[Tensor, Tensor]] | None = None

    @property
    def num_classes(self) -> int:
        return self.modulus

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (2 * self.modulus,) if self.encoding == "one_hot" else (2,)

    def encode(self, pairs: np.ndarray) -> Tensor:
        """Model inputs for an ``(N, 2)`` array of pairs ``(a, b)`` under this module's ``encoding``."""
        tokens = torch.as_tensor(np.asarray(pairs), dtype=torch.long)
        if self.encoding == "tokens":
            return tokens
        one_hot = torch.nn.functional.one_hot(tokens, self.modulus).to(torch.float32)  # (N, 2, p)
        return one_hot.flatten(1)

    # ---- Lightning hooks -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._data is not None:
            return
        pairs, labels = modular_addition_table(self.modulus)
        order = np.random.default_rng(self.seed).permutation(len(labels))
        n_train, n_val = self._counts
        splits = {"train": np.sort(order[:n_train]), "test": np.sort(order[n_train + n_val:])}
        splits["val"] = np.sort(order[n_train:n_train + n_val]) if n_val else splits["test"]
        self._splits = {split: splits[split] for split in _SPLITS}
        self._data = {split: (self.encode(pairs[index]), torch.as_tensor(labels[index]))
                      for split, index in self._splits.items()}

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """The ``(inputs, targets)`` tensors of ``split`` ("train", "val" or "test")."""
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        self.setup()
        assert self._data is not None
        return self._data[split]

    def pairs(self, split: str) -> np.ndarray:
        """The ``(N, 2)`` pairs ``(a, b)`` of ``split``, in the order of ``tensors(split)``."""
        self.tensors(split)
        return modular_addition_table(self.modulus)[0][self.split_indices[split]]

    @property
    def split_indices(self) -> dict[str, np.ndarray]:
        """Sorted pair numbers ``a * p + b`` of each split (with ``val_fraction=0``, val equals test)."""
        self.setup()
        assert self._splits is not None
        return self._splits

    def manifest(self) -> dict[str, Any]:
        """The split manifest (sizes, class counts, indices and SHA-256 of every split)."""
        pairs, labels = modular_addition_table(self.modulus)
        settings = {"modulus": self.modulus, "train_fraction": self.train_fraction,
                    "val_fraction": self.val_fraction, "seed": self.seed}
        return build_manifest(self.name, pairs, labels, self.split_indices, settings)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(modulus={self.modulus}, train_fraction={self.train_fraction}, "
                f"val_fraction={self.val_fraction}, encoding={self.encoding!r}, batch_size={self.batch_size}, "
                f"seed={self.seed})")
