"""``train_members``: K independent models of one architecture trained in one step with ``torch.func``.

For the small models of the course (MNIST-1D MLPs, small CNNs) a CPU spends most of a training step
on per-operation overhead rather than arithmetic: twenty models trained one after the other pay that
overhead twenty times. Stacking the members' parameters (``torch.func.stack_module_state``) and
running one member's forward under ``torch.func.vmap`` (``functional_call``) pays it once for all of
them, and each operation works on K times more numbers (the ensembling trick of the ``torch.func``
tutorial "Model ensembling").

The members stay independent, as if trained in separate runs:

- initialization: member ``k`` is built by the factory after ``seed_everything(seed_k)``, exactly as
  :func:`~toolkit.training.fit` builds it for ``seed=seed_k``;
- data order: member ``k`` sees the batches that ``fit(seed=seed_k)`` sees (per-member index
  tensors, shuffled by ``seed_k + epoch`` as :class:`~toolkit.data.TensorBatchLoader` does);
- dropout: its own rate and its own masks, drawn from its own generator (:func:`member_generators`),
  so that a member trains the same whichever members train beside it;
- optimizer: its own learning rate and weight decay, the math of ``torch.optim.AdamW`` / ``SGD``
  applied with one rate per member (a stacked tensor cannot be split into ``torch.optim`` parameter
  groups, so the update is written out here and tested against ``torch.optim`` run alone);
- metrics: each member's ``train_*``, ``val_*`` and ``test_*`` (the metrics of
  :class:`~toolkit.training.ClassifierModule`), the loss summed over members only for ``backward``
  (the members share no parameter, so each gradient is that member's own), and every epoch's
  values (``return_history=True``);
- regularizers: its own label smoothing, z-loss, mixup alpha and augmentation strength, mixup and
  augmentation drawing from the member's own generators (:func:`member_generators`);
- early stopping: ``restore_best`` gives each member its own weights of its own best validation
  epoch, without stopping the others.

It all happens inside one LightningModule (:class:`StackedMembers`) run by :func:`fit`, so the
Trainer's loop, CSV logging, checkpointing and callbacks apply unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from toolkit._lightning import is_lightning_module
from toolkit.training import module as module_file
from toolkit.training.module import STAGES, ClassifierModule

__all__ = ["MEMBER_KEYS", "MONITORS", "StackedMembers", "member_generators", "train_members"]

MEMBER_KEYS = ("seed", "lr", "weight_decay", "dropout", "label_smoothing", "mixup", "augment",
               "z_loss")  # what a member's dict may set
METRICS = ("loss", "acc", "nll", "ece", "brier")
MONITORS = tuple(f"val_{name}" for name in METRICS)  # what restore_best may monitor
_MAXIMIZED = ("val_acc",)  # the others are minimized
_MIXUP_STREAM, _AUGMENT_STREAM, _DROPOUT_STREAM = 1, 2, 3  # member k's generators: SeedSequence([seed_k, stream])
_SEED_BOUND = 2**62  # as toolkit.data.base: shuffle seeds stay below 2**64 after adding the epoch
_REFUSED_TRAINER_KWARGS = {  # options whose effect would mix the members
    "gradient_clip_val": "clipping by the norm of all members' gradients together would couple them",
    "gradient_clip_algorithm": "clipping by the norm of all members' gradients together would couple them",
    "ckpt_path": "resuming a stacked run is not supported",
    "strategy": "stacked members train in one process",
}


# ---- per-member dropout ----------------------------------------------------------------------------
class _MemberDropout(nn.Module):
    """``nn.Dropout`` whose rate is a buffer, so that under ``vmap`` every member has its own rate.

    A unit is kept where ``noise < 1 - p``: ``noise`` is uniform on ``[0, 1)`` of the input's shape,
    handed in per member by :class:`StackedMembers` (``functional_call`` sets the attribute), or,
    when none is given, drawn from torch's global stream.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(float(p)))
        self.noise: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.p
        noise = torch.rand_like(x) if self.noise is None else self.noise
        return x * (noise < keep).to(x.dtype) / keep


def _dropouts(module: nn.Module) -> list[tuple[str, nn.Dropout]]:
    return [(name, m) for name, m in module.named_modules() if type(m) is nn.Dropout]


