"""``ClassifierModule``: any backbone, the course's optimizers and schedules, the metrics that matter."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import pytorch_lightning as pl
from torch import Tensor, nn
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from toolkit.calibration.metrics import BrierScore

__all__ = ["ClassifierModule", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "warmup_constant")
STAGES = ("train", "val", "test")
WARMUP_START_FACTOR = 0.01  # warmup ramps the learning rate linearly from 1% of lr
METRIC_FLUSH_ROWS = 4096  # predictions buffered per stage before the metrics are updated in one go


def _stage_metrics(num_classes: int, ece_bins: int) -> nn.ModuleDict:
    # inputs are softmax outputs of checked logits (see _check_batch): skip per-batch re-validation
    return nn.ModuleDict({
        "loss": MeanMetric(),
        "acc": MulticlassAccuracy(num_classes, average="micro", validate_args=False),
        "nll": MeanMetric(),
        "ece": MulticlassCalibrationError(num_classes, n_bins=ece_bins, norm="l1", validate_args=False),
        "brier": BrierScore(validate_args=False),
    })


class ClassifierModule(pl.LightningModule):
    """Train any ``nn.Module`` that maps inputs to ``num_classes`` logits.

    Logs per epoch, for ``train``, ``val`` and ``test``: ``{stage}_loss`` (the training objective,
    with label smoothing), ``{stage}_acc``, ``{stage}_nll`` (plain cross-entropy), ``{stage}_ece``
    (top-label, ``ece_bins`` equal-width bins, torchmetrics) and ``{stage}_brier``. Metrics are
    torchmetrics objects, so they sync across processes under DDP. ``predict_step`` returns logits.

    Args:
        backbone: the network; its output must be ``(N, num_classes)``.
        num_classes: number of classes, ``>= 2``.
        optimizer: "adamw" (decoupled weight decay; Loshchilov & Hutter, 2019) or "sgd"
            (momentum, coupled L2 decay). Decay applies to weights, not to biases and norm scales.
        lr: peak learning rate, ``> 0``.
        weight_decay: ``>= 0``.
        momentum: SGD momentum in ``[0, 1)``.
        schedule: "constant", "cosine" (to zero over training), "warmup_cosine" or "warmup_constant"
            (linear warmup over ``warmup_fraction`` of the steps first). Stepped every batch.
        warmup_fraction: share of all training steps spent warming up, in ``[0, 1)``.
        label_smoothing: in ``[0, 1)`` (Szegedy et al., 2016).
        z_loss: weight ``>= 0`` of the z-loss ``z_loss * mean(log(sum_j exp(logit_j))^2)`` added to the
            objective, which keeps the output logits' normalizer near 1 (Chowdhery et al., 2022, PaLM,
            arXiv:2204.02311, with 1e-4; Wortsman et al., 2023, arXiv:2309.14322). 0 turns it off.
        ece_bins: bins of the logged ECE, ``>= 1``.

    Example:
        >>> from toolkit.models import MLP
        >>> module = ClassifierModule(MLP(64, 10), num_classes=10, lr=3e-3, schedule="cosine")
    """

    def __init__(self, backbone: nn.Module, num_classes: int, optimizer: str = "adamw", lr: float = 1e-3,
                 weight_decay: float = 0.0, momentum: float = 0.9, schedule: str = "constant",
                 warmup_fraction: float = 0.1, label_smoothing: float = 0.0, ece_bins: int = 15,
                 z_loss: float = 0.0) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise TypeError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        declared = getattr(backbone, "num_classes", None)
        if isinstance(declared, int) and declared != num_classes:
            raise ValueError(f"backbone outputs {declared} classes (backbone.num_classes) but "
                             f"num_classes={num_classes}; build the backbone with num_classes={num_classes}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        for name, value, low, high, high_open in (("lr", lr, 0, float("inf"), True),
                                                  ("weight_decay", weight_decay, 0, float("inf"), True),
                                                  ("momentum", momentum, 0, 1, True),
                                                  ("warmup_fraction", warmup_fraction, 0, 1, True),
                                                  ("label_smoothing", label_smoothing, 0, 1, True),
                                                  ("z_loss", z_loss, 0, float("inf"), True)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value < high
            if not ok or (name == "lr" and value == 0):
                bound = "> 0" if name == "lr" else (">= 0" if high == float("inf") else f"in [{low}, {high})")
                raise ValueError(f"{name} must be a number {bound}, got {value!r}")
        if isinstance(ece_bins, bool) or not isinstance(ece_bins, int) or ece_bins < 1:
            raise ValueError(f"ece_bins must be an integer >= 1, got {ece_bins!r}")
        self.save_hyperparameters(ignore=["backbone"])
        self.backbone = backbone
        self.num_classes = num_classes
        self.train_metrics = _stage_metrics(num_classes, ece_bins)
        self.val_metrics = _stage_metrics(num_classes, ece_bins)
        self.test_metrics = _stage_metrics(num_classes, ece_bins)
        self._metric_buffers: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {stage: [] for stage in STAGES}

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The training objective: cross-entropy with ``label_smoothing``, plus the ``z_loss`` term."""
        loss = F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)
        weight = self.hparams.get("z_loss", 0.0)
        return loss + weight * torch.logsumexp(logits.float(), dim=-1).square().mean() if weight else loss

    def _check_batch(self, stage: str, logits: Tensor, targets: Tensor) -> None:
        """Validate every batch: logits shape, target dtype and shape (attribute reads), target range
        (one ``aminmax`` over the batch's labels: a bad label can arrive in any batch, and torch's own
        error for it, "Target 7 is out of bounds", names neither the batch nor the rule)."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"backbone output must have shape (batch, num_classes={self.num_classes}), "
                             f"got {tuple(logits.shape)}; build the backbone with num_classes={self.num_classes}")
        if targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
            raise ValueError(f"targets must have shape ({logits.shape[0]},), got {tuple(targets.shape)}")
        if targets.is_floating_point():
            raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
        if targets.numel():
            low, high = torch.aminmax(targets)
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"targets must be class indices in [0, {self.num_classes}), got range "
                                 f"[{low.item()}, {high.item()}] in a {stage} batch")

    def update_metrics(self, stage: str, logits: Tensor, targets: Tensor, loss: Tensor) -> None:
        """Accumulate the epoch metrics of ``stage`` from a batch's logits (logged at epoch end).

        The batch is only buffered (detached, on its device); the five metrics are updated in one
        vectorized pass once ``METRIC_FLUSH_ROWS`` predictions have gathered, and at the end of the
        epoch. Five small metric updates per step cost about as much as the forward pass of a small
        model on a CPU; one update per few thousand rows costs next to nothing, and the values are
        the same (the metrics are sums over samples).
        """
        buffer = self._metric_buffers[stage]
        buffer.append((logits.detach(), targets.detach(), loss.detach().float().mean()))
        if sum(len(batch_targets) for _, batch_targets, _ in buffer) >= METRIC_FLUSH_ROWS:
            self._flush_metrics(stage)

    def _flush_metrics(self, stage: str) -> None:
        buffer = self._metric_buffers[stage]
        if not buffer:
            return
        metrics: nn.ModuleDict = getattr(self, f"{stage}_metrics")
        with torch.no_grad():
            logits = torch.cat([batch_logits for batch_logits, _, _ in buffer]).float()
            targets = torch.cat([batch_targets for _, batch_targets, _ in buffer])
            losses = torch.stack([batch_loss for _, _, batch_loss in buffer])
            sizes = torch.tensor([len(batch_targets) for _, batch_targets, _ in buffer], dtype=losses.dtype,
                                 device=losses.device)
            buffer.clear()
            probs = logits.softmax(dim=1)
            metrics["loss"].update(losses, weight=sizes)  # the mean of the batch losses, per sample
            metrics["acc"].update(logits, targets)
            metrics["nll"].update(F.cross_entropy(logits, targets, reduction="none"))
            metrics["ece"].update(probs, targets)
            metrics["brier"].update(probs, targets)

    def log_epoch_metrics(self, stage: str) -> None:
        """Compute (synced across processes by torchmetrics), log and reset the metrics of ``stage``.

        Logging once per epoch instead of handing Lightning the metric objects every step keeps the
        per-step cost of the five metrics to appending the batch to a buffer.
        """
        self._flush_metrics(stage)
        metrics: nn.ModuleDict = getattr(self, f"{stage}_metrics")
        if not metrics["loss"].update_called:
            return
        self.log_dict({f"{stage}_{name}": metric.compute() for name, metric in metrics.items()},
                      on_step=False, on_epoch=True)
        for metric in metrics.values():
            metric.reset()

    def _start_epoch(self, stage: str) -> None:
        """Start ``stage``'s metrics empty: a run interrupted mid-epoch (an exception, a stop) never
        reached the epoch end that flushes and resets them."""
        self._metric_buffers[stage].clear()
        for metric in getattr(self, f"{stage}_metrics").values():
            metric.reset()

    def on_train_epoch_start(self) -> None:
        self._start_epoch("train")

    def on_validation_epoch_start(self) -> None:
        self._start_epoch("val")

    def on_test_epoch_start(self) -> None:
        self._start_epoch("test")

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")

    def _shared_step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError(f"batch must be a tuple or list (inputs, targets, ...), got {type(batch).__name__}"
                            + (f" with keys {sorted(batch)}: unpack it in a subclass's training_step"
                               if isinstance(batch, dict) else ""))
        x, targets = batch[0], batch[1]
        logits = self(x)
        self._check_batch(stage, logits, targets)
        loss = self.loss(logits, targets)
        self.update_metrics(stage, logits, targets, loss)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: Tensor | tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def _param_groups(self) -> list[dict]:
        decay, no_decay = [], []
        for param in self.parameters():
            if param.requires_grad:
                (decay if param.dim() > 1 else no_decay).append(param)
        return [{"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> LRScheduler | None:
        schedule = self.hparams.schedule
        if schedule == "constant":
            return None
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.hparams.warmup_fraction * total) if schedule.startswith("warmup") else 0
        after = (CosineAnnealingLR(optimizer, T_max=max(1, total - warmup)) if schedule.endswith("cosine")
                 else ConstantLR(optimizer, factor=1.0, total_iters=0))
        if warmup == 0:
            return after
        ramp = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup)
        return SequentialLR(optimizer, [ramp, after], milestones=[warmup])

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(self._param_groups(), lr=hp.lr)
        else:
            optimizer = torch.optim.SGD(self._param_groups(), lr=hp.lr, momentum=hp.momentum)
        scheduler = self._scheduler(optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
