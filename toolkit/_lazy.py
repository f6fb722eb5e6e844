"""Names a package loads from its submodules on first use (PEP 562), so that importing the package costs
nothing until one of them is read: ``toolkit.security`` (opacus, safetensors), ``toolkit.deploy`` (ONNX) and
``toolkit.monitoring``, whose registry command line then starts without torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, submodule_of: Mapping[str, str],
               namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``name`` comes from ``package.<submodule_of[name]>``
    the first time it is read and is then kept in ``namespace`` (the package's ``globals()``)."""

    def __getattr__(name: str) -> Any:
        if name in submodule_of:
            value = getattr(importlib.import_module(f"{package}.{submodule_of[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(submodule_of))

    return __getattr__, __dir__
