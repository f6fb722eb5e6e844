"""Both Lightning namespaces: ``pytorch_lightning`` (the toolkit's own import) and the unified
``lightning`` package (``lightning.pytorch``). They hold the same classes twice, so an
``isinstance`` against one refuses the other's objects; these helpers accept either and find the
namespace of a user's object, so a Trainer of the right kind can be built for it.

``lightning`` is looked up in ``sys.modules`` only: the toolkit never imports it itself (a project
that uses it has imported it already).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import pytorch_lightning

__all__ = ["submodule", "is_callback", "is_datamodule", "is_lightning_module", "is_trainer", "namespace_of", "namespaces"]


def namespaces() -> list[ModuleType]:
    """``pytorch_lightning`` and, when the process has imported it, ``lightning.pytorch``."""
    found = [pytorch_lightning]
    unified = sys.modules.get("lightning.pytorch")
    if unified is not None and unified is not pytorch_lightning:
        found.append(unified)
    return found


def _isinstance(obj: Any, name: str) -> bool:
    return any(isinstance(obj, getattr(ns, name)) for ns in namespaces())


def is_lightning_module(obj: Any) -> bool:
    return _isinstance(obj, "LightningModule")


def is_datamodule(obj: Any) -> bool:
    return _isinstance(obj, "LightningDataModule")


def is_callback(obj: Any) -> bool:
    return _isinstance(obj, "Callback")


def is_trainer(obj: Any) -> bool:
    return _isinstance(obj, "Trainer")


def submodule(namespace: ModuleType, name: str) -> ModuleType:
    """``namespace.<name>`` (e.g. ``loggers``, ``tuner``, ``callbacks``), imported if needed."""
    return importlib.import_module(f"{namespace.__name__}.{name}")


def namespace_of(*objs: Any) -> ModuleType:
    """The namespace (``pytorch_lightning`` or ``lightning.pytorch``) that the first Lightning object
    among ``objs`` belongs to; ``pytorch_lightning`` when none is one."""
    for obj in objs:
        for ns in namespaces()[::-1]:
            if any(isinstance(obj, getattr(ns, kind)) for kind in ("LightningModule", "LightningDataModule",
                                                                   "Trainer")):
                return ns
    return pytorch_lightning
