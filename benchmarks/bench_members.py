"""Speed-up of ``train_members`` (K members vectorized with ``torch.func``) over K separate ``fit``s.

    python benchmarks/bench_members.py                   # about 2.5 CPU minutes
    python benchmarks/bench_members.py --widths 32 100    # a shorter width sweep
    python benchmarks/bench_members.py --augment          # only the augmentation arm (about 1 CPU minute)

Three ways to train the same 20 members (MNIST-1D MLPs, seeds 0-19, test evaluation included), in
one run: vectorized (:func:`toolkit.training.train_members`, one Trainer, one ``vmap``ped step for
all), sequential (``run_seeds``, 20 ``fit``s one after another in this process) and parallel
(``run_seeds(n_jobs=2)``, two worker processes). This process runs one thread, as the notebooks do.
Then a width sweep (hidden sizes ``(w, w)``) shows where vectorizing stops paying: for tiny models a
CPU step is mostly per-operation overhead, which vectorizing pays once for K members; for wide ones
it is arithmetic, which it cannot save.

Each arm reports wall seconds and CPU seconds (this process and its workers). On a quiet machine
the wall ratios are the figures (target: vectorized >= 5x sequential). On a shared machine the
wall clock says little, but the CPU seconds of the single-process arms still compare (their ratio is
the wall ratio on a quiet machine), and the parallel arm's wall time on two quiet cores is about
its CPU seconds / 2. The sweep times ``SWEEP_SEQUENTIAL`` separate fits and scales them to K (a fit's
cost does not depend on its seed).

The augmentation arm (``--augment``) times what ``augment`` adds to a training step for 100
augmented members (notebook 02's sweep: MNIST-1D MLP (48, 48), 500 signals, batches of 32,
``RandomShift1d(0.02)`` at strengths 2/4/8/12): called member by member (an augmentation without
``batched``) against its ``batched`` path (one call per step for all members), first the augmentation
step alone (``StackedMembers._augment_batch``), then whole training steps against an unaugmented run;
CPU seconds, best of interleaved repeats. One run on the shared machine: 4.90 vs 2.40 ms per step
(2.0x less; a step without augmentation 14.1 ms); in whole steps +3.7 vs +2.6 ms. What is left of
the batched path is drawing every member's shifts and noise from its own generator (about 9 us a
member), which keeps a member's numbers independent of the others.

One run on a shared 2-core AVX-512 machine (CPU-second ratios; re-measure wall on a quiet one):
vectorized 6.30x sequential, 6.67x the parallel arm's CPU (about 3.3x its wall on two quiet cores);
width sweep 32 / 100 / 256 / 512 / 1024: 9.80x / 6.26x / 3.26x / 1.81x / 0.72x, so vectorizing
stops paying between widths 512 and 1024, where a step is arithmetic (batched matrix products of
K members run no faster than K separate ones) rather than per-operation overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import psutil
import torch

from toolkit.data import MNIST1DDataModule
from toolkit.models import MLP
from toolkit.regularization import RandomShift1d
from toolkit.training import ClassifierModule, run_seeds, silence_lightning, train_members

MEMBERS = 20
EPOCHS = 5
HIDDEN_SIZES = (100, 100)  # the MNIST-1D MLP of the course (notebook 00)
SWEEP_WIDTHS = (32, 100, 256, 512, 1024)
SWEEP_EPOCHS = 2
SWEEP_SEQUENTIAL = 2  # separate fits timed per width (scaled to MEMBERS)
N_JOBS = 2


def factory(hidden_sizes: tuple[int, ...]):
    return lambda: ClassifierModule(MLP(40, 10, hidden_sizes=hidden_sizes), num_classes=10, lr=3e-3)


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its live workers."""
    total = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def timed(run) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds and the result of ``run()``."""
    cpu, start = cpu_seconds(), time.perf_counter()
    result = run()
    return time.perf_counter() - start, cpu_seconds() - cpu, result


def arms(data, hidden_sizes, members: int, epochs: int, parallel: bool = True) -> dict[str, tuple]:
    make = factory(hidden_sizes)
    seeds = list(range(members))
    out = {"vectorized": timed(lambda: train_members(make, data, [{"seed": s} for s in seeds],
                                                     max_epochs=epochs, name="bench_members"))}
    out["sequential"] = timed(lambda: run_seeds(make, data, seeds, max_epochs=epochs, name="bench_sequential"))
    if parallel:
        out["parallel"] = timed(lambda: run_seeds(make, data, seeds, max_epochs=epochs, n_jobs=N_JOBS,
                                                  name="bench_parallel"))
    return out


class PerMember:
    """An augmentation without ``batched``: train_members calls it once per augmented member."""

    def __init__(self, augment) -> None:
        self.augment = augment

    def __call__(self, x, strength, generator):
        return self.augment(x, strength, generator)


def augment_arm(repeats: int = 3, epochs: int = 10, calls: int = 300) -> None:
    data = MNIST1DDataModule(flatten=True, train_fraction=1 / 7, batch_size=32, seed=0)
    make = factory((48, 48))
    seeds_strengths = [(s, st) for s in range(25) for st in (2, 4, 8, 12)]
    augment = RandomShift1d(0.02)
    hooks = {"per member": PerMember(augment), "batched": augment}
    augmented = [{"seed": s, "augment": st} for s, st in seeds_strengths]
    # 1. the augmentation step alone: StackedMembers._augment_batch on one (K, B, L) batch, both paths
    _, stacked = train_members(make, data, augmented, max_epochs=1, augment=augment, return_members=True,
                               test=False, name="bench_augment")
    stacked.on_train_start()  # the members' generators
    x = data.tensors("train")[0][:32].expand(len(augmented), -1, -1).contiguous()
    alone = {name: float("inf") for name in hooks}
    for _ in range(repeats):  # interleaved, so a change of load hits both paths alike
        for name, hook in hooks.items():
            stacked.augment = hook
            _, cpu, _ = timed(lambda: [stacked._augment_batch(x) for _ in range(calls)])
            alone[name] = min(alone[name], 1e3 * cpu / calls)
    print(f"augmentation of {len(augmented)} members' batches (32 x 40), CPU ms per training step (best of "
          f"{repeats}): per member {alone['per member']:.2f}, batched {alone['batched']:.2f}: "
          f"{alone['per member'] / alone['batched']:.1f}x less")
    # 2. whole training steps: each path minus an unaugmented run of the same members
    arms_ = {"none": ([{"seed": s} for s, _ in seeds_strengths], None),
             **{name: (augmented, hook) for name, hook in hooks.items()}}
    best, steps = {name: float("inf") for name in arms_}, 0
    for _ in range(repeats):
        for name, (members, hook) in arms_.items():
            _, cpu, frame = timed(lambda: train_members(make, data, members, max_epochs=epochs, augment=hook,
                                                        test=False, name="bench_augment"))
            best[name], steps = min(best[name], cpu), int(frame["steps"].iloc[0])
    print(f"training, {steps} steps, CPU ms per step (best of {repeats}): "
          + ", ".join(f"{name} {1e3 * value / steps:.2f}" for name, value in best.items())
          + " (the differences are the augmentation's share; load noise is of the same order)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="*", default=list(SWEEP_WIDTHS), help="widths of the sweep")
    parser.add_argument("--augment", action="store_true", help="run only the augmentation arm")
    args = parser.parse_args()
    silence_lightning()
    os.environ.setdefault("TOOLKIT_QUIET", "1")
    os.environ.setdefault("TOOLKIT_RUNS_DIR", tempfile.mkdtemp(prefix="bench-members-"))
    torch.set_num_threads(1)
    if args.augment:
        augment_arm()
        raise SystemExit(0)
    data = MNIST1DDataModule(flatten=True)
    data.setup()
    # warm-up: first-call allocations here, worker start-up (imports) for the parallel arm
    arms(data, HIDDEN_SIZES, N_JOBS, 1)

    results = arms(data, HIDDEN_SIZES, MEMBERS, EPOCHS)
    print(f"{MEMBERS} members, MNIST-1D MLP {HIDDEN_SIZES}, {EPOCHS} epochs, test included; one thread here")
    print(f"{'arm':<12}{'wall s':>9}{'CPU s':>9}{'wall / vectorized':>19}{'CPU / vectorized':>18}"
          f"{'mean test_acc':>15}")
    vec_wall, vec_cpu, _ = results["vectorized"]
    for name, (wall, cpu, frame) in results.items():
        print(f"{name:<12}{wall:>9.2f}{cpu:>9.2f}{wall / vec_wall:>18.2f}x{cpu / vec_cpu:>17.2f}x"
              f"{frame['test_acc'].mean():>15.3f}")
    seq_wall, seq_cpu, _ = results["sequential"]
    par_wall, par_cpu, _ = results["parallel"]
    print(f"vectorized vs sequential: {seq_wall / vec_wall:.2f}x wall, {seq_cpu / vec_cpu:.2f}x CPU (target >= 5x)")
    print(f"vectorized vs parallel (n_jobs={N_JOBS}): {par_wall / vec_wall:.2f}x wall; on {N_JOBS} quiet cores "
          f"about {par_cpu / N_JOBS / vec_cpu:.2f}x (its CPU s / {N_JOBS})")

    print(f"\nwidth sweep: hidden sizes (w, w), {MEMBERS} members, {SWEEP_EPOCHS} epochs; sequential = "
          f"{SWEEP_SEQUENTIAL} fits x {MEMBERS // SWEEP_SEQUENTIAL}")
    print(f"{'w':>6}{'vectorized CPU s':>18}{'sequential CPU s':>18}{'speed-up (CPU)':>16}{'speed-up (wall)':>17}")
    for width in args.widths:
        make = factory((width, width))
        vec = timed(lambda: train_members(make, data, [{"seed": s} for s in range(MEMBERS)],
                                          max_epochs=SWEEP_EPOCHS, name="bench_sweep"))
        seq = timed(lambda: run_seeds(make, data, range(SWEEP_SEQUENTIAL), max_epochs=SWEEP_EPOCHS,
                                      name="bench_sweep_sequential"))
        scale = MEMBERS / SWEEP_SEQUENTIAL
        print(f"{width:>6}{vec[1]:>18.2f}{seq[1] * scale:>18.2f}{seq[1] * scale / vec[1]:>15.2f}x"
              f"{seq[0] * scale / vec[0]:>16.2f}x")
