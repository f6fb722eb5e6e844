"""Evasion attacks at test time: FGSM and PGD (L-infinity and L2), and robust accuracy.

Goodfellow, Shlens & Szegedy, 2015, "Explaining and Harnessing Adversarial Examples", arXiv:1412.6572
(FGSM); Madry et al., 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
arXiv:1706.06083 (PGD with random start).

Budgets are in *pixel units*: ``epsilon = 8/255`` means eight grey levels whatever normalization the
model expects. ``input_range=(low, high)`` gives the model-input values of a black (0) and a white (1)
pixel (``DigitsDataModule.input_range``); the attack works on pixels ``(x - low) / (high - low)``,
keeps them in ``[0, 1]`` and maps them back before calling the model. ``input_range=None`` means the
inputs are unbounded and epsilon is in input units.

During an attack the model is in eval mode (batch-norm statistics and dropout frozen); its mode is
restored afterwards. Gradients are taken with ``torch.autograd.grad`` with respect to the
perturbation only, so the parameters' ``.grad`` are never touched.

Example:
    >>> model = torch.nn.Linear(4, 3)
    >>> x, y = torch.rand(8, 4), torch.randint(0, 3, (8,))
    >>> x_adv = pgd(model, x, y, epsilon=0.1, steps=5, seed=0)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit._structure import batch_to_inputs as default_batch_to_inputs
from toolkit._structure import batch_to_targets as default_batch_to_targets
from toolkit._structure import check_hook, output_logits

__all__ = ["NORMS", "fgsm", "pgd", "robust_accuracy"]

NORMS = ("linf", "l2")
RANGE_ATOL = 1e-4      # inputs may exceed input_range by this much (float error of normalization)
L2_MIN_NORM = 1e-12    # guards the division when normalizing an L2 gradient or perturbation
PGD_STEP_FACTOR = 2.5  # Madry et al.: step size 2.5 * epsilon / steps by default


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode inside the block, then restore each one's own flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_number(name: str, value: Any, low: float = 0.0, strict: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    if bad or (value <= low if strict else value < low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")


def _check_attack_args(model: Any, inputs: Any, targets: Any, epsilon: Any, norm: str, steps: Any,
                       step_size: Any, input_range: Any, loss_fn: Any = None, logits_fn: Any = None) -> None:
    check_hook("loss_fn", loss_fn)
    check_hook("logits_fn", logits_fn)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating-point tensor, got {type(inputs).__name__}")
    if isinstance(targets, Tensor) and targets.shape[:1] != inputs.shape[:1]:
        raise ValueError(f"targets must have {len(inputs)} rows like inputs, got shape {tuple(targets.shape)}")
    if not isinstance(targets, Tensor) or (
            loss_fn is None and (targets.is_floating_point() or targets.dtype == torch.bool or targets.ndim != 1)):
        raise TypeError(f"targets must be an integer tensor of shape ({len(inputs)},) (or any tensor of {len(inputs)} "
                        "rows with your own loss_fn, e.g. float regression targets and mse_loss), got "
                        f"{getattr(targets, 'dtype', type(targets).__name__)} {tuple(getattr(targets, 'shape', ()))}")
    if loss_fn is None and targets.numel() and int(targets.min()) < 0:
        raise ValueError(f"targets must be class indices >= 0, got minimum {int(targets.min())}")
    if inputs.numel() and not bool(torch.isfinite(inputs).all()):
        raise ValueError("inputs contains NaN or infinite values")
    _check_number("epsilon", epsilon)
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if step_size is not None:
        _check_number("step_size", step_size, strict=True)
    if input_range is not None:
        if (not isinstance(input_range, (tuple, list)) or len(input_range) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in input_range)
                or not input_range[0] < input_range[1]):
            raise ValueError(f"input_range must be a pair (low, high) with low < high, or None, got {input_range!r}")
        low, high = input_range
        tol = RANGE_ATOL * (high - low)
        if inputs.numel() and (inputs.min() < low - tol or inputs.max() > high + tol):
            raise ValueError(f"inputs must lie in input_range [{low:.4g}, {high:.4g}], got values in "
                             f"[{inputs.min().item():.4g}, {inputs.max().item():.4g}]; pass the range of the "
                             "model inputs (e.g. DigitsDataModule.input_range) or input_range=None")


def _per_sample_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(L2_MIN_NORM).view(-1, *([1] * (t.dim() - 1)))


def _project(delta: Tensor, epsilon: float, norm: str) -> Tensor:
    if norm == "linf":
        return delta.clamp(-epsilon, epsilon)
    scale = (epsilon / _per_sample_norm(delta)).clamp(max=1.0)
    return delta * scale


def _random_start(pixels: Tensor, epsilon: float, norm: str, generator: torch.Generator | None) -> Tensor:
    if norm == "linf":
        noise = torch.rand(pixels.shape, generator=generator, dtype=pixels.dtype)
        return ((2 * noise - 1) * epsilon).to(pixels.device)
    # uniform in the L2 ball: gaussian direction, radius epsilon * U^(1/d)
    direction = torch.randn(pixels.shape, generator=generator, dtype=pixels.dtype)
    direction = direction / _per_sample_norm(direction)
    dim = pixels[0].numel()
    radius = torch.rand(len(pixels), generator=generator, dtype=pixels.dtype) ** (1.0 / dim) * epsilon
    return (direction * radius.view(-1, *([1] * (pixels.dim() - 1)))).to(pixels.device)


def _perturb(model: nn.Module, inputs: Tensor, targets: Tensor, epsilon: float, norm: str, steps: int,
             step_size: float, random_start: bool, targeted: bool, input_range: tuple[float, float] | None,
             seed: int | None, loss_fn: Callable[[Tensor, Tensor], Tensor] | None,
             logits_fn: Callable[[Any], Tensor] | None = None) -> Tensor:
    logits_fn = logits_fn or output_logits
    low, high = input_range if input_range is not None else (0.0, 1.0)
    scale = high - low
    pixels = ((inputs.detach() - low) / scale)
    class_targets = loss_fn is None  # the default loss takes class indices
    loss_fn = loss_fn or F.cross_entropy
    if epsilon == 0:
        return inputs.detach().clone()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    delta = _random_start(pixels, epsilon, norm, generator) if random_start else torch.zeros_like(pixels)
    if input_range is not None:
        delta = (pixels + delta).clamp(0, 1) - pixels
    sign = -1.0 if targeted else 1.0
    with _eval_mode(model), torch.enable_grad():
        for step in range(steps):
            delta.requires_grad_(True)
            logits = logits_fn(model(low + (pixels + delta) * scale))
            if step == 0 and class_targets and logits.dim() == 2 and targets.numel() \
                    and int(targets.max()) >= logits.shape[1]:
                raise ValueError(f"targets must be class indices below the model's {logits.shape[1]} outputs, "
                                 f"got maximum {int(targets.max())}")
            loss = loss_fn(logits, targets)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach()
            if norm == "linf":
                delta = delta + sign * step_size * grad.sign()
            else:
                delta = delta + sign * step_size * grad / _per_sample_norm(grad)
            delta = _project(delta, epsilon, norm)
            if input_range is not None:
                delta = (pixels + delta).clamp(0, 1) - pixels
    return (low + (pixels + delta.detach()) * scale).to(inputs.dtype)


def pgd(model: nn.Module, inputs: Tensor, targets: Tensor, epsilon: float, *, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, random_start: bool = True, targeted: bool = False,
        input_range: Sequence[float] | None = (0.0, 1.0), seed: int | None = 0,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        logits_fn: Callable[[Any], Tensor] | None = None) -> Tensor:
    """Projected gradient descent (Madry et al., 2018, arXiv:1706.06083): adversarial ``inputs``.

    Maximizes ``loss_fn(model(x'), targets)`` over ``x'`` within ``epsilon`` of ``inputs`` (minimizes
    it towards ``targets`` when ``targeted``) by ``steps`` signed (L-inf) or normalized (L2) gradient
    steps, each followed by projection onto the ball and onto the valid pixel range.

    Args:
        model: maps inputs to logits; put in eval mode during the attack, its mode restored after.
        inputs: ``(N, ...)`` model inputs inside ``input_range``.
        targets: ``(N,)`` true labels (untargeted) or the labels to reach (``targeted=True``).
        epsilon: radius of the ball in pixel units, ``>= 0`` (0 returns a copy of ``inputs``).
        norm: "linf" or "l2" (L2 over all of a sample's pixels).
        steps: gradient steps, ``>= 1``.
        step_size: per step, in pixel units; default ``2.5 * epsilon / steps``.
        random_start: start from a uniform point of the ball (Madry et al.) instead of ``inputs``.
        targeted: move towards ``targets`` instead of away from them.
        input_range: model-input values ``(low, high)`` of pixel 0 and 1, or None (unbounded).
        seed: seeds the random start (None: the global torch generator).
        loss_fn: ``loss_fn(logits, targets)``, default cross-entropy; with your own, ``targets`` may be
            any tensor with ``N`` rows (float regression targets with ``mse_loss``, for instance).
        logits_fn: ``model output -> logits``; default the tensor itself, ``output["logits"]``,
            ``output.logits`` or ``output[0]`` (Hugging Face style output objects work as they are).

    Returns:
        Adversarial inputs, same shape, dtype and normalization as ``inputs``, detached.
    """
    _check_attack_args(model, inputs, targets, epsilon, norm, steps, step_size, input_range, loss_fn, logits_fn)
    if step_size is None:
        step_size = PGD_STEP_FACTOR * epsilon / steps
    return _perturb(model, inputs, targets, float(epsilon), norm, steps, float(step_size), random_start,
                    targeted, tuple(input_range) if input_range is not None else None, seed, loss_fn, logits_fn)


def fgsm(model: nn.Module, inputs: Tensor, targets: Tensor, epsilon: float, *, norm: str = "linf",
         random_start: bool = False, step_size: float | None = None, targeted: bool = False,
         input_range: Sequence[float] | None = (0.0, 1.0), seed: int | None = 0,
         loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
         logits_fn: Callable[[Any], Tensor] | None = None) -> Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015, arXiv:1412.6572): one gradient step.

    ``x' = clip(x + epsilon * sign(grad))`` for L-inf (``grad / ||grad||`` for L2). With
    ``random_start`` it is the "FGSM-RS" of Wong, Rice & Kolter, 2020 (arXiv:2001.03994): start from
    a uniform point of the ball, step ``1.25 * epsilon`` by default, project back. Arguments as
    :func:`pgd`; ``step_size`` defaults to ``epsilon`` (``1.25 * epsilon`` with ``random_start``).
    """
    _check_attack_args(model, inputs, targets, epsilon, norm, 1, step_size, input_range, loss_fn, logits_fn)
    if step_size is None:
        step_size = (1.25 if random_start else 1.0) * epsilon
    return _perturb(model, inputs, targets, float(epsilon), norm, 1, float(step_size), random_start,
                    targeted, tuple(input_range) if input_range is not None else None, seed, loss_fn, logits_fn)


def _batches(data: Any) -> Iterable[tuple[Tensor, Tensor]]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return [tuple(data)]
    if hasattr(data, "__iter__") and not isinstance(data, (Tensor, str, bytes)):
        return data
    raise TypeError(f"data must be a pair (inputs, targets) of tensors or a loader of such batches, "
                    f"got {type(data).__name__}")


def robust_accuracy(model: nn.Module, data: Any, attack: Callable[..., Tensor] = pgd,
                    epsilons: Sequence[float] = (0.0, 0.05, 0.1, 0.2), *,
                    batch_to_inputs: Callable[[Any], Tensor] | None = None,
                    batch_to_targets: Callable[[Any], Tensor] | None = None,
                    logits_fn: Callable[[Any], Tensor] | None = None, **attack_kwargs: Any) -> pd.DataFrame:
    """Accuracy of ``model`` on adversarial examples of ``data`` at each ``epsilon``.

    Args:
        model: maps inputs to logits (any ``nn.Module``, a ``ClassifierModule`` too), or to an
            output holding them (see ``logits_fn``).
        data: a pair ``(inputs, targets)`` or any loader of batches: ``(inputs, targets, ...)``, dicts
            (``{"x"|"inputs"|"features"...: ..., "y"|"target"|"label"...: ...}``) or anything
            ``batch_to_inputs``/``batch_to_targets`` read.
        batch_to_inputs, batch_to_targets: ``batch -> inputs`` and ``batch -> (N,)`` labels; the
            defaults read tuples and dicts.
        logits_fn: ``model output -> logits`` (for the attack and the accuracy); the default reads a
            tensor, ``output["logits"]``, ``output.logits`` or ``output[0]``.
        attack: ``attack(model, inputs, targets, epsilon, **attack_kwargs)``, e.g. :func:`pgd`, :func:`fgsm`.
        epsilons: budgets, each ``>= 0`` (0 is clean accuracy).
        **attack_kwargs: passed to ``attack`` (``input_range``, ``norm``, ``steps``, ``seed``...).

    Returns:
        One row per epsilon: ``epsilon``, ``robust_acc``, ``n`` (samples) and ``attack`` (its name).

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        >>> x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
        >>> frame = robust_accuracy(model, (x, y), pgd, epsilons=(0, 0.1), input_range=(0.0, 1.0))
        >>> frame[["epsilon", "n"]].values.tolist()
        [[0.0, 32.0], [0.1, 32.0]]
    """
    if not callable(attack):
        raise TypeError(f"attack must be callable like pgd(model, inputs, targets, epsilon), got {attack!r}")
    if isinstance(epsilons, (int, float, str)):
        raise TypeError(f"epsilons must be a sequence of budgets (e.g. (0.0, 0.1)), got {epsilons!r}")
    epsilons = list(epsilons)
    if not epsilons:
        raise ValueError("epsilons must hold at least one budget, got none")
    for eps in epsilons:
        _check_number("epsilons", eps)
    for name, hook in (("batch_to_inputs", batch_to_inputs), ("batch_to_targets", batch_to_targets),
                       ("logits_fn", logits_fn)):
        check_hook(name, hook)
    to_inputs, to_targets = batch_to_inputs or default_batch_to_inputs, batch_to_targets or default_batch_to_targets
    logits_of = logits_fn or output_logits
    if logits_fn is not None:
        attack_kwargs["logits_fn"] = logits_fn
    batches = [(to_inputs(batch), to_targets(batch)) for batch in _batches(data)]
    rows = []
    for eps in epsilons:
        correct, total = 0, 0
        for x, y in batches:
            x_adv = attack(model, x, y, eps, **attack_kwargs)
            with _eval_mode(model), torch.no_grad():
                correct += (logits_of(model(x_adv)).argmax(1) == y).sum().item()
            total += len(y)
        rows.append({"epsilon": float(eps), "robust_acc": correct / max(total, 1), "n": total,
                     "attack": getattr(attack, "__name__", type(attack).__name__)})
    return pd.DataFrame(rows)
