"""Label noise: inject it at a known rate, find it by confident learning, score what was found.

Confident learning (Northcutt, Jiang & Chuang, 2021, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 70, arXiv:1911.00068) flags a sample whose given label disagrees confidently with
out-of-fold predicted probabilities, with per-class thresholds. We call ``cleanlab``'s implementation
on probabilities from ``sklearn.model_selection.cross_val_predict``: every sample is scored by a
model that never saw it, which is what makes a memorized wrong label visible.

Example:
    >>> noisy, flipped = inject_label_noise(np.arange(10) % 2, rate=0.2, seed=0)
    >>> int(flipped.sum()), bool((noisy != np.arange(10) % 2).sum() == 2)
    (2, True)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from toolkit._validate import label_array

from toolkit._extras import require

__all__ = ["detection_scores", "find_label_issues", "inject_label_noise", "out_of_fold_probs"]

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given")


_labels = label_array


def inject_label_noise(labels: Any, rate: float, num_classes: int | None = None,
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * N)`` labels, chosen uniformly, each to a uniformly chosen other class.

    Args:
        labels: ``(N,)`` integer class labels.
        rate: share of labels to flip, in ``[0, 1]``.
        num_classes: number of classes (default ``labels.max() + 1``), ``>= 2``.
        seed: seeds which labels flip and to what.

    Returns:
        ``(noisy_labels, flipped)``: the new labels and a boolean mask of the flipped samples.
    """
    labels = _labels("labels", labels)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be a share in [0, 1], got {rate!r}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2 \
            or (len(labels) and labels.max() >= num_classes):
        raise ValueError(f"num_classes must be an integer >= 2 above every label, got {num_classes!r}")
    from toolkit.data.label_noise import flip_labels  # the DataModules' label noise, one implementation

    return flip_labels(labels, rate, num_classes, kind="symmetric", seed=seed)


