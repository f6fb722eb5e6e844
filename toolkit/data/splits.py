"""Stratified, seeded splits and the manifests that pin them.

A manifest records the indices of every split with a SHA-256 of each index list and of the data
itself, so a test can tell when a library upgrade, a seed change or an edit silently changes which
samples a reported number was measured on. The committed manifests live in ``datasets/manifests``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from toolkit._validate import check_int

__all__ = ["stratified_split", "stratified_subsample", "build_manifest", "check_manifest", "sha256_of"]

SPLITS = ("train", "val", "test")


def _check_fraction(name: str, value: float, *, allow_zero: bool, allow_one: bool = False) -> None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    lo_ok = number and (value >= 0 if allow_zero else value > 0)
    hi_ok = number and (value <= 1 if allow_one else value < 1)
    if not (lo_ok and hi_ok):
        lo = "[0" if allow_zero else "(0"
        hi = "1]" if allow_one else "1)"
        raise ValueError(f"{name} must be a number in {lo}, {hi}, got {value!r}")


_MAX_SEED = 2**32 - 2  # scikit-learn's random_state bound, less the +1 of the second split


def _check_labels(labels: Any, name: str = "labels") -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class labels, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {array.dtype}")
    return array


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Split ``range(len(labels))`` into sorted train/val/test index arrays, stratified by label.

    Args:
        labels: integer class label of every sample.
        val_fraction, test_fraction: shares of all samples, each in ``[0, 1)``, summing below 1.
        seed: the split is a pure function of ``labels``, the fractions and ``seed``.
    """
    from sklearn.model_selection import train_test_split

    _check_fraction("val_fraction", val_fraction, allow_zero=True)
    _check_fraction("test_fraction", test_fraction, allow_zero=True)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1 to leave training data, "
                         f"got {val_fraction} + {test_fraction}")
    check_int("seed", seed, 0, _MAX_SEED)
    labels = _check_labels(labels)
    index = np.arange(len(labels))
    # whole-sample counts, rounded once, so sizes do not drift with floating-point shares
    n_test, n_val = round(test_fraction * len(labels)), round(val_fraction * len(labels))
    rest, test = (index, index[:0]) if n_test == 0 else train_test_split(
        index, test_size=n_test, stratify=labels, random_state=seed)
    train, val = (rest, rest[:0]) if n_val == 0 else train_test_split(
        rest, test_size=n_val, stratify=labels[rest], random_state=seed + 1)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def stratified_subsample(indices: np.ndarray, labels: np.ndarray, fraction: float,
                         seed: int) -> np.ndarray:
    """Keep a stratified ``fraction`` of ``indices`` (``labels`` is indexed by them)."""
    from sklearn.model_selection import train_test_split

    _check_fraction("train_fraction", fraction, allow_zero=False, allow_one=True)
    check_int("seed", seed, 0, _MAX_SEED)
    labels = _check_labels(labels)
    indices = np.asarray(indices)
    if indices.ndim != 1 or (len(indices) and (indices.min() < 0 or indices.max() >= len(labels))):
        raise ValueError(f"indices must be a 1-D array of positions in labels (0..{len(labels) - 1})")
    if fraction == 1:
        return indices
    keep, _ = train_test_split(indices, train_size=round(fraction * len(indices)), stratify=labels[indices],
                               random_state=seed + 2)
    return np.sort(keep)


def sha256_of(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' bytes, dtypes and shapes (platform-independent: little-endian)."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def build_manifest(name: str, data: np.ndarray, labels: np.ndarray, splits: dict[str, np.ndarray],
                   settings: dict[str, Any]) -> dict[str, Any]:
    """Describe a split: per split its size, class counts, indices and SHA-256."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(splits, dict) or not isinstance(settings, dict):
        raise TypeError(f"splits and settings must be dicts, got {type(splits).__name__} and "
                        f"{type(settings).__name__}")
    if len(np.asarray(data)) != len(np.asarray(labels)):
        raise ValueError(f"data and labels must have the same length, got {len(np.asarray(data))} and "
                         f"{len(np.asarray(labels))}")
    manifest: dict[str, Any] = {
        "dataset": name,
        "settings": settings,
        "data_sha256": sha256_of(np.asarray(data), np.asarray(labels)),
        "splits": {},
    }
    for split, idx in splits.items():
        idx = np.asarray(idx, dtype=np.int64)
        classes, counts = np.unique(np.asarray(labels)[idx], return_counts=True)
        manifest["splits"][split] = {
            "size": int(len(idx)),
            "class_counts": {int(c): int(n) for c, n in zip(classes, counts)},
            "sha256": sha256_of(idx),
            "indices": idx.tolist(),
        }
    return manifest


def check_manifest(manifest: dict[str, Any], path: str | Path) -> None:
    """Raise ``ValueError`` naming what differs between ``manifest`` and the one stored at ``path``."""
    if not isinstance(manifest, dict):
        raise TypeError(f"manifest must be a dict from build_manifest, got {type(manifest).__name__}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"no stored manifest at {str(path)!r} (path); write one with build_manifest first")
    stored = json.loads(Path(path).read_text())
    problems = []
    if stored["data_sha256"] != manifest["data_sha256"]:
        problems.append("the data itself changed (data_sha256 differs)")
    if stored["settings"] != manifest["settings"]:
        problems.append(f"settings differ: stored {stored['settings']}, now {manifest['settings']}")
    for split in sorted(set(stored["splits"]) | set(manifest["splits"])):
        a, b = stored["splits"].get(split), manifest["splits"].get(split)
        if a is None or b is None:
            problems.append(f"split {split!r} is missing on one side")
        elif a["sha256"] != b["sha256"]:
            problems.append(f"split {split!r} has other indices (size {a['size']} -> {b['size']})")
    if problems:
        raise ValueError(f"split manifest {path} does not match: " + "; ".join(problems))
