"""Adversarial training as a ``ClassifierModule``, and a callback that tracks robust accuracy.

- PGD-AT: Madry et al., 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
  arXiv:1706.06083 — train on PGD examples (random start) instead of clean inputs.
- FGSM-RS: Wong, Rice & Kolter, 2020, "Fast is better than free: Revisiting adversarial training",
  arXiv:2001.03994 — one FGSM step from a random start, step ``1.25 * epsilon``: about PGD-AT's
  robustness at the cost of two forward/backward passes per batch.

Example:
    >>> from toolkit.data import DigitsDataModule
    >>> from toolkit.models import MLP
    >>> dm = DigitsDataModule(image_size=8, flatten=True)
    >>> module = AdversarialClassifierModule(MLP(64, 10), num_classes=10, epsilon=0.1,
    ...                                      input_range=dm.input_range, attack="pgd", attack_steps=5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from toolkit.security.evasion import NORMS, _check_number, fgsm, pgd, robust_accuracy
from toolkit.training import ClassifierModule

__all__ = ["ATTACKS", "AdversarialClassifierModule", "RobustAccuracyCallback"]

ATTACKS = ("pgd", "fgsm_rs", "fgsm")


class AdversarialClassifierModule(ClassifierModule):
    """``ClassifierModule`` that trains on adversarial examples of each batch (PGD-AT, FGSM-RS or FGSM).

    Validation and test stay clean (log ``val_acc`` as usual); ``train_*`` metrics are measured on
    the adversarial batch. Attacks draw their random start from the global torch generator, which
    ``fit`` seeds, so a run repeats.

    Args:
        backbone, num_classes, **kwargs: as :class:`~toolkit.training.ClassifierModule`.
        epsilon: training budget in pixel units, ``> 0``.
        attack: "pgd" (Madry et al.), "fgsm_rs" (Wong et al.) or "fgsm" (Goodfellow et al.: no
            random start, step epsilon; prone to catastrophic overfitting, Wong et al. section 5).
        attack_steps: PGD steps, ``>= 1`` (ignored by "fgsm_rs").
        step_size: per step in pixel units; default ``2.5 * epsilon / attack_steps`` (PGD) or
            ``1.25 * epsilon`` (FGSM-RS) or ``epsilon`` (FGSM).
        norm: "linf" or "l2".
        input_range: model-input values of pixel 0 and 1 (``DigitsDataModule.input_range``), or None
            (default: unbounded inputs, nothing clamped, epsilon in input units).
        clean_weight: share of the loss on clean inputs, in ``[0, 1)`` (0: pure adversarial training).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, epsilon: float, attack: str = "pgd",
                 attack_steps: int = 7, step_size: float | None = None, norm: str = "linf",
                 input_range: Sequence[float] | None = None, clean_weight: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        _check_number("epsilon", epsilon, strict=True)
        if attack not in ATTACKS:
            raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
        if isinstance(attack_steps, bool) or not isinstance(attack_steps, int) or attack_steps < 1:
            raise ValueError(f"attack_steps must be an integer >= 1, got {attack_steps!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if isinstance(clean_weight, bool) or not isinstance(clean_weight, (int, float)) or not 0 <= clean_weight < 1:
            raise ValueError(f"clean_weight must be a number in [0, 1), got {clean_weight!r}")
        self.save_hyperparameters(ignore=["backbone"])
        self.input_range = tuple(input_range) if input_range is not None else None

    def adversarial_examples(self, x: Tensor, targets: Tensor) -> Tensor:
        hp = self.hparams
        common = dict(norm=hp.norm, step_size=hp.step_size, input_range=self.input_range, seed=None)
        if hp.attack == "pgd":
            return pgd(self, x, targets, hp.epsilon, steps=hp.attack_steps, random_start=True, **common)
        return fgsm(self, x, targets, hp.epsilon, random_start=hp.attack == "fgsm_rs", **common)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, targets = batch[0], batch[1]
        x_adv = self.adversarial_examples(x, targets)
        logits = self(x_adv)
        self._check_batch("train", logits, targets)
        loss = self.loss(logits, targets)
        if self.hparams.clean_weight > 0:
            w = self.hparams.clean_weight
            loss = (1 - w) * loss + w * self.loss(self(x), targets)
        self.update_metrics("train", logits, targets, loss)
        return loss


class RobustAccuracyCallback(pl.Callback):
    """Every ``every_n_epochs`` training epochs, log ``robust_acc`` of a fixed validation subset.

    Runs at the end of the training epoch (gradients are enabled there; validation runs under
    inference mode, where no attack can take a gradient). The subset is the first ``num_samples``
    validation samples of the trainer's datamodule, or the ``data`` pair given.

    Args:
        epsilon: budget in pixel units, ``> 0``.
        every_n_epochs: evaluation period, ``>= 1``.
        num_samples: size of the subset, ``>= 1``.
        data: ``(inputs, targets)``; default the datamodule's ``tensors("val")``.
        attack: "pgd" or "fgsm" (seeded by ``seed``, so every evaluation uses the same random start).
        log_name: the logged metric.
        **attack_kwargs: for the attack (``steps``, ``norm``, ``input_range``, ``logits_fn`` for a
            module whose forward returns an output object...). ``input_range`` defaults to the
            datamodule's ``input_range`` when it has one.

    ``history`` holds ``(epoch, robust_acc)`` pairs; ``state_dict`` saves it and the counters.
    """

    def __init__(self, epsilon: float, every_n_epochs: int = 1, num_samples: int = 256,
                 data: tuple[Tensor, Tensor] | None = None, attack: str = "pgd", seed: int = 0,
                 log_name: str = "val_robust_acc", **attack_kwargs: Any) -> None:
        _check_number("epsilon", epsilon, strict=True)
        for name, value in (("every_n_epochs", every_n_epochs), ("num_samples", num_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if attack not in ("pgd", "fgsm"):
            raise ValueError(f"attack must be one of ('pgd', 'fgsm'), got {attack!r}")
        self.epsilon, self.every_n_epochs, self.num_samples = float(epsilon), every_n_epochs, num_samples
        self.data, self.attack, self.seed, self.log_name = data, attack, seed, log_name
        self.attack_kwargs = attack_kwargs
        self.history: list[tuple[int, float]] = []
        self.evaluations = 0

    @property
    def state_key(self) -> str:
        return self._generate_state_key(epsilon=self.epsilon, attack=self.attack, log_name=self.log_name)

    def _subset(self, trainer: pl.Trainer) -> tuple[Tensor, Tensor]:
        data = self.data
        if data is None:
            datamodule = getattr(trainer, "datamodule", None)
            if datamodule is None or not hasattr(datamodule, "tensors"):
                raise ValueError("data is None and the trainer has no datamodule with tensors('val'); "
                                 "pass data=(inputs, targets)")
            data = datamodule.tensors("val")
        return data[0][:self.num_samples], data[1][:self.num_samples]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs:
            return
        x, y = self._subset(trainer)
        kwargs = dict(self.attack_kwargs)
        datamodule = getattr(trainer, "datamodule", None)
        if "input_range" not in kwargs and hasattr(datamodule, "input_range"):
            kwargs["input_range"] = datamodule.input_range
        attack = pgd if self.attack == "pgd" else fgsm
        x, y = x.to(pl_module.device), y.to(pl_module.device)
        frame = robust_accuracy(pl_module, (x, y), attack, epsilons=(self.epsilon,), seed=self.seed, **kwargs)
        value = float(frame["robust_acc"].iloc[0])
        self.history.append((epoch, value))
        self.evaluations += 1
        pl_module.log(self.log_name, torch.tensor(value), on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "evaluations": self.evaluations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [tuple(h) for h in state_dict["history"]]
        self.evaluations = int(state_dict["evaluations"])
