"""A training run for the resume tests: ``python resume_script.py MODE RUNS_DIR OUT [SCHEDULE]``.

MODE "kill" trains with a checkpoint every 5 steps and SIGKILLs itself (``kill -9``) after step
``KILL_STEP``, mid-epoch; "resume" calls ``fit(..., ckpt_path="last")`` on the same ``RUNS_DIR``;
"full" trains uninterrupted. "resume" and "full" save the final weights to OUT and print a JSON
line with the run folder and the steps trained. The tests import :func:`train` to resume in-process.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from toolkit.data import MoonsDataModule
from toolkit.models import MLP
from toolkit.training import ClassifierModule, fit

KILL_STEP = 23   # killed after this optimizer step (checkpoints at 5, 10, 15, 20: the last is mid-epoch)
EPOCHS = 3


class _KillAt(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == KILL_STEP:
            os.kill(os.getpid(), signal.SIGKILL)


def train(mode: str, runs_dir: str, schedule: str = "cosine"):
    """One run of the experiment; ``mode`` "kill" SIGKILLs the process at ``KILL_STEP``."""
    torch.set_num_threads(1)
    callbacks = [ModelCheckpoint(every_n_train_steps=5, save_last=True, save_top_k=-1)]
    if mode == "kill":
        callbacks.append(_KillAt())
    return fit(lambda: ClassifierModule(MLP(2, 2, hidden_sizes=(32, 32), dropout=0.2), num_classes=2, lr=1e-2,
                                        schedule=schedule),
               lambda: MoonsDataModule(n_samples=400, batch_size=16), max_epochs=EPOCHS, seed=3, name="run",
               runs_dir=runs_dir, test=False, accelerator="cpu", enable_progress_bar=False,
               ckpt_path="last" if mode == "resume" else None, callbacks=callbacks)


def main() -> None:
    mode, runs_dir, out = sys.argv[1:4]
    result = train(mode, runs_dir, sys.argv[4] if len(sys.argv) > 4 else "cosine")
    torch.save(result.module.state_dict(), out)
    print(json.dumps({"run_dir": str(result.run_dir), "global_step": result.trainer.global_step,
                      "resumed_from": str(result.extra["resumed_from"]),
                      "epochs_logged": len(result.history)}))


if __name__ == "__main__":
    main()
