"""Data augmentation for 1-D signals: a random integer translation with the edges repeated, plus Gaussian noise.

The augmentation practitioners reach for first on a signal such as MNIST-1D (Greydanus, 2020, "Scaling
down Deep Learning", arXiv:2011.14439, whose generator itself shifts and noises its templates). The
functional form :func:`random_shift_1d` augments one batch; :class:`RandomShift1d` is the callable
``augment(x, strength, generator)`` of :func:`~toolkit.training.train_members`, and its
:meth:`RandomShift1d.batched` augments the batches of many members in one pass.

The batched path follows the split that batched augmentation libraries use (kornia's
``generate_parameters`` / ``apply_transform``): the random parameters (a shift per sample and the
noise) are drawn first, member by member from each member's own ``torch.Generator``, so a member's
numbers do not depend on which other members train beside it; then one gather and one add apply them
to every member's batch at once. It gives exactly the tensors that calling the augmentation member by
member gives with the same generators (``tests/test_regularization_augment.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from toolkit.regularization._checks import check_nonnegative_number

__all__ = ["RandomShift1d", "random_shift_1d"]


def _check_signal(name: str, x: object, min_dims: int) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dims or not x.is_floating_point() or x.shape[-1] < 1:
        raise ValueError(f"{name} must be a floating-point tensor of at least {min_dims} dimensions with the "
                         f"signal along the last one, got {x.dtype} of shape {tuple(x.shape)}")


def _check_generator(name: str, generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")


def _draw(x: Tensor, max_shift: int, noise_sd: float, generator: torch.Generator | None,
          shifts: Tensor | None = None, noise: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """One batch's parameters, in this order: a shift per sample, uniform over the integers in
    ``[-max_shift, max_shift]`` (``torch.randint``), then the noise (``torch.randn`` of ``x``'s shape and
    dtype, only when ``noise_sd > 0``); written into ``shifts`` and ``noise`` when given (rows of the
    batched path's tensors: the same numbers, no copy)."""
    shifts = torch.randint(-max_shift, max_shift + 1, (x.shape[0],), generator=generator, device=x.device,
                           **({} if shifts is None else {"out": shifts}))
    if noise_sd <= 0:
        return shifts, None
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device,
                        **({} if noise is None else {"out": noise}))
    return shifts, noise


def _apply(x: Tensor, shifts: Tensor, noise: Tensor | None, noise_sd: Tensor | float) -> Tensor:
    """``out[..., b, ..., t] = x[..., b, ..., clamp(t - shift_b, 0, L - 1)] + noise_sd * noise``; ``shifts``
    has the shape of ``x``'s leading (batch) dimensions, ``noise_sd`` broadcasts against ``x``."""
    length = x.shape[-1]
    lead = shifts.dim()
    index = (torch.arange(length, device=x.device) - shifts.unsqueeze(-1)).clamp_(0, length - 1)
    index = index.view(*shifts.shape, *([1] * (x.dim() - lead - 1)), length).expand(x.shape)
    moved = x.gather(-1, index)
    if noise is None:
        return moved
    return moved + noise * noise_sd  # two roundings (no fused multiply-add): the same in every path


def random_shift_1d(x: Tensor, max_shift: int, noise_sd: float = 0.0,
                    generator: torch.Generator | None = None) -> Tensor:
    """Translate each signal of a batch by its own random integer shift, edges repeated, and add Gaussian noise.

    Sample ``b`` is moved by ``s_b`` positions, uniform over the integers in ``[-max_shift, max_shift]``,
    the samples moved past an edge replaced by the edge value (``scipy.ndimage.shift(..., order=0,
    mode="nearest")``), then ``noise_sd * N(0, 1)`` is added to every value:
    ``out[b, ..., t] = x[b, ..., clamp(t - s_b, 0, L - 1)] + noise_sd * eps``. The shifts are drawn
    first (``torch.randint``), then the noise (``torch.randn``, skipped when ``noise_sd`` is 0), both
    from ``generator`` (torch's global generator when None), so a seeded generator repeats.

    Args:
        x: a batch ``(B, L)`` or ``(B, C, L)`` (any dimensions between), floating point, the signal along
            the last dimension.
        max_shift: the largest shift in samples, an integer ``>= 0`` (0: noise only).
        noise_sd: the standard deviation of the added noise, ``>= 0`` and finite.
        generator: a ``torch.Generator`` on ``x``'s device, or None.

    Example:
        >>> x = torch.arange(6.0).expand(3, 6)  # three copies of the ramp 0, 1, ..., 5
        >>> random_shift_1d(x, max_shift=2, generator=torch.Generator().manual_seed(0))
        tensor([[0., 0., 0., 1., 2., 3.],
                [0., 0., 0., 1., 2., 3.],
                [0., 0., 1., 2., 3., 4.]])
    """
    _check_signal("x", x, 2)
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be an integer >= 0 (samples), got {max_shift!r}")
    check_nonnegative_number("noise_sd", noise_sd)
    _check_generator("generator", generator)
    shifts, noise = _draw(x, max_shift, noise_sd, generator)
    return _apply(x, shifts, noise, noise_sd)


