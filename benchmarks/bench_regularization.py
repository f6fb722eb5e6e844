"""Cost of the regularization layers against ``nn.Dropout``: forward + backward on the same tensor.

    python benchmarks/bench_regularization.py [--repeats 30]

Each layer is timed side by side with its reference in this process (interleaved, median over
repeats), so the ratios hold on any machine. Noise layers are compared with ``nn.Dropout(p)`` on a
``(64, 32, 16, 16)`` feature map; layers that own weights (DropConnect, variational) with
``nn.Dropout`` followed by ``nn.Linear`` / ``nn.Conv2d`` of the same shape. Target: DropBlock2d at most
3x dropout.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from toolkit.regularization import (ConcreteDropout, DropBlock2d, DropConnectLinear, DropPath, GaussianDropout,
                                    VariationalConv2d, VariationalLinear)

P = 0.2
MAP_SHAPE = (64, 32, 16, 16)
FEATURES_SHAPE = (256, 512)
DROPBLOCK_TARGET = 3.0


def _time_once(layer: nn.Module, x: torch.Tensor) -> float:
    x = x.detach().requires_grad_(True)
    start = time.perf_counter()
    layer(x).sum().backward()
    return time.perf_counter() - start


def compare(layer: nn.Module, reference: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """Median seconds of forward + backward for ``layer`` and ``reference``, measured alternately."""
    layer.train(), reference.train()
    for _ in range(3):  # warm-up
        _time_once(layer, x), _time_once(reference, x)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        times[0].append(_time_once(layer, x))
        times[1].append(_time_once(reference, x))
    return statistics.median(times[0]), statistics.median(times[1])


def cases() -> dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], tuple[int, ...]]]:
    dims = FEATURES_SHAPE[1]
    channels = MAP_SHAPE[1]
    return {
        "DropPath": (lambda: DropPath(P), lambda: nn.Dropout(P), MAP_SHAPE),
        "DropBlock2d(block_size=3)": (lambda: DropBlock2d(P, 3), lambda: nn.Dropout(P), MAP_SHAPE),
        "DropBlock2d(block_size=5)": (lambda: DropBlock2d(P, 5), lambda: nn.Dropout(P), MAP_SHAPE),
        "GaussianDropout": (lambda: GaussianDropout(P), lambda: nn.Dropout(P), MAP_SHAPE),
        "ConcreteDropout": (lambda: ConcreteDropout(P), lambda: nn.Dropout(P), MAP_SHAPE),
        "DropConnectLinear": (lambda: DropConnectLinear(dims, dims, p=P),
                              lambda: nn.Sequential(nn.Dropout(P), nn.Linear(dims, dims)), FEATURES_SHAPE),
        "VariationalLinear": (lambda: VariationalLinear(dims, dims),
                              lambda: nn.Sequential(nn.Dropout(P), nn.Linear(dims, dims)), FEATURES_SHAPE),
        "VariationalConv2d": (lambda: VariationalConv2d(channels, channels, 3, padding=1),
                              lambda: nn.Sequential(nn.Dropout(P), nn.Conv2d(channels, channels, 3, padding=1)),
                              MAP_SHAPE),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, p={P}, median of {args.repeats}")
    print(f"{'layer':28s} {'layer ms':>9s} {'reference ms':>13s} {'ratio':>6s}  reference")
    for name, (build, build_reference, shape) in cases().items():
        reference = build_reference()
        layer_s, reference_s = compare(build(), reference, torch.randn(*shape), args.repeats)
        ref_name = " + ".join(type(m).__name__ for m in reference) if isinstance(reference, nn.Sequential) \
            else type(reference).__name__
        flag = ""
        if name.startswith("DropBlock2d"):
            flag = "  (target <= 3x: " + ("met" if layer_s / reference_s <= DROPBLOCK_TARGET else "MISSED") + ")"
        print(f"{name:28s} {layer_s * 1e3:9.3f} {reference_s * 1e3:13.3f} {layer_s / reference_s:6.2f}  {ref_name}{flag}")


if __name__ == "__main__":
    main()
