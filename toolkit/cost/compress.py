"""Cheaper models to serve: int8 quantization, pruning, lower precision and compilation.

- :func:`quantize_int8`: dynamic int8 quantization of ``nn.Linear`` layers (weights stored as int8
  with a scale per output channel, activations quantized on the fly), through ``torchao``'s
  ``quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` (``backend="torchao"``, the maintained
  path) or through ``torch.ao.quantization.quantize_dynamic`` (``backend="eager"``, deprecated in
  this torch but backed by fused FBGEMM int8 kernels on x86 CPUs; its deprecation warnings are
  silenced here, and only those).
- :func:`prune_model`: magnitude pruning with ``torch.nn.utils.prune``: global unstructured (exactly
  ``round(sparsity * n_weights)`` weights set to zero) or structured (whole output rows/channels by
  L1 norm); :func:`pruning_callback` does the same inside training with Lightning's ``ModelPruning``,
  for fine-tuning after pruning.
- :class:`LowPrecision`: a copy of a model in bfloat16 (or float16) that takes and returns float32.
- :func:`compile_model`: ``torch.compile``, guarded by :func:`has_c_compiler` on CPU.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelPruning
from torch import Tensor, nn
from torch.nn.utils import prune

from toolkit._extras import require
from toolkit._structure import output_logits, replace_logits

__all__ = ["BACKENDS", "PRUNABLE_LAYERS", "LowPrecision", "PruneOnce", "compile_model", "has_c_compiler",
           "prunable_weights", "prune_model", "pruning_callback", "quantize_int8", "weight_sparsity"]

BACKENDS = ("torchao", "eager")
QUANTIZABLE_LAYERS = (nn.Linear,)
PRUNABLE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# Messages that importing torchao 0.18 with a CPU-only torch prints and that say nothing to a
# reader: optional CUDA kernels (.so) that cannot load without a GPU, Triton (a GPU compiler) being
# absent, and a torch deprecation notice about how torchao registers an enum. Matched exactly, so
# any other warning still shows.
_IMPORT_NOISE = {
    "torchao": re.compile(r"Failed to load .*torchao/_C\w*\.(cpython-[\w-]+\.|abi3\.)?so"),
    "torchao.kernel.intmm": re.compile(r"Warning: Detected no triton, on systems without Triton"),
    "torch.utils._pytree": re.compile(r".* is an Enum subclass and is now natively supported by torch\.compile"),
}
# Warnings of the legacy eager path (torch.ao.quantization) that we acknowledge in the docs instead.
_LEGACY_WARNINGS = (r"torch\.ao\.quantization is deprecated",
                    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor")


class _DropMessages(logging.Filter):
    def __init__(self, pattern: re.Pattern) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


for _name, _pattern in _IMPORT_NOISE.items():
    logging.getLogger(_name).addFilter(_DropMessages(_pattern))


@contextmanager
def _legacy_quantization_quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in _LEGACY_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        yield


def _check_model(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")


def quantize_int8(model: nn.Module, backend: str = "torchao",
                  layer_types: Sequence[type[nn.Module]] = QUANTIZABLE_LAYERS) -> nn.Module:
    """A copy of ``model`` with its ``nn.Linear`` layers quantized to int8 (dynamic activations).

    Weights are stored as int8 (4x smaller than float32) and activations are quantized per batch at
    run time, so no calibration data is needed (Jacob et al., 2018, "Quantization and Training of
    Neural Networks for Efficient Integer-Arithmetic-Only Inference", arXiv:1712.05877). For
    inference only: the copy is in eval mode.

    Args:
        model: any module holding ``nn.Linear`` layers; convolutions are left in float32.
        backend: "torchao" (``torchao.quantization.quantize_`` with
            ``Int8DynamicActivationInt8WeightConfig``, the maintained API) or "eager"
            (``torch.ao.quantization.quantize_dynamic``, deprecated, FBGEMM kernels).
        layer_types: layer classes to quantize; only ``nn.Linear`` is supported by dynamic int8.

    Example:
        >>> small = quantize_int8(nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    """
    _check_model(model)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    layer_types = tuple(layer_types) if isinstance(layer_types, (list, tuple)) else (layer_types,)
    unsupported = [t for t in layer_types if not (isinstance(t, type) and issubclass(t, QUANTIZABLE_LAYERS))]
    if not layer_types or unsupported:
        names = [getattr(t, "__name__", repr(t)) for t in unsupported] or "nothing"
        raise ValueError(f"layer_types must be nn.Linear (the only layer dynamic int8 quantization "
                         f"supports), got unsupported {names}")
    if not any(isinstance(m, layer_types) for m in model.modules()):
        raise ValueError(f"model ({type(model).__name__}) has no nn.Linear layer to quantize")
    quantized = copy.deepcopy(model).eval()
    if backend == "eager":
        with _legacy_quantization_quiet():
            return torch.ao.quantization.quantize_dynamic(quantized, set(layer_types), dtype=torch.qint8)
    require("torchao", "cost", 'quantize_int8(backend="torchao")')
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(quantized, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda module, fqn: isinstance(module, layer_types))
    return quantized


def _check_sparsity(sparsity: object) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a fraction of weights to remove in [0, 1), got {sparsity!r}")


def prunable_weights(model: nn.Module, structured: bool = False,
                     exclude: Sequence[str] | None = None) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every Linear and Conv layer of ``model``, in order.

    ``exclude``: names of layers (as in ``model.named_modules()``, a layer and everything under it)
    to leave out, e.g. ``("discriminator",)`` to prune only a GAN's generator, or its output layers
    ``("generator.2", "discriminator.2")``. With ``structured`` and ``exclude=None`` the last layer
    (the classifier) is left out: removing its rows would remove classes; for a module of several
    networks name their output layers in ``exclude`` instead.
    """
    _check_model(model)
    if exclude is not None and (isinstance(exclude, str) or not all(isinstance(e, str) for e in exclude)):
        raise TypeError(f"exclude must be a sequence of layer names (str), got {exclude!r}")
    excluded = tuple(exclude or ())
    pairs = [(m, "weight") for name, m in model.named_modules() if isinstance(m, PRUNABLE_LAYERS)
             and not any(name == e or name.startswith(e + ".") for e in excluded)]
    if not pairs:
        raise ValueError(f"model ({type(model).__name__}) has no Linear or Conv layer to prune"
                         + (f" outside exclude={excluded}" if excluded else ""))
    if structured and exclude is None:
        pairs = pairs[:-1]
        if not pairs:
            raise ValueError("structured pruning needs a Linear or Conv layer before the classifier")
    return pairs


def prune_model(model: nn.Module, sparsity: float, structured: bool = False, permanent: bool = True,
                exclude: Sequence[str] | None = None) -> nn.Module:
    """A copy of ``model`` with a share ``sparsity`` of its Linear/Conv weights set to zero by magnitude.

    Unstructured (default): global L1 pruning over all those weights together (Han et al., 2015,
    "Learning both Weights and Connections for Efficient Neural Networks", arXiv:1506.02626): exactly
    ``round(sparsity * n_weights)`` weights become zero; layers keep their dense shape, so dense
    kernels do the same work. Structured: in every layer but the classifier, the
    ``round(sparsity * rows)`` output rows (channels) of smallest L1 norm become zero.

    Args:
        model: any module with Linear/Conv layers.
        sparsity: share of weights (or rows) to zero, in ``[0, 1)``.
        structured: rows/channels instead of single weights.
        permanent: fold the masks into the weights (``prune.remove``); with False the copy keeps
            ``weight_orig`` and ``weight_mask`` so that further training leaves the zeros at zero.
        exclude: layers to leave unpruned (see :func:`prunable_weights`).
    """
    _check_model(model)
    _check_sparsity(sparsity)
    pruned = copy.deepcopy(model)
    pairs = prunable_weights(pruned, structured=structured, exclude=exclude)
    if structured:
        for module, name in pairs:
            prune.ln_structured(module, name, amount=float(sparsity), n=1, dim=0)
    else:
        prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=float(sparsity))
    if permanent:
        for module, name in pairs:
            prune.remove(module, name)
    return pruned


def weight_sparsity(model: nn.Module) -> float:
    """Share of exactly-zero weights over all Linear/Conv weights of ``model`` (masks applied)."""
    pairs = prunable_weights(model)
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in pairs)
    return zeros / sum(getattr(m, n).numel() for m, n in pairs)


