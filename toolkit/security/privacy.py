"""Privacy: the loss-threshold membership-inference attack, and DP-SGD training through opacus.

- Yeom, Giacomelli, Fredrikson & Jha, 2018, "Privacy Risk in Machine Learning: Analyzing the
  Connection to Overfitting", CSF, arXiv:1709.01604 — guess "member" when a sample's loss is below the
  average training loss; the attack's advantage (TPR - FPR) is bounded by the generalization gap.
  Scoring by ``-loss`` over all thresholds gives the attack's ROC AUC (0.5: no leak).
- Abadi et al., 2016, "Deep Learning with Differential Privacy", CCS, arXiv:1607.00133 — DP-SGD: clip
  each sample's gradient to ``max_grad_norm``, add Gaussian noise ``noise_multiplier * max_grad_norm``,
  account the privacy loss (here opacus' RDP accountant; Mironov, 2017).

How DP-SGD runs under Lightning here: opacus' ``PrivacyEngine.make_private`` wants a
``torch.utils.data.DataLoader`` and our :class:`~toolkit.data.TensorBatchLoader` is not one, so
:class:`DPClassifierModule` assembles the same three parts by hand: the backbone wrapped in
``GradSampleModule`` (per-sample gradients), the optimizer wrapped in ``DPOptimizer`` (clip + noise;
it accepts Lightning's closure), and an ``RDPAccountant`` attached as the optimizer's step hook. The
accountant assumes Poisson sampling (each sample joins a batch with probability ``q``): train with
:class:`PoissonSampledDataModule` for the guarantee to hold; with ordinary shuffled batches the logged
epsilon is the usual approximation (``q = batch_size / N``).

Example:
    >>> from toolkit.data import DigitsDataModule
    >>> from toolkit.models import MLP
    >>> from toolkit.training import fit
    >>> dm = DigitsDataModule(image_size=8, flatten=True)
    >>> module = DPClassifierModule(MLP(64, 10), num_classes=10, noise_multiplier=1.0, max_grad_norm=1.0)
    >>> result = fit(module, PoissonSampledDataModule(dm), max_epochs=1)
    >>> 0 < result.metrics["epsilon"] < float("inf")  # the privacy spent, from the RDP accountant
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.classification import binary_auroc

from toolkit._lightning import DataModuleBase
from toolkit._validate import check_class_targets, check_int, check_tensor
from toolkit._extras import require
from toolkit.security.evasion import _eval_mode
from toolkit.training import ClassifierModule

_FIRST_LAYER_HOOK_WARNING = "Full backward hook is firing when gradients are computed with respect to module outputs"

__all__ = ["DPClassifierModule", "PoissonBatchLoader", "PoissonSampledDataModule", "membership_auc",
           "membership_inference", "per_sample_loss"]


def _check_pair(name: str, pair: Any) -> tuple[Tensor, Tensor]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, Tensor) for t in pair)):
        raise TypeError(f"{name} must be a pair (inputs, targets) of tensors, got {type(pair).__name__}")
    if len(pair[0]) != len(pair[1]) or len(pair[1]) == 0:
        raise ValueError(f"{name} must hold the same number (>= 1) of inputs and targets, got "
                         f"{len(pair[0])} and {len(pair[1])}")
    return pair[0], pair[1]


@torch.no_grad()
def per_sample_loss(model: nn.Module, inputs: Tensor, targets: Tensor, batch_size: int = 1024) -> Tensor:
    """Cross-entropy of each sample under ``model`` in eval mode, ``(N,)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_int("batch_size", batch_size, 1)
    check_tensor("inputs", inputs)
    check_tensor("targets", targets, floating=False)
    if targets.shape != inputs.shape[:1]:
        raise ValueError(f"targets must have shape ({len(inputs)},) like inputs, got {tuple(targets.shape)}")
    with _eval_mode(model):
        if len(inputs):
            classes = model(inputs[:1]).shape[-1]
            check_class_targets("targets", targets, len(inputs), classes)
        return torch.cat([F.cross_entropy(model(inputs[i:i + batch_size]), targets[i:i + batch_size], reduction="none")
                          for i in range(0, len(inputs), batch_size)])


def membership_auc(member_losses: Tensor, nonmember_losses: Tensor) -> float:
    """ROC AUC of the score ``-loss`` separating members (positives) from non-members."""
    for name, t in (("member_losses", member_losses), ("nonmember_losses", nonmember_losses)):
        if not isinstance(t, Tensor) or t.dim() != 1 or len(t) == 0:
            raise ValueError(f"{name} must be a non-empty 1-D tensor of losses")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite losses")
    scores = -torch.cat([member_losses, nonmember_losses]).double()
    labels = torch.cat([torch.ones(len(member_losses)), torch.zeros(len(nonmember_losses))]).long()
    return binary_auroc(scores, labels).item()


