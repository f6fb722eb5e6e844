"""Cost of ClassifierModule's per-batch input check next to the training step it guards.

``python benchmarks/bench_validation.py`` prints the median time of ``_check_batch`` (logits shape,
target dtype/shape, one ``aminmax`` over the labels) and of a plain PyTorch training step (forward,
cross-entropy, backward, AdamW step) of the course's MLP on 64-sample batches, and their ratio.
"""

from __future__ import annotations

import statistics
import time

import torch

from toolkit.models import MLP
from toolkit.training import ClassifierModule

BATCH, FEATURES, CLASSES, REPEATS = 64, 64, 10, 2000


def _median_s(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    module = ClassifierModule(MLP(FEATURES, CLASSES), num_classes=CLASSES)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    x, y = torch.randn(BATCH, FEATURES), torch.randint(0, CLASSES, (BATCH,))
    logits = module(x).detach()

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()

    check_s = _median_s(lambda: module._check_batch("train", logits, y))
    step_s = _median_s(step)
    print(f"check {check_s * 1e6:.1f} us, step {step_s * 1e6:.1f} us, check/step {check_s / step_s:.1%}")


if __name__ == "__main__":
    main()
