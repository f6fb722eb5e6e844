"""Dropout and its alternatives: noise layers, learned dropout, batch mixing, and the module that trains them.

Layers (``drop``, ``dropconnect``, ``variational``, ``concrete``, ``swap``, ``batch``) need only torch.
``RegularizedClassifierModule`` and ``DropBlockSchedule`` need Lightning and load on first use, so
``toolkit.models`` can use ``DropPath`` without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

from toolkit.regularization.augment import RandomShift1d, random_shift_1d
from toolkit.regularization.batch import cutmix, cutout, mixup
from toolkit.regularization.concrete import ConcreteDropout, concrete_dropout
from toolkit.regularization.drop import (DropBlock2d, DropPath, GaussianDropout, drop_block_2d, drop_block_seed_rate,
                                         drop_path, drop_path_rates, gaussian_dropout)
from toolkit.regularization.dropconnect import DropConnectLinear, drop_connect_linear
from toolkit.regularization.swap import replace_modules, swap_dropout
from toolkit.regularization.variational import (LOG_ALPHA_THRESHOLD, VariationalConv2d, VariationalLinear,
                                                layer_sparsity, prune_variational, sparse_vd_kl, sparsity)

_LAZY = {"RegularizedClassifierModule": "toolkit.regularization.module",
         "DropBlockSchedule": "toolkit.regularization.callbacks"}

__all__ = ["LOG_ALPHA_THRESHOLD", "ConcreteDropout", "DropBlock2d", "DropBlockSchedule", "DropConnectLinear",
           "DropPath", "GaussianDropout", "RandomShift1d", "RegularizedClassifierModule", "VariationalConv2d",
           "VariationalLinear", "concrete_dropout", "cutmix", "cutout", "drop_block_2d", "drop_block_seed_rate",
           "drop_connect_linear", "drop_path", "drop_path_rates", "gaussian_dropout", "layer_sparsity", "mixup",
           "prune_variational", "random_shift_1d", "replace_modules", "sparse_vd_kl", "sparsity", "swap_dropout"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'toolkit.regularization' has no attribute {name!r}")
