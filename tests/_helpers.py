"""Helpers shared by the unit tests (import as ``from _helpers import quiet_trainer``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


def quiet_trainer(**kwargs: Any) -> pl.Trainer:
    """A CPU Trainer with no logger, checkpoints, progress bar or summary; ``kwargs`` override."""
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**(defaults | kwargs))
