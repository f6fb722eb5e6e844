"""Structured and multiplicative-noise dropout: ``DropPath``, ``DropBlock2d``, ``GaussianDropout``.

Each comes as a function (``drop_path(x, drop_prob, training)``) and as a module wrapping it. All are
the identity in eval mode and preserve the expected activation in training mode.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor, nn

from toolkit.regularization._checks import check_positive_int, check_prob, check_rank, check_tensor

__all__ = ["DropBlock2d", "DropPath", "GaussianDropout", "drop_block_2d", "drop_block_seed_rate", "drop_path",
           "drop_path_rates", "gaussian_dropout"]

_BISECTION_STEPS = 60


def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = True) -> Tensor:
    """Zero whole samples with probability ``drop_prob`` and scale the survivors by ``1 / (1 - drop_prob)``.

    Applied to the residual branch of a block, ``x + drop_path(f(x))`` skips the block for a random
    subset of the batch (stochastic depth; Huang et al., 2016, arXiv:1603.09382).
    """
    check_prob("drop_prob", drop_prob)
    check_tensor("x", x)
    if not training or drop_prob == 0.0:
        return x
    keep = 1.0 - drop_prob
    # an out-of-place draw (not ``bernoulli_``): under ``torch.func.vmap(..., randomness="different")``, as
    # ``train_members`` runs its members, each member then gets its own mask
    mask = (torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) < keep).to(x.dtype)
    return x * mask.div_(keep)


def drop_path_rates(num_blocks: int, drop_path_rate: float) -> list[float]:
    """The linear decay rule of Huang et al. (2016): block ``l`` of ``L`` drops with ``l / L * drop_path_rate``.

    The first block is almost never dropped, the last one with ``drop_path_rate``.

    Example:
        >>> [round(rate, 3) for rate in drop_path_rates(4, 0.2)]
        [0.05, 0.1, 0.15, 0.2]
    """
    check_positive_int("num_blocks", num_blocks)
    check_prob("drop_path_rate", drop_path_rate)
    return [drop_path_rate * (block + 1) / num_blocks for block in range(num_blocks)]


class DropPath(nn.Module):
    """Stochastic depth per sample: the module form of :func:`drop_path`.

    Huang, Sun, Liu, Sedra & Weinberger, 2016. *Deep Networks with Stochastic Depth*, arXiv:1603.09382.

    Args:
        drop_prob: probability of dropping a sample's branch, in ``[0, 1)``.

    Example:
        >>> layer = DropPath(0.5).eval()
        >>> x = torch.randn(4, 3)
        >>> torch.equal(layer(x), x)
        True
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        check_prob("drop_prob", drop_prob)
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def _seeds_covering(size: int, block_size: int) -> list[int]:
    """For each position along one axis, how many valid block origins cover it."""
    last = size - block_size
    return [min(i, last) - max(0, i - block_size + 1) + 1 for i in range(size)]


@lru_cache(maxsize=256)
def drop_block_seed_rate(drop_prob: float, block_size: int, height: int, width: int) -> float:
    """The Bernoulli rate of block origins that drops a ``drop_prob`` share of a ``height x width`` map.

    Ghiasi et al. approximate it by ``drop_prob / block_size**2 * (H * W) / ((H - b + 1) * (W - b + 1))``,
    which ignores overlapping blocks and undershoots at high rates. Here the expected dropped share
    ``mean(1 - (1 - rate) ** n(i, j))``, with ``n(i, j)`` the number of origins whose block covers
    pixel ``(i, j)``, is solved for ``rate`` by bisection, so the target is met exactly in expectation.
    """
    check_prob("drop_prob", drop_prob)
    if drop_prob <= 0.0:
        return 0.0
    rows, cols = _seeds_covering(height, block_size), _seeds_covering(width, block_size)
    counts = [r * c for r in rows for c in cols]

    def dropped(rate: float) -> float:
        log_keep = math.log1p(-rate) if rate < 1 else -math.inf
        return sum(1.0 - math.exp(n * log_keep) for n in counts) / len(counts)

    low, high = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if dropped(mid) < drop_prob else (low, mid)
    return (low + high) / 2


