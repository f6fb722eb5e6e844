"""Tabular and toy DataModules: breast cancer (real, binary) and two moons (2-D, for boundaries)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from toolkit.data.base import ArrayDataModule

__all__ = ["BreastCancerDataModule", "MoonsDataModule"]


class _StandardizedDataModule(ArrayDataModule):
    """Standardizes every feature with the training split's mean and standard deviation."""

    def fit_transform(self, x_train: np.ndarray) -> None:
        self.mean = x_train.mean(axis=0)
        self.std = x_train.std(axis=0) + 1e-8

    def transform(self, x: np.ndarray) -> Tensor:
        return torch.as_tensor((x - self.mean) / self.std, dtype=torch.float32)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.num_features,)


class BreastCancerDataModule(_StandardizedDataModule):
    """Wisconsin diagnostic breast cancer (scikit-learn): 569 samples, 30 features, 2 classes.

    Labels follow scikit-learn: 0 = malignant, 1 = benign. Features are standardized on the
    training split. Arguments: see :class:`ArrayDataModule`.
    """

    name = "breast_cancer"
    class_names = ("malignant", "benign")
    num_features = 30

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        return data.data.astype(np.float64), data.target.astype(np.int64)


class MoonsDataModule(_StandardizedDataModule):
    """Two interleaving half circles (``sklearn.datasets.make_moons``), for decision-boundary plots.

    Args:
        n_samples: points in all, ``>= 20``.
        noise: standard deviation of the gaussian noise added to the points, ``>= 0``.
        other arguments: see :class:`ArrayDataModule`; ``seed`` also seeds the generator.
    """

    name = "moons"
    class_names = ("upper", "lower")
    num_features = 2
    MIN_SAMPLES = 20

    def __init__(self, n_samples: int = 1000, noise: float = 0.2, batch_size: int = 64,
                 val_fraction: float = 0.15, test_fraction: float = 0.15, train_fraction: float = 1.0,
                 seed: int = 0, eval_batch_size: int = 512, label_noise: float = 0.0,
                 label_noise_kind: str = "symmetric", label_noise_val: bool = False) -> None:
        super().__init__(batch_size=batch_size, val_fraction=val_fraction, test_fraction=test_fraction,
                         train_fraction=train_fraction, seed=seed, eval_batch_size=eval_batch_size,
                         label_noise=label_noise, label_noise_kind=label_noise_kind,
                         label_noise_val=label_noise_val)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < self.MIN_SAMPLES:
            raise ValueError(f"n_samples must be an integer >= {self.MIN_SAMPLES}, got {n_samples!r}")
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < float("inf"):
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.n_samples = n_samples
        self.noise = noise

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import make_moons

        x, y = make_moons(n_samples=self.n_samples, noise=self.noise, random_state=self.seed)
        return x.astype(np.float64), y.astype(np.int64)
