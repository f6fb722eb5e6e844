"""Training-data poisoning: label flipping, a BadNets backdoor, and its detection by spectral signatures.

- Gu, Dolan-Gavitt & Garg, 2017, "BadNets: Identifying Vulnerabilities in the Machine Learning Model
  Supply Chain", arXiv:1708.06733 — stamp a small trigger patch on a share of the training images and
  relabel them to a target class; the model learns "patch => target" beside the real task.
- Tran, Li & Madry, 2018, "Spectral Signatures in Backdoor Attacks", NeurIPS, arXiv:1811.00636 — in
  each class, poisoned samples stand out along the top singular vector of the centred penultimate-layer
  activations; remove the ``1.5 * expected poison share`` highest-scoring samples per class and retrain.

Example:
    >>> from toolkit.data import DigitsDataModule
    >>> dm = PoisonedDataModule(DigitsDataModule(image_size=8, flatten=True), poison_rate=0.1, target_label=0)
    >>> x, y = dm.tensors("train"); int(dm.poison_mask.sum()) == round(0.1 * len(y))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from toolkit._lightning import DataModuleBase
from toolkit.security.evasion import _eval_mode

__all__ = ["POISONS", "PoisonedDataModule", "add_trigger", "attack_success_rate", "flip_labels",
           "penultimate_activations", "spectral_signatures"]

POISONS = ("backdoor", "label_flip")
SPECTRAL_REMOVAL_FACTOR = 1.5  # Tran et al. remove 1.5 x the expected number of poisoned samples per class


def _check_rate(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a share in [0, 1], got {value!r}")


def _check_labels(name: str, labels: Any) -> None:
    if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.dim() != 1:
        raise TypeError(f"{name} must be a 1-D integer tensor of class indices, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")


def flip_labels(targets: Tensor, rate: float, num_classes: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Flip exactly ``round(rate * N)`` labels, chosen uniformly, each to a uniform *other* class.

    Returns ``(new_targets, flipped_mask)``.
    """
    _check_labels("targets", targets)
    _check_rate("rate", rate)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2 \
            or (targets.numel() and targets.max() >= num_classes):
        raise ValueError(f"num_classes must be an integer >= 2 above every target, got {num_classes!r}")
    g = torch.Generator().manual_seed(seed)
    n = len(targets)
    chosen = torch.randperm(n, generator=g)[:round(rate * n)]
    shift = torch.randint(1, num_classes, (len(chosen),), generator=g)
    flipped = targets.clone()
    flipped[chosen] = (targets[chosen] + shift) % num_classes
    mask = torch.zeros(n, dtype=torch.bool)
    mask[chosen] = True
    return flipped, mask


def add_trigger(images01: Tensor, patch_size: int = 2, value: float = 1.0, corner: str = "bottom_right") -> Tensor:
    """Stamp a square trigger of ``patch_size`` pixels at ``value`` in a corner of ``(N, C, H, W)`` images.

    Args:
        images01: images in ``[0, 1]``.
        patch_size: side of the square, ``>= 1`` and at most the image side.
        value: pixel value of the patch, in ``[0, 1]``.
        corner: "bottom_right", "bottom_left", "top_right" or "top_left".
    """
    corners = ("bottom_right", "bottom_left", "top_right", "top_left")
    if not isinstance(images01, Tensor):
        raise TypeError(f"images01 must be a (N, C, H, W) tensor, got {type(images01).__name__}")
    if images01.dim() != 4:
        raise ValueError(f"images01 must be a (N, C, H, W) tensor, got shape {tuple(images01.shape)}")
    side = min(images01.shape[2:])
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or not 1 <= patch_size <= side:
        raise ValueError(f"patch_size must be an integer in [1, {side}], got {patch_size!r}")
    _check_rate("value", value)
    if corner not in corners:
        raise ValueError(f"corner must be one of {corners}, got {corner!r}")
    out = images01.clone()
    rows = slice(-patch_size, None) if corner.startswith("bottom") else slice(0, patch_size)
    cols = slice(-patch_size, None) if corner.endswith("right") else slice(0, patch_size)
    out[:, :, rows, cols] = value
    return out


