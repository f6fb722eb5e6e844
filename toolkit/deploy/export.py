"""Export a trained classifier to ONNX and to ``torch.export``, with its calibrator, and check parity.

``export_onnx`` writes an ONNX graph with ``torch.onnx.export(..., dynamo=True)`` (the model is traced
by ``torch.export``, then translated op by op by onnxscript), ``export_program`` a ``torch.export``
``ExportedProgram`` (``.pt2``); both keep the batch dimension dynamic, so one artifact serves any
batch size. ``check_parity`` runs the artifact and the eager module on the same batches and reports
the largest absolute difference of their logits (float32 round-off is ~1e-7 for small models).

The calibrator travels inside the graph: a module whose forward already divides by its temperature
(a :class:`~toolkit.calibration.TemperatureScaling` stored as ``module.temperature_scaling``, as
:class:`~toolkit.calibration.TemperatureScalingCallback` leaves it) is exported as is, and a raw model
is wrapped with :func:`with_temperature` (``logits / T``) before export. Guo et al., 2017, "On
Calibration of Modern Neural Networks" (arXiv:1706.04599).

Example:
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()         # doctest: +SKIP
    >>> path = export_onnx(with_temperature(model, 1.5), torch.randn(2, 1, 8, 8), "m.onnx")  # doctest: +SKIP
    >>> check_parity(with_temperature(model, 1.5), OnnxRunner(path), [torch.randn(5, 1, 8, 8)]).max_abs_diff  # doctest: +SKIP
    1.1920928955078125e-07
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["OnnxRunner", "ParityResult", "TemperatureWrapped", "TorchRunner", "check_parity", "export_onnx",
           "export_program", "temperature_of", "with_temperature"]

ONNX_OPSET = 18
PARITY_ATOL = 1e-5  # float32 logits of the same graph agree far below this
BATCH_DIM_NAME = "batch"
_QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.onnx._internal")


class TemperatureWrapped(nn.Module):
    """``model(x) / T``: a classifier with its temperature in a buffer, so export keeps it.

    Args:
        model: any module returning ``(N, C)`` logits.
        temperature: the fitted temperature, a finite number ``> 0``.
    """

    temperature: Tensor

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.temperature

    def extra_repr(self) -> str:
        return f"temperature={float(self.temperature):.4g}"


def _check_module(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (or a LightningModule), got {type(model).__name__}")
    return model


def _check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def with_temperature(model: nn.Module, temperature: float) -> TemperatureWrapped:
    """Wrap ``model`` so its logits are divided by ``temperature`` inside the exported graph."""
    return TemperatureWrapped(_check_module(model), _check_temperature(temperature))


def temperature_of(model: nn.Module) -> float | None:
    """The temperature that ``model``'s forward already applies, or None if it applies none.

    Recognizes :class:`TemperatureWrapped` and a ``temperature_scaling`` attribute holding a
    :class:`~toolkit.calibration.TemperatureScaling` (or a tensor with ``T``).
    """
    _check_module(model)
    if isinstance(model, TemperatureWrapped):
        return float(model.temperature)
    scaler = getattr(model, "temperature_scaling", None)
    if scaler is None:
        return None
    if isinstance(scaler, Tensor):
        return float(scaler)
    value = getattr(scaler, "temperature", None)
    if isinstance(value, Tensor):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


def _check_example(example_input: Any) -> Tensor:
    if not isinstance(example_input, Tensor) or not example_input.is_floating_point():
        raise TypeError("example_input must be a floating-point tensor (a batch of model inputs), got "
                        f"{type(example_input).__name__}"
                        + (f" of dtype {example_input.dtype}" if isinstance(example_input, Tensor) else ""))
    if example_input.ndim < 1 or len(example_input) < 1:
        raise ValueError(f"example_input must be a batch (N, ...) with N >= 1, got shape {tuple(example_input.shape)}")
    if not torch.isfinite(example_input).all():
        raise ValueError("example_input contains NaN or infinite values")
    return example_input.detach().cpu()


@contextlib.contextmanager
def _eval_quiet(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode on the CPU, exporter chatter silenced; its mode is restored afterwards."""
    was_training = model.training
    levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    try:
        model.eval()
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield model
    finally:
        model.train(was_training)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _dynamic_shapes(example: Tensor) -> tuple[dict[int, Any]]:
    # min=1: a single-sample request is the common case; torch.export specializes dims of size 1,
    # so the example itself must have a batch of at least 2 (we repeat a single sample)
    return ({0: torch.export.Dim(BATCH_DIM_NAME, min=1)},)


def _traceable_example(example: Tensor) -> Tensor:
    return example if len(example) >= 2 else example.expand(2, *example.shape[1:]).clone()


def export_program(model: nn.Module, example_input: Tensor, path: str | Path) -> Path:
    """Save ``model`` as a ``torch.export`` program (``.pt2``) with a dynamic batch dimension.

    Args:
        model: any ``nn.Module``/LightningModule whose ``forward(x)`` returns logits; exported in eval mode.
        example_input: a float batch ``(N, ...)`` of the model's inputs (``N >= 1``).
        path: file to write (parent folders are created).

    Returns:
        The path written. Load it with ``torch.export.load(path).module()``.
    """
    _check_module(model)
    example = _traceable_example(_check_example(example_input))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_quiet(model), torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes=_dynamic_shapes(example))
        torch.export.save(program, str(path))
    return path


