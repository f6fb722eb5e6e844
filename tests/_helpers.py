"""Helpers shared by the unit tests (import as ``from _helpers import quiet_trainer``)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


def quiet_trainer(**kwargs: Any) -> pl.Trainer:
    """A CPU Trainer with no logger, checkpoints, progress bar or summary; ``kwargs`` override."""
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**(defaults | kwargs))


def digits_mlp(steps: int = 60):
    """An MLP (64-64-10) trained on the flattened 8x8 digits by a plain Adam loop, and its DataModule."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from toolkit.data import DigitsDataModule

    dm = DigitsDataModule(image_size=8, flatten=True)
    x, y = dm.tensors("train")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net, dm
