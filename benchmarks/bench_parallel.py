"""Speed-up of ``run_seeds(..., n_jobs=2)`` over one seed after another, on the same study.

    python benchmarks/bench_parallel.py

A 6-seed study (an MLP on the digits, a few epochs, test evaluation included) run sequentially in
this process with one thread, as the notebooks do, and with ``n_jobs=2`` (two worker processes of one
thread each), interleaved, median over repeats. The ratio sequential / parallel is the figure (target
>= 1.6x on 2 quiet cores); it holds on any machine as long as nothing else competes for the cores.
The workers are started before the timed repeats, as they are after a notebook's first call; the
first call's cost (starting the workers, importing Lightning in each) is printed apart. Every
parallel table is checked to equal the sequential one.

On a shared machine (Linux gives each terminal session its share of the CPU, however many
processes it runs) the wall-clock ratio says little; the CPU seconds of both arms (this process and
its workers) still do: their ratio bounds the speed-up two quiet cores can give (2 / ratio).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time

import psutil
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


def cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) used so far by this process and each of its live workers."""
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    seconds = {}
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            seconds[process.pid] = times.user + times.system
    return seconds


def study(data: DigitsDataModule, n_jobs: int) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds (this process and its workers) and the table of one study."""
    cpu_before, start = cpu_seconds(), time.perf_counter()
    frame = run_seeds(_model, data, SEEDS, max_epochs=EPOCHS, n_jobs=n_jobs, name=f"bench_{n_jobs}")
    wall, cpu_after = time.perf_counter() - start, cpu_seconds()
    cpu = sum(after - cpu_before.get(pid, 0.0) for pid, after in cpu_after.items())
    return wall, cpu, frame.drop(columns="fit_time_s")


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
    cpu: dict[int, list[float]] = {1: [], N_JOBS: []}
    for _ in range(REPEATS):  # interleaved, so drifts in machine load hit both alike
        for n_jobs in times:
            seconds, cpu_s, frame = study(data, n_jobs)
            times[n_jobs].append(seconds)
            cpu[n_jobs].append(cpu_s)
            if n_jobs == 1:
                reference = frame
            elif not frame.equals(reference):
                raise SystemExit("the parallel study's table differs from the sequential one")
    sequential, parallel = statistics.median(times[1]), statistics.median(times[N_JOBS])
    cpu_seq, cpu_par = statistics.median(cpu[1]), statistics.median(cpu[N_JOBS])
    print(f"{len(SEEDS)}-seed study: MLP {HIDDEN_SIZES} on 1,257 8x8 digits, {EPOCHS} epochs and a test per seed "
          f"(median of {REPEATS}, {os.cpu_count()} CPUs visible)")
    print(f"  {'':34s} {'wall':>8s}   {'CPU (this process + workers)':>28s}")
    print(f"  {'sequential, 1 thread':34s} {sequential:6.2f} s   {cpu_seq:26.2f} s")
    print(f"  {f'n_jobs={N_JOBS}, 1 thread per worker':34s} {parallel:6.2f} s   {cpu_par:26.2f} s")
    print(f"  speed-up (wall, sequential / parallel): {sequential / parallel:4.2f}x   (tables identical)")
    print(f"  CPU cost of running in workers: {cpu_par / cpu_seq:4.2f}x sequential, so at most "
          f"{N_JOBS * cpu_seq / cpu_par:4.2f}x on {N_JOBS} quiet cores")
    print(f"  first n_jobs={N_JOBS} call of a session (starts the workers, imports Lightning): {first_call_s:.1f} s")