class RandomShift1d:
    """:func:`random_shift_1d` as ``train_members``' ``augment``: strength ``s`` shifts by up to ``floor(s)``
    samples and adds noise of standard deviation ``noise_per_shift * s``.

    ``augment(x, strength, generator)`` augments one member's batch ``(B, ..., L)``;
    ``augment.batched(x, strengths, generators)`` augments the batches ``(M, B, ..., L)`` of M members,
    member ``i`` with ``strengths[i]`` and ``generators[i]``: each member's parameters are drawn from its
    own generator (in member order), then applied to all members in one gather, which gives exactly
    the tensors of M separate calls. :func:`~toolkit.training.train_members` uses ``batched`` when the
    augmentation has one.

    Args:
        noise_per_shift: the noise's standard deviation per unit of strength, ``>= 0`` and finite (0: shifts
            only).

    Example:
        >>> augment = RandomShift1d(noise_per_shift=0.02)
        >>> x = torch.randn(3, 32, 40)  # three members' batches of 32 signals
        >>> out = augment.batched(x, [2.0, 4.0, 8.0], [torch.Generator().manual_seed(s) for s in range(3)])
        >>> alone = augment(x[2], 8.0, torch.Generator().manual_seed(2))
        >>> bool(torch.equal(out[2], alone))
        True
    """

    def __init__(self, noise_per_shift: float = 0.0) -> None:
        check_nonnegative_number("noise_per_shift", noise_per_shift)
        self.noise_per_shift = float(noise_per_shift)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(noise_per_shift={self.noise_per_shift:g})"

    @staticmethod
    def _check_strength(name: str, strength: object) -> float:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0 (the largest shift in samples), got {strength!r}")
        return float(strength)

    def __call__(self, x: Tensor, strength: float, generator: torch.Generator | None = None) -> Tensor:
        """One batch ``(B, ..., L)`` augmented at ``strength`` with draws from ``generator``."""
        strength = self._check_strength("strength", strength)
        return random_shift_1d(x, math.floor(strength), self.noise_per_shift * strength, generator)

    def batched(self, x: Tensor, strengths: Sequence[float], generators: Sequence[torch.Generator]) -> Tensor:
        """The batches ``x`` ``(M, B, ..., L)`` of M members, member ``i`` augmented at ``strengths[i]`` with
        draws from ``generators[i]``: the same tensors as ``stack([self(x[i], strengths[i], generators[i])])``."""
        _check_signal("x", x, 3)
        if isinstance(strengths, (str, bytes)) or not isinstance(strengths, Sequence) or len(strengths) != len(x):
            raise ValueError(f"strengths must be a sequence of {len(x)} numbers (one per member, x.shape[0]), "
                             f"got {strengths!r}")
        if isinstance(generators, (str, bytes)) or not isinstance(generators, Sequence) or len(generators) != len(x):
            raise ValueError(f"generators must be a sequence of {len(x)} torch.Generator (one per member), "
                             f"got {type(generators).__name__} of length {len(generators) if hasattr(generators, '__len__') else '?'}")
        values = [self._check_strength(f"strengths[{i}]", s) for i, s in enumerate(strengths)]
        for i, generator in enumerate(generators):
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"generators[{i}] must be a torch.Generator, got {type(generator).__name__}")
        noisy = self.noise_per_shift > 0 and any(values)
        shifts = torch.empty(x.shape[:2], dtype=torch.long, device=x.device)
        noise = torch.zeros_like(x) if noisy else None  # rows of members without noise stay 0
        for i, (strength, generator) in enumerate(zip(values, generators)):  # each member from its own stream
            _draw(x[i], math.floor(strength), self.noise_per_shift * strength, generator, shifts[i],
                  noise[i] if noisy else None)
        if not noisy:
            return _apply(x, shifts, None, 0.0)
        sd = torch.tensor([self.noise_per_shift * s for s in values], dtype=x.dtype, device=x.device)
        return _apply(x, shifts, noise, sd.view(-1, *([1] * (x.dim() - 1))))