def pruning_callback(sparsity: float, structured: bool = False, at_epoch: int = 0,
                     exclude: Sequence[str] | None = None) -> PruneOnce:
    """Lightning's ``ModelPruning``, set to prune the trained module once, at the end of epoch
    ``at_epoch``; the remaining epochs fine-tune the survivors (the masks keep pruned weights at
    zero) and the masks are folded into the weights when training ends.

    Pruning follows :func:`prune_model`: global L1 over every Linear/Conv weight of the module being
    trained (exact sparsity), or L1-structured rows of every such layer but the classifier. The
    weights are not rewound to their initial values (no lottery-ticket reset): this is
    prune-then-fine-tune (Han et al., 2015).

    Args:
        sparsity: in ``[0, 1)``.
        structured: rows/channels instead of single weights.
        at_epoch: the epoch after which to prune, ``>= 0``; train ``at_epoch + 1 + k`` epochs to fine-tune ``k``.
        exclude: layers of the module to leave unpruned (see :func:`prunable_weights`), e.g.
            ``("discriminator",)`` to prune one network of several.

    Example:
        >>> callback = pruning_callback(0.8)  # fit(model, data, max_epochs=4, callbacks=[callback])
    """
    return PruneOnce(sparsity, structured, at_epoch, exclude)


class PruneOnce(ModelPruning):
    """Lightning's ``ModelPruning`` that prunes once and finds, at ``setup``, the Linear/Conv weights
    of the module it trains (see :func:`pruning_callback`, which builds it).

    Resumable: the pruning masks are part of the callback's state (``state_dict()["masks"]``, one
    boolean tensor per pruned weight, by parameter name), so a run resumed from a checkpoint
    written after the pruning epoch re-applies them when training starts and the pruned weights
    stay at zero (``ModelPruning`` alone checkpoints the zeroed weights but not the masks, and the
    resumed epochs would regrow them).
    """

    def __init__(self, sparsity: float, structured: bool = False, at_epoch: int = 0,
                 exclude: Sequence[str] | None = None) -> None:
        _check_sparsity(sparsity)
        self.exclude = None if exclude is None else tuple(exclude)
        if isinstance(at_epoch, bool) or not isinstance(at_epoch, int) or at_epoch < 0:
            raise ValueError(f"at_epoch must be an integer >= 0, got {at_epoch!r}")
        options = dict(pruning_dim=0, pruning_norm=1) if structured else {}
        super().__init__("ln_structured" if structured else "l1_unstructured", amount=float(sparsity),
                         use_global_unstructured=not structured, apply_pruning=self._is_pruning_epoch,
                         make_pruning_permanent=True, use_lottery_ticket_hypothesis=False, verbose=0, **options)
        self.sparsity, self.structured, self.at_epoch = float(sparsity), structured, at_epoch
        self._module: nn.Module | None = None
        self._restored_masks: dict[str, Tensor] = {}

    @property
    def state_key(self) -> str:
        return self._generate_state_key(sparsity=self.sparsity, structured=self.structured, at_epoch=self.at_epoch,
                                        exclude=self.exclude)

    def _is_pruning_epoch(self, epoch: int) -> bool:
        return epoch == self.at_epoch

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._parameters_to_prune = prunable_weights(pl_module, structured=self.structured, exclude=self.exclude)
        self._module = pl_module
        self._restored_masks = {}  # a checkpoint's masks arrive after setup, through load_state_dict
        super().setup(trainer, pl_module, stage)

    def _named_targets(self) -> dict[str, tuple[nn.Module, str]]:
        if self._module is None:
            return {}
        names = {id(m): name for name, m in self._module.named_modules()}
        return {f"{names[id(m)]}.{attr}".lstrip("."): (m, attr) for m, attr in self._parameters_to_prune}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        masks, self._restored_masks = self._restored_masks, {}
        targets = self._named_targets()
        for key, mask in masks.items():
            if key not in targets:
                raise ValueError(f"PruneOnce: the checkpoint has a pruning mask for {key!r}, which is not a "
                                 f"prunable weight of {type(pl_module).__name__} (have {sorted(targets)})")
            module, attr = targets[key]
            if hasattr(module, f"{attr}_mask"):
                continue  # already pruned in this process
            prune.custom_from_mask(module, attr, mask.to(getattr(module, attr).device))

    def _current_masks(self) -> dict[str, Tensor]:
        return {key: getattr(module, f"{attr}_mask").detach().bool().cpu()
                for key, (module, attr) in self._named_targets().items() if hasattr(module, f"{attr}_mask")}

    def make_pruning_permanent(self, module: nn.Module) -> None:
        # training ends: keep the masks for a checkpoint written after this (ModelCheckpoint's last.ckpt)
        self._restored_masks = self._current_masks() or self._restored_masks
        super().make_pruning_permanent(module)

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self._current_masks() or dict(self._restored_masks)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored_masks = {key: torch.as_tensor(mask).bool() for key, mask in state_dict.get("masks", {}).items()}


