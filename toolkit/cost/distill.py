"""Knowledge distillation: train a small student to match a large teacher's softened predictions.

Hinton, Vinyals & Dean, 2015, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531.
The student minimizes ``alpha * T**2 * KL(softmax(teacher / T) || softmax(student / T)) +
(1 - alpha) * CE(student, labels)``. The temperature ``T > 1`` exposes the teacher's "dark
knowledge" (which wrong classes it finds plausible); the ``T**2`` factor keeps the gradient scale of
the soft term independent of ``T``, so ``alpha`` means the same at every temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from toolkit._validate import check_class_targets
from toolkit.training import ClassifierModule

__all__ = ["DistillationModule", "distillation_loss"]


def _check_temperature_alpha(temperature: object, alpha: object) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 < temperature < float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a weight in [0, 1], got {alpha!r}")


def _at_least_float32(logits: Tensor) -> Tensor:
    """bf16/fp16 logits (mixed precision) to float32 for the softmax; float64 stays float64."""
    return logits if logits.dtype in (torch.float32, torch.float64) else logits.float()


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor | None = None,
                      temperature: float = 4.0, alpha: float = 0.9) -> Tensor:
    """Hinton et al.'s (2015) distillation loss, averaged over the batch.

    Args:
        student_logits: ``(N, C)``.
        teacher_logits: ``(N, C)``; no gradient flows into them.
        targets: ``(N,)`` class indices for the hard-label term; may be None when ``alpha == 1``.
        temperature: softmax temperature ``T > 0`` of both models in the soft term.
        alpha: weight of the soft term in ``[0, 1]``; ``1 - alpha`` weighs the cross-entropy on labels.

    Example:
        >>> logits = torch.randn(4, 10)
        >>> distillation_loss(logits, logits, alpha=1.0).abs().item() < 1e-6  # a perfect student
        True
    """
    _check_temperature_alpha(temperature, alpha)
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits and teacher_logits must both be (N, C), got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if targets is None and alpha < 1:
        raise ValueError(f"targets are needed when alpha < 1 (got alpha={alpha})")
    if targets is not None:
        check_class_targets("targets", targets, student_logits.shape[0], student_logits.shape[1])
    student_logits, teacher_logits = _at_least_float32(student_logits), _at_least_float32(teacher_logits)
    soft_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    soft_student = F.log_softmax(student_logits / temperature, dim=1)
    soft = F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True) * temperature**2
    if alpha == 1:
        return soft
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, targets)


class DistillationModule(ClassifierModule):
    """A :class:`~toolkit.training.ClassifierModule` that trains ``backbone`` (the student) with
    :func:`distillation_loss` against a frozen ``teacher``.

    Validation and test use plain cross-entropy, so their metrics compare directly with a student
    trained alone. The teacher is frozen, in eval mode, and kept outside the module tree: no
    optimizer sees it, checkpoints hold only the student, and it follows the student to its device
    at the first training step. The module's size and latency are the student's.

    Args:
        backbone: the student network.
        teacher: a trained network with the same ``num_classes`` outputs (an ``nn.Module``, e.g.
            the ``backbone`` of a trained ``ClassifierModule``, or the module itself).
        num_classes: classes, as for ClassifierModule.
        temperature: ``T > 0`` (Hinton et al. use 2-20; 4 is a common choice).
        alpha: weight of the soft (teacher) term, in ``[0, 1]``.
        **kwargs: the other ClassifierModule arguments (``lr``, ``schedule``...).

    Example:
        >>> from toolkit.models import MLP
        >>> student = DistillationModule(MLP(64, 10, (16,)), teacher=MLP(64, 10, (256,)), num_classes=10)
    """

    def __init__(self, backbone: nn.Module, teacher: nn.Module, num_classes: int, temperature: float = 4.0,
                 alpha: float = 0.9, **kwargs) -> None:
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be an nn.Module, got {type(teacher).__name__}")
        _check_temperature_alpha(temperature, alpha)
        declared = getattr(teacher, "num_classes", None)
        if isinstance(declared, int) and declared != num_classes:
            raise ValueError(f"teacher outputs {declared} classes but num_classes={num_classes}")
        # Lightning collects the constructor's arguments from this frame: keep the module out of them
        frozen, teacher = teacher, None
        super().__init__(backbone, num_classes, **kwargs)
        self.save_hyperparameters(ignore=["backbone", "teacher"])
        frozen.requires_grad_(False)
        frozen.eval()
        self._teacher = (frozen,)  # a tuple hides it from the module tree: no optimizer, no checkpoint

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher (in eval mode, outside the module tree)."""
        return self._teacher[0]

    def _teacher_logits(self, x: Tensor) -> Tensor:
        teacher = self.teacher
        param = next(teacher.parameters(), None)
        if param is not None and param.device != x.device:
            teacher.to(x.device)
        with torch.no_grad():
            return teacher(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, targets = batch[0], batch[1]
        logits = self(x)
        self._check_batch("train", logits, targets)
        teacher_logits = self._teacher_logits(x)
        if teacher_logits.shape != logits.shape:
            raise ValueError(f"teacher output {tuple(teacher_logits.shape)} does not match the student's "
                             f"{tuple(logits.shape)}")
        loss = distillation_loss(logits, teacher_logits, targets, self.hparams.temperature, self.hparams.alpha)
        self.update_metrics("train", logits, targets, loss)
        return loss
