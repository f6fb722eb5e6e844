"""What training costs, measured while it runs (``CostMeter``), and when serving savings repay it.

Money and energy are estimates from assumptions the reader states and can change
(:class:`CostAssumptions`): the machine's average power draw and its price per hour. With them,
seconds become kWh and money; :func:`break_even_predictions` then says after how many predictions a
model that costs more to train but less to serve becomes the cheaper one overall.
"""

from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ThroughputMonitor

from toolkit._lightning import namespace_of, submodule
from toolkit._structure import batch_size

__all__ = ["CostAssumptions", "CostMeter", "break_even_predictions", "cost_table"]

_BYTES_PER_MB = 2**20
_SECONDS_PER_HOUR = 3600.0
_PROC_STATUS = "/proc/self/status"
_PROC_CLEAR_REFS = "/proc/self/clear_refs"
_RESET_PEAK_RSS = "5"  # writing 5 to clear_refs resets the peak resident set size (Linux >= 4.0)


def _check_nonnegative(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class CostAssumptions:
    """The two numbers that turn seconds into energy and money; change them to match your machine.

    Args:
        power_watts: average electrical power of the machine while it computes (a laptop CPU under
            load draws roughly 30-65 W; a datacenter GPU 300-700 W).
        price_per_hour: what one hour of that machine costs you, in any currency: a cloud instance's
            hourly price, or ``power_watts / 1000 * price_per_kwh`` for a machine you own.
    """

    power_watts: float = 65.0
    price_per_hour: float = 0.10

    def __post_init__(self) -> None:
        _check_nonnegative("power_watts", self.power_watts)
        _check_nonnegative("price_per_hour", self.price_per_hour)

    def energy_kwh(self, seconds: float) -> float:
        """Energy of ``seconds`` of compute, in kWh."""
        return self.power_watts * seconds / _SECONDS_PER_HOUR / 1000.0

    def cost(self, seconds: float) -> float:
        """Money for ``seconds`` of compute."""
        return self.price_per_hour * seconds / _SECONDS_PER_HOUR


def break_even_predictions(train_cost_a: float, cost_per_prediction_a: float,
                           train_cost_b: float, cost_per_prediction_b: float) -> float:
    """Number of predictions after which option B (e.g. a distilled or compressed model, dearer to
    train, cheaper to serve) has cost less in total than option A.

    Solves ``train_a + N * serve_a = train_b + N * serve_b``: ``N = (train_b - train_a) / (serve_a - serve_b)``.
    Returns ``0.0`` when B is not dearer to train and at least as cheap to serve, and ``inf`` when B
    never catches up (it does not serve more cheaply than A).

    Example:
        >>> break_even_predictions(10.0, 0.002, 25.0, 0.001)  # 15 more to train, saves 0.001 a prediction
        15000.0
    """
    for name, value in (("train_cost_a", train_cost_a), ("cost_per_prediction_a", cost_per_prediction_a),
                        ("train_cost_b", train_cost_b), ("cost_per_prediction_b", cost_per_prediction_b)):
        _check_nonnegative(name, value)
    extra_training = train_cost_b - train_cost_a
    saving = cost_per_prediction_a - cost_per_prediction_b
    if extra_training <= 0 and saving >= 0:
        return 0.0
    if saving <= 0:
        return math.inf
    return extra_training / saving


def cost_table(options: Mapping[str, tuple[float, float]], n_predictions: Sequence[int]) -> pd.DataFrame:
    """Total cost (training + serving) of each option for each number of predictions, in long format.

    Args:
        options: name to ``(train_cost, cost_per_prediction)``, in the same unit (money, seconds, kWh).
        n_predictions: numbers of predictions served, integers ``>= 0``.

    Returns:
        Columns ``option``, ``n_predictions``, ``train_cost``, ``serve_cost`` and ``total_cost``.
    """
    if not isinstance(options, Mapping) or not options:
        raise TypeError("options must be a non-empty mapping of name to (train_cost, cost_per_prediction)")
    n_predictions = list(n_predictions)
    if not n_predictions or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in n_predictions):
        raise ValueError(f"n_predictions must be a non-empty sequence of integers >= 0, got {n_predictions!r}")
    rows = []
    for name, pair in options.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"options[{name!r}] must be (train_cost, cost_per_prediction), got {pair!r}")
        train, per_prediction = pair
        _check_nonnegative(f"options[{name!r}] train_cost", train)
        _check_nonnegative(f"options[{name!r}] cost_per_prediction", per_prediction)
        for n in n_predictions:
            rows.append({"option": name, "n_predictions": n, "train_cost": train,
                         "serve_cost": n * per_prediction, "total_cost": train + n * per_prediction})
    return pd.DataFrame(rows)


