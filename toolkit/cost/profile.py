"""What a model costs to hold and to run: parameters, FLOPs, activation memory, size on disk, latency.

Every function takes a plain ``nn.Module`` (or a LightningModule, which is one) and an ``example``
batch with a leading batch dimension, e.g. ``x_test[:8]``, or a dict of such tensors for a model
whose forward takes one (``model(example)``); outputs may be objects with ``.logits`` (``logits_fn``). FLOPs come from PyTorch's own counter
(``torch.utils.flop_counter.FlopCounterMode``): a matrix product of ``(M, K) @ (K, N)`` counts
``2*M*K*N``, so a ``Linear(in, out)`` costs ``2*in*out`` FLOPs per sample; element-wise operations
(bias, ReLU, norms) are not counted, as in most papers.

Latency is wall-clock time of ``model(batch)`` under ``torch.no_grad()`` in eval mode, after
``warmup`` untimed calls, as the median (and quartiles) of ``repeats`` timed calls. Models compared
with :func:`compare_latency` are timed in turn, call by call, so a load spike on a shared machine hits
all of them alike and their ratios stay meaningful; each timed call follows an untimed call of the
same model, so every model is timed with its weights warm in cache, as in a busy server.
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from toolkit._structure import check_hook, output_logits

__all__ = ["activation_memory_bytes", "compare_latency", "count_flops", "count_parameters", "measure_latency",
           "model_size_bytes", "profile_model", "time_phases"]

DEFAULT_BATCH_SIZES = (1, 32, 256)
_BYTES_PER_MB = 2**20


def _check_model(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")


def _tensors(example: object) -> list[Tensor]:
    return list(example.values()) if isinstance(example, Mapping) else [example]


def _check_example(example: object) -> None:
    """A tensor batch ``(N, ...)``, or a dict of them (passed to the model as it is: ``model(example)``)."""
    if isinstance(example, Mapping):
        if not example or not all(isinstance(v, Tensor) for v in example.values()):
            raise TypeError("example must be a torch.Tensor batch (N, ...) or a non-empty dict of tensors, got "
                            f"a dict of {sorted({type(v).__name__ for v in example.values()})}")
    elif not isinstance(example, Tensor):
        raise TypeError(f"example must be a torch.Tensor batch (N, ...) or a dict of tensors, "
                        f"got {type(example).__name__}")
    sizes = {t.shape[0] if t.dim() else 0 for t in _tensors(example)}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"example must be a non-empty batch with a leading batch dimension (the same in every "
                         f"tensor), got shape {_describe(example)}")


def _describe(example: Tensor | Mapping[str, Tensor]) -> str:
    if isinstance(example, Mapping):
        return "{" + ", ".join(f"{k!r}: {tuple(v.shape)}" for k, v in example.items()) + "}"
    return str(tuple(example.shape))


def _rows(example: Tensor | Mapping[str, Tensor]) -> int:
    """The batch size of a checked example."""
    return int(_tensors(example)[0].shape[0])


def _take(example: Tensor | Mapping[str, Tensor], index: Tensor | slice) -> Tensor | Mapping[str, Tensor]:
    if isinstance(example, Mapping):
        return {k: v[index].contiguous() for k, v in example.items()}
    return example[index].contiguous()


def _check_int(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    if isinstance(batch_sizes, int) and not isinstance(batch_sizes, bool):
        batch_sizes = (batch_sizes,)
    if not isinstance(batch_sizes, (list, tuple)) or not batch_sizes or any(
            isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be a non-empty sequence of integers >= 1, got {batch_sizes!r}")
    return tuple(batch_sizes)


def _run_example(model: nn.Module, example: Tensor) -> Tensor:
    """One forward pass; a shape error becomes a ValueError that names ``example``."""
    try:
        return model(example)
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(f"example of shape {_describe(example)} does not fit the model "
                         f"({type(model).__name__}): {error}") from error


def _batch_of(example: Tensor, batch_size: int) -> Tensor:
    """``batch_size`` rows of ``example``, cycling through its rows when it has fewer."""
    if _rows(example) >= batch_size:
        return _take(example, slice(0, batch_size))
    return _take(example, torch.arange(batch_size, device=_tensors(example)[0].device) % _rows(example))


def count_parameters(model: nn.Module, trainable_only: bool = False, nonzero: bool = False) -> int:
    """Number of parameters (``trainable_only``: with ``requires_grad``; ``nonzero``: not exactly 0).

    Example:
        >>> count_parameters(nn.Linear(64, 10))
        650
    """
    _check_model(model)
    for flag, value in (("trainable_only", trainable_only), ("nonzero", nonzero)):
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    total = 0
    for param in model.parameters():
        if trainable_only and not param.requires_grad:
            continue
        total += int(torch.count_nonzero(param.detach()).item()) if nonzero else param.numel()
    return total


@contextlib.contextmanager
def _countable_attention() -> Iterator[None]:
    """Run attention on paths that ``FlopCounterMode`` sees, and restore the settings afterwards.

    In eval mode without gradients ``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention`` take
    a fused fast path (``torch._transformer_encoder_layer_fwd``, ``torch._native_multi_head_attention``)
    whose matrix products the counter does not see; and on a CPU ``scaled_dot_product_attention``
    calls a fused kernel the counter has no formula for. With the fast path off and the math backend
    of attention, every product is an ``mm``/``bmm``/``addmm`` the counter counts (same results).
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def count_flops(model: nn.Module, example: Tensor, backward: bool = False,
                logits_fn: Callable[[Any], Tensor] | None = None) -> float:
    """FLOPs per sample of a forward pass (``backward``: forward plus backward, i.e. a training step).

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` on ``example`` and divided by its batch size.
    The backward pass of a ``Linear`` layer costs twice its forward (gradients of the input and of the
    weight), except for the first layer, whose input needs no gradient. Attention is counted on its
    unfused path (PyTorch's transformer fast path and fused CPU attention kernel hide their matrix
    products from the counter), so a transformer's ``Q K^T`` and attention-times-``V`` products count,
    ``2 * tokens**2 * dim`` FLOPs each per sample and layer.

    Example:
        >>> count_flops(nn.Linear(64, 10), torch.randn(4, 64))
        1280.0
    """
    _check_model(model)
    _check_example(example)
    check_hook("logits_fn", logits_fn)
    if backward:  # a copy in train mode: the model's gradients and norm statistics stay untouched
        work = copy.deepcopy(model).train()
        with _countable_attention(), FlopCounterMode(display=False) as counter:
            (logits_fn or output_logits)(_run_example(work, example)).float().sum().backward()
        return counter.get_total_flops() / _rows(example)
    was_training = model.training
    model.eval()
    try:
        with _countable_attention(), FlopCounterMode(display=False) as counter, torch.no_grad():
            _run_example(model, example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / _rows(example)


def activation_memory_bytes(model: nn.Module, example: Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``example`` (the whole batch).

    This is the memory training needs on top of the weights, gradients and optimizer state, and it
    grows linearly with the batch size. A tensor saved twice (a ReLU output that is also the next
    layer's input) counts once; the parameters themselves are not counted. Measured with
    ``torch.autograd.graph.saved_tensors_hooks`` on a copy of the model in train mode (the model's
    norm statistics stay untouched).
    """
    _check_model(model)
    _check_example(example)
    model = copy.deepcopy(model).train()
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[tuple[int, int], int] = {}

    def pack(tensor: Tensor) -> Tensor:
        if tensor.untyped_storage().data_ptr() not in param_storages and tensor.numel():
            # the bytes this tensor spans, once per (address, size): a view of a larger input counts its own rows
            seen[(tensor.data_ptr(), tensor.numel())] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = _run_example(model, example)
    del output
    return sum(seen.values())


def model_size_bytes(model: nn.Module, compress: bool = False) -> int:
    """Size of ``model.state_dict()`` serialized with ``torch.save``: what a checkpoint costs on disk.

    ``compress``: the size after zlib compression instead, which is where the zeros of a pruned
    model go away (a dense file of a 90%-sparse model is as large as the unpruned one).

    Example:
        >>> model_size_bytes(nn.Linear(1000, 1000)) > 4 * 1000 * 1000
        True
    """
    _check_model(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    return len(zlib.compress(data, level=6)) if compress else len(data)


def profile_model(model: nn.Module, example: Tensor, logits_fn: Callable[[Any], Tensor] | None = None) -> pd.Series:
    """Parameters, FLOPs per sample (inference and training step), activation memory per sample and
    size on disk, as one pandas Series (stack several with ``pd.DataFrame({...})``)."""
    _check_model(model)
    _check_example(example)
    activation = activation_memory_bytes(model, example) / _rows(example)
    return pd.Series({
        "parameters": count_parameters(model),
        "flops_per_sample": count_flops(model, example),
        "train_flops_per_sample": count_flops(model, example, backward=True, logits_fn=logits_fn),
        "activation_bytes_per_sample": activation,
        "size_mb": model_size_bytes(model) / _BYTES_PER_MB,
    })


def _synchronize(example: Tensor) -> None:
    device = _tensors(example)[0].device
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_latency(models: Mapping[str, nn.Module], example: Tensor,
                    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, *, warmup: int = 3, repeats: int = 20,
                    inputs: Mapping[str, Callable[[Tensor], Tensor]] | None = None) -> pd.DataFrame:
    """Latency and throughput of several models on the same batches, timed in turn, call by call.

    Args:
        models: name to model; each is put in eval mode while it is timed.
        example: a batch ``(N, ...)``; a batch of size ``b`` is its first ``b`` rows (cycled if ``N < b``).
        batch_sizes: batch sizes to time, integers ``>= 1``.
        warmup: untimed calls before timing (lazy initialization, caches, compilation), ``>= 0``.
        repeats: timed calls per model and batch size, ``>= 1``.
        inputs: optional name to a function that prepares the batch for that model (e.g. a cast).

    Returns:
        One row per model and batch size: ``model``, ``batch_size``, ``latency_ms`` (median),
        ``latency_p25_ms``, ``latency_p75_ms``, ``ms_per_sample`` and ``throughput_per_s``
        (samples per second at the median latency).
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty mapping of name to nn.Module, got {type(models).__name__}")
    for model in models.values():
        _check_model(model)
    _check_example(example)
    batch_sizes = _check_batch_sizes(batch_sizes)
    _check_int("warmup", warmup, 0)
    _check_int("repeats", repeats, 1)
    inputs = dict(inputs or {})
    unknown = set(inputs) - set(models)
    if unknown:
        raise ValueError(f"inputs names {sorted(unknown)} are not in models {sorted(models)}")
    prepare = {name: inputs.get(name, lambda x: x) for name in models}
    modes = {name: model.training for name, model in models.items()}
    rows = []
    try:
        for model in models.values():
            model.eval()
        with torch.no_grad():
            for name, model in models.items():  # one clear error before any timing
                _run_example(model, prepare[name](_take(example, slice(0, 1))))
            for batch_size in batch_sizes:
                batches = {name: prepare[name](_batch_of(example, batch_size)) for name in models}
                for name, model in models.items():
                    for _ in range(warmup):
                        model(batches[name])
                    _synchronize(example)
                times: dict[str, list[float]] = {name: [] for name in models}
                names = list(models)
                for repeat in range(repeats):
                    # rotate who goes first, so no model always follows the same neighbour (a slow
                    # bf16 or compiled model leaves caches and the thread pool in its own state)
                    shift = repeat % len(names)
                    for name in names[shift:] + names[:shift]:
                        model = models[name]
                        model(batches[name])  # warm this model's weights in cache after the others ran
                        _synchronize(example)
                        start = time.perf_counter()
                        model(batches[name])
                        _synchronize(example)
                        times[name].append(time.perf_counter() - start)
                for name, seconds in times.items():
                    quartiles = statistics.quantiles(seconds, n=4) if len(seconds) > 1 else seconds * 3
                    median = statistics.median(seconds)
                    rows.append({"model": name, "batch_size": batch_size, "latency_ms": 1e3 * median,
                                 "latency_p25_ms": 1e3 * quartiles[0], "latency_p75_ms": 1e3 * quartiles[-1],
                                 "ms_per_sample": 1e3 * median / batch_size,
                                 "throughput_per_s": batch_size / median})
    finally:
        for name, model in models.items():
            model.train(modes[name])
    return pd.DataFrame(rows)


def measure_latency(model: nn.Module, example: Tensor, batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, *,
                    warmup: int = 3, repeats: int = 20) -> pd.DataFrame:
    """Latency (median and quartiles of ``repeats`` calls after ``warmup``) and throughput per batch size.

    See :func:`compare_latency` for the arguments and columns (without the ``model`` column).

    Example:
        >>> frame = measure_latency(nn.Linear(64, 10), torch.randn(8, 64), batch_sizes=(1, 8))
        >>> list(frame.batch_size)
        [1, 8]
    """
    _check_model(model)
    frame = compare_latency({"model": model}, example, batch_sizes, warmup=warmup, repeats=repeats)
    return frame.drop(columns="model")


def time_phases(model: nn.Module, example: Tensor, targets: Tensor, *, repeats: int = 20,
                loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
                optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW,
                logits_fn: Callable[[Any], Tensor] | None = None) -> pd.DataFrame:
    """Where the time of one training step goes, beside one inference call on the same batch.

    ``logits_fn`` maps the model's output to what ``loss_fn`` takes; the default reads a tensor,
    ``output["logits"]``, ``output.logits`` or ``output[0]`` (so output objects work as they are).

    Times, as medians over ``repeats`` steps (after one untimed step), the phases of a training step
    of a copy of ``model`` (the model itself is left untouched): ``forward`` (with the loss),
    ``backward`` and ``optimizer step`` (``optimizer(params)``, AdamW by default); and ``inference``,
    a forward pass in eval mode under ``torch.no_grad()``.

    Returns:
        One row per phase: ``phase``, ``ms`` and ``share`` of the training step (inference's share
        is relative to the training step too).
    """
    _check_model(model)
    _check_example(example)
    check_hook("logits_fn", logits_fn)
    if not isinstance(targets, Tensor) or len(targets) != _rows(example):
        raise ValueError(f"targets must be a tensor with one entry per example row ({_rows(example)}), "
                         f"got {getattr(targets, 'shape', type(targets).__name__)}")
    _check_int("repeats", repeats, 1)
    work = copy.deepcopy(model)
    opt = optimizer([p for p in work.parameters() if p.requires_grad])
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer step": [], "inference": []}
    for step in range(repeats + 1):
        work.train()
        _synchronize(example)
        t0 = time.perf_counter()
        loss = loss_fn((logits_fn or output_logits)(_run_example(work, example)), targets)
        _synchronize(example)
        t1 = time.perf_counter()
        loss.backward()
        _synchronize(example)
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _synchronize(example)
        t3 = time.perf_counter()
        work.eval()
        with torch.no_grad():
            work(example)
        _synchronize(example)
        t4 = time.perf_counter()
        if step:
            for name, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[name].append(seconds)
    ms = {name: 1e3 * statistics.median(values) for name, values in phases.items()}
    train_ms = ms["forward"] + ms["backward"] + ms["optimizer step"]
    return pd.DataFrame({"phase": list(ms), "ms": list(ms.values()),
                         "share": [value / train_ms for value in ms.values()]})
