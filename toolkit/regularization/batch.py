"""Batch-level regularizers that mix or mask whole inputs: mixup, CutMix and Cutout.

``mixup`` and ``cutmix`` return the mixed inputs, both label vectors and the mixing weight ``lam``; the
loss is ``lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b)``, which is what
:class:`~toolkit.regularization.RegularizedClassifierModule` computes. Randomness comes from torch's
global generator, so a seeded run repeats.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from toolkit.regularization._checks import (check_finite_number, check_positive_int, check_positive_number,
                                            check_rank)

__all__ = ["cutmix", "cutout", "mixup"]


def _check_pair(x: Tensor, y: Tensor) -> None:
    if not isinstance(y, Tensor) or y.dim() < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be a tensor of {x.shape[0]} targets (labels (N,), or (N, ...) such as "
                         f"regression targets (N, 1)), got {getattr(y, 'shape', y)!r}")


def _beta(alpha: float) -> float:
    return torch.distributions.Beta(alpha, alpha).sample().item()


def mixup(x: Tensor, y: Tensor, alpha: float = 0.2) -> tuple[Tensor, Tensor, Tensor, float]:
    """Convex combinations of random pairs of samples, ``lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)``.

    Zhang, Cisse, Dauphin & Lopez-Paz, 2018. *mixup: Beyond Empirical Risk Minimization*, arXiv:1710.09412.

    Returns:
        ``(mixed_x, y, y[perm], lam)``.
    """
    check_rank("x", x, (2, 3, 4, 5), "a batch (N, ...)")
    _check_pair(x, y)
    check_positive_number("alpha", alpha)
    lam = _beta(alpha)
    perm = torch.randperm(x.shape[0], device=x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam


def _box(height: int, width: int, area_share: float, device: torch.device) -> tuple[int, int, int, int]:
    """A box covering about ``area_share`` of the image, centred uniformly at random and clipped."""
    cut_h, cut_w = int(height * math.sqrt(area_share)), int(width * math.sqrt(area_share))
    cy, cx = (int(v) for v in (torch.randint(height, (1,)), torch.randint(width, (1,))))
    return (max(cy - cut_h // 2, 0), min(cy + cut_h - cut_h // 2, height),
            max(cx - cut_w // 2, 0), min(cx + cut_w - cut_w // 2, width))


def cutmix(x: Tensor, y: Tensor, alpha: float = 1.0) -> tuple[Tensor, Tensor, Tensor, float]:
    """Paste a random box of a random partner image into each image; labels weighted by area.

    Yun, Han, Oh, Chun, Choe & Yoo, 2019. *CutMix: Regularization Strategy to Train Strong Classifiers
    with Localizable Features*, arXiv:1905.04899. The box covers ``1 - lam`` of the image with
    ``lam ~ Beta(alpha, alpha)``; after clipping at the border ``lam`` is recomputed from the true area.

    Returns:
        ``(mixed_x, y, y[perm], lam)``.
    """
    check_rank("x", x, (4,), "a batch of images (N, C, H, W)")
    _check_pair(x, y)
    check_positive_number("alpha", alpha)
    height, width = x.shape[-2:]
    lam = _beta(alpha)
    perm = torch.randperm(x.shape[0], device=x.device)
    top, bottom, left, right = _box(height, width, 1 - lam, x.device)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, y, y[perm], lam


def cutout(x: Tensor, size: int = 4, value: float = 0.0) -> Tensor:
    """Set one ``size x size`` square per image to ``value`` (0 is the mean pixel of normalized inputs).

    DeVries & Taylor, 2017. *Improved Regularization of Convolutional Neural Networks with Cutout*,
    arXiv:1708.04552. As in the paper the square's centre is uniform over the image, so the square
    may be partly outside it.
    """
    check_rank("x", x, (4,), "a batch of images (N, C, H, W)")
    check_positive_int("size", size)
    check_finite_number("value", value)
    n, _, height, width = x.shape
    top = torch.randint(height, (n, 1, 1), device=x.device) - size // 2
    left = torch.randint(width, (n, 1, 1), device=x.device) - size // 2
    rows = torch.arange(height, device=x.device).view(1, -1, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, -1)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return x.masked_fill(inside.unsqueeze(1), value)
