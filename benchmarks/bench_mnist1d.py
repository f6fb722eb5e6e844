"""MNIST-1D: generation time (cold and cached) and the paper's separation of models, over seeds.

    python benchmarks/bench_mnist1d.py                 # 5 seeds; add --large for 50,000 signals

1. Generating the paper's 5,000 signals with ``mnist1d``'s generator (cache off, the package already
   imported), then reading them back from the SHA-256-checked cache, as a ratio in the same run.
2. Test accuracy at 4,000 training samples (the paper's 4,000/1,000 split, seed ``s`` of the split
   and of the training) of logistic regression, an MLP (100-100), ``CNN1D`` and ``GRUClassifier``,
   each trained by a plain PyTorch loop (Adam 1e-2, batch 100, 1,000 steps): the mean with a 95%
   t-interval over seeds (Greydanus, 2020, arXiv:2011.14439: about 32%, 68%, 94%, 91%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from toolkit.data import MNIST1DDataModule, make_mnist1d
from toolkit.models import CNN1D, MLP, GRUClassifier

STEPS, BATCH, LR = 1000, 100, 1e-2
MODELS = {
    "logistic": lambda: MLP(40, 10, hidden_sizes=()),
    "mlp": lambda: MLP(40, 10, hidden_sizes=(100, 100)),
    "cnn1d": lambda: CNN1D(),
    "gru": lambda: GRUClassifier(),
}


def _train_and_test(model, x, y, x_test, y_test, seed):
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    order, position = torch.randperm(len(x), generator=generator), 0
    for _ in range(STEPS):
        if position + BATCH > len(x):
            order, position = torch.randperm(len(x), generator=generator), 0
        index = order[position:position + BATCH]
        position += BATCH
        loss = F.cross_entropy(model(x[index]), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (model.eval()(x_test).argmax(1) == y_test).float().mean().item()


def _generation(num_samples: int) -> None:
    import mnist1d.data  # noqa: F401  (import once, outside the timing)

    start = time.perf_counter()
    make_mnist1d(num_samples=num_samples, cache=False)
    cold = time.perf_counter() - start
    make_mnist1d(num_samples=num_samples)                       # writes the cache
    start = time.perf_counter()
    make_mnist1d(num_samples=num_samples)
    cached = time.perf_counter() - start
    print(f"{num_samples:>6} signals: generate {cold:6.2f} s, cached read {cached * 1e3:6.1f} ms "
          f"({cold / cached:,.0f}x faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--large", action="store_true", help="also time 50,000 signals")
    parser.add_argument("--skip-gru", action="store_true", help="the GRU takes ~10x the CNN's time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("TOOLKIT_CACHE_DIR", tempfile.mkdtemp(prefix="bench_mnist1d_"))
    for n in (5000, 50000) if args.large else (5000,):
        _generation(n)
    names = [n for n in MODELS if not (args.skip_gru and n == "gru")]
    results: dict[str, list[float]] = {n: [] for n in names}
    for seed in range(args.seeds):
        dm = MNIST1DDataModule(val_fraction=0.0, test_fraction=0.2, flatten=True, seed=seed)
        data = (*dm.tensors("train"), *dm.tensors("test"))
        for name in names:
            torch.manual_seed(seed)
            start = time.perf_counter()
            results[name].append(_train_and_test(MODELS[name](), *data, seed=seed))
            print(f"seed {seed} {name:<8} {results[name][-1]:.3f} ({time.perf_counter() - start:.1f} s)",
                  file=sys.stderr)
    print(f"test accuracy, 4,000 training samples, {args.seeds} seeds (mean, 95% t-interval):")
    for name, values in results.items():
        mean = statistics.fmean(values)
        half = (stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
                if len(values) > 1 else float("nan"))
        print(f"  {name:<8} {mean:.3f} ± {half:.3f}   (min {min(values):.3f}, max {max(values):.3f})")


if __name__ == "__main__":
    main()
