"""Calibration and uncertainty (notebook 03). Top-label ECE/MCE: torchmetrics' ``CalibrationError``."""

from toolkit.calibration.metrics import BrierScore, brier_score

__all__ = ["BrierScore", "brier_score"]
