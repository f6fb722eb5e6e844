"""Train with the stability callbacks under DDP on 2 CPU processes; each rank saves what it saw.

Run by tests/test_stability_ddp.py as a script (Lightning's DDP strategy starts the second process by
running this file again). Faults are injected on rank 1 only, after the gradients were all-reduced,
so only rank 1 sees them: the guards must share the decision through ``trainer.strategy.reduce``
or the two ranks' weights drift apart.

    python tests/ddp_stability_script.py --out /tmp/ddp_stability
"""

import argparse
import json
from pathlib import Path

import torch

from toolkit.data import DigitsDataModule
from toolkit.models import MLP
from toolkit.stability import GradientNormMonitor, LossSpikeGuard, NonFiniteGuard
from toolkit.training import ClassifierModule, fit

NAN_GRAD_STEP = 5     # rank 1's gradient gets an Inf after the all-reduce
SPIKE_STEP = 12       # rank 1's loss is multiplied by SPIKE_FACTOR
SPIKE_FACTOR = 50.0


class FaultyOnRankOne(ClassifierModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_rank == 1 and self.global_step == SPIKE_STEP:
            loss = loss * SPIKE_FACTOR
        return loss

    def on_after_backward(self):
        # DDP all-reduces during backward; this edit reaches rank 1 only
        if self.global_rank == 1 and self.global_step == NAN_GRAD_STEP:
            self.backbone.classifier.weight.grad[0, 0] = float("inf")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = DigitsDataModule(flatten=True, val_fraction=0.2, batch_size=32)
    monitor, guard, spikes = GradientNormMonitor(layer_every_n_steps=4), NonFiniteGuard("skip"), \
        LossSpikeGuard(window=10, k=4.0, min_history=5)
    model = lambda: FaultyOnRankOne(MLP(64, 10, hidden_sizes=(32,)), num_classes=10, lr=3e-3)  # noqa: E731
    result = fit(model, data, max_epochs=1, seed=0, accelerator="cpu", strategy="ddp", devices=2,
                 enable_checkpointing=False, test=False, runs_dir=args.out / "runs", callbacks=[monitor, guard, spikes])
    rank = result.trainer.global_rank
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(result.module.state_dict(), args.out / f"weights_rank{rank}.pt")
    (args.out / f"state_rank{rank}.json").write_text(json.dumps({
        "world_size": result.trainer.world_size, "global_step": result.trainer.global_step,
        "guard": guard.state_dict(), "spikes": spikes.state_dict(), "norms": monitor.history}))
