"""Label noise at a known rate: symmetric (to a uniformly random other class) or pair flips (c -> c+1).

Memorizing noisy labels is where regularization earns its keep: networks fit random labels
(Zhang et al., 2017, "Understanding deep learning requires rethinking generalization",
arXiv:1611.03530), learning clean patterns first and noise later (Arpit et al., 2017, "A Closer Look
at Memorization in Deep Networks", arXiv:1706.05394). The two kinds follow Han et al., 2018,
"Co-teaching" (arXiv:1804.06872): *symmetric* noise sends a flipped label to one of the other
``K - 1`` classes uniformly (never back to its own class, so exactly the chosen samples are wrong),
*pairs* noise sends class ``c`` to ``(c + 1) mod K``.

Example:
    >>> noisy, flipped = flip_labels(np.arange(10) % 5, rate=0.2, num_classes=5, kind="pairs", seed=0)
    >>> int(flipped.sum()), bool(((noisy - np.arange(10) % 5) % 5)[flipped].tolist() == [1, 1])
    (2, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from toolkit._validate import label_array

__all__ = ["LABEL_NOISE_KINDS", "flip_labels"]

LABEL_NOISE_KINDS = ("symmetric", "pairs")


def check_label_noise(rate: Any, kind: Any, *, allow_one: bool = False) -> None:
    """Raise ``ValueError`` unless ``rate`` is a share in ``[0, 1)`` (or ``[0, 1]``) and ``kind`` is known."""
    high_ok = (lambda r: r <= 1) if allow_one else (lambda r: r < 1)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0 <= rate and high_ok(rate)):
        raise ValueError(f"label_noise must be a share in [0, {'1]' if allow_one else '1)'}, got {rate!r}")
    if kind not in LABEL_NOISE_KINDS:
        raise ValueError(f"label_noise_kind must be one of {LABEL_NOISE_KINDS}, got {kind!r}")


def flip_labels(labels: Any, rate: float, num_classes: int, kind: str = "symmetric",
                seed: int | Sequence[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``round(rate * N)`` labels, chosen uniformly without replacement.

    Args:
        labels: ``(N,)`` integer class labels in ``0..num_classes-1`` (array or tensor).
        rate: share of labels to flip, in ``[0, 1]``.
        num_classes: number of classes ``K``, ``>= 2``.
        kind: "symmetric" (each flipped label becomes a uniformly chosen *other* class) or
            "pairs" (class ``c`` becomes ``(c + 1) mod K``).
        seed: seeds which labels flip and, for symmetric noise, to what (an int or a sequence of
            ints, as ``numpy.random.default_rng`` takes).

    Returns:
        ``(noisy_labels, flipped)``: the new labels (a copy) and a boolean mask of the flipped samples;
        every flipped label differs from its clean one.
    """
    labels = label_array("labels", labels)
    check_label_noise(rate, kind, allow_one=True)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2 \
            or (len(labels) and (labels.min() < 0 or labels.max() >= num_classes)):
        raise ValueError(f"num_classes must be an integer >= 2 above every label (labels in 0..K-1), "
                         f"got {num_classes!r}")
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[rng.choice(len(labels), size=round(rate * len(labels)), replace=False)] = True
    noisy = labels.copy()
    if kind == "pairs":
        offsets = np.ones(int(flipped.sum()), dtype=labels.dtype)
    else:  # an offset in 1..K-1 always lands on another class, each equally likely
        offsets = rng.integers(1, num_classes, size=int(flipped.sum()))
    noisy[flipped] = (labels[flipped] + offsets) % num_classes
    return noisy, flipped
