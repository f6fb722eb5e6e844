"""toolkit: the companion library of the course.

Subpackages are imported on first use (``toolkit.data``, ``toolkit.models``, ``toolkit.training``,
``toolkit.plots``, ``toolkit.stats`` and one per course topic), so ``import toolkit`` stays fast and a project that
needs only the models never imports Lightning.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__version__ = "0.1.0"
__all__ = ["__version__"]


def __getattr__(name: str) -> ModuleType:
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")
