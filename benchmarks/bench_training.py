"""Training speed of the toolkit against a hand-written PyTorch loop, and the cost of importing it.

    python benchmarks/bench_training.py            # or: make bench

Prints ratios measured side by side in this process (median over repeats), so the figures hold on
any machine: how much slower one epoch of ``ClassifierModule`` under a Lightning ``Trainer`` with
the in-memory ``TensorBatchLoader`` is than a plain loop over the same batches (target <= 1.3x),
and what a per-sample ``DataLoader`` would cost instead. Two figures per variant: a steady-state
epoch (the first epoch of each run, with its first-call allocations, left out on both sides), and
the whole ``trainer.fit`` divided by the epochs, which adds the Trainer's one-off set-up. Then the
cold import times of ``toolkit`` and its subpackages against ``import torch``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from toolkit.data import DigitsDataModule, TensorBatchLoader
from toolkit.models import SmallCNN
from toolkit.training import ClassifierModule, silence_lightning

EPOCHS = 4
REPEATS = 5
BATCH_SIZE = 64
IMPORT_REPEATS = 3


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return SmallCNN(num_classes=10, channels=(16, 32))


class EpochTimer(pl.Callback):
    """Wall time from one epoch's start to the next (so epoch-end hooks and metric logging count)."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.marks.append(time.perf_counter())

    def steady_epoch(self) -> float:
        return statistics.median(b - a for a, b in zip(self.marks[1:], self.marks[2:]))


def plain_loop(loader) -> tuple[float, float]:
    """The reference: the same model, optimizer, loss and batches, no framework."""
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    marks = [time.perf_counter()]
    for epoch in range(EPOCHS):
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        marks.append(time.perf_counter())
    steady = statistics.median(b - a for a, b in zip(marks[1:], marks[2:]))
    return steady, (marks[-1] - marks[0]) / EPOCHS


def lightning(loader) -> tuple[float, float]:
    module = ClassifierModule(_model(), num_classes=10, lr=1e-3)
    timer = EpochTimer()
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[timer])
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return timer.steady_epoch(), (time.perf_counter() - start) / EPOCHS


def epoch_times() -> dict[str, tuple[float, float]]:
    x, y = DigitsDataModule(image_size=16).tensors("train")
    in_memory = TensorBatchLoader(x, y, batch_size=BATCH_SIZE, shuffle=True, seed=0)
    per_sample = DataLoader(TensorDataset(x, y), batch_size=BATCH_SIZE, shuffle=True)
    runs: dict[str, list[tuple[float, float]]] = {"plain loop": [], "ClassifierModule + TensorBatchLoader": [],
                                                  "ClassifierModule + DataLoader": []}
    plain_loop(in_memory), lightning(in_memory)  # warm-up: first-call allocations and imports
    for _ in range(REPEATS):  # interleaved, so drifts in machine load hit every variant alike
        runs["plain loop"].append(plain_loop(in_memory))
        runs["ClassifierModule + TensorBatchLoader"].append(lightning(in_memory))
        runs["ClassifierModule + DataLoader"].append(lightning(per_sample))
    return {name: (statistics.median(t[0] for t in times), statistics.median(t[1] for t in times))
            for name, times in runs.items()}


def import_time(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(IMPORT_REPEATS)]
    return statistics.median(times)


if __name__ == "__main__":
    silence_lightning()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    torch.set_num_threads(torch.get_num_threads())
    times = epoch_times()
    steady_ref, whole_ref = times["plain loop"]
    print(f"one training epoch, SmallCNN on 1,257 16x16 digits, batch {BATCH_SIZE} "
          f"(median of {REPEATS} runs of {EPOCHS} epochs, {torch.get_num_threads()} threads)")
    print(f"  {'':40s} {'steady epoch':>20s}   {'fit / epochs (with set-up)':>28s}")
    for name, (steady, whole) in times.items():
        print(f"  {name:40s} {steady * 1e3:7.1f} ms {steady / steady_ref:5.2f}x"
              f"   {whole * 1e3:13.1f} ms {whole / whole_ref:5.2f}x plain loop")
    print("cold import (fresh interpreter, median of 3)")
    torch_s = import_time("import torch")
    for statement in ("import torch", "import toolkit", "import toolkit.models", "import pytorch_lightning",
                      "import toolkit.training"):
        seconds = import_time(statement)
        print(f"  {statement:40s} {seconds:6.2f} s   {seconds / torch_s:5.2f}x import torch")
