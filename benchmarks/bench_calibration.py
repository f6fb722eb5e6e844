"""Speed of the calibration metrics and of temperature fitting, against references in the same process.

    python benchmarks/bench_calibration.py            # or: make bench

1. ``update`` + ``compute`` of each of our metrics on 1,000,000 x 10 predictions, as a time ratio to
   torchmetrics' ``MulticlassCalibrationError`` (top-label ECE, 15 bins) on the same tensor, with
   input validation on (the default) for both.
2. The Brier score's sum of squared distances at N = 1e3 .. 1e6 (x 10): ours (per chunk of rows, 1
   subtracted at the targets, squared in place and summed; chunks added in float64) against the
   former ``(probs * probs).sum(dtype=float64)`` form of the identity ``sum p^2 - 2 p_y + 1``, which
   converts the whole N x C product to float64, and the floor: that identity in float32,
   ``probs.square().sum()`` (one pass, fewest operations, but it cancels: on a confident model it
   is rounding noise, printed below); the growth exponent of each over N comes from a log-log fit.
3. ``TemperatureScaling.fit`` on 50,000 x 10 logits (target: under 0.5 s), against a reference that
   minimizes the same NLL over ``log T`` with scipy's bounded scalar search.

Timings are medians over repeats, interleaved so that drifts in machine load hit every variant alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torchmetrics.classification import MulticlassCalibrationError

from toolkit.calibration import (AdaptiveCalibrationError, BrierScore, ClasswiseCalibrationError,
                                 NegativeLogLikelihood, ReliabilityDiagram, TemperatureScaling)

NUM_SAMPLES = 1_000_000
NUM_CLASSES = 10
N_BINS = 15
METRIC_REPEATS = 5
TS_SAMPLES = 50_000
TS_REPEATS = 7
TS_TARGET_S = 0.5


def _median_time(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def metric_times() -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    probs = (3 * torch.randn(NUM_SAMPLES, NUM_CLASSES, generator=g)).softmax(1)
    targets = torch.randint(0, NUM_CLASSES, (NUM_SAMPLES,), generator=g)
    builders = {
        "torchmetrics MulticlassCalibrationError (reference)":
            lambda: MulticlassCalibrationError(NUM_CLASSES, n_bins=N_BINS),
        "ReliabilityDiagram": lambda: ReliabilityDiagram(n_bins=N_BINS),
        "AdaptiveCalibrationError": lambda: AdaptiveCalibrationError(n_bins=N_BINS),
        "ClasswiseCalibrationError": lambda: ClasswiseCalibrationError(NUM_CLASSES, n_bins=N_BINS),
        "NegativeLogLikelihood": NegativeLogLikelihood,
        "BrierScore": BrierScore,
    }

    def run(build: Callable[[], object]) -> None:
        metric = build()
        metric.update(probs, targets)
        metric.compute()

    for build in builders.values():  # warm-up
        run(build)
    times: dict[str, list[float]] = {name: [] for name in builders}
    for _ in range(METRIC_REPEATS):
        for name, build in builders.items():
            times[name] += _median_time(lambda: run(build), 1)
    return {name: statistics.median(t) for name, t in times.items()}


BRIER_SIZES = (1_000, 10_000, 100_000, 1_000_000)
BRIER_REPEATS = 7


def brier_times() -> dict[str, list[float]]:
    """Median seconds of each Brier sum-of-squares variant at each of ``BRIER_SIZES``."""
    from toolkit.calibration.metrics import _brier_update

    g = torch.Generator().manual_seed(2)
    variants = {
        "_brier_update (ours)": lambda p, y: _brier_update(p, y)[0],
        "(p * p).sum(dtype=float64) (former)":
            lambda p, y: (p * p).sum(dtype=torch.float64) - 2 * p.gather(1, y[:, None]).sum(dtype=torch.float64) + len(y),
        "p.square().sum() (floor, float32)": variants_floor,
    }
    out: dict[str, list[float]] = {name: [] for name in variants}
    for n in BRIER_SIZES:
        probs = (3 * torch.randn(n, NUM_CLASSES, generator=g)).softmax(1)
        targets = torch.randint(0, NUM_CLASSES, (n,), generator=g)
        values = [float(fn(probs, targets)) for fn in variants.values()]
        assert max(values) - min(values) <= 1e-6 * n, values  # the same sum
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(BRIER_REPEATS):
            for name, fn in variants.items():
                times[name] += _median_time(lambda: fn(probs, targets), 1)
        for name in variants:
            out[name].append(statistics.median(times[name]))
    return out


def variants_floor(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The float32 identity ``sum p^2 - 2 p_y + 1`` summed over samples (the floor above)."""
    return p.square().sum() - 2 * p.gather(1, y[:, None]).sum() + len(y)


