r"""Exact and near-duplicate samples, and leakage of samples between splits.

A test sample that also sits (exactly, or up to a little noise) in the training split inflates test
accuracy: the model is graded on what it memorized. Exact duplicates are found by comparing rows
byte for byte; near duplicates by a radius search in the raw feature space, with ``threshold`` in
the units of the features. The search is brute force (in 64 dimensions trees lose to it) in two
steps: candidates from squared distances written as one matrix product,
:math:`\lVert a-b\rVert^2 = \lVert a\rVert^2 + \lVert b\rVert^2 - 2\,a\cdot b` (float32 BLAS on centred
rows, in memory-bounded chunks), kept with a margin above the bound of its rounding error, then
every candidate's distance recomputed in float64 from the difference of the two rows, which decides. The result equals an exact search
(``scipy.spatial.distance.cdist``, or scikit-learn's ``NearestNeighbors.radius_neighbors``).

Example:
    >>> x = np.array([[0.0, 1.0], [5.0, 5.0], [0.0, 1.0]])
    >>> find_duplicates(x).to_dict("records")
    [{'i': 0, 'j': 2, 'distance': 0.0}]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["find_duplicates", "find_leakage", "split_leakage"]

_PAIR_COLUMNS = ("i", "j", "distance")
_LEAK_COLUMNS = ("train_index", "test_index", "distance")
_CHUNK_DISTANCES = 1_000_000  # candidate products held in memory at once (4 MB of float32)
_ROUNDING_MARGIN = 4.0  # candidate margin, in units of the matrix product's rounding-error bound


def _as_matrix(name: str, x: Any) -> np.ndarray:
    """Samples ``(N, ...)`` (NumPy or torch) as a float64 matrix ``(N, d)``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (N, features...), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {x.dtype}")
    x = x.reshape(len(x), int(np.prod(x.shape[1:]))).astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_threshold(threshold: Any) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold >= 0:
        raise ValueError(f"threshold must be a distance >= 0 (0: exact duplicates only; inf: every pair), "
                         f"got {threshold!r}")
    return float(threshold)


def _exact_pairs(a: np.ndarray, b: np.ndarray | None) -> list[tuple[int, int, float]]:
    """Pairs of byte-identical rows, within ``a`` (``b`` is None) or between ``a`` and ``b``."""
    index: dict[bytes, list[int]] = {}
    for i, row in enumerate(a):
        index.setdefault(row.tobytes(), []).append(i)
    if b is None:
        return [(g[p], g[q], 0.0) for g in index.values() for p in range(len(g)) for q in range(p + 1, len(g))]
    return [(i, j, 0.0) for j, row in enumerate(b) for i in index.get(row.tobytes(), [])]


