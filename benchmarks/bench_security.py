"""Speed of ``toolkit.security.pgd`` against a plain reference PGD loop, side by side in this process.

    python benchmarks/bench_security.py [--threads 1]

Prints PGD-10 (L-inf, random start) examples per second for the toolkit and for the textbook loop
written below (same model, same batch, same steps), and their ratio (median of per-repeat ratios,
the two measured alternately), for the
MLP on 8x8 digits and the SmallCNN on 16x16 digits. The toolkit adds argument and range checks,
pixel-space bookkeeping and the eval-mode/gradient bookkeeping; the target is a ratio >= 0.9.
Also the cost of a robust-accuracy evaluation over the whole test split.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from toolkit.data import DigitsDataModule
from toolkit.models import MLP, SmallCNN
from toolkit.security import pgd, robust_accuracy

STEPS = 10
EPSILON = 0.1
REPEATS = 7
BATCH_SIZE = 128


def reference_pgd(model, x, y, epsilon, steps, step_size, low, high):
    """The textbook loop (Madry et al.) in model-input units: random start, signed steps, project, clip."""
    scale = high - low
    eps, alpha = epsilon * scale, step_size * scale
    delta = (torch.rand_like(x) * 2 - 1) * eps
    x_adv = (x + delta).clamp(low, high)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(low, high)
    return x_adv.detach()


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _median_seconds(fn) -> float:
    fn()  # warm-up
    return statistics.median(_seconds(fn) for _ in range(REPEATS))


def _interleaved(fn_a, fn_b) -> tuple[float, float, float]:
    """Median times of a and b, and the median of the per-repeat ratios b / a, measured alternately
    so that a burst of load from other processes hits both sides alike."""
    fn_a(), fn_b()  # warm-up
    pairs = [(_seconds(fn_a), _seconds(fn_b)) for _ in range(REPEATS)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(b / a for a, b in pairs))


def bench(name: str, model: torch.nn.Module, dm: DigitsDataModule) -> None:
    model.eval()
    x, y = dm.tensors("test")
    x, y = x[:BATCH_SIZE], y[:BATCH_SIZE]
    low, high = dm.input_range
    step_size = 2.5 * EPSILON / STEPS
    ours, ref, ratio = _interleaved(
        lambda: pgd(model, x, y, EPSILON, steps=STEPS, step_size=step_size, input_range=dm.input_range, seed=0),
        lambda: reference_pgd(model, x, y, EPSILON, STEPS, step_size, low, high))
    print(f"{name:28s} toolkit {len(x) / ours:9.0f} ex/s   reference {len(x) / ref:9.0f} ex/s   "
          f"ratio {ratio:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared CPU)")
    torch.set_num_threads(parser.parse_args().threads)
    torch.manual_seed(0)
    print(f"PGD-{STEPS}, L-inf, epsilon {EPSILON}, batch {BATCH_SIZE}, median of {REPEATS}, "
          f"{torch.get_num_threads()} threads (ratio = toolkit speed / reference speed)")
    flat = DigitsDataModule(image_size=8, flatten=True)
    bench("MLP(64-128-10), 8x8", MLP(64, 10, hidden_sizes=(128,)), flat)
    images = DigitsDataModule(image_size=16)
    bench("SmallCNN(16, 32), 16x16", SmallCNN(num_classes=10, channels=(16, 32), norm="batch"), images)
    model = MLP(64, 10, hidden_sizes=(128,))
    x, y = flat.tensors("test")
    seconds = _median_seconds(lambda: robust_accuracy(model, (x, y), pgd, epsilons=(0.0, 0.05, 0.1),
                                                      input_range=flat.input_range))
    print(f"robust_accuracy, 3 epsilons x {len(y)} test digits (MLP): {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
