"""Both Lightning namespaces: ``pytorch_lightning`` (the toolkit's own import) and the unified
``lightning`` package (``lightning.pytorch``). They hold the same classes twice, so an
``isinstance`` against one refuses the other's objects; these helpers accept either and find the
namespace of a user's object, so a Trainer of the right kind can be built for it.

``lightning`` is looked up in ``sys.modules`` only: the toolkit never imports it itself (a project
that uses it has imported it already). :class:`DataModuleBase`, the base of the toolkit's
DataModules, becomes a ``lightning.pytorch.LightningDataModule`` too once it has.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import pytorch_lightning

__all__ = ["DataModuleBase", "submodule", "is_callback", "is_datamodule", "is_lightning_module", "is_trainer", "namespace_of", "namespaces"]


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


def _add_unified_base(cls: type, kind: str) -> None:
    """Add ``lightning.pytorch.<kind>`` to the bases of ``cls`` (a subclass of ``pytorch_lightning.<kind>``)
    if the process has imported ``lightning.pytorch`` and ``cls`` is not one yet."""
    unified = sys.modules.get("lightning.pytorch")
    base = getattr(unified, kind, None) if unified is not None and unified is not pytorch_lightning else None
    if base is not None and not issubclass(cls, base):
        cls.__bases__ = (*cls.__bases__, base)


class DataModuleBase(pytorch_lightning.LightningDataModule):
    """A ``pytorch_lightning.LightningDataModule`` that a ``lightning.pytorch`` Trainer accepts too.

    A Trainer checks ``isinstance(datamodule, LightningDataModule)`` against its own namespace (and
    ``is_overridden`` raises "Expected a parent" otherwise), and the two packages hold the class twice.
    Once the process has imported ``lightning.pytorch`` (a project that uses it has, before it builds
    a DataModule), building an instance adds ``lightning.pytorch.LightningDataModule`` to this class's
    bases, so every toolkit DataModule is an instance of both and works under either Trainer, with no
    import of ``lightning`` by the toolkit and nothing changed for a ``pytorch_lightning`` project.
    The two classes are one source installed twice: their hooks compare equal (Lightning's
    ``is_overridden`` compares code objects), so neither Trainer takes a hook of the other package for
    an override of the user's (tests/test_dropin_datamodules.py checks it).

    Example:
        >>> import lightning.pytorch as L                       # doctest: +SKIP
        >>> from toolkit.data import DigitsDataModule
        >>> L.Trainer(max_epochs=1).fit(my_module, datamodule=DigitsDataModule())  # doctest: +SKIP
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _add_unified_base(DataModuleBase, "LightningDataModule")
        super().__init__(*args, **kwargs)
