"""``RegularizedClassifierModule``: ``ClassifierModule`` plus batch mixing and the penalties of layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.regularization._checks import check_nonnegative_number, check_positive_int, check_prob
from toolkit.regularization.batch import cutmix, cutout, mixup
from toolkit.training.module import ClassifierModule

__all__ = ["RegularizedClassifierModule"]


class RegularizedClassifierModule(ClassifierModule):
    """A :class:`~toolkit.training.ClassifierModule` that also mixes training batches and adds the
    ``penalty()`` of its layers (variational dropout's KL, concrete dropout's regularizer) to the loss.

    The training objective is ``mixed_loss + penalty_weight * sum(layer.penalty()) / num_train``: a
    per-sample evidence lower bound when the penalties are KL terms. ``train_loss`` logs the data term,
    ``train_penalty`` the added term. Validation and test are unchanged.

    Args:
        backbone, num_classes, **kwargs: as for ``ClassifierModule`` (``optimizer``, ``lr``,
            ``weight_decay``, ``label_smoothing``, ...).
        mixup_alpha: ``> 0`` turns mixup on (Beta parameter; 0.2 is common), 0 off.
        cutmix_alpha: ``> 0`` turns CutMix on (1.0 is common); with both on, each batch uses one of
            them with probability 1/2.
        mix_prob: probability that a training batch is mixed at all, in ``[0, 1]``.
        cutout_size: side of the Cutout square in pixels, 0 for off (inputs must be images).
        penalty_weight: multiplies the layers' penalties, ``>= 0`` (ramp it for a KL warm-up).
        num_train: training-set size dividing the penalties; by default read from the training loader
            (``dataset_size`` of a ``TensorBatchLoader`` or ``len(loader.dataset)``).

    Example:
        >>> from toolkit.models import MLP
        >>> module = RegularizedClassifierModule(MLP(64, 10), num_classes=10, mixup_alpha=0.2)
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, mix_prob: float = 1.0, cutout_size: int = 0,
                 penalty_weight: float = 1.0, num_train: int | None = None, **kwargs) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        check_nonnegative_number("mixup_alpha", mixup_alpha)
        check_nonnegative_number("cutmix_alpha", cutmix_alpha)
        if mix_prob != 1:
            check_prob("mix_prob", mix_prob)
        if isinstance(cutout_size, bool) or not isinstance(cutout_size, int) or cutout_size < 0:
            raise ValueError(f"cutout_size must be an integer >= 0 (0 for off), got {cutout_size!r}")
        check_nonnegative_number("penalty_weight", penalty_weight)
        if num_train is not None:
            check_positive_int("num_train", num_train)
        self.mixup_alpha, self.cutmix_alpha, self.mix_prob = float(mixup_alpha), float(cutmix_alpha), float(mix_prob)
        self.cutout_size = cutout_size
        self.penalty_weight = float(penalty_weight)
        self.num_train = num_train
        self._penalized = [m for m in backbone.modules() if callable(getattr(m, "penalty", None))]

    def on_train_start(self) -> None:
        if self.num_train is not None or not self._penalized:
            return
        loader = self.trainer.train_dataloader
        size = getattr(loader, "dataset_size", None)
        if size is None and hasattr(getattr(loader, "dataset", None), "__len__"):
            size = len(loader.dataset)
        if not size:
            raise ValueError("num_train must be given: the training set size could not be read from the loader")
        self.num_train = int(size)

    def penalty(self) -> Tensor | None:
        """Sum of the ``penalty()`` of every layer that has one, or None when none has."""
        if not self._penalized:
            return None
        return torch.stack([torch.as_tensor(m.penalty()) for m in self._penalized]).sum()

    def _mix(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
        modes = [mode for mode, alpha in (("mixup", self.mixup_alpha), ("cutmix", self.cutmix_alpha)) if alpha > 0]
        if not modes or (self.mix_prob < 1 and torch.rand(()).item() >= self.mix_prob):
            return x, y, y, 1.0
        mode = modes[0] if len(modes) == 1 else modes[int(torch.randint(2, ()).item())]
        return mixup(x, y, self.mixup_alpha) if mode == "mixup" else cutmix(x, y, self.cutmix_alpha)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, targets = batch[0], batch[1]
        if self.cutout_size:
            x = cutout(x, self.cutout_size)
        x, y_a, y_b, lam = self._mix(x, targets)
        logits = self(x)
        self._check_batch("train", logits, targets)
        loss = self.loss(logits, y_a) if lam == 1.0 else lam * self.loss(logits, y_a) + (1 - lam) * self.loss(logits, y_b)
        self.update_metrics("train", logits, y_a if lam >= 0.5 else y_b, loss)
        penalty = self.penalty()
        if penalty is None:
            return loss
        added = self.penalty_weight * penalty / self.num_train
        self.log("train_penalty", added.detach(), on_step=False, on_epoch=True, batch_size=len(targets))
        return loss + added
