"""Command line: ``python -m toolkit fit|validate|test|predict --model ... --data ...``.

Lightning's ``LightningCLI`` over any subclass of :class:`~toolkit.training.ClassifierModule` and
any of the course DataModules, with the course's Trainer defaults. Example::

    python -m toolkit fit --config configs/digits_cnn.yaml
    python -m toolkit fit --model ClassifierModule --model.num_classes 10 \\
        --model.backbone toolkit.models.SmallCNN --data DigitsDataModule --data.image_size 16 \\
        --trainer.max_epochs 5

The course's configs ship inside the package (``toolkit/configs``): a ``--config configs/NAME.yaml``
(or ``NAME.yaml``) that is not a file under the working directory is read from there, so the first
example also runs from an installed wheel, outside a checkout.
"""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path
from typing import Any

from pytorch_lightning.cli import LightningCLI

from toolkit.data import ArrayDataModule
from toolkit.training import ClassifierModule

__all__ = ["CONFIG_DIR", "main"]

CONFIG_DIR = Path(str(importlib.resources.files("toolkit"))) / "configs"  # in a checkout: a link to configs/
_CONFIG_OPTIONS = ("--config", "-c")

TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "auto",
    "devices": 1,
    "deterministic": True,
    "max_epochs": 10,
    "log_every_n_steps": 10,
    "default_root_dir": "runs/cli",
}


def _packaged_configs(args: list[str]) -> list[str]:
    """``args`` with each ``--config`` path that does not exist here but names a packaged config
    (``configs/NAME.yaml`` or ``NAME.yaml``) replaced by the packaged file's path."""

    def resolve(value: str) -> str:
        path = Path(value)
        packaged = CONFIG_DIR / path.name
        if path.exists() or path.parent not in (Path("."), Path("configs")) or not packaged.is_file():
            return value
        return str(packaged)

    out = list(args)
    for i, arg in enumerate(out):
        if arg in _CONFIG_OPTIONS and i + 1 < len(out):
            out[i + 1] = resolve(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + resolve(arg.split("=", 1)[1])
    return out


def main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Build (and by default run) the course's LightningCLI; ``args`` replaces ``sys.argv[1:]``."""
    if args is None:  # edited in place: LightningCLI warns when given both args and a command line
        sys.argv[1:] = _packaged_configs(sys.argv[1:])
    else:
        args = _packaged_configs(args)
    return LightningCLI(ClassifierModule, ArrayDataModule, subclass_mode_model=True, subclass_mode_data=True,
                        trainer_defaults=TRAINER_DEFAULTS, seed_everything_default=0, args=args, run=run,
                        save_config_kwargs={"overwrite": True})
