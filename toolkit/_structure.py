"""Default hooks that read inputs, targets and logits from any batch or output structure.

Callbacks and helpers that need the inputs or the logits of a user's module (temperature scaling,
robust accuracy, attacks, profilers, the cost meter) take ``batch_to_inputs``, ``batch_to_targets``
and ``logits_fn`` arguments; these are their defaults. They understand the structures that
Lightning projects use:

- batches: a tensor (inputs only), a tuple/list ``(inputs, targets, ...)``, or a dict with an
  inputs key (``"x"``, ``"inputs"``, ``"input"``, ``"features"``, ``"image"``, ``"images"``,
  ``"input_ids"``) and a targets key (``"y"``, ``"target"``, ``"targets"``, ``"label"``, ``"labels"``);
- outputs: a tensor of logits, a dict with ``"logits"``, an object with a ``.logits`` attribute
  (Hugging Face ``ModelOutput``, a dataclass, a namedtuple), or a tuple whose first item is the logits.

Anything else raises ``TypeError`` naming the structure and the hook to pass instead.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

__all__ = ["INPUT_KEYS", "TARGET_KEYS", "batch_size", "batch_to_inputs", "batch_to_targets", "check_hook",
           "output_logits", "replace_logits"]

INPUT_KEYS = ("x", "inputs", "input", "features", "image", "images", "input_ids")
TARGET_KEYS = ("y", "target", "targets", "label", "labels")


def _from_mapping(batch: Mapping, keys: tuple[str, ...], what: str, hook: str) -> Any:
    for key in keys:
        if key in batch:
            return batch[key]
    raise TypeError(f"a dict batch needs one of the keys {keys} for the {what}, got keys {sorted(map(str, batch))}; "
                    f"pass {hook}=lambda batch: ... to say where they are")


def batch_to_inputs(batch: Any) -> Any:
    """The model inputs of ``batch``: the tensor itself, ``batch[0]`` of a tuple, or a dict's inputs key."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping):
        return _from_mapping(batch, INPUT_KEYS, "inputs", "batch_to_inputs")
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0]
    raise TypeError(f"cannot find the inputs in a batch of type {type(batch).__name__}; "
                    "pass batch_to_inputs=lambda batch: ...")


def batch_to_targets(batch: Any) -> Tensor:
    """The targets of ``batch``: ``batch[1]`` of a tuple, or a dict's targets key."""
    if isinstance(batch, Mapping):
        return _from_mapping(batch, TARGET_KEYS, "targets", "batch_to_targets")
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[1]
    raise TypeError(f"cannot find the targets in a batch of type {type(batch).__name__} (expected (inputs, targets, "
                    "...) or a dict); pass batch_to_targets=lambda batch: ...")


def batch_size(batch: Any) -> int:
    """Number of samples in ``batch``: the first dimension of its inputs (or of its first tensor)."""
    try:
        inputs = batch_to_inputs(batch)
    except TypeError:
        inputs = None
    if isinstance(inputs, Mapping):  # e.g. {"input_ids": ..., "attention_mask": ...} nested as the inputs
        inputs = next((v for v in inputs.values() if isinstance(v, Tensor)), None)
    if isinstance(batch, Mapping) and not isinstance(inputs, Tensor):
        inputs = next((v for v in batch.values() if isinstance(v, Tensor) and v.ndim > 0), None)
    if not isinstance(inputs, Tensor) or inputs.ndim == 0:
        raise TypeError(f"cannot count the samples of a batch of type {type(batch).__name__}; "
                        "pass batch_size_fn=lambda batch: ...")
    return int(inputs.shape[0])


def output_logits(output: Any) -> Tensor:
    """The logits of a model output: the tensor, ``output["logits"]``, ``output.logits`` or ``output[0]``."""
    if isinstance(output, Tensor):
        logits = output
    elif isinstance(output, Mapping) and "logits" in output:
        logits = output["logits"]
    elif hasattr(output, "logits"):
        logits = output.logits
    elif isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        logits = output[0]
    else:
        raise TypeError(f"cannot find the logits in a model output of type {type(output).__name__} (expected a tensor, "
                        "a dict with 'logits', an object with .logits or a tuple (logits, ...)); pass logits_fn=...")
    if not isinstance(logits, Tensor) or not logits.is_floating_point():
        raise TypeError(f"the model's logits must be a floating-point tensor, got {type(logits).__name__}"
                        + (f" of dtype {logits.dtype}" if isinstance(logits, Tensor) else ""))
    return logits


def replace_logits(output: Any, logits: Tensor) -> Any:
    """``output`` with its logits (as found by :func:`output_logits`) replaced by ``logits``; a copy,
    never an in-place edit of the caller's object."""
    if isinstance(output, Tensor):
        return logits
    if isinstance(output, Mapping) and "logits" in output:
        new = copy.copy(output)  # keeps the mapping's class (e.g. a Hugging Face ModelOutput)
        new["logits"] = logits
        return new
    if hasattr(output, "_replace") and hasattr(output, "logits"):  # namedtuple
        return output._replace(logits=logits)
    if dataclasses.is_dataclass(output) and not isinstance(output, type) and hasattr(output, "logits"):
        try:
            return dataclasses.replace(output, logits=logits)
        except (TypeError, ValueError):
            pass
    if hasattr(output, "logits"):
        new = copy.copy(output)
        new.logits = logits
        return new
    if isinstance(output, (tuple, list)):
        return type(output)([logits, *output[1:]])
    raise TypeError(f"cannot replace the logits of a model output of type {type(output).__name__}")


def check_hook(name: str, hook: Callable | None) -> None:
    """``TypeError`` unless ``hook`` is None or callable."""
    if hook is not None and not callable(hook):
        raise TypeError(f"{name} must be callable (or None for the default), got {type(hook).__name__}")