def drop_block_2d(x: Tensor, drop_prob: float = 0.1, block_size: int = 3, training: bool = True) -> Tensor:
    """Zero square ``block_size x block_size`` regions of each feature map so that ``drop_prob`` of the
    activations are dropped in expectation; rescale the rest by ``numel / kept`` (as in the paper).

    Blocks lie entirely inside the map; each sample and channel gets its own blocks.
    See :class:`DropBlock2d`.
    """
    check_prob("drop_prob", drop_prob)
    check_positive_int("block_size", block_size)
    check_rank("x", x, (4,), "a batch of feature maps (N, C, H, W)")
    height, width = x.shape[-2:]
    if block_size > min(height, width):
        raise ValueError(f"block_size={block_size} is larger than the feature map ({height}x{width}); "
                         f"use a block_size <= {min(height, width)}")
    if not training or drop_prob == 0.0:
        return x
    rate = drop_block_seed_rate(float(drop_prob), block_size, height, width)
    batch, channels = x.shape[:2]
    origins_h, origins_w = height - block_size + 1, width - block_size + 1
    # out of place, so that each member of a ``vmap(..., randomness="different")`` draws its own blocks
    seeds = (torch.rand(batch, channels, origins_h, origins_w, device=x.device) < rate).to(x.dtype)
    # a seed at (a, b) covers [a, a + b_s) x [b, b + b_s). Grow the blocks separably with shifted in-place
    # adds (count the seeds covering each pixel, first along the width, then along the height): the same
    # set as a stride-1 max-pool over the padded seeds, at a fraction of its cost
    rows = seeds.new_zeros(batch, channels, origins_h, width)
    for shift in range(block_size):
        rows[..., shift:shift + origins_w].add_(seeds)
    covered = rows.new_zeros(batch, channels, height, width)
    for shift in range(block_size):
        covered[..., shift:shift + origins_h, :].add_(rows)
    keep = (covered == 0).to(x.dtype)  # 1.0 where no block covers the pixel (out of place: vmap batches it)
    kept = keep.sum(dtype=torch.promote_types(x.dtype, torch.float32)).clamp_min(1.0)
    return x * keep.mul_(keep.numel() / kept)


class DropBlock2d(nn.Module):
    """DropBlock: dropout of contiguous square regions of convolutional feature maps.

    Ghiasi, Lin & Le, 2018. *DropBlock: A regularization method for convolutional networks*,
    arXiv:1810.12890. The paper ramps ``drop_prob`` linearly from 0 over training; use
    :class:`~toolkit.regularization.DropBlockSchedule` for that.

    Args:
        drop_prob: share of activations dropped, in ``[0, 1)``.
        block_size: side of the square blocks in pixels, ``>= 1`` and at most the feature map's side
            (``block_size=1`` is ordinary dropout with the paper's rescaling).

    Example:
        >>> layer = DropBlock2d(drop_prob=0.2, block_size=3)
        >>> layer(torch.randn(2, 4, 8, 8)).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(self, drop_prob: float = 0.1, block_size: int = 3) -> None:
        super().__init__()
        check_prob("drop_prob", drop_prob)
        check_positive_int("block_size", block_size)
        self.drop_prob = float(drop_prob)
        self.block_size = block_size

    def forward(self, x: Tensor) -> Tensor:
        return drop_block_2d(x, self.drop_prob, self.block_size, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}, block_size={self.block_size}"


def gaussian_dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Multiply every activation by independent noise ``N(1, p / (1 - p))``: the Gaussian counterpart of
    dropout with the same mean and variance of the multiplier. See :class:`GaussianDropout`."""
    check_prob("p", p)
    check_tensor("x", x)
    if not training or p == 0.0:
        return x
    noise = torch.randn_like(x).mul_(math.sqrt(p / (1.0 - p))).add_(1.0)
    return x * noise


class GaussianDropout(nn.Module):
    """Gaussian (multiplicative) dropout.

    Srivastava, Hinton, Krizhevsky, Sutskever & Salakhutdinov, 2014. *Dropout: A Simple Way to Prevent
    Neural Networks from Overfitting*, JMLR 15 (section 10). The multiplier ``N(1, p / (1 - p))`` has the
    mean and variance of Bernoulli dropout's ``Bernoulli(1 - p) / (1 - p)``.

    Args:
        p: the equivalent drop probability, in ``[0, 1)``.

    Example:
        >>> GaussianDropout(0.3)
        GaussianDropout(p=0.300)
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        check_prob("p", p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return gaussian_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"
