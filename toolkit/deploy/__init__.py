"""Deployment (notebook 07): export with parity checks, a LitServe endpoint (``toolkit.deploy.server``,
imported on its own: it needs litserve), versions, shadow and canary, live drift, and a local server process for notebooks (``LocalServer``)."""

from toolkit.deploy.export import (OnnxRunner, ParityResult, TemperatureWrapped, TorchRunner, check_parity,
                                   export_onnx, export_program, temperature_of, with_temperature)
from toolkit.deploy.live import LiveDrift, clopper_pearson, false_alarm_rate
from toolkit.deploy.process import LocalServer, free_port
from toolkit.deploy.rollout import CANARY_RULES, CanaryMonitor, in_canary

__all__ = ["CANARY_RULES", "CanaryMonitor", "LiveDrift", "LocalServer", "OnnxRunner", "ParityResult",
           "TemperatureWrapped", "TorchRunner", "check_parity", "clopper_pearson", "export_onnx", "export_program",
           "false_alarm_rate", "free_port", "in_canary", "temperature_of", "with_temperature"]