def _rss_bytes(field: str) -> int | None:
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process from /proc, or None off Linux."""
    try:
        with open(_PROC_STATUS) as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open(_PROC_CLEAR_REFS, "w") as refs:
            refs.write(_RESET_PEAK_RSS)
        return True
    except OSError:
        return False


def _peak_rss_fallback() -> int:
    """Lifetime peak RSS from ``getrusage`` (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _first_dim(batch: Any) -> int:
    return batch_size(batch)


class CostMeter(ThroughputMonitor):
    """Measure what training costs: time per step, samples per second, peak memory, energy and money.

    Works under ``pytorch_lightning`` and ``lightning.pytorch`` Trainers alike. Built on Lightning's
    :class:`~pytorch_lightning.callbacks.ThroughputMonitor`, which it extends, so
    the logger also receives Lightning's throughput metrics (``train|samples_per_sec``...; with MFU
    when the module defines ``flops_per_batch``). On top it records:

    - every training step's wall time (batch start to batch end, optimizer step included), steps
      (training batches), optimizer steps (fewer under gradient accumulation, one per optimizer in
      a GAN) and samples, and the wall time of the whole ``fit`` (validation included);
    - peak resident memory of the process during training (Linux: the kernel's high-water mark,
      reset at the start of training; elsewhere the process's lifetime peak) and peak CUDA memory
      allocated, when training on a GPU;
    - energy and money for the fit's wall time under ``assumptions``.

    At the end of each training epoch it logs ``cost_ms_per_step`` and ``cost_samples_per_s``
    (medians so far). :meth:`summary` returns everything as a dict; ``state_dict`` holds every
    counter, so a run resumed from a checkpoint keeps adding to the same totals (the assumptions
    are the constructor's, so a reader can re-price a finished run).

    Args:
        assumptions: power and price used for the energy and money estimates.
        batch_size_fn: samples in a batch; default the first dimension of the inputs (a tensor batch,
            ``batch[0]`` of a tuple, a dict's ``"x"``/``"inputs"``/``"features"``... key, else its
            first tensor).
        window_size: batches over which ThroughputMonitor averages its rates.

    Example:
        >>> meter = CostMeter(CostAssumptions(power_watts=45, price_per_hour=0.0))
        >>> # fit(model, data, callbacks=[meter]); meter.summary()["samples_per_s"]
    """

    def __init__(self, assumptions: CostAssumptions | None = None,
                 batch_size_fn: Callable[[Any], int] | None = None, window_size: int = 100) -> None:
        if assumptions is not None and not isinstance(assumptions, CostAssumptions):
            raise TypeError(f"assumptions must be a CostAssumptions, got {type(assumptions).__name__}")
        if batch_size_fn is not None and not callable(batch_size_fn):
            raise TypeError(f"batch_size_fn must be callable, got {type(batch_size_fn).__name__}")
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 2:
            raise ValueError(f"window_size must be an integer >= 2, got {window_size!r}")
        super().__init__(batch_size_fn=batch_size_fn or _first_dim, window_size=window_size)
        self.assumptions = assumptions or CostAssumptions()
        self.steps = 0  # training batches (a step of the training loop)
        self.optimizer_steps = 0  # optimizer.step() calls: fewer under accumulation, two a batch in a GAN
        self.samples = 0
        self.step_times_s: list[float] = []
        self.fit_time_s = 0.0
        self.peak_rss_bytes = 0
        self.peak_cuda_bytes = 0
        self._step_start: float | None = None
        self._train_start: float | None = None
        self._hwm_reset = False

    @property
    def state_key(self) -> str:
        # a meter with its own batch_size_fn is a second instance (the default's key is unchanged, so
        # checkpoints written before still resume)
        counted_by = {} if self.batch_size_fn is _first_dim else {
            "batch_size_fn": getattr(self.batch_size_fn, "__qualname__", type(self.batch_size_fn).__name__)}
        return self._generate_state_key(assumptions=self.assumptions, window_size=self.kwargs.get("window_size"),
                                        **counted_by)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # ThroughputMonitor.setup checks the precision plugin against its own namespace's classes:
        # under a lightning.pytorch Trainer run that namespace's setup (the rest is namespace-free)
        namespace = namespace_of(trainer)
        submodule(namespace, "callbacks").ThroughputMonitor.setup(self, trainer, pl_module, stage)
        # FLOPs are optional here: without ``flops_per_batch`` we log rates, not MFU, and say nothing
        self._module_has_flops = hasattr(pl_module, "flops_per_batch")

    @staticmethod
    def _sync(trainer: pl.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)
        self._hwm_reset = _reset_peak_rss()
        self._train_start = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._sync(trainer)
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._sync(trainer)
        if self._step_start is not None:
            self.step_times_s.append(time.perf_counter() - self._step_start)
            self._step_start = None
        self.steps += 1
        self.samples += self.batch_size_fn(batch)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self.optimizer_steps += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.step_times_s:
            per_step = statistics.median(self.step_times_s)
            samples_per_step = self.samples / max(self.steps, 1)
            pl_module.log_dict({"cost_ms_per_step": 1e3 * per_step,
                                "cost_samples_per_s": samples_per_step / per_step},
                               on_step=False, on_epoch=True, rank_zero_only=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._train_start is not None:
            self.fit_time_s += time.perf_counter() - self._train_start
            self._train_start = None
        peak = _rss_bytes("VmHWM") if self._hwm_reset else None
        self.peak_rss_bytes = max(self.peak_rss_bytes, peak if peak is not None else _peak_rss_fallback())
        if trainer.strategy.root_device.type == "cuda":
            self.peak_cuda_bytes = max(self.peak_cuda_bytes,
                                       int(torch.cuda.max_memory_allocated(trainer.strategy.root_device)))

    def summary(self) -> dict[str, float]:
        """Totals and rates of all training so far (this process), with the energy and money estimates."""
        step_time = sum(self.step_times_s)
        return {
            "steps": self.steps,
            "optimizer_steps": self.optimizer_steps,
            "samples": self.samples,
            "ms_per_step": 1e3 * statistics.median(self.step_times_s) if self.step_times_s else math.nan,
            "samples_per_s": self.samples / step_time if step_time > 0 else math.nan,
            "step_time_s": step_time,
            "fit_time_s": self.fit_time_s,
            "peak_rss_mb": self.peak_rss_bytes / _BYTES_PER_MB,
            "peak_cuda_mb": self.peak_cuda_bytes / _BYTES_PER_MB,
            "energy_kwh": self.assumptions.energy_kwh(self.fit_time_s),
            "cost": self.assumptions.cost(self.fit_time_s),
        }

    def state_dict(self) -> dict[str, Any]:
        running = time.perf_counter() - self._train_start if self._train_start is not None else 0.0
        return {"steps": self.steps, "optimizer_steps": self.optimizer_steps, "samples": self.samples, "step_times_s": list(self.step_times_s),
                "fit_time_s": self.fit_time_s + running, "peak_rss_bytes": self.peak_rss_bytes,
                "peak_cuda_bytes": self.peak_cuda_bytes}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = int(state_dict["steps"])
        self.optimizer_steps = int(state_dict.get("optimizer_steps", 0))
        self.samples = int(state_dict["samples"])
        self.step_times_s = [float(t) for t in state_dict["step_times_s"]]
        self.fit_time_s = float(state_dict["fit_time_s"])
        self.peak_rss_bytes = int(state_dict["peak_rss_bytes"])
        self.peak_cuda_bytes = int(state_dict["peak_cuda_bytes"])
