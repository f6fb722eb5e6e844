"""Train the same model with 1 process or with DDP over 2 CPU processes; save weights and metrics.

Run by tests/test_ddp.py as a script: Lightning's DDP strategy starts the second process by
running this file again, which a test function cannot do.

    python tests/ddp_script.py --devices 2 --out /tmp/ddp
"""

import argparse
import json
from pathlib import Path

import torch

from toolkit.data import DigitsDataModule
from toolkit.models import MLP
from toolkit.training import ClassifierModule, fit

GLOBAL_BATCH = 64
EPOCHS = 3

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # the same global batch either way: each of 2 processes takes half of every batch
    # val_fraction 0.2 leaves 1,168 training samples: an even count, so DDP needs no padding sample
    data = DigitsDataModule(flatten=True, val_fraction=0.2, batch_size=GLOBAL_BATCH // args.devices)
    # no batch norm and no dropout: the only difference left is the order of float additions
    model = lambda: ClassifierModule(MLP(64, 10, hidden_sizes=(32,)), num_classes=10, lr=3e-3)  # noqa: E731
    kwargs = {"strategy": "ddp", "devices": 2} if args.devices == 2 else {"devices": 1}
    result = fit(model, data, max_epochs=EPOCHS, seed=0, accelerator="cpu", enable_checkpointing=False,
                 runs_dir=args.out / "runs", **kwargs)
    if result.trainer.is_global_zero:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(result.module.state_dict(), args.out / "weights.pt")
        (args.out / "metrics.json").write_text(json.dumps(result.metrics))
        (args.out / "world_size.txt").write_text(str(result.trainer.world_size))