def temperature_times() -> tuple[float, float, float, float]:
    g = torch.Generator().manual_seed(1)
    z = 2 * torch.randn(TS_SAMPLES, NUM_CLASSES, generator=g)
    targets = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    logits = 3.0 * z  # three times too sharp: the fit should find T close to 3

    def ours() -> float:
        return TemperatureScaling().fit(logits, targets).temperature

    def scipy_reference() -> float:
        logits64 = logits.double()
        nll = lambda log_t: F.cross_entropy(logits64 / np.exp(log_t), targets).item()  # noqa: E731
        return float(np.exp(minimize_scalar(nll, bounds=(-4, 4), method="bounded", options={"xatol": 1e-6}).x))

    ours(), scipy_reference()  # warm-up
    t_ours, t_ref = [], []
    for _ in range(TS_REPEATS):
        t_ours += _median_time(ours, 1)
        t_ref += _median_time(scipy_reference, 1)
    return statistics.median(t_ours), statistics.median(t_ref), ours(), scipy_reference()


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    times = metric_times()
    reference = times["torchmetrics MulticlassCalibrationError (reference)"]
    print(f"\nupdate + compute on {NUM_SAMPLES:,} x {NUM_CLASSES} probabilities (median of {METRIC_REPEATS}):")
    for name, seconds in times.items():
        print(f"  {name:52s} {seconds * 1e3:8.1f} ms   {seconds / reference:5.2f}x the reference")
    brier = brier_times()
    print(f"\nBrier sum of squares on N x {NUM_CLASSES} float32 probabilities (median of {BRIER_REPEATS}):")
    print("  " + " " * 40 + "".join(f"{f'N={n:,}':>14s}" for n in BRIER_SIZES) + "   N^k")
    for name, seconds in brier.items():
        slope = np.polyfit(np.log(BRIER_SIZES), np.log(seconds), 1)[0]
        print(f"  {name:40s}" + "".join(f"{t * 1e3:11.2f} ms" for t in seconds) + f"   k={slope:.2f}")
    ours, former = brier["_brier_update (ours)"][-1], brier["(p * p).sum(dtype=float64) (former)"][-1]
    floor = brier["p.square().sum() (floor, float32)"][-1]
    print(f"  at N={BRIER_SIZES[-1]:,}: ours {ours / floor:.2f}x the floor, the former {former / floor:.2f}x")
    print("  ours / floor at each N: " + ", ".join(
        f"{n:,}: {o / f:.2f}x" for n, o, f in zip(BRIER_SIZES, brier["_brier_update (ours)"],
                                                  brier["p.square().sum() (floor, float32)"])))
    confident = torch.randn(10_000, NUM_CLASSES, generator=torch.Generator().manual_seed(3))
    labels = confident.argmax(1)
    confident[torch.arange(len(labels)), labels] += 12  # a model sure of every (right) answer
    probs = confident.softmax(1)
    exact = float(((probs.double() - F.one_hot(labels, NUM_CLASSES)) ** 2).sum(1).mean())
    from toolkit.calibration.metrics import _brier_update
    print(f"  confident model, Brier score: float64 {exact:.3e}, ours {float(_brier_update(probs, labels)[0]) / 1e4:.3e}, "
          f"the float32 identity {float(variants_floor(probs, labels)) / 1e4:.3e}")
    default_threads = torch.get_num_threads()
    # intra-op threads help little on 500k elements and suffer when other processes share the cores
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        ours, ref, t_ours, t_ref = temperature_times()
        verdict = "within" if ours < TS_TARGET_S else "OVER"
        print(f"\ntemperature fitting on {TS_SAMPLES:,} x {NUM_CLASSES} logits, {threads} thread(s) "
              f"(median of {TS_REPEATS}):")
        print(f"  TemperatureScaling.fit (LBFGS)   {ours * 1e3:8.1f} ms  T={t_ours:.4f}  "
              f"({verdict} the {TS_TARGET_S} s target)")
        print(f"  scipy bounded scalar search      {ref * 1e3:8.1f} ms  T={t_ref:.4f}")
        print(f"  ratio ours / scipy               {ours / ref:8.2f}x")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
