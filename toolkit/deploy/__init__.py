"""Deployment (notebook 07): export with parity checks, a LitServe endpoint (``toolkit.deploy.server``,
imported on its own: it needs litserve), versions, shadow and canary, live drift, and a local server process for notebooks (``LocalServer``)."""

from __future__ import annotations

from toolkit._lazy import lazy_names

_SUBMODULE = {  # imported on first use, so that `toolkit.deploy.cli` (the registry
    # and serve commands) does not import torch and ONNX through this package
    "OnnxRunner": "export", "ParityResult": "export", "TemperatureWrapped": "export", "TorchRunner": "export",
    "check_parity": "export", "export_onnx": "export", "export_program": "export", "temperature_of": "export",
    "with_temperature": "export",
    "LiveDrift": "live", "clopper_pearson": "live", "false_alarm_rate": "live",
    "LocalServer": "process", "free_port": "process",
    "CANARY_RULES": "rollout", "CanaryMonitor": "rollout", "in_canary": "rollout",
}

__all__ = ["CANARY_RULES", "CanaryMonitor", "LiveDrift", "LocalServer", "OnnxRunner", "ParityResult",
           "TemperatureWrapped", "TorchRunner", "check_parity", "clopper_pearson", "export_onnx", "export_program",
           "false_alarm_rate", "free_port", "in_canary", "temperature_of", "with_temperature"]

__getattr__, __dir__ = lazy_names(__name__, _SUBMODULE, globals())
