"""toolkit.deploy.export: ONNX and torch.export artifacts agree with eager on random and real batches."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from toolkit.calibration import TemperatureScaling
from toolkit.data import DigitsDataModule, MNIST1DDataModule
from toolkit.deploy import (OnnxRunner, TorchRunner, check_parity, export_onnx, export_program, temperature_of,
                            with_temperature)
from toolkit.models import CNN1D, SmallCNN
from toolkit.training import ClassifierModule

PARITY_ATOL = 1e-5
BATCH_SIZES = (1, 3, 17)  # the exported batch dimension is dynamic: sizes other than the example's


class TinyLightning(pl.LightningModule):
    """A LightningModule written here, not a toolkit class."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.GELU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.net(x)


class CalibratedInForward(nn.Module):
    """A module that already applies its temperature (as TemperatureScalingCallback's buffer does)."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.temperature_scaling = TemperatureScaling(temperature)

    def forward(self, x):
        return self.temperature_scaling.scale(self.net(x))


def _random_batches(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, *shape, generator=g) for n in BATCH_SIZES]


def _runners(model, example, tmp_path):
    return {"onnx": OnnxRunner(export_onnx(model, example, tmp_path / "m.onnx")),
            "torch.export": TorchRunner(export_program(model, example, tmp_path / "m.pt2"))}


@pytest.mark.slow
def test_digits_cnn_artifacts_match_eager_on_random_and_real_batches(tmp_path):
    torch.manual_seed(0)
    dm = DigitsDataModule(image_size=8)
    dm.setup()
    model = ClassifierModule(SmallCNN(in_channels=1, num_classes=dm.num_classes), num_classes=dm.num_classes)
    x_test = dm.tensors("test")[0]
    real = [x_test[:1], x_test[:64], x_test]
    for name, runner in _runners(model, x_test[:4], tmp_path).items():
        result = check_parity(model, runner, _random_batches(x_test.shape[1:]) + real, atol=PARITY_ATOL)
        assert result.passed, (name, result)
        assert len(result.per_batch) == len(BATCH_SIZES) + len(real)


@pytest.mark.slow
def test_mnist1d_cnn1d_artifacts_match_eager(tmp_path):
    torch.manual_seed(0)
    dm = MNIST1DDataModule(num_samples=600)
    dm.setup()
    x_test = dm.tensors("test")[0]
    model = CNN1D(seq_length=x_test.shape[-1], num_classes=dm.num_classes)
    for name, runner in _runners(model, x_test[:8], tmp_path).items():
        result = check_parity(model, runner, _random_batches(x_test.shape[1:]) + [x_test], atol=PARITY_ATOL)
        assert result.passed, (name, result)


@pytest.mark.slow
def test_temperature_is_exported_with_the_model(tmp_path):
    torch.manual_seed(0)
    raw = TinyLightning()
    calibrated = with_temperature(raw, 2.5)
    x = torch.randn(5, 1, 8, 8)
    runner = OnnxRunner(export_onnx(calibrated, x, tmp_path / "t.onnx"))
    # the oracle: eager logits divided by T by hand
    torch.testing.assert_close(torch.from_numpy(runner(x)), raw(x).detach() / 2.5, atol=PARITY_ATOL, rtol=0)
    assert temperature_of(calibrated) == pytest.approx(2.5)
    assert temperature_of(raw) is None


@pytest.mark.slow
def test_module_whose_forward_applies_the_temperature_exports_as_is(tmp_path):
    torch.manual_seed(0)
    model = CalibratedInForward(temperature=3.0)
    x = torch.randn(4, 1, 8, 8)
    runner = TorchRunner(export_program(model, x, tmp_path / "c.pt2"))
    torch.testing.assert_close(torch.from_numpy(runner(x)), model.net(x).detach() / 3.0, atol=PARITY_ATOL, rtol=0)
    assert temperature_of(model) == pytest.approx(3.0)


@pytest.mark.slow
def test_parity_check_catches_a_different_artifact(tmp_path):
    torch.manual_seed(0)
    model, other = TinyLightning(), TinyLightning()
    x = torch.randn(4, 1, 8, 8)
    runner = TorchRunner(export_program(other, x, tmp_path / "o.pt2"))
    assert not check_parity(model, runner, [x]).passed


def test_export_keeps_the_training_mode(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    export_program(model, torch.randn(2, 4), tmp_path / "d.pt2")
    assert model.training


@pytest.mark.parametrize("bad, error, match", [
    (torch.ones(3, 4, dtype=torch.long), TypeError, "floating-point"),
    ([[1.0, 2.0]], TypeError, "example_input"),
    (torch.full((2, 4), float("nan")), ValueError, "NaN"),
    (torch.empty(0, 4), ValueError, "N >= 1"),
])
def test_bad_example_input_names_the_argument(tmp_path, bad, error, match):
    with pytest.raises(error, match=match):
        export_program(nn.Linear(4, 2), bad, tmp_path / "x.pt2")


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf"), True, "2"])
def test_with_temperature_rejects_a_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        with_temperature(nn.Linear(2, 2), temperature)


@pytest.mark.slow
def test_parity_is_relative_to_the_logit_scale_so_a_sharp_calibrator_still_registers(tmp_path):
    from toolkit.monitoring import ModelRegistry

    torch.manual_seed(0)
    model = CNN1D(num_classes=10).eval()
    sharp = with_temperature(model, 1e-3)  # logits in the hundreds: float32 round-off exceeds 1e-5 in absolute
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(1))
    result = check_parity(sharp, OnnxRunner(export_onnx(sharp, x[:4], tmp_path / "s.onnx")), [x])
    assert result.max_abs_logit > 10 and result.passed
    assert result.max_abs_diff <= PARITY_ATOL * result.max_abs_logit
    registry = ModelRegistry(tmp_path / "registry")
    version = registry.register(model, example_input=x, temperature=1e-3)
    assert registry.serving(version)["calibrator"]["temperature"] == pytest.approx(1e-3)
    # a wrong artifact is still refused at that scale: the scale widens the tolerance, not the meaning
    other = with_temperature(CNN1D(num_classes=10).eval(), 1e-3)
    assert not check_parity(sharp, OnnxRunner(export_onnx(other, x[:4], tmp_path / "o.onnx")), [x]).passed
