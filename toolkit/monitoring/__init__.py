"""Deployment monitoring (notebook 07): input and output drift, a regression gate, versions and rollback."""

from toolkit.monitoring.drift import DriftResult, input_drift, output_drift, psi
from toolkit.monitoring.gate import DEFAULT_RULES, GateResult, GateRule, regression_gate
from toolkit.monitoring.registry import ModelRegistry

__all__ = ["DEFAULT_RULES", "DriftResult", "GateResult", "GateRule", "ModelRegistry", "input_drift",
           "output_drift", "psi", "regression_gate"]