def membership_inference(model: nn.Module, members: tuple[Tensor, Tensor],
                         nonmembers: tuple[Tensor, Tensor]) -> dict[str, float]:
    """The loss-threshold attack of Yeom et al. (2018) on ``members`` (training samples) vs ``nonmembers``.

    Returns a dict: ``auc`` (all thresholds), ``advantage`` (TPR - FPR at the paper's threshold, the
    mean member loss), ``threshold``, ``member_loss`` and ``nonmember_loss`` (means), ``loss_gap``
    (their difference) and ``acc_gap`` (member minus non-member accuracy: the generalization gap).
    Use the same number of members and non-members for a balanced attack.
    """
    xm, ym = _check_pair("members", members)
    xn, yn = _check_pair("nonmembers", nonmembers)
    lm, ln = per_sample_loss(model, xm, ym), per_sample_loss(model, xn, yn)
    threshold = lm.mean().item()
    tpr = (lm <= threshold).float().mean().item()
    fpr = (ln <= threshold).float().mean().item()
    with torch.no_grad(), _eval_mode(model):
        acc_m = (model(xm).argmax(1) == ym).float().mean().item()
        acc_n = (model(xn).argmax(1) == yn).float().mean().item()
    return {"auc": membership_auc(lm, ln), "advantage": tpr - fpr, "threshold": threshold,
            "member_loss": threshold, "nonmember_loss": ln.mean().item(), "loss_gap": ln.mean().item() - threshold,
            "acc_gap": acc_m - acc_n}


class PoissonBatchLoader:
    """Batches by Poisson sampling: every sample joins each batch independently with ``sample_rate``.

    This is the sampling DP-SGD's accountant assumes (batch sizes vary). An epoch is
    ``num_batches`` batches (default ``round(1 / sample_rate)``, one pass in expectation); the draws come
    from a generator seeded by ``seed`` and the epoch (Lightning calls ``sampler.set_epoch``).
    """

    def __init__(self, *tensors: Tensor, sample_rate: float, num_batches: int | None = None, seed: int = 0) -> None:
        if not tensors or not all(isinstance(t, Tensor) for t in tensors) or len({len(t) for t in tensors}) != 1:
            raise TypeError("tensors must be one or more tensors sharing their first dimension")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be a number in (0, 1], got {sample_rate!r}")
        num_batches = round(1 / sample_rate) if num_batches is None else num_batches
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"num_batches must be an integer >= 1, got {num_batches!r}")
        self.tensors, self.sample_rate, self.num_batches, self.seed = tensors, float(sample_rate), num_batches, seed
        self.sampler = self  # Lightning calls loader.sampler.set_epoch(epoch)
        self.batch_sampler = None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def dataset_size(self) -> int:
        return len(self.tensors[0])

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        for _ in range(self.num_batches):
            idx = torch.nonzero(torch.rand(self.dataset_size, generator=g) < self.sample_rate).flatten()
            yield tuple(t[idx] for t in self.tensors)


class PoissonSampledDataModule(DataModuleBase):
    """Wrap a DataModule so its training loader samples batches Poisson-style (rate ``batch_size / N``).

    Validation, test and every other attribute come from ``base``.
    """

    def __init__(self, base: pl.LightningDataModule) -> None:
        super().__init__()
        if not isinstance(base, pl.LightningDataModule) or not hasattr(base, "tensors"):
            raise TypeError(f"base must be a DataModule with tensors(split), got {type(base).__name__}")
        self.base = base

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "base":
            raise AttributeError(name)
        return getattr(self.__dict__.get("base") or super().__getattribute__("base"), name)

    def setup(self, stage: str | None = None) -> None:
        self.base.setup(stage)

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        return self.base.tensors(split)

    def train_dataloader(self) -> PoissonBatchLoader:
        x, y = self.base.tensors("train")
        return PoissonBatchLoader(x, y, sample_rate=min(1.0, self.base.batch_size / len(y)),
                                  seed=torch.initial_seed() % 2**62)

    def val_dataloader(self):
        return self.base.val_dataloader()

    def test_dataloader(self):
        return self.base.test_dataloader()

    def predict_dataloader(self):
        return self.base.predict_dataloader()


