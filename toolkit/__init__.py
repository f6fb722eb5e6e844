"""toolkit: the companion library of the course.

Subpackages are imported on first use (``toolkit.data``, ``toolkit.models``, ``toolkit.training``,
``toolkit.plots`` and one per course topic), so ``import toolkit`` stays fast and a project that
needs only the models never imports Lightning.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"
__all__ = ["__version__", "calibration", "data", "models", "plots", "training"]

_SUBPACKAGES = {"calibration", "data", "models", "plots", "training"}


def __getattr__(name: str) -> ModuleType:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"toolkit.{name}")
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
