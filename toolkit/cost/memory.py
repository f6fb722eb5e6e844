"""Where the memory of a training step goes: weights, gradients, optimizer state and activations.

A training step holds four kinds of tensors at its peak (just before the optimizer step, with the
graph of the forward pass still alive, or just after it):

- **weights**: the parameters (and buffers) of the model, ``P * b`` bytes for ``P`` parameters of
  ``b`` bytes each (4 in float32);
- **gradients**: one per trainable parameter, the same size again;
- **optimizer state**: what the optimizer keeps per parameter (SGD with momentum one buffer, Adam and
  AdamW two moments, i.e. ``8 P`` bytes in float32, plus a step counter per parameter tensor);
- **activations**: the tensors autograd saves for the backward pass, which grow linearly with the
  batch size while the other three are paid once.

So AdamW in float32 costs ``4 + 4 + 8 = 16`` bytes per parameter before any activation
(Rajbhandari et al., 2020, *ZeRO: Memory Optimizations Toward Training Trillion Parameter Models*,
arXiv:1910.02054, count the same terms for mixed precision). The framework itself (the Python
interpreter, PyTorch's libraries, the allocator's caches) comes on top and is not counted here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from toolkit._structure import check_hook, output_logits
from toolkit.cost.profile import _check_example, _check_model, _run_example, _tensors

__all__ = ["MEMORY_PARTS", "training_memory"]

MEMORY_PARTS = ("weights", "gradients", "optimizer_state", "activations")


def _tensors_in(value: Any) -> Iterable[Tensor]:
    """Every tensor inside an optimizer's state entry (tensors, dicts, lists and tuples of them)."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)


def _bytes_of(tensors: Iterable[Tensor], seen: set[int]) -> int:
    """Bytes of the storages of ``tensors``, each storage counted once (``seen`` is shared across parts)."""
    total = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() == 0:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def _saved_bytes(tensors: Iterable[Tensor], exclude: set[int], inputs: Iterable[Tensor]) -> int:
    """Bytes the saved ``tensors`` keep alive, each storage once: the whole storage (a view keeps all
    of it alive), except for the storages of the ``inputs``, which exist before the step and may be a
    slice of a larger dataset: those count the bytes of the input tensors themselves."""
    input_bytes = {}
    for tensor in inputs:
        storage = tensor.untyped_storage().data_ptr()
        input_bytes[storage] = input_bytes.get(storage, 0) + tensor.numel() * tensor.element_size()
    total, counted = 0, set(exclude)
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() in counted:
            continue
        counted.add(storage.data_ptr())
        total += input_bytes.get(storage.data_ptr(), storage.nbytes())
    return total