def _radius_pairs(a: np.ndarray, b: np.ndarray, radius: float,
                  lower: bool = False) -> list[tuple[int, int, float]]:
    """Pairs ``(i in a, j in b, distance)`` within ``radius``: matrix-product candidates, exact recheck.

    ``lower=True`` (``a is b``) searches only the pairs ``i < j``, half the products.
    """
    if not np.isfinite(radius):  # every pair: the exact distances directly
        from scipy.spatial.distance import cdist

        distances = cdist(a, b)
        i, j = np.nonzero(np.triu(distances <= radius, k=1) if lower else distances <= radius)
        return list(zip(i.tolist(), j.tolist(), distances[i, j].tolist()))
    # candidates in float32 on centred rows (distances do not move, norms shrink). One product gives
    # |a|^2 - 2 a.b - bound(b) for all pairs: rows [b, 1, -bound(b)] times columns [-2a, |a|^2, 1]
    center = a.mean(0) if len(a) else np.zeros(a.shape[1])
    a_c, b_c = a - center, b - center
    norms_a, norms_b = np.einsum("ij,ij->i", a_c, a_c), np.einsum("ij,ij->i", b_c, b_c)
    # float32 rounding of the inputs and of the (d + 2)-term dot products moves each product by at most
    # ~(2d + 12) u (|a|^2 + |b|^2 + |bound|), u the unit roundoff; the margin is _ROUNDING_MARGIN times that
    unit = float(np.finfo(np.float32).eps) / 2
    margin = _ROUNDING_MARGIN * (2 * a.shape[1] + 12) * unit * (
        norms_a.max(initial=0.0) + 2 * norms_b + 2 * radius * radius)
    # |a - b|^2 <= r^2  <=>  |a|^2 - 2 a.b <= r^2 - |b|^2 (+ margin)  =: bound(b)
    bound = radius * radius - norms_b + margin
    columns_a = np.hstack([-2 * a_c, norms_a[:, None], np.ones((len(a), 1))]).astype(np.float32)
    rows_b = np.hstack([b_c, np.ones((len(b), 1)), -bound[:, None]]).astype(np.float32)
    pairs: list[tuple[int, int, float]] = []
    step = max(1, _CHUNK_DISTANCES // max(len(a), 1))
    for start in range(0, len(b), step):
        stop = min(start + step, len(b))
        columns = stop if lower else len(a)             # lower: only rows of a before this chunk's end
        excess = rows_b[start:stop] @ columns_a[:columns].T
        j, i = np.divmod(np.flatnonzero(excess <= 0), columns)
        j += start
        if lower:
            i, j = i[i < j], j[i < j]
        difference = a[i] - b[j]                         # the exact recheck decides
        distances = np.sqrt(np.einsum("ij,ij->i", difference, difference))
        keep = distances <= radius
        pairs += zip(i[keep].tolist(), j[keep].tolist(), distances[keep].tolist())
    return pairs


def find_duplicates(x: Any, threshold: float = 0.0) -> pd.DataFrame:
    """Pairs of samples of ``x`` that are identical (``threshold=0``) or within ``threshold`` of each other.

    Args:
        x: samples ``(N, ...)``, NumPy or torch; flattened to ``(N, d)``.
        threshold: Euclidean distance ``>= 0`` in the units of ``x``; 0 finds exact duplicates only
            (compared byte for byte, so ``-0.0`` and ``0.0`` count as different).

    Returns:
        A DataFrame with one row per pair, columns ``i < j`` and ``distance``, sorted by ``i, j``.
    """
    x = _as_matrix("x", x)
    threshold = _check_threshold(threshold)
    if threshold == 0:
        pairs = _exact_pairs(x, None)
    else:
        pairs = _radius_pairs(x, x, threshold, lower=True)
    frame = pd.DataFrame(pairs, columns=list(_PAIR_COLUMNS))
    return frame.sort_values(["i", "j"], ignore_index=True).astype({"i": int, "j": int})


def find_leakage(x_train: Any, x_test: Any, threshold: float = 0.0) -> pd.DataFrame:
    """Test samples that also appear in the training samples, exactly or within ``threshold``.

    Args:
        x_train, x_test: samples ``(N, ...)`` and ``(M, ...)`` with the same number of features.
        threshold: Euclidean distance ``>= 0``; 0 finds exact copies only.

    Returns:
        A DataFrame with one row per (train, test) pair: ``train_index``, ``test_index``, ``distance``.
    """
    a, b = _as_matrix("x_train", x_train), _as_matrix("x_test", x_test)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x_train and x_test must have the same number of features, got {a.shape[1]} and {b.shape[1]}")
    threshold = _check_threshold(threshold)
    pairs = _exact_pairs(a, b) if threshold == 0 else _radius_pairs(a, b, threshold)
    frame = pd.DataFrame(pairs, columns=list(_LEAK_COLUMNS))
    return frame.sort_values(["test_index", "train_index"], ignore_index=True).astype(
        {"train_index": int, "test_index": int})


def split_leakage(datamodule: Any, threshold: float = 0.0) -> pd.DataFrame:
    """Leakage between the splits of an :class:`~toolkit.data.ArrayDataModule`, on its raw arrays.

    Compares train with val and test, and val with test. Indices are positions in
    ``datamodule.load_arrays()``, so a row names the very samples to remove.

    Returns:
        A DataFrame with columns ``pair`` (e.g. "train-test"), ``index_a``, ``index_b``, ``distance``.
    """
    if not hasattr(datamodule, "load_arrays") or not hasattr(datamodule, "split_indices"):
        raise TypeError(f"datamodule must be an ArrayDataModule (load_arrays, split_indices), "
                        f"got {type(datamodule).__name__}")
    x, _ = datamodule.load_arrays()
    splits = datamodule.split_indices
    frames = []
    for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
        a, b = splits[first], splits[second]
        if len(a) == 0 or len(b) == 0:
            continue
        leaks = find_leakage(x[a], x[b], threshold)
        frames.append(pd.DataFrame({"pair": f"{first}-{second}", "index_a": a[leaks["train_index"].to_numpy()],
                                    "index_b": b[leaks["test_index"].to_numpy()], "distance": leaks["distance"]}))
    columns = ["pair", "index_a", "index_b", "distance"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
