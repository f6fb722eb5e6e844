"""Deployment monitoring (notebook 07): input and output drift, a regression gate, versions and rollback."""

from __future__ import annotations

from toolkit._lazy import lazy_names

_SUBMODULE = {  # imported on first use, so that the registry command line
    # (`python -m toolkit registry promote`) starts without importing torch
    "DriftResult": "drift", "input_drift": "drift", "output_drift": "drift", "psi": "drift",
    "DEFAULT_RULES": "gate", "GateResult": "gate", "GateRule": "gate", "regression_gate": "gate",
    "ModelRegistry": "registry",
}

__all__ = ["DEFAULT_RULES", "DriftResult", "GateResult", "GateRule", "ModelRegistry", "input_drift",
           "output_drift", "psi", "regression_gate"]

__getattr__, __dir__ = lazy_names(__name__, _SUBMODULE, globals())