def _copy_with_optimizer(model: nn.Module, optimizer: object) -> tuple[nn.Module, torch.optim.Optimizer]:
    if isinstance(optimizer, torch.optim.Optimizer):
        model_params = {id(p) for p in model.parameters()}
        foreign = [p for group in optimizer.param_groups for p in group["params"] if id(p) not in model_params]
        if foreign:
            raise ValueError(f"optimizer must optimize parameters of model, got an optimizer with {len(foreign)} "
                             f"parameter tensor(s) that are not in {type(model).__name__}")
        # one deepcopy of both: the copied optimizer points at the copied model's parameters
        return copy.deepcopy((model, optimizer))
    if isinstance(optimizer, type) or callable(optimizer):
        work = copy.deepcopy(model)
        trainable = [p for p in work.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError(f"model has no trainable parameter ({type(model).__name__}): nothing to train")
        built = optimizer(trainable)
        if not isinstance(built, torch.optim.Optimizer):
            raise TypeError(f"optimizer must return a torch.optim.Optimizer when called on the parameters, "
                            f"got {type(built).__name__}")
        return work, built
    raise TypeError("optimizer must be a torch.optim.Optimizer of the model's parameters or a callable that "
                    f"builds one from parameters (e.g. torch.optim.AdamW), got {type(optimizer).__name__}")


def training_memory(model: nn.Module, optimizer: torch.optim.Optimizer | Callable[..., torch.optim.Optimizer],
                    example: Tensor | Mapping[str, Tensor],
                    logits_fn: Callable[[Any], Tensor] | None = None) -> pd.Series:
    """Bytes a training step on ``example`` holds, by kind: weights, gradients, optimizer state, activations.

    Runs one forward pass, one backward pass and one optimizer step on a copy of ``model`` (the model
    and optimizer passed in are left untouched) and measures:

    - ``weights``: the parameters and buffers;
    - ``gradients``: the ``.grad`` tensors after the backward pass;
    - ``optimizer_state``: every tensor in ``optimizer.state`` after the step (AdamW: ``exp_avg``,
      ``exp_avg_sq`` and a 4-byte ``step`` per parameter tensor);
    - ``activations``: the tensors autograd saved for the backward pass
      (``torch.autograd.graph.saved_tensors_hooks``; the input batch included, parameters excluded;
      a saved view keeps its whole storage alive and counts it), proportional to the batch size;
    - ``total``: their sum (the framework's own memory comes on top).

    Every storage is counted once, in the first part that holds it. The loss is the sum of the
    model's outputs: the sizes measured do not depend on which loss is used.

    Args:
        model: any ``nn.Module`` (a LightningModule is one) called as ``model(example)``.
        optimizer: an optimizer over ``model``'s parameters (it is copied with the model), or a callable
            that builds one from an iterable of parameters (``torch.optim.AdamW``,
            ``functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)``).
        example: a batch ``(N, ...)`` or a dict of such tensors, as the model takes it.
        logits_fn: maps the model's output to a tensor; default reads a tensor, ``output["logits"]``,
            ``output.logits`` or ``output[0]``.

    Returns:
        A pandas Series of integers (bytes) indexed ``weights``, ``gradients``, ``optimizer_state``,
        ``activations``, ``total``.

    Example:
        >>> memory = training_memory(nn.Linear(100, 10), torch.optim.AdamW, torch.randn(8, 100))
        >>> int(memory["optimizer_state"]) == 2 * 4 * 1010 + 2 * 4  # two fp32 moments, a step per tensor
        True
    """
    _check_model(model)
    _check_example(example)
    check_hook("logits_fn", logits_fn)
    work, opt = _copy_with_optimizer(model, optimizer)
    work.train()
    seen: set[int] = set()
    weights = _bytes_of([*work.parameters(), *work.buffers()], seen)
    saved: list[Tensor] = []
    param_storages = {p.untyped_storage().data_ptr() for p in work.parameters()}

    def pack(tensor: Tensor) -> Tensor:
        if tensor.untyped_storage().data_ptr() not in param_storages:
            saved.append(tensor)
        return tensor

    opt.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = (logits_fn or output_logits)(_run_example(work, example)).float().sum()
    if not loss.requires_grad:
        raise ValueError(f"model has no trainable parameter that the output of example depends on "
                         f"({type(model).__name__}): nothing to train")
    activations = _saved_bytes(saved, seen, _tensors(example))  # before the backward pass frees them
    saved.clear()
    loss.backward()
    gradients = _bytes_of([p.grad for p in work.parameters() if p.grad is not None], seen)

    def closure() -> Tensor:  # optimizers that re-evaluate the loss (LBFGS) get the same one
        opt.zero_grad(set_to_none=False)
        with torch.enable_grad():
            again = (logits_fn or output_logits)(work(example)).float().sum()
            again.backward()
        return again

    opt.step(closure)
    state = _bytes_of([t for entry in opt.state.values() for t in _tensors_in(entry)], seen)
    parts = {"weights": weights, "gradients": gradients, "optimizer_state": state, "activations": activations}
    return pd.Series({**parts, "total": sum(parts.values())}, dtype="int64")