class LowPrecision(nn.Module):
    """A copy of ``model`` with floating-point weights in ``dtype``; inputs are cast to ``dtype`` and
    outputs back to float32, so it drops in where the original was.

    On CPU, bfloat16 halves the size on disk; whether it is faster depends on the CPU having native
    bf16 instructions (AVX512-BF16, AMX) and on the layers being large enough for them to matter.

    Args:
        model: the model to copy.
        dtype: ``torch.bfloat16`` or ``torch.float16``.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        _check_model(model)
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.bfloat16 or torch.float16, got {dtype!r}")
        self.dtype = dtype
        self.model = copy.deepcopy(model).to(dtype)

    def forward(self, x: Tensor) -> Any:
        output = self.model(x.to(self.dtype))
        if isinstance(output, Tensor):
            return output.float()
        return replace_logits(output, output_logits(output).float())  # an output object: its logits

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}"


def has_c_compiler() -> bool:
    """Whether ``torch.compile``'s CPU backend (Inductor) can find a C++ compiler (``$CXX``, g++, clang++...)."""
    candidates = [os.environ.get("CXX"), "c++", "g++", "clang++"]
    return any(c and shutil.which(c) for c in candidates)


def compile_model(model: nn.Module, **compile_kwargs) -> nn.Module:
    """``torch.compile(model, **compile_kwargs)``, after checking that it can run here.

    On CPU, Inductor generates C++ and needs a compiler: without one this raises ``RuntimeError``
    at once instead of at the first call. Compilation happens lazily, on the first call with each
    new input shape; time it with the warm-up of :func:`~toolkit.cost.measure_latency`.
    """
    _check_model(model)
    if not has_c_compiler() and not torch.cuda.is_available():
        raise RuntimeError("torch.compile on CPU needs a C++ compiler (g++ or clang++) on PATH; none was found")
    return torch.compile(model, **compile_kwargs)
