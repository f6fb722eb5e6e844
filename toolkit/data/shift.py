"""Corruptions at severities 1-5 that turn a clean test set into a shifted one ("Digits-C").

After Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations" (arXiv:1903.12261): the same test images under gaussian noise, blur, rotation,
translation and contrast loss, each at five increasing severities. Every function maps images in
``[0, 1]`` of shape ``(N, C, H, W)`` to images in ``[0, 1]`` and is seeded, so a shifted test set
is the same on every machine.

Example:
    >>> x = torch.rand(4, 1, 8, 8)
    >>> corrupt(x, "rotation", severity=3, seed=0).shape
    torch.Size([4, 1, 8, 8])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt"]

SEVERITIES = (1, 2, 3, 4, 5)
# Parameters per severity, for images whose digit spans the frame (as in sklearn's digits). Chosen
# so that severity 1 costs a 16x16 CNN baseline (notebook 00) at most a few points of accuracy and
# severity 5 leaves it far below its clean accuracy; models differ in which corruptions hurt them.
_NOISE_STD = (0.04, 0.08, 0.12, 0.2, 0.3)              # additive gaussian, in intensity units
_BLUR_SIGMA_PX8 = (0.3, 0.4, 0.5, 0.7, 1.0)            # gaussian sigma, in pixels of an 8x8 image
_ROTATION_DEG = (8.0, 15.0, 25.0, 35.0, 50.0)          # random sign per image
_TRANSLATION_FRAC = (0.03, 0.06, 0.1, 0.15, 0.22)      # shift as a fraction of the side, random direction
_CONTRAST_FACTOR = (0.9, 0.8, 0.65, 0.5, 0.35)         # scales deviations from each image's mean


def _gaussian_noise(x: Tensor, level: int, g: torch.Generator) -> Tensor:
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype) * _NOISE_STD[level]
    return x + noise.to(x.device)


def _gaussian_blur(x: Tensor, level: int, g: torch.Generator) -> Tensor:
    sigma = _BLUR_SIGMA_PX8[level] * x.shape[-1] / 8
    radius = max(1, math.ceil(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel_1d = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    channels = x.shape[1]
    kx = kernel_1d.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    ky = kernel_1d.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    # zero padding: the digits' background is 0, so the frame does not leak in
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0)), kx, groups=channels)
    return F.conv2d(F.pad(x, (0, 0, radius, radius)), ky, groups=channels)


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotation(x: Tensor, level: int, g: torch.Generator) -> Tensor:
    sign = torch.randint(0, 2, (len(x),), generator=g) * 2 - 1
    angle = torch.deg2rad(sign * _ROTATION_DEG[level])
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _affine(x, theta)


def _translation(x: Tensor, level: int, g: torch.Generator) -> Tensor:
    direction = torch.rand(len(x), generator=g) * 2 * math.pi
    # affine_grid coordinates span [-1, 1], i.e. two image sides per unit of 2
    shift = 2 * _TRANSLATION_FRAC[level]
    tx, ty = shift * torch.cos(direction), shift * torch.sin(direction)
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    theta = torch.stack([torch.stack([one, zero, tx], 1), torch.stack([zero, one, ty], 1)], 1)
    return _affine(x, theta)


def _contrast(x: Tensor, level: int, g: torch.Generator) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _CONTRAST_FACTOR[level] + mean


CORRUPTIONS = {
    "gaussian_noise": _gaussian_noise,
    "gaussian_blur": _gaussian_blur,
    "rotation": _rotation,
    "translation": _translation,
    "contrast": _contrast,
}


def corrupt(images: Tensor, corruption: str, severity: int, seed: int = 0) -> Tensor:
    """Apply one corruption at one severity to a batch of images in ``[0, 1]``.

    Args:
        images: float tensor ``(N, C, H, W)`` with values in ``[0, 1]``.
        corruption: one of ``CORRUPTIONS`` (gaussian_noise, gaussian_blur, rotation, translation, contrast).
        severity: integer 1 (mild) to 5 (severe).
        seed: seeds the random parts (noise, rotation sign, translation direction).

    Returns:
        The corrupted images, clipped to ``[0, 1]``, same shape and dtype.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {sorted(CORRUPTIONS)}, got {corruption!r}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer in {SEVERITIES}, got {severity!r}")
    if not isinstance(images, Tensor) or not images.is_floating_point():
        raise TypeError(f"images must be a floating-point torch.Tensor, got {type(images).__name__}"
                        + (f" of dtype {images.dtype}" if isinstance(images, Tensor) else ""))
    if images.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got shape {tuple(images.shape)}")
    if images.numel() and not bool(torch.isfinite(images).all()):
        raise ValueError("images contains NaN or infinite values")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1] (corrupt before normalizing), got range "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}]")
    generator = torch.Generator().manual_seed(seed)
    out = CORRUPTIONS[corruption](images, severity - 1, generator)
    return out.clamp_(0.0, 1.0)
