"""Optional topic dependencies (extras): import them on first use, with a message saying which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "dl-course-toolkit"  # the pip name; the import name is toolkit


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``import module``, or ``ImportError`` naming ``feature`` and the ``pip install`` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{feature} needs the optional package {module.split('.')[0]!r}: "
                          f'pip install "{DISTRIBUTION}[{extra}]"') from error
