"""Attention softmax over short rows: ``short_row_softmax`` vs ``Tensor.softmax`` (forward + backward).

PyTorch's CPU softmax is vectorized along the row; rows shorter than 16 (the course's transformers
attend over 11 tokens) take a slower path. Ratio in one run, same tensors::

    python benchmarks/bench_attention.py
"""

import time

import torch

from toolkit.models.transformer import short_row_softmax


def seconds(fn, logits, upstream, repeats=10):
    torch.autograd.grad(fn(logits), logits, upstream)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        torch.autograd.grad(fn(logits), logits, upstream)
    return (time.perf_counter() - start) / repeats


def main() -> None:
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for length in (8, 11, 16, 32):
        logits = torch.randn(30 * 100 * 2 * length, length, requires_grad=True)  # 30 members, batch 100, 2 heads
        upstream = torch.randn_like(logits)
        ours = seconds(short_row_softmax, logits, upstream)
        torch_s = seconds(lambda z: z.softmax(-1), logits, upstream)
        print(f"row length {length:3d}: short_row_softmax {ours * 1e3:7.2f} ms, softmax {torch_s * 1e3:7.2f} ms, "
              f"ratio {ours / torch_s:.2f}x")


if __name__ == "__main__":
    main()