def export_onnx(model: nn.Module, example_input: Tensor, path: str | Path, opset_version: int = ONNX_OPSET) -> Path:
    """Save ``model`` as an ONNX graph (``torch.onnx.export(..., dynamo=True)``), batch dimension dynamic.

    Args:
        model: any ``nn.Module``/LightningModule whose ``forward(x)`` returns logits; exported in eval mode.
        example_input: a float batch ``(N, ...)`` of the model's inputs (``N >= 1``).
        path: file to write (parent folders are created).
        opset_version: ONNX opset, ``>= 18`` (the dynamo exporter's minimum).

    Returns:
        The path written; the graph's input is named "input" and its output "logits".
    """
    _check_module(model)
    example = _traceable_example(_check_example(example_input))
    if isinstance(opset_version, bool) or not isinstance(opset_version, int) or opset_version < ONNX_OPSET:
        raise ValueError(f"opset_version must be an integer >= {ONNX_OPSET}, got {opset_version!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _eval_quiet(model), torch.no_grad():
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=_dynamic_shapes(example),
                                    input_names=["input"], output_names=["logits"], opset_version=opset_version,
                                    verbose=False)
        program.save(str(path))
    return path


class OnnxRunner:
    """Logits of an ONNX file under ONNX Runtime's CPU provider: ``runner(x) -> np.ndarray``.

    Args:
        path: an ONNX file written by :func:`export_onnx`.
        num_threads: intra-op threads, ``>= 1`` (1 suits a server with one worker per core).
    """

    backend = "onnx"

    def __init__(self, path: str | Path, num_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray | Tensor) -> np.ndarray:
        if isinstance(x, Tensor):
            x = x.detach().cpu().numpy()
        return self.session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]


class TorchRunner:
    """Logits of a module (or a ``.pt2`` program file) in PyTorch: ``runner(x) -> np.ndarray``.

    Args:
        model: an ``nn.Module``, or the path of a program saved by :func:`export_program`.
        num_threads: if given, ``torch.set_num_threads`` for this process.
    """

    backend = "torch"

    def __init__(self, model: nn.Module | str | Path, num_threads: int | None = None) -> None:
        if isinstance(model, (str, Path)):
            model = torch.export.load(str(model)).module()
        self.model = _check_module(model)
        if isinstance(self.model, torch.fx.GraphModule):
            pass  # an exported program's module has no train/eval behaviour of its own
        else:
            self.model.eval()
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))

    def __call__(self, x: np.ndarray | Tensor) -> np.ndarray:
        x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)) if not isinstance(x, Tensor) else x.float()
        with torch.inference_mode():
            return self.model(x).detach().cpu().numpy()


@dataclass
class ParityResult:
    """Largest absolute logit difference between an artifact and eager, per batch and overall.

    Float32 round-off grows with the size of the numbers, so the check is relative to the logits'
    scale once they exceed 1: it passes when ``max_abs_diff <= atol * max(1, max_abs_logit)``.
    """

    max_abs_diff: float
    per_batch: list[float]
    atol: float
    max_abs_logit: float = 1.0

    @property
    def allowed(self) -> float:
        return self.atol * max(1.0, self.max_abs_logit)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.allowed

    def __bool__(self) -> bool:
        return self.passed


def check_parity(model: nn.Module, runner: Any, batches: Iterable[Tensor], atol: float = PARITY_ATOL) -> ParityResult:
    """Run ``model`` (eager, eval mode) and ``runner`` (an exported artifact) on each batch; compare logits.

    Args:
        model: the eager module that was exported.
        runner: a callable ``x -> logits`` (:class:`OnnxRunner`, :class:`TorchRunner`).
        batches: float tensors ``(N, ...)``; batches of several sizes also check the dynamic batch dimension.
        atol: the largest accepted difference, ``>= 0`` (default ``1e-5``): absolute while the eager
            logits stay within ``[-1, 1]``, else per unit of their largest magnitude (a model with
            logits near 200, e.g. after dividing by a small temperature, may differ by ``200 * atol``).

    Returns:
        A :class:`ParityResult` (truthy when ``max_abs_diff <= atol * max(1, max |eager logit|)``).
    """
    _check_module(model)
    if not callable(runner):
        raise TypeError(f"runner must be callable (x -> logits), got {type(runner).__name__}")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not 0 <= atol < math.inf:
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")
    diffs, scale = [], 0.0
    with _eval_quiet(model), torch.inference_mode():
        for batch in batches:
            batch = _check_example(batch)
            eager = model(batch).detach().cpu().numpy()
            exported = np.asarray(runner(batch))
            if exported.shape != eager.shape:
                raise ValueError(f"the artifact returned shape {exported.shape}, eager {eager.shape}")
            diffs.append(float(np.abs(exported.astype(np.float64) - eager).max()))
            scale = max(scale, float(np.abs(eager).max()))
    if not diffs:
        raise ValueError("batches is empty: give at least one batch")
    return ParityResult(max(diffs), diffs, float(atol), scale)
