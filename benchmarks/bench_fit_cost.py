"""The fixed cost of one ``fit``, ``evaluate`` and ``predict_logits``, against a bare Lightning Trainer.

    python benchmarks/bench_fit_cost.py

A course notebook calls ``fit`` dozens of times on models that train in a fraction of a second, so
what each call costs before the first step matters. On a model and data so small that training is
nothing (a 2 -> 2 linear layer, 64 samples, one epoch), each call is timed against the same work
done by a bare ``pl.Trainer`` (no logger, no checkpoint, no progress bar, no model summary, no
sanity check) in this process, interleaved, median over repeats, in CPU seconds of this process (so
the figures hold on a shared machine): ``fit`` adds seeding, the CSV log and its history, a
checkpoint with its SHA-256, and the test run; ``evaluate`` and ``predict_logits`` each build a
Trainer. The ratios are the figures; the milliseconds depend on the machine.

To compare two versions of the toolkit, run this file once with each on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import pytorch_lightning as pl
import torch
from torch import nn

from toolkit.data import MoonsDataModule
from toolkit.training import ClassifierModule, evaluate, fit, predict_logits, silence_lightning

REPEATS = 15


def _module() -> ClassifierModule:
    return ClassifierModule(nn.Linear(2, 2), num_classes=2)


def _bare_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs)


def cpu_ms(run) -> float:
    start = time.process_time()
    run()
    return (time.process_time() - start) * 1e3


if __name__ == "__main__":
    silence_lightning()
    os.environ.setdefault("TOOLKIT_QUIET", "1")
    os.environ.setdefault("TOOLKIT_RUNS_DIR", tempfile.mkdtemp(prefix="bench-fit-cost-"))
    torch.set_num_threads(1)
    data = MoonsDataModule(n_samples=64)
    data.setup()
    trained = _module()
    arms = {
        "bare Trainer.fit": lambda: _bare_trainer(max_epochs=1).fit(_module(), datamodule=data),
        "fit(test=False)": lambda: fit(_module, data, max_epochs=1, test=False, accelerator="cpu"),
        "fit": lambda: fit(_module, data, max_epochs=1, accelerator="cpu"),
        "bare Trainer.test": lambda: _bare_trainer().test(trained, data.test_dataloader(), verbose=False),
        "evaluate": lambda: evaluate(trained, data.test_dataloader(), accelerator="cpu"),
        "bare Trainer.predict": lambda: _bare_trainer().predict(trained, data.test_dataloader()),
        "predict_logits": lambda: predict_logits(trained, data.test_dataloader(), accelerator="cpu"),
    }
    for run in arms.values():  # warm-up: first-call imports and allocations
        run()
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(REPEATS):  # interleaved, so drifts in machine load hit all alike
        for name, run in arms.items():
            times[name].append(cpu_ms(run))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"median CPU ms over {REPEATS} repeats (a 2 -> 2 linear layer, 64 samples, 1 epoch)")
    for name, reference in (("fit(test=False)", "bare Trainer.fit"), ("fit", "bare Trainer.fit"),
                            ("evaluate", "bare Trainer.test"), ("predict_logits", "bare Trainer.predict")):
        print(f"{name:<18}{median[name]:>8.1f} ms   {reference:<22}{median[reference]:>8.1f} ms   "
              f"ratio {median[name] / median[reference]:.2f}x")
