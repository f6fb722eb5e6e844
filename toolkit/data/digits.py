"""scikit-learn's 8x8 handwritten digits as a LightningDataModule, with shift and OOD splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from toolkit.data.base import ArrayDataModule
from toolkit.data.held_out import HeldOutClassesMixin
from toolkit.data.loader import TensorBatchLoader
from toolkit.data.shift import corrupt

__all__ = ["DigitsDataModule", "IMAGE_SIZES"]

IMAGE_SIZES = (8, 16, 32)
_MAX_PIXEL = 16.0  # sklearn's digits are integers 0..16


class DigitsDataModule(HeldOutClassesMixin, ArrayDataModule):
    """The UCI handwritten digits shipped with scikit-learn: 1,797 images of 8x8 pixels, 10 classes.

    Real data that needs no download. Pixels are scaled to ``[0, 1]``, optionally upsampled
    (bilinear) to 16x16 or 32x32 for convolutional models, then standardized with the mean and
    standard deviation of the training pixels.

    Args:
        image_size: 8, 16 or 32 pixels per side.
        flatten: yield vectors of ``image_size**2`` features (for MLPs) instead of ``(1, H, W)``.
        normalize: standardize with training-set statistics (``mean``, ``std`` attributes).
        ood_classes: digits held out of train/val/test; all their samples form ``ood_dataloader()``
            and the remaining classes are relabelled ``0..k-1`` in increasing order.
        batch_size, val_fraction, test_fraction, train_fraction, seed, eval_batch_size,
            label_noise, label_noise_kind, label_noise_val: see :class:`ArrayDataModule`.

    Example:
        >>> dm = DigitsDataModule(image_size=16, ood_classes=(8, 9))
        >>> dm.setup()
        >>> dm.num_classes, tuple(dm.tensors("train")[0].shape[1:])
        (8, (1, 16, 16))
    """

    name = "digits"

    def __init__(self, image_size: int = 8, flatten: bool = False, normalize: bool = True,
                 ood_classes: Sequence[int] = (), batch_size: int = 64, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, train_fraction: float = 1.0, seed: int = 0,
                 eval_batch_size: int = 512, label_noise: float = 0.0, label_noise_kind: str = "symmetric",
                 label_noise_val: bool = False) -> None:
        super().__init__(batch_size=batch_size, val_fraction=val_fraction, test_fraction=test_fraction,
                         train_fraction=train_fraction, seed=seed, eval_batch_size=eval_batch_size,
                         label_noise=label_noise, label_noise_kind=label_noise_kind,
                         label_noise_val=label_noise_val)
        if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
            raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size!r}")
        for flag, value in (("flatten", flatten), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {value!r}")
        self.image_size = image_size
        self.flatten = flatten
        self.normalize = normalize
        self._hold_out(ood_classes)
        self.mean, self.std = 0.0, 1.0

    @property
    def input_shape(self) -> tuple[int, ...]:
        side = self.image_size
        return (side * side,) if self.flatten else (1, side, side)

    @property
    def input_range(self) -> tuple[float, float]:
        """The model-input values of a black (0) and a white (1) pixel, for attacks and clipping."""
        return (0.0 - self.mean) / self.std, (1.0 - self.mean) / self.std

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images.astype(np.float32), digits.target.astype(np.int64)

    def images01(self, x: np.ndarray) -> Tensor:
        """Raw 8x8 arrays to ``(N, 1, S, S)`` images in ``[0, 1]`` at this module's size."""
        images = torch.as_tensor(x, dtype=torch.float32).unsqueeze(1) / _MAX_PIXEL
        if self.image_size != 8:
            images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        return images.clamp_(0.0, 1.0)

    def fit_transform(self, x_train: np.ndarray) -> None:
        if self.normalize:
            images = self.images01(x_train)
            self.mean, self.std = images.mean().item(), images.std().item()

    def to_inputs(self, images01: Tensor) -> Tensor:
        """Images in ``[0, 1]`` to model inputs (normalized, flattened if asked)."""
        x = (images01 - self.mean) / self.std
        return x.flatten(1) if self.flatten else x

    def to_images01(self, inputs: Tensor) -> Tensor:
        """Invert :meth:`to_inputs`: model inputs back to ``(N, 1, S, S)`` images in ``[0, 1]``."""
        x = inputs.reshape(-1, 1, self.image_size, self.image_size)
        return x * self.std + self.mean

    def transform(self, x: np.ndarray) -> Tensor:
        return self.to_inputs(self.images01(x))

    def _test_images01(self) -> tuple[Tensor, Tensor]:
        x, y = self.load_arrays()
        kept, labels = self.split_labels(y, self.split_indices["test"])
        return self.images01(x[kept]), torch.as_tensor(labels)

    def shifted_tensors(self, corruption: str, severity: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """The test split under one corruption (see :mod:`toolkit.data.shift`), as model inputs."""
        images, labels = self._test_images01()
        return self.to_inputs(corrupt(images, corruption, severity, seed=self.seed + seed)), labels

    def shift_dataloader(self, corruption: str, severity: int, seed: int = 0) -> TensorBatchLoader:
        """A test loader over "Digits-C": the test split under ``corruption`` at ``severity`` 1-5."""
        return self.loader(*self.shifted_tensors(corruption, severity, seed))