def out_of_fold_probs(x: Any, labels: Any, n_splits: int = 5, seed: int = 0, estimator: Any = None,
                      module: Any = None, max_epochs: int = 10, batch_size: int = 64) -> np.ndarray:
    """Predicted probabilities of every sample from a model trained on the other folds.

    Args:
        x: samples ``(N, ...)``; flattened to features for a scikit-learn estimator, kept in their
            shape (as float32) for a ``module``.
        labels: ``(N,)`` integer labels (possibly noisy).
        n_splits: stratified folds, ``>= 2``.
        seed: seeds the fold assignment and, for a ``module``, each fold's run (``seed + fold``).
        estimator: any scikit-learn classifier with ``predict_proba`` (default: standardization and
            multinomial logistic regression).
        module: instead of ``estimator``, a zero-argument factory of a LightningModule whose
            ``predict_step`` returns logits (e.g. ``lambda: ClassifierModule(MLP(40, 10), 10)``):
            trained on each fold's other folds with :func:`toolkit.training.fit` (no validation, no
            checkpoints), its softmax taken on the held-out fold.
        max_epochs, batch_size: the ``module``'s training, both ``>= 1``.

    Returns:
        ``(N, C)`` probabilities, columns in class order ``0..C-1``.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = _labels("labels", labels)
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.size and not np.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values: impute or drop them first")
    if len(x) != len(labels):
        raise ValueError(f"x and labels must have the same length, got {len(x)} and {len(labels)}")
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}")
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    if module is not None:
        if estimator is not None:
            raise ValueError("pass estimator (scikit-learn) or module (a LightningModule factory), not both")
        if not callable(module):
            raise TypeError(f"module must be a zero-argument factory of a LightningModule, got {type(module).__name__}")
        for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        return _module_out_of_fold(x.astype(np.float32), labels, folds, module, max_epochs, batch_size, seed)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if estimator is None:
        estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    return cross_val_predict(estimator, x.reshape(len(x), -1), labels, cv=folds, method="predict_proba")


def _module_out_of_fold(x: np.ndarray, labels: np.ndarray, folds: Any, module: Any, max_epochs: int,
                        batch_size: int, seed: int) -> np.ndarray:
    """Out-of-fold softmax of a LightningModule factory, one :func:`toolkit.training.fit` per fold."""
    import tempfile

    import pytorch_lightning as pl
    import torch

    from toolkit.data import TensorBatchLoader
    from toolkit.training import fit, predict_logits

    class _Fold(pl.LightningDataModule):
        def __init__(self, train: np.ndarray) -> None:
            super().__init__()
            self.x, self.y = torch.from_numpy(x[train]), torch.from_numpy(labels[train])

        def train_dataloader(self) -> TensorBatchLoader:
            return TensorBatchLoader(self.x, self.y, batch_size=batch_size, shuffle=True, seed=seed)

    probs = None
    with tempfile.TemporaryDirectory() as runs_dir:
        for fold, (train, held_out) in enumerate(folds.split(np.zeros(len(labels)), labels)):
            with warnings.catch_warnings():  # there is deliberately no validation split
                warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
                result = fit(module, _Fold(train), max_epochs=max_epochs, seed=seed + fold, test=False,
                             runs_dir=runs_dir, enable_checkpointing=False, enable_progress_bar=False,
                             limit_val_batches=0)
            loader = TensorBatchLoader(torch.from_numpy(x[held_out]), batch_size=max(batch_size, 256))
            fold_probs = torch.softmax(predict_logits(result.module, loader).double(), dim=1).numpy()
            if probs is None:
                probs = np.zeros((len(labels), fold_probs.shape[1]))
            probs[held_out] = fold_probs
    return probs


PROB_SUM_ATOL = 1e-3  # rows of probabilities must sum to 1 within this tolerance


def _check_probs_rows(probs: np.ndarray, name: str = "probs") -> None:
    if probs.size and not np.isfinite(probs).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if probs.size and (probs.min() < 0 or probs.max() > 1 or np.abs(probs.sum(1) - 1).max() > PROB_SUM_ATOL):
        raise ValueError(f"{name} must be probabilities: values in [0, 1], each row summing to 1 "
                         "(pass predict_proba outputs, not scores or logits)")


def find_label_issues(labels: Any, probs: Any, filter_by: str = "prune_by_noise_rate") -> np.ndarray:
    """Boolean mask of samples whose label is likely wrong, by confident learning (``cleanlab``).

    Args:
        labels: ``(N,)`` given integer labels.
        probs: ``(N, C)`` out-of-fold predicted probabilities (see :func:`out_of_fold_probs`).
        filter_by: cleanlab's rule, one of ``FILTERS``.
    """
    with warnings.catch_warnings():  # cleanlab imports tqdm.auto, which warns in notebooks without ipywidgets
        warnings.filterwarnings("ignore", message="IProgress not found")
        require("cleanlab", "governance", "find_label_issues")
        from cleanlab.filter import find_label_issues as _cleanlab_find

    labels = _labels("labels", labels)
    probs = np.asarray(probs.detach().cpu().numpy() if hasattr(probs, "detach") else probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must have shape ({len(labels)}, C) to match labels, got {probs.shape}")
    if filter_by not in FILTERS:
        raise ValueError(f"filter_by must be one of {FILTERS}, got {filter_by!r}")
    if len(labels) and labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must be below the number of probability columns {probs.shape[1]}, "
                         f"got maximum {labels.max()}")
    _check_probs_rows(probs)
    return np.asarray(_cleanlab_find(labels, probs, filter_by=filter_by), dtype=bool)


def detection_scores(found: Any, truth: Any) -> dict[str, float]:
    """Precision, recall and F1 of a boolean mask ``found`` against the true mask ``truth``.

    Precision is ``nan`` when nothing was found, recall ``nan`` when there was nothing to find.
    """
    found, truth = np.asarray(found), np.asarray(truth)
    if found.dtype != bool or truth.dtype != bool:
        raise TypeError(f"found and truth must be boolean masks, got dtypes {found.dtype} and {truth.dtype}")
    if found.shape != truth.shape:
        raise ValueError(f"found and truth must have the same shape, got {found.shape} and {truth.shape}")
    hits = int((found & truth).sum())
    precision = hits / found.sum() if found.sum() else float("nan")
    recall = hits / truth.sum() if truth.sum() else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else float("nan")
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1),
            "found": int(found.sum()), "true": int(truth.sum())}