class DPClassifierModule(ClassifierModule):
    """``ClassifierModule`` trained with DP-SGD (opacus); logs ``epsilon`` at ``delta`` every epoch.

    Args:
        backbone: must pass opacus' ``ModuleValidator`` (no BatchNorm: use ``norm="group"``/"layer"/"none").
            Its in-place activations are switched to out-of-place (opacus' hooks require it).
        num_classes, **kwargs: as :class:`~toolkit.training.ClassifierModule`.
        noise_multiplier: noise std over the clipping norm, ``>= 0`` (0: clipping only, no guarantee).
        max_grad_norm: per-sample gradient clipping norm, ``> 0``.
        delta: target delta of the (epsilon, delta) guarantee, in ``(0, 1)``; below ``1 / N`` as a rule.

    Attributes: ``accountant`` (opacus ``RDPAccountant``), ``sample_rate``, :attr:`epsilon`. The backbone
    is wrapped in opacus' ``GradSampleModule``: its weights are ``module.backbone._module``, and the state
    dict keys start with ``backbone._module.``. The accountant's history is saved in checkpoints.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, *, noise_multiplier: float = 1.0,
                 max_grad_norm: float = 1.0, delta: float = 1e-5, **kwargs: Any) -> None:
        require("opacus", "security", "DPClassifierModule (DP-SGD)")
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.validators import ModuleValidator

        super().__init__(backbone, num_classes, **kwargs)
        for name, value, ok in (("noise_multiplier", noise_multiplier, lambda v: 0 <= v < float("inf")),
                                ("max_grad_norm", max_grad_norm, lambda v: 0 < v < float("inf")),
                                ("delta", delta, lambda v: 0 < v < 1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                allowed = {"noise_multiplier": "finite, >= 0", "max_grad_norm": "finite, > 0",
                           "delta": "in (0, 1)"}[name]
                raise ValueError(f"{name} must be a number {allowed}, got {value!r}")
        errors = ModuleValidator.validate(backbone, strict=False)
        if errors:
            raise ValueError(f"backbone is not compatible with DP-SGD: {errors[0]}; e.g. build it with "
                             "norm='group' or norm='none' instead of batch norm")
        self.save_hyperparameters(ignore=["backbone"])
        for layer in backbone.modules():  # opacus' backward hooks forbid in-place ops on hooked outputs
            if getattr(layer, "inplace", False) is True:
                layer.inplace = False
        self.backbone = GradSampleModule(backbone)
        self.accountant = RDPAccountant()
        self.sample_rate: float | None = None

    @property
    def epsilon(self) -> float:
        """The privacy spent so far, at ``delta`` (0 before any step, infinite without noise)."""
        if not self.accountant.history:
            return 0.0
        if self.hparams.noise_multiplier == 0:
            return float("inf")
        return float(self.accountant.get_epsilon(delta=self.hparams.delta))

    def configure_optimizers(self):
        from opacus.optimizers import DPOptimizer

        hp = self.hparams
        if self.trainer.train_dataloader is None:  # optimizers are configured before fit loads the data
            self.trainer.fit_loop.setup_data()
        loader = self.trainer.train_dataloader
        dataset_size = getattr(loader, "dataset_size", None)
        if dataset_size is None:
            raise ValueError("DPClassifierModule needs a training loader with dataset_size "
                             "(TensorBatchLoader or PoissonBatchLoader)")
        if isinstance(loader, PoissonBatchLoader):
            self.sample_rate = loader.sample_rate
        else:
            self.sample_rate = min(1.0, loader.batch_size / dataset_size)
        expected_batch_size = max(1, round(self.sample_rate * dataset_size))
        base = (torch.optim.AdamW(self._param_groups(), lr=hp.lr) if hp.optimizer == "adamw"
                else torch.optim.SGD(self._param_groups(), lr=hp.lr, momentum=hp.momentum))
        optimizer = DPOptimizer(base, noise_multiplier=hp.noise_multiplier, max_grad_norm=hp.max_grad_norm,
                                expected_batch_size=expected_batch_size)
        optimizer.attach_step_hook(self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate))
        scheduler = self._scheduler(optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        # opacus hooks every layer with a full backward hook; on the first layer (whose input needs no
        # gradient) torch warns on each backward. The per-sample gradients are right: hide the noise.
        warnings.filterwarnings("ignore", message=_FIRST_LAYER_HOOK_WARNING)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log("epsilon", self.epsilon, on_step=False, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dp_accountant_history"] = list(self.accountant.history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.accountant.history = [tuple(h) for h in checkpoint.get("dp_accountant_history", [])]