class PoisonedDataModule(DataModuleBase):
    """A DataModule whose *training* split is poisoned; validation and test stay clean.

    Wraps an image DataModule with ``to_images01``/``to_inputs`` (``DigitsDataModule``).

    Args:
        base: the clean DataModule (its split, normalization and batch size are kept).
        poison: "backdoor" (BadNets: trigger + ``target_label``) or "label_flip" (random other class).
        poison_rate: share of the training split poisoned, in ``[0, 1]``. For a backdoor the poisoned
            samples are drawn among those whose label is not ``target_label``.
        target_label: the class a triggered input should be sent to.
        patch_size, patch_value, corner: the trigger, see :func:`add_trigger`.
        exclude: indices of the poisoned training split to drop (e.g. flagged by
            :func:`spectral_signatures`), to retrain on the filtered data; see :meth:`without`.
        seed: which samples are poisoned.

    Attributes (after ``setup``): ``poison_mask`` over the training tensors returned by
    ``tensors("train")`` (after ``exclude``).
    """

    def __init__(self, base: pl.LightningDataModule, poison: str = "backdoor", poison_rate: float = 0.1,
                 target_label: int = 0, patch_size: int = 2, patch_value: float = 1.0,
                 corner: str = "bottom_right", exclude: Sequence[int] | Tensor = (), seed: int = 0) -> None:
        super().__init__()
        if not all(hasattr(base, a) for a in ("tensors", "to_images01", "to_inputs", "loader")):
            raise TypeError(f"base must be an image DataModule with tensors/to_images01/to_inputs/loader "
                            f"(e.g. DigitsDataModule), got {type(base).__name__}")
        if poison not in POISONS:
            raise ValueError(f"poison must be one of {POISONS}, got {poison!r}")
        _check_rate("poison_rate", poison_rate)
        if isinstance(target_label, bool) or not isinstance(target_label, int) \
                or not 0 <= target_label < base.num_classes:
            raise ValueError(f"target_label must be a class index in [0, {base.num_classes}), got {target_label!r}")
        add_trigger(torch.zeros(1, 1, patch_size if isinstance(patch_size, int) and patch_size > 0 else 1,
                                patch_size if isinstance(patch_size, int) and patch_size > 0 else 1),
                    patch_size, patch_value, corner)  # checks patch_size, patch_value and corner now
        self.base, self.poison, self.poison_rate, self.target_label = base, poison, poison_rate, target_label
        self.patch_size, self.patch_value, self.corner, self.seed = patch_size, patch_value, corner, seed
        self.exclude = torch.as_tensor(list(exclude) if not isinstance(exclude, Tensor) else exclude,
                                       dtype=torch.long)
        self._train: tuple[Tensor, Tensor] | None = None
        self.poison_mask: Tensor | None = None

    # delegate what the clean module knows (num_classes, input_range, class_names, ...)
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("base",):
            raise AttributeError(name)
        return getattr(self.__dict__.get("base") or super().__getattribute__("base"), name)

    def trigger(self, inputs: Tensor) -> Tensor:
        """Stamp the trigger on model inputs (normalized, possibly flattened)."""
        images = self.base.to_images01(inputs)
        triggered = self.base.to_inputs(add_trigger(images, self.patch_size, self.patch_value, self.corner))
        return triggered.reshape(inputs.shape)

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        self.base.setup(stage)
        x, y = self.base.tensors("train")
        x, y = x.clone(), y.clone()
        g = torch.Generator().manual_seed(self.seed)
        if self.poison == "label_flip":
            y, mask = flip_labels(y, self.poison_rate, self.base.num_classes, seed=self.seed)
        else:
            candidates = torch.nonzero(y != self.target_label).flatten()
            count = min(round(self.poison_rate * len(y)), len(candidates))
            chosen = candidates[torch.randperm(len(candidates), generator=g)[:count]]
            x[chosen] = self.trigger(x[chosen])
            y[chosen] = self.target_label
            mask = torch.zeros(len(y), dtype=torch.bool)
            mask[chosen] = True
        if len(self.exclude) and (self.exclude.min() < 0 or self.exclude.max() >= len(y)):
            raise ValueError(f"exclude must hold indices in [0, {len(y)}), got range "
                             f"[{self.exclude.min().item()}, {self.exclude.max().item()}]")
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[self.exclude] = False
        self._train = (x[keep], y[keep])
        self.poison_mask = mask[keep]

    def without(self, indices: Sequence[int] | Tensor) -> PoisonedDataModule:
        """The same poisoned module minus the training samples ``indices`` (of this module's split)."""
        self.setup()
        kept = torch.nonzero(~torch.isin(torch.arange(len(self._train[1]) + len(self.exclude)),
                                         self.exclude)).flatten()
        drop = kept[torch.as_tensor(list(indices) if not isinstance(indices, Tensor) else indices, dtype=torch.long)]
        return PoisonedDataModule(self.base, self.poison, self.poison_rate, self.target_label, self.patch_size,
                                  self.patch_value, self.corner, torch.cat([self.exclude, drop]), self.seed)

    def tensors(self, split: str) -> tuple[Tensor, Tensor]:
        if split == "train":
            self.setup()
            return self._train
        return self.base.tensors(split)

    def triggered_tensors(self, split: str = "test") -> tuple[Tensor, Tensor]:
        """Samples of ``split`` whose true label is not ``target_label``, with the trigger; true labels."""
        x, y = self.base.tensors(split)
        keep = y != self.target_label
        return self.trigger(x[keep]), y[keep]

    def train_dataloader(self):
        return self.base.loader(*self.tensors("train"), train=True)

    def val_dataloader(self):
        return self.base.val_dataloader()

    def test_dataloader(self):
        return self.base.test_dataloader()

    def predict_dataloader(self):
        return self.base.predict_dataloader()