def _with_member_dropout(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every ``nn.Dropout`` replaced by :class:`_MemberDropout`."""
    module = copy.deepcopy(module)
    for name, layer in _dropouts(module):
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, _MemberDropout(layer.p))
    return module


# ---- per-member optimizers -------------------------------------------------------------------------
def _per_member(values: Tensor, like: Tensor) -> Tensor:
    """``values`` (one per member, float64 on the CPU, where the scalars of ``torch.optim`` are computed
    in double precision too) as ``like``'s dtype and device, shaped to broadcast against it."""
    return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


class _MemberAdamW(torch.optim.Optimizer):
    """``torch.optim.AdamW`` (Loshchilov & Hutter, 2019, "Decoupled Weight Decay Regularization",
    arXiv:1711.05101) on the members' flat ``(K, P)`` parameter, one learning rate and decay per member.

    The group's ``lr`` is a factor (1.0, moved by learning-rate schedules) of each member's rate;
    only the first ``decayed_columns`` columns (the weights, not biases and norm scales) are decayed.
    One update of the whole ``(K, P)`` tensor costs a handful of operations however many tensors the
    network has; when every member has the same rate (seeds, or sweeps of anything but the rate)
    the Adam part is torch's fused kernel (``torch._fused_adam_``, what ``AdamW(fused=True)`` runs),
    one pass instead of eight.
    """

    def __init__(self, flat: Tensor, decayed_columns: int, member_lr: Tensor, member_wd: Tensor,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__([{"params": [flat], "decayed_columns": decayed_columns}],
                         {"lr": 1.0, "betas": betas, "eps": eps})
        self.member_lr, self.member_wd = member_lr, member_wd
        self._shared_lr = float(member_lr[0]) if bool((member_lr == member_lr[0]).all()) else None
        self._decays = bool((member_wd != 0).any())

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            decayed = group["decayed_columns"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                fused = self._shared_lr is not None and param.device.type in ("cpu", "cuda")
                if not state:
                    state["step"] = torch.tensor(0.0, device=param.device) if fused else 0
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                lr = self.member_lr * group["lr"]
                if decayed and self._decays:  # AdamW decays first: p *= 1 - lr * wd
                    param[:, :decayed].mul_(_per_member(1 - lr * self.member_wd, param))
                exp_avg, exp_avg_sq, grad = state["exp_avg"], state["exp_avg_sq"], param.grad
                if fused:
                    torch._fused_adam_([param], [grad], [exp_avg], [exp_avg_sq], [], [state["step"]], amsgrad=False,
                                       lr=self._shared_lr * group["lr"], beta1=beta1, beta2=beta2, weight_decay=0.0,
                                       eps=group["eps"], maximize=False, grad_scale=None, found_inf=None)
                    continue
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1 ** state["step"]
                bias_correction2_sqrt = math.sqrt(1 - beta2 ** state["step"])
                denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(group["eps"])
                param.addcdiv_(exp_avg * _per_member(-lr / bias_correction1, param), denom)
        return loss


class _MemberSGD(torch.optim.Optimizer):
    """``torch.optim.SGD`` with momentum and coupled L2 weight decay on the flat ``(K, P)`` parameter,
    one rate and decay per member (decay on the first ``decayed_columns`` columns)."""

    def __init__(self, flat: Tensor, decayed_columns: int, member_lr: Tensor, member_wd: Tensor,
                 momentum: float) -> None:
        super().__init__([{"params": [flat], "decayed_columns": decayed_columns}], {"lr": 1.0, "momentum": momentum})
        self.member_lr, self.member_wd = member_lr, member_wd

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            decayed = group["decayed_columns"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if decayed:
                    grad = grad.clone()
                    grad[:, :decayed].add_(_per_member(self.member_wd, param) * param[:, :decayed])
                if group["momentum"] != 0:
                    state = self.state[param]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = grad.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                    grad = state["momentum_buffer"]
                param.sub_(_per_member(self.member_lr * group["lr"], param) * grad)
        return loss


# ---- data: each member its own batch order ---------------------------------------------------------
class _MemberSampler:
    """The epoch counter Lightning sets (``set_epoch``) and each member's order for that epoch."""

    def __init__(self, num_samples: int, seeds: Sequence[int]) -> None:
        self.num_samples, self.seeds, self.epoch = num_samples, list(seeds), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def orders(self) -> Tensor:
        """``(K, N)``: member ``k``'s permutation, the one ``TensorBatchLoader`` draws for its seed."""
        return torch.stack([torch.randperm(self.num_samples,
                                           generator=torch.Generator().manual_seed(seed % _SEED_BOUND + self.epoch))
                            for seed in self.seeds])


class _MemberLoader:
    """Training batches ``(x, y)`` of shape ``(K, B, ...)`` and ``(K, B)``: row ``k`` is member ``k``'s batch."""

    def __init__(self, x: Tensor, y: Tensor, seeds: Sequence[int], batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.sampler = _MemberSampler(len(x), seeds)
        self.batch_sampler = None  # read by Lightning beside ``sampler``, as on a DataLoader

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        orders = self.sampler.orders()
        for start in range(0, len(self.x), self.batch_size):
            idx = orders[:, start:start + self.batch_size]
            yield self.x[idx], self.y[idx]


class _MembersData(pl.LightningDataModule):
    """The course's DataModule, except that training batches are stacked per member."""

    def __init__(self, data: Any, seeds: Sequence[int]) -> None:
        super().__init__()
        self.data, self.seeds = data, list(seeds)

    def train_dataloader(self) -> _MemberLoader:
        x, y = self.data.tensors("train")
        return _MemberLoader(x, y, self.seeds, self.data.batch_size)

    def val_dataloader(self) -> Any:
        return self.data.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.data.test_dataloader()


def _top_label_ece(confidences: Tensor, correct: Tensor, n_bins: int) -> Tensor:
    """``(K,)``: torchmetrics' top-label L1 calibration error of each row of ``confidences`` ``(K, N)``,
    all rows in one pass: its binning (``bucketize`` on ``linspace(0, 1, n_bins + 1)``, right-closed,
    ``n_bins + 1`` slots), its per-bin sums (``scatter_add``, in sample order), one slot range per row."""
    k, _ = confidences.shape
    slots = n_bins + 1
    boundaries = torch.linspace(0, 1, slots, dtype=confidences.dtype, device=confidences.device)
    offsets = slots * torch.arange(k, device=confidences.device).unsqueeze(1)
    index = (torch.bucketize(confidences, boundaries, right=True) - 1 + offsets).reshape(-1)
    sums = torch.zeros(3, k * slots, dtype=confidences.dtype, device=confidences.device)
    sums[0].scatter_add_(0, index, torch.ones_like(confidences).reshape(-1))
    sums[1].scatter_add_(0, index, confidences.reshape(-1))
    sums[2].scatter_add_(0, index, correct.to(confidences.dtype).reshape(-1))
    count, confidence, accuracy = sums.view(3, k, slots)
    gap = (torch.nan_to_num(accuracy / count) - torch.nan_to_num(confidence / count)).abs()
    return (gap * count / count.sum(dim=1, keepdim=True)).sum(dim=1)


def _member_brier(probs: Tensor, targets: Tensor) -> Tensor:
    """``(K,)``: each member's multiclass Brier score ``mean_i sum_c (p_ic - 1[y_i = c])^2`` from
    ``probs`` ``(K, C, N)`` and ``targets`` ``(K, N)``: 1 subtracted at the targets (no one-hot
    matrix), every term a square (the identity ``sum_c p_c^2 - 2 p_y + 1`` cancels to rounding
    noise, even below 0, on a confident member)."""
    at = targets.unsqueeze(1)
    distance = probs.clone().scatter_add_(1, at, torch.full(at.shape, -1.0, dtype=probs.dtype, device=probs.device))
    return distance.square_().sum(dim=1).mean(dim=1)


# ---- each member's random streams (mixup, augmentation, dropout) ----------------------------------
def member_generators(seed: int, device: torch.device | str = "cpu") -> tuple[np.random.Generator, torch.Generator]:
    """The generators of the member with ``seed``: mixup draws ``lam`` and the partner permutation
    from ``numpy.random.default_rng([seed, 1])``; ``augment`` gets a ``torch.Generator`` on ``device``
    seeded from ``numpy.random.SeedSequence([seed, 2])`` (and the dropout masks come from one seeded
    from ``SeedSequence([seed, 3])``, see :func:`_torch_generator`). Separate from each other and from
    torch's global stream (the initialization), so one regularizer's draws do not shift another's, and
    a member's draws do not depend on the other members."""
    mixing = np.random.default_rng([seed, _MIXUP_STREAM])
    return mixing, _torch_generator(seed, _AUGMENT_STREAM, device)


def _torch_generator(seed: int, stream: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from ``numpy.random.SeedSequence([seed, stream])``."""
    state = int(np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(state)


# ---- the stacked module ----------------------------------------------------------------------------
class StackedMembers(pl.LightningModule):
    """K members of one architecture with stacked parameters, trained and evaluated in one ``vmap``.

    Built by :func:`train_members` (which returns it with ``return_members=True``). Logs per epoch
    ``{stage}_{metric}``, the mean over members, with ``self.log`` (what ``EarlyStopping`` or
    ``ModelCheckpoint`` can monitor; stopping stops every member), and every member's
    ``{stage}_{metric}/member_{k}`` to the Trainer's loggers (the CSV history has them); the last
    values are in ``member_metrics[stage][metric][k]``, every epoch's in :attr:`history`.

    Args:
        backbones: the K members' networks (same architecture, their own weights).
        num_classes: logits per sample, ``>= 2``.
        lrs, weight_decays: one per member.
        settings: the :class:`ClassifierModule` settings shared by all (optimizer, momentum, schedule,
            warmup_fraction, label_smoothing, ece_bins, z_loss).
        regularizers: optional per-member lists ``label_smoothing``, ``z_loss``, ``mixup`` (Beta
            alpha, 0 off) and ``augment`` (strength given to ``augment``, 0 off); missing ones take
            the shared setting (label_smoothing, z_loss) or 0.
        seeds: the members' seeds (their mixup and augmentation generators), default ``0..K-1``.
        augment: ``augment(x, strength, generator) -> x`` applied to member ``k``'s training batch
            when its strength is > 0 (see :func:`train_members`).
        restore_best: a validation metric (one of :data:`MONITORS`) or None: at the end of training
            each member gets back its weights of its own best epoch by that metric.
    """

    def __init__(self, backbones: Sequence[nn.Module], num_classes: int, lrs: Sequence[float],
                 weight_decays: Sequence[float], settings: dict[str, Any],
                 regularizers: dict[str, Sequence[float]] | None = None, seeds: Sequence[int] | None = None,
                 augment: Callable[[Tensor, float, torch.Generator], Tensor] | None = None,
                 restore_best: str | None = None) -> None:
        super().__init__()
        k = len(backbones)
        regularizers = dict(regularizers or {})
        per_member = {"label_smoothing": [float(settings.get("label_smoothing", 0.0))] * k,
                      "z_loss": [float(settings.get("z_loss", 0.0))] * k, "mixup": [0.0] * k, "augment": [0.0] * k}
        per_member |= {name: [float(v) for v in values] for name, values in regularizers.items()}
        self.save_hyperparameters({**settings, "lrs": [float(v) for v in lrs],
                                   "weight_decays": [float(v) for v in weight_decays],
                                   **{f"member_{name}": values for name, values in per_member.items()},
                                   "seeds": list(seeds) if seeds is not None else list(range(k)),
                                   "restore_best": restore_best})
        self.augment = augment  # not a hyperparameter: a callable
        self.num_classes, self.num_members = num_classes, k
        object.__setattr__(self, "_template", copy.deepcopy(backbones[0]))  # for member_backbone (not a submodule)
        skeletons = [_with_member_dropout(b) for b in backbones]
        params, buffers = stack_module_state(skeletons)
        trained = {name for name, param in backbones[0].named_parameters() if param.requires_grad}
        frozen = {name: params.pop(name) for name in list(params) if name not in trained}
        buffers = {**frozen, **buffers}  # frozen parameters are carried along, never updated
        if len({t.dtype for t in params.values()}) > 1:
            raise ValueError(f"the network's parameters must share one dtype to be stacked, got "
                             f"{sorted({str(t.dtype) for t in params.values()})}")
        # one flat (K, P) parameter, weights (decayed) first; each tensor of the network is a view of it
        order = [n for n in params if params[n].dim() > 2] + [n for n in params if params[n].dim() <= 2]
        self._layout, start = [], 0
        for name in order:
            size = params[name][0].numel()
            self._layout.append((name, start, start + size, tuple(params[name].shape[1:])))
            start += size
        self._decayed_columns = sum(params[n][0].numel() for n in order if params[n].dim() > 2)
        self.flat = nn.Parameter(torch.cat([params[n].detach().reshape(len(backbones), -1) for n in order], dim=1))
        self._buffer_names = list(buffers)
        for i, name in enumerate(self._buffer_names):
            self.register_buffer(f"stacked_buffer_{i}", buffers[name].clone())
        base = skeletons[0].to("meta")
        object.__setattr__(self, "_base", base)  # not a submodule: its (meta) weights are never used
        # per-member rates stay float64 on the CPU (not buffers): the optimizer computes its scalars from them
        self.member_lr = torch.tensor(self.hparams.lrs, dtype=torch.float64)
        self.member_wd = torch.tensor(self.hparams.weight_decays, dtype=torch.float64)
        # per-member loss settings, (K,) in the parameters' dtype (moved with the module: buffers)
        for name in ("label_smoothing", "z_loss"):
            self.register_buffer(f"member_{name}", torch.tensor(per_member[name], dtype=self.flat.dtype),
                                 persistent=False)
        smoothings = per_member["label_smoothing"]
        self._shared_smoothing = smoothings[0] if len(set(smoothings)) == 1 else None
        self._any_z_loss = any(v > 0 for v in per_member["z_loss"])
        self._mixed = any(v > 0 for v in per_member["mixup"])
        self._augmented = any(v > 0 for v in per_member["augment"])
        self._buffers_of_stage: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {s: [] for s in STAGES}
        # which members drop (set with their dropout generators in on_train_start) and, per batch shape,
        # the dropout layers' input shapes and dtypes: {batch shape: {layer path: (shape, dtype)}}
        self._dropping: list[bool] = []
        self._noise_shapes: dict[tuple[int, ...], dict[str, tuple[tuple[int, ...], torch.dtype]]] = {}
        # the last epoch's metrics of every member: member_metrics[stage][metric][k]
        self.member_metrics: dict[str, dict[str, list[float]]] = {}
        # every epoch's: _epochs[epoch] = {"step": optimizer steps, "train": {metric: [K]}, "val": {...}}
        self._epochs: dict[int, dict[str, Any]] = {}
        self.best_epoch: list[int] | None = None  # with restore_best: each member's best epoch and its step
        self.best_step: list[int] | None = None
        self._best: dict[str, Any] | None = None

    # ---- the vmapped forward ----
    def _state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        k = self.flat.shape[0]
        # one split (its backward is one concatenation) rather than a slice per tensor (a zero-filled
        # (K, P) gradient each)
        chunks = self.flat.split([b - a for _, a, b, _ in self._layout], dim=1)
        params = {name: chunk.view(k, *shape) for (name, _, _, shape), chunk in zip(self._layout, chunks)}
        buffers = {name: getattr(self, f"stacked_buffer_{i}") for i, name in enumerate(self._buffer_names)}
        return params, buffers

    def _call(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self._base, (params, buffers), (x,))

    def forward(self, x: Tensor, per_member: bool = False, noise: dict[str, Tensor] | None = None) -> Tensor:
        """Logits ``(K, B, num_classes)``; ``x`` is ``(B, ...)`` shared by all members, or ``(K, B, ...)``
        (one batch per member) with ``per_member=True``. ``noise``: the dropout layers' uniform draws,
        ``{layer path + ".noise": (K, *input shape)}`` (:meth:`_dropout_noise`); without it dropout in
        training mode draws from torch's global stream."""
        self._base.train(self.training)
        params, buffers = self._state()
        buffers = {**buffers, **(noise or {})}
        return vmap(self._call, in_dims=(0, 0, 0 if per_member else None), randomness="different")(params, buffers, x)

    def _dropout_noise(self, x: Tensor) -> dict[str, Tensor] | None:
        """Every dropout layer's uniform draws for the members' batches ``x`` (``(K, B, ...)``), member
        ``k``'s from its own generator (zeros, which keep every unit, where its rate is 0); None when
        no member drops. The layers' input shapes come from one evaluation-mode pass of member 0 per
        batch shape (cached); a layer that pass does not reach falls back to the global stream."""
        if not self._dropping:
            return None
        key = tuple(x.shape[1:])
        if key not in self._noise_shapes:
            shapes, hooks = {}, []

            def record(path: str, inputs: tuple[Tensor, ...]) -> None:  # a pre-hook returning None keeps the inputs
                shapes.setdefault(path, (tuple(inputs[0].shape), inputs[0].dtype))

            for path, layer in self._base.named_modules():
                if isinstance(layer, _MemberDropout):
                    hooks.append(layer.register_forward_pre_hook(lambda _, inputs, path=path: record(path, inputs)))
            params, buffers = self._state()
            was_training = self._base.training
            try:
                with torch.no_grad():
                    self._base.eval()
                    self._call({n: p[0] for n, p in params.items()}, {n: b[0] for n, b in buffers.items()}, x[0])
            finally:
                self._base.train(was_training)
                for hook in hooks:
                    hook.remove()
            self._noise_shapes[key] = shapes
        noise = {}
        for path, (shape, dtype) in self._noise_shapes[key].items():
            zeros = torch.zeros(shape, device=x.device, dtype=dtype)
            noise[f"{path}.noise" if path else "noise"] = torch.stack(
                [torch.rand(shape, generator=self._dropout_generators[k], device=x.device, dtype=dtype)
                 if drops else zeros for k, drops in enumerate(self._dropping)])
        return noise

    def _losses(self, logits: Tensor, targets: Tensor) -> Tensor:
        """``(K,)``: each member's mean objective over its batch, :meth:`ClassifierModule.loss` with the
        member's own weights: cross-entropy with its label smoothing plus its z-loss."""
        k, b, _ = logits.shape
        targets = targets.expand(k, b)
        # classes in the middle, (K, C, B): torch's (log-)softmax over a short last dimension (10
        # classes) runs several times slower than over dimension 1 with the samples innermost
        by_class = logits.transpose(1, 2)
        if self._shared_smoothing is not None:  # one smoothing for all members: torch's own loss
            per_sample = F.cross_entropy(by_class, targets, label_smoothing=self._shared_smoothing, reduction="none")
        else:  # torch's formula, (1 - eps) * nll + eps * mean_c(-log p_c), with one eps per member
            log_probs = by_class.log_softmax(dim=1)
            nll = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
            smoothing = self.member_label_smoothing.view(k, 1)
            per_sample = (1 - smoothing) * nll + smoothing * -log_probs.mean(dim=1)
        losses = per_sample.mean(dim=1)
        if self._any_z_loss:
            losses = losses + self.member_z_loss * torch.logsumexp(by_class.float(), dim=1).square().mean(dim=1)
        return losses

    def _check_logits(self, logits: Tensor) -> None:
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"backbone output must have shape (batch, num_classes={self.num_classes}), "
                             f"got {tuple(logits.shape[1:])}")

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, targets = batch[0], batch[1]
        logits = self(x)
        self._check_logits(logits)
        losses = self._losses(logits, targets)
        self._buffers_of_stage[stage].append((logits.detach(), targets.detach(), losses.detach()))
        return losses.sum()

    # ---- training: each member's batch, its augmentation and mixup, its loss ----
    def on_train_start(self) -> None:
        """Member ``k``'s generators, fresh for every fit: :func:`member_generators` of its seed."""
        streams = [member_generators(seed, self.device) for seed in self.hparams.seeds]
        self._mixup_generators = [mixing for mixing, _ in streams]
        self._augment_generators = [augmenting for _, augmenting in streams]
        self._dropout_generators = [_torch_generator(seed, _DROPOUT_STREAM, self.device) for seed in self.hparams.seeds]
        _, buffers = self._state()  # each _MemberDropout's rate is its buffer "p", (K,) stacked
        rates = [buffers[f"{path}.p" if path else "p"] for path, layer in self._base.named_modules()
                 if isinstance(layer, _MemberDropout)]
        dropping = torch.stack(rates).gt(0).any(0).tolist() if rates else []
        self._dropping = dropping if any(dropping) else []
        self._noise_shapes = {}

    def _augment_batch(self, x: Tensor) -> Tensor:
        """The augmented members' batches: one ``augment.batched`` call for all of them when the
        augmentation has one, otherwise one ``augment`` call per augmented member (in member order)."""
        strengths = self.hparams.member_augment
        chosen = [k for k, strength in enumerate(strengths) if strength > 0]
        batched = getattr(self.augment, "batched", None)
        if callable(batched):
            rows = torch.tensor(chosen, device=x.device)
            subset = x if len(chosen) == len(x) else x.index_select(0, rows)
            out = batched(subset, [strengths[k] for k in chosen], [self._augment_generators[k] for k in chosen])
            if not isinstance(out, Tensor) or out.shape != subset.shape:
                raise ValueError(f"augment.batched must return a tensor of the members' batches' shape "
                                 f"{tuple(subset.shape)}, got {getattr(out, 'shape', type(out).__name__)}")
            return out if len(chosen) == len(x) else x.index_copy(0, rows, out.to(x.dtype))
        rows = list(x.unbind(0))
        for k in chosen:
            out = self.augment(rows[k], strengths[k], self._augment_generators[k])
            if not isinstance(out, Tensor) or out.shape != rows[k].shape:
                raise ValueError(f"augment must return a tensor of the batch's shape {tuple(rows[k].shape)}, "
                                 f"got {getattr(out, 'shape', type(out).__name__)}")
            rows[k] = out
        return torch.stack(rows)

    def _mix(self, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """mixup (Zhang et al., 2018, arXiv:1710.09412) per member: ``lam_k * x + (1 - lam_k) * x[perm_k]``
        with ``lam_k ~ Beta(alpha_k, alpha_k)`` and ``perm_k`` drawn from member k's generator (in
        that order, once per batch); ``alpha_k = 0`` leaves the member's batch as it is (``lam_k = 1``)."""
        k, b = targets.shape
        lam = torch.ones(k, dtype=torch.float64)
        perms = torch.arange(b).repeat(k, 1)
        for i, alpha in enumerate(self.hparams.member_mixup):
            if alpha > 0:
                rng = self._mixup_generators[i]
                lam[i] = rng.beta(alpha, alpha)
                perms[i] = torch.from_numpy(rng.permutation(b))
        perms, lam = perms.to(x.device), lam.to(device=x.device, dtype=x.dtype)
        partners = x[torch.arange(k, device=x.device).unsqueeze(1), perms]
        shape = (k, *([1] * (x.dim() - 1)))
        return lam.view(shape) * x + (1 - lam.view(shape)) * partners, targets.gather(1, perms), lam

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, targets = batch[0], batch[1]  # (K, B, ...) and (K, B): one batch per member
        if self.augment is not None and self._augmented:
            x = self._augment_batch(x)
        noise = self._dropout_noise(x)
        logits_of = (lambda inputs: self(inputs, per_member=True, noise=noise))
        if not self._mixed:
            logits = logits_of(x)
            self._check_logits(logits)
            losses, shown = self._losses(logits, targets), targets
        else:
            mixed, partners, lam = self._mix(x, targets)
            logits = logits_of(mixed)
            self._check_logits(logits)
            losses = lam * self._losses(logits, targets) + (1 - lam) * self._losses(logits, partners)
            # the metrics see the dominant label, as RegularizedClassifierModule's do
            shown = torch.where((lam >= 0.5).unsqueeze(1), targets, partners)
        self._buffers_of_stage["train"].append((logits.detach(), shown.detach(), losses.detach()))
        return losses.sum()  # the members share no parameter: each gradient is that member's own

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Logits ``(B, K, num_classes)`` (so that batches concatenate along samples)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).transpose(0, 1)

    # ---- metrics, as ClassifierModule computes them, per member ----
    def _member_values(self, stage: str) -> dict[str, Tensor]:
        """Every member's epoch metrics from the buffered batches, ``{metric: (K,)}``.

        The definitions of :class:`ClassifierModule`'s metrics: the size-weighted mean of the batch
        losses, micro accuracy, mean cross-entropy, torchmetrics' top-label ECE (``ece_bins``
        equal-width bins, L1) and the multiclass Brier score ``mean_i sum_c (p_ic - 1[y_i = c])^2``,
        computed for all members at once.
        """
        buffer = self._buffers_of_stage[stage]
        with torch.no_grad():
            logits = torch.cat([lg for lg, _, _ in buffer], dim=1).float()
            targets = torch.cat([t.expand(self.num_members, -1) for _, t, _ in buffer], dim=1)
            losses = torch.stack([ls for _, _, ls in buffer], dim=1)
            sizes = torch.tensor([t.shape[-1] for _, t, _ in buffer], dtype=losses.dtype, device=losses.device)
            buffer.clear()
            by_class = logits.transpose(1, 2).contiguous()  # (K, C, N): see _losses
            probs = by_class.softmax(dim=1)
            confidences, predictions = probs.max(dim=1)
            values = {
                "loss": (losses * sizes).sum(dim=1) / sizes.sum(),
                "acc": (logits.argmax(dim=-1) == targets).to(probs.dtype).mean(dim=1),  # over the classes innermost: 4x faster
                "nll": F.cross_entropy(by_class, targets, reduction="none").mean(dim=1),
                "ece": _top_label_ece(confidences, predictions == targets, self.hparams.ece_bins),
                "brier": _member_brier(probs, targets),
            }
        return {name: values[name].cpu() for name in METRICS}

    def _log_epoch(self, stage: str) -> None:
        """Log the means over members through ``self.log`` (what callbacks see) and every member's
        value straight to the Trainer's loggers (one ``self.log`` per key would cost Lightning's
        per-key bookkeeping K times over); keep the members' values in ``member_metrics``."""
        if not self._buffers_of_stage[stage]:
            return
        values = self._member_values(stage)
        self.log_dict({f"{stage}_{name}": v.mean() for name, v in values.items()}, on_step=False, on_epoch=True)
        if not self.trainer.sanity_checking:
            self.member_metrics[stage] = {name: v.tolist() for name, v in values.items()}
            if stage != "test":
                record = self._epochs.setdefault(self.current_epoch + 1, {})
                record["step"], record[stage] = self.trainer.global_step, self.member_metrics[stage]
            if stage == "val" and self.hparams.restore_best is not None:
                self._track_best(values[self.hparams.restore_best[len("val_"):]])
            for logger in self.loggers:
                logger.log_metrics({"epoch": self.current_epoch, **{f"{stage}_{name}/member_{k}": float(v[k])
                                                                    for name, v in values.items()
                                                                    for k in range(len(v))}},
                                   step=self.trainer.fit_loop.epoch_loop._batches_that_stepped)

    # ---- each member's best epoch (restore_best) ----
    @torch.no_grad()
    def _track_best(self, value: Tensor) -> None:
        """Keep each member's weights (and buffers) of the epoch with its best ``value`` so far; a tie
        keeps the earlier epoch and NaN never counts as better (as ``ModelCheckpoint``)."""
        epoch, step = self.current_epoch + 1, self.trainer.global_step
        buffers = [getattr(self, f"stacked_buffer_{i}") for i in range(len(self._buffer_names))]
        if self._best is None:
            self._best = {"value": value.clone(), "flat": self.flat.detach().clone(),
                          "buffers": [b.clone() for b in buffers]}
            self.best_epoch, self.best_step = [epoch] * self.num_members, [step] * self.num_members
            return
        best = self._best
        improved = value > best["value"] if self.hparams.restore_best in _MAXIMIZED else value < best["value"]
        if not improved.any():
            return
        best["value"] = torch.where(improved, value, best["value"])
        rows = improved.nonzero().squeeze(1).to(self.flat.device)
        best["flat"][rows] = self.flat.detach()[rows]
        for kept, buffer in zip(best["buffers"], buffers):
            kept[rows] = buffer[rows]
        for k in improved.nonzero().squeeze(1).tolist():
            self.best_epoch[k], self.best_step[k] = epoch, step

    def on_train_end(self) -> None:
        """With ``restore_best``: every member's weights back to those of its own best epoch."""
        if self.hparams.restore_best is None:
            return
        if self._best is None:
            raise RuntimeError(f"restore_best={self.hparams.restore_best!r} found no validation epoch to restore "
                               "from: validate every epoch (limit_val_batches > 0, check_val_every_n_epoch=1)")
        with torch.no_grad():
            self.flat.copy_(self._best["flat"])
            for i, kept in enumerate(self._best["buffers"]):
                getattr(self, f"stacked_buffer_{i}").copy_(kept)

    @property
    def history(self) -> pd.DataFrame:
        """Every member's metrics at every epoch: one row per member and epoch (members in order),
        columns ``member`` (its index), ``seed``, ``epoch`` (epochs completed, 1, 2, ...), ``step``
        (optimizer steps taken by then) and each ``train_*`` / ``val_*`` metric."""
        rows = []
        for k, seed in enumerate(self.hparams.seeds):
            for epoch, record in sorted(self._epochs.items()):
                rows.append({"member": k, "seed": seed, "epoch": epoch, "step": record["step"],
                             **{f"{stage}_{name}": values[k] for stage in ("train", "val")
                                for name, values in record.get(stage, {}).items()}})
        return pd.DataFrame(rows)

    def _start(self, stage: str) -> None:
        self._buffers_of_stage[stage].clear()

    def on_train_epoch_start(self) -> None:
        self._start("train")

    def on_validation_epoch_start(self) -> None:
        self._start("val")

    def on_test_epoch_start(self) -> None:
        self._start("test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    # ---- optimizer ----
    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "adamw":
            optimizer = _MemberAdamW(self.flat, self._decayed_columns, self.member_lr, self.member_wd)
        else:
            optimizer = _MemberSGD(self.flat, self._decayed_columns, self.member_lr, self.member_wd, hp.momentum)
        scheduler = ClassifierModule._scheduler(self, optimizer)  # schedules scale the factor 1.0
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- using the trained members ----
    @torch.no_grad()
    def predict_logits(self, loader: Any) -> Tensor:
        """Every member's logits over ``loader`` (batches ``x`` or ``(x, ...)``), ``(K, N, num_classes)``, on CPU.

        Runs in eval mode (no dropout) without a Trainer; the mode the module was in is restored.
        """
        if loader is None or isinstance(loader, (str, bytes, Tensor)) or not hasattr(loader, "__iter__"):
            raise TypeError(f"loader must be an iterable of batches (a DataLoader, a TensorBatchLoader), "
                            f"got {type(loader).__name__}")
        was_training = self.training
        self.eval()
        device = self.flat.device
        try:
            outputs = [self((b[0] if isinstance(b, (tuple, list)) else b).to(device)).cpu() for b in loader]
        finally:
            self.train(was_training)
        return torch.cat(outputs, dim=1)

    @property
    def shared_network(self) -> nn.Module:
        """The network every member runs with its own stacked weights (on the meta device: its own
        parameters are placeholders, never used). Its layers' Python attributes apply to all members
        at once: a callback that sets them, such as :class:`~toolkit.regularization.DropBlockSchedule`
        ramping ``drop_prob``, finds them here (``pl_module.modules()`` does not list them)."""
        return self._base

    def member_backbone(self, k: int) -> nn.Module:
        """Member ``k``'s network as a plain ``nn.Module`` (a copy with its weights and dropout rate)."""
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.num_members:
            raise ValueError(f"k must be an integer in [0, {self.num_members}), got {k!r}")
        backbone = copy.deepcopy(self._template).to(self.flat.device)
        params, buffers = self._state()
        state = {name: value[k].detach().clone() for name, value in {**params, **buffers}.items()
                 if not name.endswith(".p") or name in backbone.state_dict()}
        rates = {name[:-2]: float(value[k]) for name, value in buffers.items() if name.endswith(".p")}
        for name, layer in _dropouts(backbone):
            layer.p = rates.get(name, layer.p)
        backbone.load_state_dict({n: v for n, v in state.items() if n in backbone.state_dict()})
        return backbone

    def member_module(self, k: int) -> ClassifierModule:
        """Member ``k`` as a :class:`ClassifierModule` (for ``evaluate``, ``predict_logits``, calibration)."""
        hp = self.hparams
        return ClassifierModule(self.member_backbone(k), self.num_classes, optimizer=hp.optimizer,
                                lr=float(self.member_lr[k]), weight_decay=float(self.member_wd[k]),
                                momentum=hp.momentum, schedule=hp.schedule, warmup_fraction=hp.warmup_fraction,
                                label_smoothing=hp.member_label_smoothing[k], ece_bins=hp.ece_bins,
                                z_loss=hp.member_z_loss[k])


# ---- the entry point -------------------------------------------------------------------------------
_SETTINGS = ("optimizer", "lr", "weight_decay", "momentum", "schedule", "warmup_fraction", "label_smoothing",
             "ece_bins", "z_loss")  # in the order of ClassifierModule's keyword defaults


def _check_members(members: Any) -> list[dict[str, Any]]:
    if isinstance(members, (str, bytes, dict)) or not isinstance(members, Sequence):
        raise TypeError(f"members must be a list of dicts (one per member, e.g. [{{'seed': 0}}, {{'seed': 1}}]), "
                        f"got {type(members).__name__}")
    if not members:
        raise ValueError("members must hold at least one member, got an empty list")
    checked = []
    for i, member in enumerate(members):
        if not isinstance(member, dict):
            raise TypeError(f"members[{i}] must be a dict such as {{'seed': 0, 'weight_decay': 0.1}}, "
                            f"got {type(member).__name__}")
        unknown = sorted(set(member) - set(MEMBER_KEYS))
        if unknown:
            raise ValueError(f"members[{i}] has unknown keys {unknown}; allowed keys are {MEMBER_KEYS}")
        if "seed" not in member:
            raise ValueError(f"members[{i}] must have a 'seed', got {member!r}")
        seed = member["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"members[{i}]['seed'] must be an integer >= 0, got {seed!r}")
        for key, low, high, low_open in (("lr", 0.0, math.inf, True), ("weight_decay", 0.0, math.inf, False),
                                         ("dropout", 0.0, 1.0, False), ("label_smoothing", 0.0, 1.0, False),
                                         ("mixup", 0.0, math.inf, False), ("augment", 0.0, math.inf, False),
                                         ("z_loss", 0.0, math.inf, False)):
            if key not in member:
                continue
            value = member[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not (low < value if low_open else low <= value) or not value < high:
                allowed = ("> 0 and finite" if low_open else
                           (f"in [0, {high:g})" if high < math.inf else ">= 0 and finite"))
                raise ValueError(f"members[{i}]['{key}'] must be a number {allowed}, got {value!r}")
        checked.append(dict(member))
    return checked


@contextlib.contextmanager
def _classifiers_without_metrics() -> Iterator[None]:
    """ClassifierModules built inside skip their 15 torchmetrics objects (``train_members`` keeps only
    a member's network and settings; building the metrics of 20 members cost more than training them
    for an epoch). Building metrics draws no random numbers, so the networks are those ``fit`` builds."""
    stage_metrics = module_file._stage_metrics
    module_file._stage_metrics = lambda num_classes, ece_bins: nn.ModuleDict()
    try:
        yield
    finally:
        module_file._stage_metrics = stage_metrics


def _build_member(model_factory: Callable[[], Any], seed: int, index: int) -> tuple[nn.Module, dict[str, Any]]:
    """Member ``index``'s network and the ClassifierModule settings it came with (seeded as ``fit`` seeds)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    with _classifiers_without_metrics():
        built = model_factory()
    if isinstance(built, ClassifierModule):
        return built.backbone, {name: built.hparams[name] for name in _SETTINGS} | {"num_classes": built.num_classes}
    if is_lightning_module(built):
        raise TypeError(f"model_factory must return a ClassifierModule or an nn.Module (the network), got the "
                        f"LightningModule {type(built).__name__}: train_members trains classifiers")
    if not isinstance(built, nn.Module):
        raise TypeError(f"model_factory must return a ClassifierModule or an nn.Module, got {type(built).__name__} "
                        f"(member {index})")
    defaults = ClassifierModule.__init__.__defaults__  # optimizer, lr, weight_decay, momentum, schedule, ...
    return built, dict(zip(_SETTINGS, defaults)) | {"num_classes": getattr(built, "num_classes", None)}


def train_members(model_factory: Callable[[], Any], data: Any, members: Sequence[dict[str, Any]], *,
                  max_epochs: int = 10, config: dict[str, Any] | None = None, restore_best: str | None = None,
                  augment: Callable[[Tensor, float, torch.Generator], Tensor] | None = None,
                  return_history: bool = False, return_members: bool = False,
                  **fit_kwargs: Any) -> pd.DataFrame | tuple[Any, ...]:
    """Train K independent members of one architecture at once (vectorized with ``torch.func``).

    Each member is the run ``fit(model_factory, data, seed=member["seed"])`` would train, with the
    member's ``lr``, ``weight_decay``, ``dropout``, ``label_smoothing`` and ``z_loss`` in place of the
    factory's, and its own ``mixup`` and ``augment`` regularizers: the same
    initialization and batch order, its own dropout masks (from its own generator, so a member
    trains the same whichever members train beside it; layers other than ``nn.Dropout``, such as
    DropPath, draw from torch's global stream under ``vmap``). Without dropout a member ends within
    float rounding of that separate run (a test checks it against a plain PyTorch loop); with
    dropout the masks differ, so members match separate runs in distribution (with BatchNorm the
    batch statistics are summed in another order, so members agree with separate runs only to a
    looser tolerance). On a CPU, small
    models train several times faster this way than one after the other (``benchmarks/bench_members.py``:
    20 MNIST-1D MLPs of two hidden layers, about 10x at width 32 and 6x at 100, 3x at 256); the gain
    shrinks as the arithmetic outgrows the per-operation overhead and turns into a loss near width
    1,000 (0.7x), where :func:`~toolkit.training.run_seeds` (separate fits, ``n_jobs`` processes) is
    the faster way to train the same members (figures from a 2-core CPU).
    Model ensembling with ``torch.func``: see the PyTorch tutorial "Model ensembling"; deep ensembles:
    Lakshminarayanan, Pritzel & Blundell, 2017, "Simple and Scalable Predictive Uncertainty Estimation
    using Deep Ensembles", arXiv:1612.01474.

    Args:
        model_factory: a zero-argument factory of a :class:`ClassifierModule` (its optimizer, lr,
            weight_decay, momentum, schedule, warmup_fraction, label_smoothing and ece_bins apply to
            every member unless a member overrides lr or weight_decay) or of a plain ``nn.Module``
            (then ClassifierModule's defaults apply and ``num_classes`` comes from the network's
            ``num_classes`` or the data's). Called once per member after seeding with its seed; every
            call must build the same architecture.
        data: one of the course's DataModules (anything with ``tensors(split)`` and ``batch_size``,
            such as :class:`~toolkit.data.MNIST1DDataModule`), or a zero-argument factory of one.
        members: one dict per member with ``"seed"`` (an integer >= 0) and optionally ``"lr"``
            (> 0), ``"weight_decay"`` (>= 0), ``"dropout"`` (in [0, 1): the rate of every
            ``nn.Dropout`` in the network, which must then have at least one, e.g.
            ``MLP(..., dropout=0.5)``), ``"label_smoothing"`` (in [0, 1); Szegedy et al., 2016,
            arXiv:1512.00567), ``"z_loss"`` (>= 0, the weight of :class:`ClassifierModule`'s z-loss),
            ``"mixup"`` (>= 0: the Beta parameter alpha of mixup, Zhang, Cisse, Dauphin & Lopez-Paz,
            2018, "mixup: Beyond Empirical Risk Minimization", arXiv:1710.09412; 0 is off) and
            ``"augment"`` (>= 0: the strength handed to ``augment``; 0 is off). Seeds may repeat (the
            same init under other hyperparameters).
        max_epochs: epochs to train, ``>= 1``.
        config: constant columns added to every row, as in :func:`run_seeds`.
        restore_best: None, or the validation metric to select each member's epoch by, one of
            ``"val_acc"`` (higher is better), ``"val_loss"``, ``"val_nll"``, ``"val_ece"``,
            ``"val_brier"`` (lower is better): at the end of training every member gets back its own
            weights of its own best epoch (ties keep the earlier epoch, as ``ModelCheckpoint``), and
            the test metrics, ``predict_logits`` and ``member_module`` use them. Early stopping for
            each member independently, without stopping the others.
        augment: a callable ``augment(x, strength, generator) -> x`` for data augmentation, called
            once per training batch for each member whose ``"augment"`` strength is > 0, in member
            order, with that member's batch ``x`` (``(B, ...)``), its strength (a float) and its own
            ``torch.Generator`` (on ``x``'s device, seeded from the member's seed, see
            :func:`member_generators`): draw all randomness from ``generator`` and a run repeats.
            It must return a tensor of ``x``'s shape. Applied before mixup. If ``augment`` has a
            method ``batched(x, strengths, generators)``, it is called instead, once per training batch
            for all augmented members: ``x`` their batches ``(M, B, ...)`` in member order,
            ``strengths`` their M strengths, ``generators`` their M generators; it must return what
            the M separate calls would (a tensor of ``x``'s shape), drawing member ``i``'s numbers from
            ``generators[i]`` only. :class:`~toolkit.regularization.RandomShift1d` (random integer
            translation and Gaussian noise of 1-D signals) has both (``benchmarks/bench_members.py
            --augment`` times the two paths).
        return_history: also return every member's metrics at every epoch (see Returns).
        return_members: also return the trained :class:`StackedMembers` (``predict_logits(loader)``
            gives every member's logits, ``member_module(k)`` one member as a ClassifierModule).
        **fit_kwargs: passed to :func:`fit` (``name``, ``runs_dir``, ``callbacks``, ``test``,
            ``accelerator``, ``deterministic``, ``enable_progress_bar``, Trainer options). Refused:
            ``seed`` (the members have theirs), gradient clipping (it would couple the members),
            ``ckpt_path``, ``strategy`` and ``devices`` other than 1.

    Returns:
        The DataFrame :func:`run_seeds` returns, one row per member in the order of ``members``:
        ``seed``, the member keys given (``lr``, ``weight_decay``, ``dropout``, filled with the
        values used), the ``config`` keys, every ``train_*``/``val_*``/``test_*`` metric,
        ``fit_time_s`` (each member's share: the whole fit's time over K), ``epochs`` and ``steps``
        (optimizer steps). With ``restore_best`` the ``train_*``/``val_*`` values are those of each
        member's best epoch, given in ``best_epoch`` and ``best_step`` (optimizer steps by then), and
        ``test_*`` are measured at its restored weights. With ``return_history``, also the history:
        one row per member and epoch with ``member`` (the row's index in ``frame``), ``seed``, the
        member keys given, ``epoch`` (epochs completed: 1, 2, ...), ``step`` (optimizer steps by the
        end of that epoch) and every ``train_*``/``val_*`` metric. Under mixup the ``train_*``
        metrics other than ``train_loss`` score the mixed batches against their dominant label.
        The return value is ``frame``, or the tuple ``(frame, history)``, ``(frame, stacked_members)``
        or ``(frame, history, stacked_members)`` as asked.

    Example:
        >>> from toolkit.data import MNIST1DDataModule
        >>> from toolkit.models import MLP
        >>> runs = train_members(lambda: ClassifierModule(MLP(40, 10), 10, lr=3e-3),  # doctest: +SKIP
        ...                      MNIST1DDataModule(), [{"seed": s, "weight_decay": wd}
        ...                                            for s in range(5) for wd in (0.0, 0.1)], max_epochs=30)
        >>> runs, curves = train_members(lambda: ClassifierModule(MLP(40, 10), 10), MNIST1DDataModule(),  # doctest: +SKIP
        ...                              [{"seed": s} for s in range(5)], max_epochs=30, return_history=True)
        >>> def shift(x, strength, generator):  # a random circular shift of up to `strength` positions
        ...     return x.roll(int(torch.randint(-int(strength), int(strength) + 1, (), generator=generator)), -1)
        >>> best = train_members(lambda: ClassifierModule(MLP(40, 10), 10), MNIST1DDataModule(),  # doctest: +SKIP
        ...                      [{"seed": s, "mixup": 0.2, "augment": 4} for s in range(5)], max_epochs=30,
        ...                      restore_best="val_nll", augment=shift)
    """
    from toolkit.training.fit import _build, fit  # fit imports this module's package

    if is_lightning_module(model_factory) or isinstance(model_factory, nn.Module) or not callable(model_factory):
        raise TypeError("model_factory must be a zero-argument factory (e.g. lambda: ClassifierModule(...)), "
                        f"not {type(model_factory).__name__}: every member needs its own initialization")
    members = _check_members(members)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be an integer >= 1, got {max_epochs!r}")
    for name, flag in (("return_history", return_history), ("return_members", return_members)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if restore_best is not None and restore_best not in MONITORS:
        raise ValueError(f"restore_best must be None or one of {MONITORS}, got {restore_best!r}")
    if augment is not None and (not callable(augment) or isinstance(augment, (str, bytes))):
        raise TypeError(f"augment must be None or a callable augment(x, strength, generator) -> x, "
                        f"got {type(augment).__name__}")
    if augment is None and any(member.get("augment", 0) > 0 for member in members):
        raise ValueError("members set an 'augment' strength but augment is None; pass "
                         "augment=lambda x, strength, generator: ... (the augmentation to apply)")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config must be a dict of constant columns or None, got {type(config).__name__}")
    if "seed" in fit_kwargs:
        raise ValueError("seed is not an argument of train_members: give each member its own, "
                         "members=[{'seed': 0}, {'seed': 1}, ...]")
    for key, why in _REFUSED_TRAINER_KWARGS.items():
        if fit_kwargs.get(key) is not None:
            raise ValueError(f"{key}={fit_kwargs[key]!r} is not supported by train_members: {why}")
    if fit_kwargs.get("devices", 1) != 1:
        raise ValueError(f"devices must be 1 for train_members (stacked members train on one device), "
                         f"got {fit_kwargs['devices']!r}")
    if callable(data) and not hasattr(data, "tensors"):
        data = _build(data, "LightningDataModule", "data")
    if not callable(getattr(data, "tensors", None)) or not isinstance(getattr(data, "batch_size", None), int):
        raise TypeError(f"data must be one of the course's DataModules (with tensors(split) and batch_size, e.g. "
                        f"MNIST1DDataModule) or a factory of one, got {type(data).__name__}")

    backbones, settings = [], None
    for i, member in enumerate(members):
        backbone, member_settings = _build_member(model_factory, member["seed"], i)
        tensors = (*backbone.parameters(), *backbone.buffers())
        if any(isinstance(t, nn.parameter.UninitializedTensorMixin) for t in tensors):
            raise ValueError("model_factory built a network with lazy (uninitialized) parameters, e.g. nn.LazyLinear; "
                             "stacking needs their shapes: give the sizes, or run a forward pass in the factory")
        if settings is None:
            settings, reference = member_settings, backbone
        elif _signature(backbone) != _signature(reference):
            raise ValueError(f"model_factory built a different architecture for members[{i}] than for members[0]; "
                             "every member must have the same parameter names and shapes")
        if "dropout" in member:
            layers = _dropouts(backbone)
            if not layers:
                raise ValueError(f"members[{i}] sets 'dropout' but the network has no nn.Dropout layer; build it "
                                 "with dropout > 0 (e.g. MLP(..., dropout=0.5)) and set each member's rate here")
            for _, layer in layers:
                layer.p = float(member["dropout"])
        backbones.append(backbone)
    num_classes = settings.pop("num_classes") or getattr(data, "num_classes", None)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes could not be read from the network (num_classes attribute) or the data: "
                         f"got {num_classes!r}; return a ClassifierModule from model_factory")
    x_train, y_train = data.tensors("train")
    if y_train.is_floating_point() or (len(y_train) and not 0 <= int(y_train.min()) <= int(y_train.max())
                                       < num_classes):
        raise ValueError(f"data's training targets must be class indices in [0, {num_classes})")
    lrs = [member.get("lr", settings["lr"]) for member in members]
    wds = [member.get("weight_decay", settings["weight_decay"]) for member in members]
    rates = [(_dropouts(b)[0][1].p if _dropouts(b) else 0.0) for b in backbones]
    seeds = [member["seed"] for member in members]

    regularizers = {key: [member.get(key, settings.get(key, 0.0)) for member in members]
                    for key in ("label_smoothing", "z_loss", "mixup", "augment")}

    def stacked() -> StackedMembers:
        pl.seed_everything(seeds[0], workers=True, verbose=False)  # the dropout masks' stream
        return StackedMembers(backbones, num_classes, lrs, wds, settings, regularizers=regularizers, seeds=seeds,
                              augment=augment, restore_best=restore_best)

    result = fit(stacked, _MembersData(data, seeds), max_epochs=max_epochs, seed=seeds[0],
                 **{"name": "members", **fit_kwargs})
    module, k = result.module, len(members)
    given = [key for key in MEMBER_KEYS[1:] if any(key in m for m in members)]
    columns = {"lr": lrs, "weight_decay": wds, "dropout": rates, **regularizers}
    rows = []
    for i in range(k):
        metrics = {f"{stage}_{name}": values[i] for stage, by_name in module.member_metrics.items()
                   for name, values in by_name.items()}
        best = {}
        if restore_best is not None:  # train_* and val_* of the restored epoch
            epoch = module.best_epoch[i]
            metrics |= {f"{stage}_{name}": values[i] for stage in ("train", "val")
                        for name, values in module._epochs[epoch].get(stage, {}).items()}
            best = {"best_epoch": epoch, "best_step": module.best_step[i]}
        rows.append({"seed": seeds[i], **{key: columns[key][i] for key in given}, **(config or {}), **metrics,
                     "fit_time_s": result.fit_time_s / k, "epochs": result.trainer.current_epoch,
                     "steps": result.trainer.global_step, **best})
    frame = pd.DataFrame(rows)
    history = module.history
    for position, key in enumerate(given, start=2):  # beside member and seed
        history.insert(position, key, [columns[key][i] for i in history["member"]] if len(history) else [])
    module.fit_result = result  # the run folder, history and Trainer of the whole fit
    returned = (frame, *([history] if return_history else []), *([module] if return_members else []))
    return returned if len(returned) > 1 else frame


def _signature(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(t.shape)) for name, t in module.state_dict().items()]
