"""Command line: ``python -m toolkit fit|validate|test|predict --model ... --data ...``.

Lightning's ``LightningCLI`` over any subclass of :class:`~toolkit.training.ClassifierModule` and
any of the course DataModules, with the course's Trainer defaults. Example::

    python -m toolkit fit --config configs/digits_cnn.yaml
    python -m toolkit fit --model ClassifierModule --model.num_classes 10 \\
        --model.backbone toolkit.models.SmallCNN --data DigitsDataModule --data.image_size 16 \\
        --trainer.max_epochs 5
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.cli import LightningCLI

from toolkit.data import ArrayDataModule
from toolkit.training import ClassifierModule

__all__ = ["main"]

TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "auto",
    "devices": 1,
    "deterministic": True,
    "max_epochs": 10,
    "log_every_n_steps": 10,
    "default_root_dir": "runs/cli",
}


def main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the course's LightningCLI; ``args`` replaces ``sys.argv[1:]``."""
    return LightningCLI(ClassifierModule, ArrayDataModule, subclass_mode_model=True, subclass_mode_data=True,
                        trainer_defaults=TRAINER_DEFAULTS, seed_everything_default=0, args=args, run=run,
                        save_config_kwargs={"overwrite": True})
