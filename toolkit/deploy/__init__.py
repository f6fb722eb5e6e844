"""Deployment (notebook 07): export with parity checks, a LitServe endpoint, versions, shadow and canary."""

from toolkit.deploy.export import (OnnxRunner, ParityResult, TemperatureWrapped, TorchRunner, check_parity,
                                   export_onnx, export_program, temperature_of, with_temperature)

__all__ = ["OnnxRunner", "ParityResult", "TemperatureWrapped", "TorchRunner", "check_parity", "export_onnx",
           "export_program", "temperature_of", "with_temperature"]
