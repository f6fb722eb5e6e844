"""Evasion attacks at test time: FGSM, PGD (restarts, CE/margin/DLR losses) and APGD, and robust accuracy.

Goodfellow, Shlens & Szegedy, 2015, "Explaining and Harnessing Adversarial Examples", arXiv:1412.6572
(FGSM); Madry et al., 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
arXiv:1706.06083 (PGD with random start); Croce & Hein, 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", arXiv:2003.01690 (APGD, DLR loss).

``input_range=None`` (the default) means the inputs are unbounded (normalized features,
embeddings): nothing is clamped and epsilon is in input units. ``input_range=(low, high)`` gives the
model-input values of a black (0) and a white (1) pixel (``DigitsDataModule.input_range``): epsilon
is then in *pixel units* (``epsilon = 8/255`` means eight grey levels whatever normalization the
model expects) and every example stays a valid image.

During an attack the model is in eval mode (batch-norm statistics and dropout frozen); its mode is
restored afterwards. Gradients are taken with ``torch.autograd.grad`` with respect to the
input only, so the parameters' ``.grad`` are never touched.

Example:
    >>> model = torch.nn.Linear(4, 3)
    >>> x, y = torch.rand(8, 4), torch.randint(0, 3, (8,))
    >>> x_adv = pgd(model, x, y, epsilon=0.1, steps=5, seed=0, input_range=(0.0, 1.0))
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

__all__ = ["LOSSES", "NORMS", "apgd", "apgd_checkpoints", "dlr_loss", "fgsm", "margin_loss", "pgd", "robust_accuracy"]

NORMS = ("linf", "l2")
RANGE_ATOL = 1e-4      # inputs may exceed input_range by this much (float error of normalization)
L2_MIN_NORM = 1e-12    # guards the division when normalizing an L2 gradient or perturbation
PGD_STEP_FACTOR = 2.5  # Madry et al.: step size 2.5 * epsilon / steps by default
DLR_EPS = 1e-12        # Croce & Hein: keeps the DLR ratio finite when the top logits tie
LOSSES = ("ce", "margin", "dlr")


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
    # one pass for the finiteness and range checks: min and max propagate NaN, and are inf if any is
    lowest, highest = torch.aminmax(inputs.detach()) if inputs.numel() else (torch.zeros(()), torch.zeros(()))
    lowest, highest = float(lowest), float(highest)
    if not (math.isfinite(lowest) and math.isfinite(highest)):
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
        if inputs.numel() and (lowest < low - tol or highest > high + tol):
            raise ValueError(f"inputs must lie in input_range [{low:.4g}, {high:.4g}], got values in "
                             f"[{lowest:.4g}, {highest:.4g}]; pass the range of the "
                             "model inputs (e.g. DigitsDataModule.input_range) or input_range=None")


def _per_sample_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(L2_MIN_NORM).view(-1, *([1] * (t.dim() - 1)))


def margin_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample margin (Carlini & Wagner, 2017, arXiv:1608.04644): ``max_{j != y} z_j - z_y``.

    Positive exactly when the sample is misclassified; unlike cross-entropy it does not saturate
    once the true class's probability is near 0 or 1, so an attack maximizing it is not misled by a
    model whose softmax is flat or overconfident. Returns shape ``(N,)``.
    """
    true = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], float("-inf"))
    return others.amax(1) - true