@torch.no_grad()
def _predict(model: nn.Module, inputs: Tensor, batch_size: int = 1024) -> Tensor:
    with _eval_mode(model):
        return torch.cat([model(inputs[i:i + batch_size]).argmax(1) for i in range(0, len(inputs), batch_size)])


def attack_success_rate(model: nn.Module, triggered_inputs: Tensor, target_label: int,
                        true_labels: Tensor | None = None) -> float:
    """Share of triggered inputs classified as ``target_label`` (samples whose true label is the
    target are left out when ``true_labels`` is given)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(target_label, bool) or not isinstance(target_label, int) or target_label < 0:
        raise ValueError(f"target_label must be a class index >= 0, got {target_label!r}")
    if true_labels is not None:
        _check_labels("true_labels", true_labels)
        if len(true_labels) != len(triggered_inputs):
            raise ValueError(f"true_labels must have one label per triggered input ({len(triggered_inputs)}), "
                             f"got {len(true_labels)}")
        triggered_inputs = triggered_inputs[true_labels != target_label]
    if len(triggered_inputs) == 0:
        raise ValueError("triggered_inputs holds no sample outside the target class")
    with _eval_mode(model), torch.no_grad():
        classes = model(triggered_inputs[:1]).shape[-1]
    if target_label >= classes:
        raise ValueError(f"target_label must be below the model's {classes} classes, got {target_label}")
    return (_predict(model, triggered_inputs) == target_label).float().mean().item()


def _find_layer(model: nn.Module) -> nn.Module:
    for owner in (model, getattr(model, "backbone", None)):
        if isinstance(owner, nn.Module) and isinstance(getattr(owner, "classifier", None), nn.Module):
            return owner.classifier
    raise ValueError("layer is None and the model has no `classifier` (nor `backbone.classifier`) module; "
                     "pass layer=<the last linear layer>")


@torch.no_grad()
def penultimate_activations(model: nn.Module, inputs: Tensor, layer: nn.Module | None = None,
                            batch_size: int = 1024) -> Tensor:
    """The inputs of ``layer`` (default the model's ``classifier``: the penultimate representation),
    captured by a forward pre-hook, in eval mode, as ``(N, D)``."""
    if layer is not None and not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module of model (e.g. model.classifier) or None, "
                        f"got {type(layer).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    layer = layer if layer is not None else _find_layer(model)
    captured: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().flatten(1)))
    try:
        with _eval_mode(model):
            for i in range(0, len(inputs), batch_size):
                model(inputs[i:i + batch_size])
    finally:
        handle.remove()
    return torch.cat(captured)


def spectral_signatures(features: Tensor, labels: Tensor, poison_rate: float,
                        removal_factor: float = SPECTRAL_REMOVAL_FACTOR) -> tuple[Tensor, Tensor]:
    """Outlier scores of Tran et al. (2018) and the samples they flag.

    In each class ``c``: centre the features, take the top right singular vector ``v``, score each
    sample by ``((f_i - mean_c) . v)^2`` and flag the ``round(removal_factor * poison_rate * n_c)``
    highest scores. The method assumes poisoned samples are a minority of their (target) class:
    a BadNets attack that poisons a share ``r`` of all data puts a share of about
    ``r * K / (1 + r * K)`` of the target class's samples there (``K`` classes).

    Args:
        features: ``(N, D)`` penultimate activations (:func:`penultimate_activations`).
        labels: ``(N,)`` the (possibly poisoned) training labels.
        poison_rate: expected share of poisoned samples *within a class*, in ``[0, 1]``.
        removal_factor: ``> 0``, 1.5 in the paper.

    Returns:
        ``(scores, flagged)``: ``(N,)`` float scores and a boolean mask.
    """
    if not isinstance(features, Tensor) or features.dim() != 2 or not features.is_floating_point():
        raise TypeError(f"features must be a (N, D) floating-point tensor, got {tuple(getattr(features, 'shape', ()))}")
    _check_labels("labels", labels)
    if len(labels) != len(features):
        raise ValueError(f"labels must have length {len(features)}, got {len(labels)}")
    _check_rate("poison_rate", poison_rate)
    if isinstance(removal_factor, bool) or not isinstance(removal_factor, (int, float)) \
            or not 0 < removal_factor < float("inf"):
        raise ValueError(f"removal_factor must be a finite number > 0, got {removal_factor!r}")
    features = features.double()
    scores = torch.zeros(len(labels), dtype=torch.float64)
    flagged = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():
        index = torch.nonzero(labels == c).flatten()
        centred = features[index] - features[index].mean(0)
        if len(index) < 2:
            continue
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        scores[index] = (centred @ vh[0]) ** 2
        k = min(len(index), int(np.round(removal_factor * poison_rate * len(index))))
        if k:
            flagged[index[scores[index].topk(k).indices]] = True
    return scores.float(), flagged
