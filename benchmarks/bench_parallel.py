"""Speed-up of ``run_seeds(..., n_jobs=2)`` over one seed after another, on the same study.

    python benchmarks/bench_parallel.py

A 6-seed study (an MLP on the digits, a few epochs, test evaluation included) run sequentially in
this process with one thread, as the notebooks do, and with ``n_jobs=2`` (two worker processes of one
thread each), interleaved, median over repeats. The ratio sequential / parallel is the figure (target
>= 1.6x on 2 quiet cores); it holds on any machine as long as nothing else competes for the cores.
The workers are started before the timed repeats, as they are after a notebook's first call; the
first call's cost (starting the workers, importing Lightning in each) is printed apart. Every
parallel table is checked to equal the sequential one.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import torch

from toolkit.data import DigitsDataModule
from toolkit.models import MLP
from toolkit.training import ClassifierModule, run_seeds, silence_lightning

SEEDS = tuple(range(6))
EPOCHS = 10
REPEATS = 3
N_JOBS = 2
HIDDEN_SIZES = (256, 256)


def _model() -> ClassifierModule:
    return ClassifierModule(MLP(64, 10, hidden_sizes=HIDDEN_SIZES, dropout=0.1), num_classes=10, lr=3e-3)


def study(data: DigitsDataModule, n_jobs: int) -> tuple[float, object]:
    start = time.perf_counter()
    frame = run_seeds(_model, data, SEEDS, max_epochs=EPOCHS, n_jobs=n_jobs, name=f"bench_{n_jobs}")
    return time.perf_counter() - start, frame.drop(columns="fit_time_s")


if __name__ == "__main__":
    silence_lightning()
    os.environ.setdefault("TOOLKIT_QUIET", "1")
    os.environ.setdefault("TOOLKIT_RUNS_DIR", tempfile.mkdtemp(prefix="bench-parallel-"))
    torch.set_num_threads(1)
    data = DigitsDataModule(flatten=True)
    start = time.perf_counter()
    run_seeds(_model, data, SEEDS[:N_JOBS], max_epochs=1, n_jobs=N_JOBS, name="bench_start")
    first_call_s = time.perf_counter() - start
    study(data, 1)  # warm-up of this process (first-call allocations)
    times: dict[int, list[float]] = {1: [], N_JOBS: []}
    for _ in range(REPEATS):  # interleaved, so drifts in machine load hit both alike
        for n_jobs in times:
            seconds, frame = study(data, n_jobs)
            times[n_jobs].append(seconds)
            if n_jobs == 1:
                reference = frame
            elif not frame.equals(reference):
                raise SystemExit("the parallel study's table differs from the sequential one")
    sequential, parallel = statistics.median(times[1]), statistics.median(times[N_JOBS])
    print(f"{len(SEEDS)}-seed study: MLP {HIDDEN_SIZES} on 1,257 8x8 digits, {EPOCHS} epochs and a test per seed "
          f"(median of {REPEATS}, {os.cpu_count()} CPUs visible)")
    print(f"  sequential, 1 thread                {sequential:6.2f} s")
    print(f"  n_jobs={N_JOBS}, 1 thread per worker      {parallel:6.2f} s   speed-up {sequential / parallel:4.2f}x"
          f"   (tables identical)")
    print(f"  first n_jobs={N_JOBS} call of a session (starts the workers, imports Lightning): {first_call_s:.1f} s")