def dlr_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-sample difference-of-logits ratio (Croce & Hein, 2020, arXiv:2003.01690, eq. 6).

    ``-(z_y - max_{j != y} z_j) / (z_(1) - z_(3))`` with ``z_(i)`` the i-th largest logit: the margin
    divided by a spread of the logits, so it does not change when the logits are scaled. Needs at
    least 3 classes. Returns shape ``(N,)``.
    """
    if logits.shape[1] < 3:
        raise ValueError(f"the dlr loss needs at least 3 classes, got logits of shape {tuple(logits.shape)}")
    top = logits.topk(3, dim=1).values
    return margin_loss(logits, targets) / (top[:, 0] - top[:, 2] + DLR_EPS)


_SUMMED = {"ce": lambda logits, targets: F.cross_entropy(logits, targets, reduction="sum")}  # PGD's gradient only
_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"ce": lambda logits, targets: F.cross_entropy(logits, targets, reduction="none"),
           "margin": margin_loss, "dlr": dlr_loss}


def _loss_function(loss: str, loss_fn: Callable[[Tensor, Tensor], Tensor] | None) -> Callable[[Tensor, Tensor], Tensor]:
    """``(logits, targets) -> loss``, a scalar or one value per sample (larger: more adversarial)."""
    return loss_fn if loss_fn is not None else _LOSSES[loss]


def _sample_losses(value: Tensor, n: int, who: str) -> Tensor:
    if value.dim() >= 1 and value.shape[0] == n:
        return value.reshape(n, -1).sum(1)
    raise ValueError(f"{who} needs one loss per sample: loss_fn must return shape ({n},) (e.g. "
                     f"reduction='none'), got shape {tuple(value.shape)}")


def _check_targets_fit(logits: Tensor, targets: Tensor, class_targets: bool) -> None:
    if class_targets and logits.dim() == 2 and targets.numel() and int(targets.max()) >= logits.shape[1]:
        raise ValueError(f"targets must be class indices below the model's {logits.shape[1]} outputs, "
                         f"got maximum {int(targets.max())}")


class _Ball:
    """The feasible set in model-input units: the epsilon-ball around ``inputs`` (L-inf or L2)
    intersected with ``[low, high]`` when the input range is known."""

    def __init__(self, inputs: Tensor, epsilon: float, norm: str, bounds: tuple[float, float] | None) -> None:
        self.inputs, self.epsilon, self.norm, self.bounds = inputs, epsilon, norm, bounds
        if norm == "linf":  # ball and range are both boxes: one clamp to their intersection
            self.lower, self.upper = inputs - epsilon, inputs + epsilon
            if bounds is not None:
                self.lower.clamp_(min=bounds[0])
                self.upper.clamp_(max=bounds[1])

    def project_(self, x: Tensor) -> Tensor:
        """Project ``x`` (in place where possible) onto the feasible set."""
        if self.norm == "linf":
            return x.clamp_(self.lower, self.upper)
        delta = x - self.inputs
        delta = delta * (self.epsilon / _per_sample_norm(delta)).clamp(max=1.0)
        x = self.inputs + delta
        return x.clamp_(*self.bounds) if self.bounds is not None else x

    def random_point(self, generator: torch.Generator | None) -> Tensor:
        x = self.inputs
        if self.norm == "linf":
            noise = torch.empty(x.shape, dtype=x.dtype).uniform_(-self.epsilon, self.epsilon, generator=generator)
            return self.project_(noise.to(x.device).add_(x))
        # uniform in the L2 ball: gaussian direction, radius epsilon * U^(1/d)
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        direction = direction / _per_sample_norm(direction)
        radius = torch.rand(len(x), generator=generator, dtype=x.dtype) ** (1.0 / x[0].numel()) * self.epsilon
        return self.project_(x + (direction * radius.view(-1, *([1] * (x.dim() - 1)))).to(x.device))

    def step(self, grad: Tensor) -> Tensor:
        """The steepest-ascent direction of unit size for this norm."""
        return grad.sign_() if self.norm == "linf" else grad / _per_sample_norm(grad)


def _pgd_run(model: nn.Module, ball: _Ball, targets: Tensor, steps: int, step_size: float, start: Tensor,
             sign: float, loss_fn: Callable[[Tensor, Tensor], Tensor], logits_fn: Callable[[Any], Tensor],
             class_targets: bool) -> Tensor:
    x_adv = start
    for step in range(steps):
        x_adv.requires_grad_(True)
        logits = logits_fn(model(x_adv))
        if step == 0:
            _check_targets_fit(logits, targets, class_targets)
        loss = loss_fn(logits, targets)
        (grad,) = torch.autograd.grad(loss if loss.dim() == 0 else loss.sum(), x_adv)
        # nothing below needs autograd: detached tensors, updated in place (no no_grad block to enter)
        x_adv = ball.project_(x_adv.detach().add_(ball.step(grad), alpha=sign * step_size))
    return x_adv


def _outcome(model: nn.Module, x: Tensor, targets: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
             logits_fn: Callable[[Any], Tensor], classify: bool, targeted: bool, who: str) -> tuple[Tensor, Tensor]:
    """Per sample: whether the attack succeeded (class targets only) and its loss (larger: better)."""
    with torch.no_grad():
        logits = logits_fn(model(x))
        loss = _sample_losses(loss_fn(logits, targets), len(x), who)
        if targeted:
            loss = -loss
        if classify and logits.dim() == 2:
            hit = logits.argmax(1) == targets
            return (hit if targeted else ~hit), loss
        return torch.zeros(len(x), dtype=torch.bool, device=x.device), loss


def _keep_best(best: Tensor, best_ok: Tensor, best_loss: Tensor, rows: Tensor, x: Tensor, ok: Tensor,
               loss: Tensor) -> None:
    """Where the new candidate succeeds and the kept one does not, or both tie in success and the new
    loss is higher, replace the kept example (in place)."""
    better = (ok & ~best_ok[rows]) | ((ok == best_ok[rows]) & (loss > best_loss[rows]))
    chosen = rows[better]
    best[chosen], best_ok[chosen], best_loss[chosen] = x[better], ok[better], loss[better]


def _bounds(input_range: Sequence[float] | None) -> tuple[float, float] | None:
    return (float(input_range[0]), float(input_range[1])) if input_range is not None else None


def _input_scale(input_range: tuple[float, float] | None) -> float:
    return input_range[1] - input_range[0] if input_range is not None else 1.0


def _perturb(model: nn.Module, inputs: Tensor, targets: Tensor, epsilon: float, norm: str, steps: int,
             step_size: float, random_start: bool, targeted: bool, input_range: tuple[float, float] | None,
             seed: int | None, loss_fn: Callable[[Tensor, Tensor], Tensor] | None,
             logits_fn: Callable[[Any], Tensor] | None = None, restarts: int = 1, loss: str = "ce") -> Tensor:
    logits_fn = logits_fn or output_logits
    class_targets = loss_fn is None  # the built-in losses take class indices
    classify = not targets.is_floating_point() and targets.dim() == 1
    if epsilon == 0:
        return inputs.detach().clone()
    scale = _input_scale(input_range)  # budgets are in pixel units, the model sees inputs
    x = inputs.detach()
    ball = _Ball(x, epsilon * scale, norm, input_range)
    objective = _loss_function(loss, loss_fn)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    sign = -1.0 if targeted else 1.0
    best = best_ok = best_loss = None
    rows = torch.arange(len(x), device=x.device)
    with _eval_mode(model), torch.enable_grad():
        for restart in range(restarts):
            sub = ball if restart == 0 else _Ball(x[rows], epsilon * scale, norm, input_range)
            start = sub.random_point(generator) if random_start else x[rows].clone()
            x_adv = _pgd_run(model, sub, targets[rows], steps, step_size * scale, start, sign,
                             objective if loss_fn is not None else _SUMMED.get(loss, objective), logits_fn,
                             class_targets)
            if restarts == 1:
                return x_adv.detach().to(inputs.dtype)
            ok, value = _outcome(model, x_adv, targets[rows], objective, logits_fn, classify, targeted,
                                 "pgd with restarts > 1")
            if best is None:
                best, best_ok, best_loss = x_adv.detach().clone(), ok, value
            else:
                _keep_best(best, best_ok, best_loss, rows, x_adv.detach(), ok, value)
            if classify:
                rows = torch.nonzero(~best_ok).flatten()  # later restarts attack only what still resists
                if not len(rows):
                    break
    return best.to(inputs.dtype)


def _check_restarts_and_loss(restarts: Any, loss: Any, loss_fn: Any, losses: Sequence[str]) -> None:
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if loss not in losses:
        raise ValueError(f"loss must be one of {tuple(losses)}, got {loss!r}")
    if loss_fn is not None and loss != "ce":
        raise ValueError(f"give either loss={loss!r} or loss_fn, not both")


def pgd(model: nn.Module, inputs: Tensor, targets: Tensor, epsilon: float, *, norm: str = "linf",
        steps: int = 10, step_size: float | None = None, random_start: bool = True, targeted: bool = False,
        input_range: Sequence[float] | None = None, seed: int | None = 0, restarts: int = 1,
        loss: str = "ce", loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        logits_fn: Callable[[Any], Tensor] | None = None) -> Tensor:
    """Projected gradient descent (Madry et al., 2018, arXiv:1706.06083): adversarial ``inputs``.

    Maximizes the loss of ``model(x')`` over ``x'`` within ``epsilon`` of ``inputs`` (minimizes it
    towards ``targets`` when ``targeted``) by ``steps`` signed (L-inf) or normalized (L2) gradient
    steps, each followed by projection onto the ball and onto the valid input range:
    ``x_{t+1} = P(x_t + alpha * sign(grad L(x_t)))``. With ``restarts > 1`` it runs again from new
    random starts on the samples not yet fooled and keeps, per sample, a successful example if any
    run found one (otherwise the one of highest loss), as Carlini et al. (2019, "On Evaluating
    Adversarial Robustness", arXiv:1902.06705) recommend. Robust accuracy under any attack is an
    upper bound on the true robust accuracy.

    Args:
        model: maps inputs to logits; put in eval mode during the attack, its mode restored after.
        inputs: ``(N, ...)`` model inputs (inside ``input_range`` when given).
        targets: ``(N,)`` true labels (untargeted) or the labels to reach (``targeted=True``).
        epsilon: radius of the ball, ``>= 0`` (0 returns a copy of ``inputs``); in pixel units
            when ``input_range`` is given, else in input units.
        norm: "linf" or "l2" (L2 over all of a sample's inputs).
        steps: gradient steps, ``>= 1``.
        step_size: per step, in the units of ``epsilon``; default ``2.5 * epsilon / steps``.
        random_start: start from a uniform point of the ball (Madry et al.) instead of ``inputs``.
        targeted: move towards ``targets`` instead of away from them.
        input_range: model-input values ``(low, high)`` of pixel 0 and 1 (e.g.
            ``DigitsDataModule.input_range``); the examples are clamped to it. None (default): the
            inputs are unbounded (normalized features, embeddings) and nothing is clamped.
        seed: seeds the random starts (None: the global torch generator).
        restarts: runs from independent random starts, ``>= 1``.
        loss: "ce" (cross-entropy), "margin" (Carlini-Wagner ``max_{j != y} z_j - z_y``, see
            :func:`margin_loss`) or "dlr" (:func:`dlr_loss`).
        loss_fn: your own ``loss_fn(logits, targets)`` instead of ``loss``; ``targets`` may then be
            any tensor with ``N`` rows (float regression targets with ``mse_loss``, soft labels...).
            With ``restarts > 1`` it must return one loss per sample (``reduction="none"``).
        logits_fn: ``model output -> logits``; default the tensor itself, ``output["logits"]``,
            ``output.logits`` or ``output[0]`` (Hugging Face style output objects work as they are).

    Returns:
        Adversarial inputs, same shape, dtype and normalization as ``inputs``, detached.
    """
    _check_attack_args(model, inputs, targets, epsilon, norm, steps, step_size, input_range, loss_fn, logits_fn)
    _check_restarts_and_loss(restarts, loss, loss_fn, LOSSES)
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts={restarts} repeats the same attack without random_start=True")
    if step_size is None:
        step_size = PGD_STEP_FACTOR * epsilon / steps
    return _perturb(model, inputs, targets, float(epsilon), norm, steps, float(step_size), random_start,
                    targeted, _bounds(input_range), seed, loss_fn, logits_fn, restarts, loss)


def fgsm(model: nn.Module, inputs: Tensor, targets: Tensor, epsilon: float, *, norm: str = "linf",
         random_start: bool = False, step_size: float | None = None, targeted: bool = False,
         input_range: Sequence[float] | None = None, seed: int | None = 0,
         loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
         logits_fn: Callable[[Any], Tensor] | None = None) -> Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015, arXiv:1412.6572): one gradient step.

    ``x' = clip(x + epsilon * sign(grad))`` for L-inf (``grad / ||grad||`` for L2). With
    ``random_start`` it is the "FGSM-RS" of Wong, Rice & Kolter, 2020 (arXiv:2001.03994): start from
    a uniform point of the ball, step ``1.25 * epsilon`` by default, project back. Arguments as
    :func:`pgd` (``input_range=None``: unbounded inputs, nothing clamped); ``step_size`` defaults to
    ``epsilon`` (``1.25 * epsilon`` with ``random_start``).
    """
    _check_attack_args(model, inputs, targets, epsilon, norm, 1, step_size, input_range, loss_fn, logits_fn)
    if step_size is None:
        step_size = (1.25 if random_start else 1.0) * epsilon
    return _perturb(model, inputs, targets, float(epsilon), norm, 1, float(step_size), random_start,
                    targeted, _bounds(input_range), seed, loss_fn, logits_fn)


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j = ceil(p_j * steps)`` at which APGD may halve its step (Croce & Hein, 2020).

    ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, kept while ``w_j < steps``.
    """
    p, checkpoints = [0.0, 0.22], []
    while math.ceil(p[-1] * steps - 1e-9) < steps:
        checkpoints.append(math.ceil(p[-1] * steps - 1e-9))
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({w for w in checkpoints if w > 0})


def apgd(model: nn.Module, inputs: Tensor, targets: Tensor, epsilon: float, *, norm: str = "linf",
         steps: int = 100, restarts: int = 1, loss: str = "ce", rho: float = 0.75, momentum: float = 0.75,
         random_start: bool = True, input_range: Sequence[float] | None = None, seed: int | None = 0,
         loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
         logits_fn: Callable[[Any], Tensor] | None = None) -> Tensor:
    """Auto-PGD (Croce & Hein, 2020, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", arXiv:2003.01690): PGD without a step size to tune.

    Starts with step ``eta = 2 * epsilon``; each iteration takes a gradient step and adds momentum,
    ``z = P(x_k + eta * sign(grad))``, ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))``
    (``a = momentum``, 0.75 in the paper; ``a = 1`` on the first step). At the checkpoints
    :func:`apgd_checkpoints` it halves ``eta`` for a sample and restarts it from its best point when
    the loss rose in fewer than ``rho`` of the iterations since the last checkpoint, or when neither
    ``eta`` nor the best loss changed since then. Returns, per sample, the last misclassified iterate
    if there was one, else the iterate of highest loss. Untargeted.

    Args:
        model, inputs, targets, epsilon, norm, input_range, seed, loss_fn, logits_fn: as :func:`pgd`
            (``loss_fn`` must return one loss per sample, ``reduction="none"``).
        steps: iterations, ``>= 1`` (the paper uses 100).
        restarts: runs from random starts on the samples not yet fooled, ``>= 1``.
        loss: "ce" (APGD-CE), "dlr" (APGD-DLR, needs >= 3 classes) or "margin".
        rho: the share of improving iterations below which the step is halved, in ``(0, 1]``.
        momentum: ``a`` above, in ``(0, 1]`` (1: no momentum).
        random_start: start from a random point of the ball, as the authors' code does.

    Example:
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.rand(8, 4), torch.randint(0, 3, (8,))
        >>> x_adv = apgd(model, x, y, epsilon=0.1, steps=20, input_range=(0.0, 1.0))
        >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """
    _check_attack_args(model, inputs, targets, epsilon, norm, steps, None, input_range, loss_fn, logits_fn)
    _check_restarts_and_loss(restarts, loss, loss_fn, LOSSES)
    for name, value in (("rho", rho), ("momentum", momentum)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    bounds = _bounds(input_range)
    if epsilon == 0:
        return inputs.detach().clone()
    logits_fn = logits_fn or output_logits
    objective = _loss_function(loss, loss_fn)
    classify = not targets.is_floating_point() and targets.dim() == 1
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    eps = float(epsilon) * _input_scale(bounds)
    x = inputs.detach()
    best = x.clone()
    best_ok = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    best_loss = torch.full((len(x),), float("-inf"), dtype=x.dtype, device=x.device)
    rows = torch.arange(len(x), device=x.device)
    with _eval_mode(model), torch.enable_grad():
        for _ in range(restarts):
            ball = _Ball(x[rows], eps, norm, bounds)
            start = ball.random_point(generator) if random_start else x[rows].clone()
            adv, ok, value = _apgd_run(model, ball, targets[rows], start, steps, eps, rho, momentum, objective,
                                       logits_fn, classify, loss_fn is None)
            _keep_best(best, best_ok, best_loss, rows, adv, ok, value)
            if classify:
                rows = torch.nonzero(~best_ok).flatten()
                if not len(rows):
                    break
    return best.to(inputs.dtype)


def _apgd_run(model: nn.Module, ball: _Ball, targets: Tensor, x_adv: Tensor, steps: int, eps: float, rho: float,
              momentum: float, objective: Callable[[Tensor, Tensor], Tensor], logits_fn: Callable[[Any], Tensor],
              classify: bool, class_targets: bool) -> tuple[Tensor, Tensor, Tensor]:
    n = len(x_adv)
    shape = (n,) + (1,) * (x_adv.dim() - 1)
    checkpoints = set(apgd_checkpoints(steps))

    def evaluate(x: Tensor, grad: bool, first: bool = False) -> tuple[Tensor, Tensor | None, Tensor]:
        x = x.detach().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            logits = logits_fn(model(x))
            if first:
                _check_targets_fit(logits, targets, class_targets)
            value = _sample_losses(objective(logits, targets), n, "apgd")
            g = torch.autograd.grad(value.sum(), x)[0] if grad else None
        wrong = logits.argmax(1) != targets if classify and logits.dim() == 2 else torch.zeros_like(value, dtype=torch.bool)
        return value.detach(), g, wrong

    eta = torch.full(shape, 2 * eps, dtype=x_adv.dtype, device=x_adv.device)
    value, grad, wrong = evaluate(x_adv, True, first=True)
    x_max, grad_max, f_max = x_adv.clone(), grad.clone(), value.clone()
    x_fool, fooled = x_adv.clone(), wrong.clone()
    x_prev = x_adv.clone()
    history = [value]
    last_check, f_max_at_check = 0, f_max.clone()
    reduced_at_check = torch.ones(n, dtype=torch.bool, device=x_adv.device)
    for k in range(steps):
        with torch.no_grad():
            a = 1.0 if k == 0 else momentum
            z = ball.project_(x_adv + eta * ball.step(grad))
            x_new = ball.project_(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev))
        x_prev, x_adv = x_adv, x_new
        value, grad, wrong = evaluate(x_adv, k < steps - 1)
        history.append(value)
        x_fool[wrong], fooled = x_adv[wrong], fooled | wrong
        improved = value > f_max
        x_max[improved], f_max[improved] = x_adv[improved], value[improved]
        if grad is not None:
            grad_max[improved] = grad[improved]
        if k + 1 in checkpoints and k < steps - 1:
            w = k + 1
            rises = sum((history[i + 1] > history[i]).to(torch.int64) for i in range(last_check, w))
            oscillating = rises < rho * (w - last_check)                    # condition 1
            stalled = ~reduced_at_check & (f_max <= f_max_at_check)          # condition 2
            halve = oscillating | stalled
            eta[halve] /= 2
            x_adv[halve], grad[halve] = x_max[halve], grad_max[halve]
            reduced_at_check, f_max_at_check, last_check = halve, f_max.clone(), w
    adv = torch.where(fooled.view(shape), x_fool, x_max)
    return adv, fooled, f_max


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
