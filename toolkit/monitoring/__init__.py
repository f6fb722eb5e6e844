"""Deployment monitoring (notebook 07): input and output drift, a regression gate, versions and rollback."""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULE = {  # imported on first use, so that the registry command line
    # (`python -m toolkit registry promote`) starts without importing torch
    "DriftResult": "drift", "input_drift": "drift", "output_drift": "drift", "psi": "drift",
    "DEFAULT_RULES": "gate", "GateResult": "gate", "GateRule": "gate", "regression_gate": "gate",
    "ModelRegistry": "registry",
}

__all__ = ["DEFAULT_RULES", "DriftResult", "GateResult", "GateRule", "ModelRegistry", "input_drift",
           "output_drift", "psi", "regression_gate"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULE:
        value = getattr(importlib.import_module(f"{__name__}.{_SUBMODULE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULE))
