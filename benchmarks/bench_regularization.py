"""Cost of the regularization layers against ``nn.Dropout``: forward + backward on the same tensor.

    python benchmarks/bench_regularization.py [--repeats 30]

Each layer is timed side by side with its reference in this process (interleaved, median over
repeats), so the ratios hold on any machine. Noise layers are compared with ``nn.Dropout(p)`` on a
``(64, 32, 16, 16)`` feature map; layers that own weights (DropConnect, variational) with
``nn.Dropout`` followed by ``nn.Linear`` / ``nn.Conv2d`` of the same shape. DropBlock2d is also timed
against its floor: the same Bernoulli seeds and the same masked, rescaled multiply, without growing the
seeds into blocks. Target (issue 24): DropBlock2d at most 1.0x dropout or within 1.2x its floor.
Use ``--threads 1`` on a loaded machine: ratios of single-threaded runs are the stable ones.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from toolkit.regularization import (ConcreteDropout, DropBlock2d, DropConnectLinear, DropPath, GaussianDropout,
                                    VariationalConv2d, VariationalLinear, drop_block_seed_rate)

P = 0.2
MAP_SHAPE = (64, 32, 16, 16)
FEATURES_SHAPE = (256, 512)
DROPBLOCK_TARGET_PEER = 1.0
DROPBLOCK_TARGET_FLOOR = 1.2


class _DropBlockFloor(nn.Module):
    """DropBlock2d's work without the block growing: seeds on the valid origins, padded to the map, and
    the masked multiply with the ``numel / kept`` rescaling."""

    def __init__(self, drop_prob: float, block_size: int) -> None:
        super().__init__()
        self.drop_prob, self.block_size = drop_prob, block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        rate = drop_block_seed_rate(self.drop_prob, self.block_size, height, width)
        seeds = torch.empty(*x.shape[:2], height - self.block_size + 1, width - self.block_size + 1,
                            dtype=x.dtype).bernoulli_(rate)
        keep = torch.nn.functional.pad(seeds, (0, self.block_size - 1, 0, self.block_size - 1)).eq_(0)
        return x * keep.mul_(keep.numel() / keep.sum().clamp_min(1.0))


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
        "DropBlock2d(block_size=3) vs floor": (lambda: DropBlock2d(P, 3), lambda: _DropBlockFloor(P, 3), MAP_SHAPE),
        "DropBlock2d(block_size=5) vs floor": (lambda: DropBlock2d(P, 5), lambda: _DropBlockFloor(P, 5), MAP_SHAPE),
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
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, p={P}, median of {args.repeats}")
    print(f"{'layer':36s} {'layer ms':>9s} {'reference ms':>13s} {'ratio':>6s}  reference")
    for name, (build, build_reference, shape) in cases().items():
        reference = build_reference()
        layer_s, reference_s = compare(build(), reference, torch.randn(*shape), args.repeats)
        ref_name = " + ".join(type(m).__name__ for m in reference) if isinstance(reference, nn.Sequential) \
            else type(reference).__name__
        flag = ""
        if name.startswith("DropBlock2d"):
            target = DROPBLOCK_TARGET_FLOOR if name.endswith("floor") else DROPBLOCK_TARGET_PEER
            flag = f"  (<= {target}x: " + ("yes" if layer_s / reference_s <= target else "no") + "; target: either row)"
        print(f"{name:36s} {layer_s * 1e3:9.3f} {reference_s * 1e3:13.3f} {layer_s / reference_s:6.2f}  {ref_name}{flag}")


if __name__ == "__main__":
    main()
