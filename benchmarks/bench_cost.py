"""Inference latency of cheaper models against float32 eager PyTorch, side by side in one process.

    python benchmarks/bench_cost.py                 # one thread, two MLP widths
    python benchmarks/bench_cost.py --threads 2

For an MLP on 8x8 digits at two widths, times at batch sizes 1 and 256, in turn, call by call
(``toolkit.cost.compare_latency``, median of repeats), the float32 model and: int8 through torchao
and through the eager ``torch.ao`` path, 90% unstructured pruning, bfloat16, and ``torch.compile``
(when a C++ compiler is present; its compile time is printed). Prints each latency as a ratio to
float32 eager (below 1 is faster), so the figures carry over to other machines. Batch-1 calls of the
wide MLP (4 MB of weights) are bound by memory and sensitive to what else is in the cache: expect
their ratios to move by tens of percent between runs; batch-256 ratios are steady.
"""

from __future__ import annotations

import argparse
import copy
import time

import pandas as pd
import torch

from toolkit.cost import (LowPrecision, compare_latency, compile_model, has_c_compiler, model_size_bytes,
                          prune_model, quantize_int8)
from toolkit.models import MLP

WIDTHS = {"MLP 256-128": (256, 128), "MLP 1024-1024": (1024, 1024)}
BATCH_SIZES = (1, 256)
REPEATS = 50
WARMUP = 5
SPARSITY = 0.9
IN_FEATURES, NUM_CLASSES = 64, 10


def variants(hidden: tuple[int, ...]) -> tuple[dict[str, torch.nn.Module], dict[str, float]]:
    torch.manual_seed(0)
    fp32 = MLP(IN_FEATURES, NUM_CLASSES, hidden).eval()
    models = {"float32": fp32, "int8 torchao": quantize_int8(fp32, backend="torchao"),
              "int8 eager": quantize_int8(fp32, backend="eager"), f"pruned {SPARSITY:.0%}": prune_model(fp32, SPARSITY),
              "bf16": LowPrecision(fp32)}
    compile_s = {}
    if has_c_compiler():
        compiled = compile_model(copy.deepcopy(fp32), dynamic=False)  # own weights, like every variant
        for batch_size in BATCH_SIZES:  # compile once per input shape, outside the timing
            start = time.perf_counter()
            with torch.no_grad():
                compiled(torch.randn(batch_size, IN_FEATURES))
            compile_s[batch_size] = time.perf_counter() - start
        models["compiled"] = compiled
    return models, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    example = torch.randn(max(BATCH_SIZES), IN_FEATURES)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), C++ compiler: {has_c_compiler()}")
    for name, hidden in WIDTHS.items():
        models, compile_s = variants(hidden)
        frame = compare_latency(models, example, BATCH_SIZES, warmup=WARMUP, repeats=REPEATS)
        table = frame.pivot(index="model", columns="batch_size", values="latency_ms")
        ratios = table.div(table.loc["float32"], axis=1).add_prefix("x fp32 @ batch ")
        ratios["size x fp32"] = pd.Series({n: model_size_bytes(m) for n, m in models.items() if n != "compiled"}) \
            / model_size_bytes(models["float32"])
        print(f"\n{name}: float32 eager takes " + ", ".join(f"{table.loc['float32', b]:.3f} ms at batch {b}"
                                                        for b in BATCH_SIZES))
        print(ratios.loc[list(models)].round(2).to_string())
        if compile_s:
            print("compile time: " + ", ".join(f"{s:.1f} s for batch {b}" for b, s in compile_s.items()))


if __name__ == "__main__":
    main()
