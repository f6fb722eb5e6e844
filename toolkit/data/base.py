"""The base of the course's DataModules: arrays in memory, seeded stratified splits, fast loaders."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch
from torch import Tensor

from toolkit._lightning import DataModuleBase
from toolkit.data.label_noise import check_label_noise, flip_labels
from toolkit.data.loader import TensorBatchLoader
from toolkit.data.splits import build_manifest, sha256_of, stratified_split, stratified_subsample

__all__ = ["ArrayDataModule"]


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


_NOISE_STREAMS = {"train": 1, "val": 2}  # label noise of each split draws from its own seeded stream
_SEED_BOUND = 2**62  # torch.Generator seeds must stay below 2**64 after adding the epoch


def _shared_shuffle_seed() -> int:
    """The seed of the global torch RNG (``torch.initial_seed``, set by ``seed_everything``), shared
    by every rank of a process group. Reading it consumes no random numbers, so the batch order
    does not depend on what ran before (Lightning's DDP re-seeds each process at start-up)."""
    seed = [torch.initial_seed() % _SEED_BOUND]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(seed, src=0)
    return seed[0]


class TensorLoaders:
    """The loaders of a DataModule whose splits are tensors in memory. The class using it defines
    ``tensors(split)`` (a split's ``(inputs, targets)``) and the attributes ``batch_size`` and
    ``eval_batch_size``."""

    def loader(self, *tensors: Tensor, train: bool = False) -> TensorBatchLoader:
        """A loader with this module's settings over any tensors (e.g. a shifted test set).

        Training loaders shuffle with the global torch seed (``fit``'s ``seed``),
        so runs over several seeds see different batch orders while the split stays fixed by
        ``self.seed``. Under DDP every rank uses rank zero's seed, so the shards never overlap.
        """
        if train:
            return TensorBatchLoader(*tensors, batch_size=self.batch_size, shuffle=True,
                                     seed=_shared_shuffle_seed(), pad=True)
        return TensorBatchLoader(*tensors, batch_size=self.eval_batch_size, shuffle=False, pad=False)

    def train_dataloader(self) -> TensorBatchLoader:
        return self.loader(*self.tensors("train"), train=True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self.loader(*self.tensors("val"))

    def test_dataloader(self) -> TensorBatchLoader:
        return self.loader(*self.tensors("test"))

    def predict_dataloader(self) -> TensorBatchLoader:
        return self.test_dataloader()


class ArrayDataModule(TensorLoaders, DataModuleBase, abc.ABC):
    """A LightningDataModule over a small dataset held in memory, for a ``pytorch_lightning`` or a
    ``lightning.pytorch`` Trainer (see :class:`toolkit._lightning.DataModuleBase`).

    Subclasses say how to load the arrays (``load_arrays``) and how to turn them into model inputs
    (``fit_transform`` on the training split, then ``transform``). This class does the rest: a
    stratified train/val/test split fixed by ``seed``, an optional stratified ``train_fraction`` of
    the training split (to make overfitting visible), and :class:`TensorBatchLoader` loaders.

    Args:
        batch_size: training batch size, ``>= 1``.
        val_fraction, test_fraction: shares of the whole dataset, in ``[0, 1)``, summing below 1.
        train_fraction: share of the training split actually used, in ``(0, 1]``.
        seed: fixes the split and the shuffling order.
        eval_batch_size: batch size of the validation, test and predict loaders.
        label_noise: share of training labels to flip, in ``[0, 1)``: exactly
            ``round(label_noise * n_train)`` samples of the (``train_fraction``-reduced) training split,
            chosen uniformly and seeded by ``seed``. The test split is never changed.
        label_noise_kind: "symmetric" (a flipped sample gets a uniformly random *other* class) or
            "pairs" (class ``c`` -> ``(c + 1) mod K``); see :func:`toolkit.data.flip_labels`.
        label_noise_val: flip the validation labels too (at the same rate, their own seeded draw).

    With label noise, ``tensors("train")`` holds the noisy labels; ``clean_targets(split)`` the
    clean ones; ``noisy_indices`` the flipped positions in ``tensors("train")`` and
    ``noisy_array_indices`` the same samples as indices into ``load_arrays()``.
    """

    name = "array"
    class_names: tuple[str, ...] = ()

    def __init__(self, batch_size: int = 64, val_fraction: float = 0.15, test_fraction: float = 0.15,
                 train_fraction: float = 1.0, seed: int = 0, eval_batch_size: int = 512,
                 label_noise: float = 0.0, label_noise_kind: str = "symmetric",
                 label_noise_val: bool = False) -> None:
        super().__init__()
        _check_positive_int("batch_size", batch_size)
        _check_positive_int("eval_batch_size", eval_batch_size)
        # validates the fractions with clear messages before any data is touched
        stratified_split(np.zeros(20, dtype=int), val_fraction, test_fraction, seed)
        if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) \
                or not 0 < train_fraction <= 1:
            raise ValueError(f"train_fraction must be a number in (0, 1], got {train_fraction!r}")
        check_label_noise(label_noise, label_noise_kind)
        if not isinstance(label_noise_val, bool):
            raise TypeError(f"label_noise_val must be a bool, got {label_noise_val!r}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.train_fraction = train_fraction
        self.seed = seed
        self.label_noise = float(label_noise)
        self.label_noise_kind = label_noise_kind
        self.label_noise_val = label_noise_val
        self._data: dict[str, tuple[Tensor, Tensor]] | None = None
        self._splits: dict[str, np.ndarray] | None = None
        self._kept: dict[str, np.ndarray] = {}
        self._clean: dict[str, Tensor] = {}
        self._noisy: dict[str, np.ndarray] = {}

    # ---- what a subclass provides -------------------------------------------------------------
    @abc.abstractmethod
    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Return all samples ``X`` and integer labels ``y`` as NumPy arrays."""

    def fit_transform(self, x_train: np.ndarray) -> None:
        """Learn preprocessing statistics from the training split (default: none)."""

    def transform(self, x: np.ndarray) -> Tensor:
        """Turn raw samples into model inputs (default: float32 tensor)."""
        return torch.as_tensor(x, dtype=torch.float32)

    def split_labels(self, y: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Select samples ``index`` for training/evaluation; return ``(kept index, labels)``."""
        return index, y[index]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ---- Lightning hooks -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._data is not None:
            return
        x, y = self.load_arrays()
        splits = stratified_split(y, self.val_fraction, self.test_fraction, self.seed)
        splits["train"] = stratified_subsample(splits["train"], y, self.train_fraction, self.seed)
        self._splits = splits
        self.fit_transform(x[self.split_labels(y, splits["train"])[0]])
        if self.label_noise > 0 and self.num_classes < 2:
            raise ValueError(f"label_noise needs at least 2 classes (class_names), {type(self).__name__} has "
                             f"{self.num_classes}")
        data = {}
        for split, index in splits.items():
            kept, labels = self.split_labels(y, index)
            self._kept[split] = kept
            self._clean[split] = torch.as_tensor(labels, dtype=torch.long)
            self._noisy[split] = np.zeros(len(kept), dtype=bool)
            if self.label_noise > 0 and (split == "train" or (split == "val" and self.label_noise_val)):
                labels, self._noisy[split] = flip_labels(labels, self.label_noise, self.num_classes,
                                                         self.label_noise_kind, seed=[self.seed, _NOISE_STREAMS[split]])
            data[split] = (self.transform(x[kept]), torch.as_tensor(labels, dtype=torch.long))
        self._data = data

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """The ``(inputs, targets)`` tensors of ``split`` ("train", "val" or "test")."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be one of ('train', 'val', 'test'), got {split!r}")
        self.setup()
        assert self._data is not None
        return self._data[split]

    @property
    def split_indices(self) -> dict[str, np.ndarray]:
        """Indices into ``load_arrays()`` of each split (after ``train_fraction``)."""
        self.setup()
        assert self._splits is not None
        return self._splits

    def clean_targets(self, split: str) -> Tensor:
        """The labels of ``split`` before any label noise (equal to ``tensors(split)[1]`` without it)."""
        self.tensors(split)
        return self._clean[split].clone()

    def noisy_mask(self, split: str) -> Tensor:
        """Boolean mask over ``tensors(split)``: ``True`` where label noise changed the label."""
        self.tensors(split)
        return torch.from_numpy(self._noisy[split].copy())

    @property
    def noisy_indices(self) -> np.ndarray:
        """Positions in ``tensors("train")`` whose label was flipped (sorted; empty without noise)."""
        return np.flatnonzero(self.noisy_mask("train").numpy())

    @property
    def noisy_array_indices(self) -> np.ndarray:
        """The flipped training samples as indices into ``load_arrays()`` (sorted)."""
        positions = self.noisy_indices
        return self._kept["train"][positions]

    def manifest_settings(self) -> dict[str, Any]:
        """The settings a manifest records (subclasses add theirs, e.g. a generator's arguments)."""
        settings: dict[str, Any] = {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
                                    "train_fraction": self.train_fraction, "seed": self.seed}
        if self.label_noise > 0:  # recorded only when used, so the noise-free manifests stay as they were
            settings.update(label_noise=self.label_noise, label_noise_kind=self.label_noise_kind,
                            label_noise_val=self.label_noise_val)
        return settings

    def manifest(self) -> dict[str, Any]:
        """The split manifest: sizes, class counts, indices and SHA-256 of every split; with label
        noise, the flipped samples of each split (indices into ``load_arrays()``) and their noisy labels."""
        x, y = self.load_arrays()
        manifest = build_manifest(self.name, x, y, self.split_indices, self.manifest_settings())
        if self.label_noise > 0:
            manifest["label_noise"] = {}
            for split in ("train", "val"):
                positions = np.flatnonzero(self.noisy_mask(split).numpy())
                indices = self._kept[split][positions].astype(np.int64)
                noisy = self.tensors(split)[1].numpy()[positions].astype(np.int64)
                manifest["label_noise"][split] = {"flipped": int(len(indices)), "sha256": sha256_of(indices, noisy),
                                                  "indices": indices.tolist(), "noisy_labels": noisy.tolist()}
        return manifest

    def __repr__(self) -> str:
        noise = (f", label_noise={self.label_noise}, label_noise_kind={self.label_noise_kind!r}"
                 if self.label_noise > 0 else "")
        return (f"{type(self).__name__}(batch_size={self.batch_size}, train_fraction={self.train_fraction}, "
                f"val_fraction={self.val_fraction}, test_fraction={self.test_fraction}, seed={self.seed}{noise})")
