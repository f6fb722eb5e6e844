"""Post-hoc calibrators and the TemperatureScalingCallback, against closed forms, scipy and sklearn."""

import copy
import dataclasses

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

from toolkit.calibration import (CALIBRATORS, HistogramBinning, IsotonicCalibration, MatrixScaling,
                                 TemperatureScaling, TemperatureScalingCallback, VectorScaling,
                                 attach_temperature_scaling)
from toolkit.data import TensorBatchLoader


def _logits_from(true_logits_scale, n, c, seed, temperature):
    """Labels drawn from softmax(z); the model reports z * temperature (too sharp when temperature > 1)."""
    g = torch.Generator().manual_seed(seed)
    z = true_logits_scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    targets = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    return z * temperature, targets


@pytest.mark.parametrize("temperature", [0.5, 2.0, 4.0])
def test_temperature_scaling_recovers_known_temperature(temperature):
    logits, targets = _logits_from(2.0, 20_000, 10, seed=int(temperature * 10), temperature=temperature)
    fitted = TemperatureScaling().fit(logits, targets).temperature
    # the MLE of T from 20k samples has a relative standard error well below 2%
    assert fitted == pytest.approx(temperature, rel=0.05)


def test_temperature_scaling_finds_scipys_nll_minimum():
    logits, targets = _logits_from(3.0, 2_000, 5, seed=1, temperature=2.5)
    nll = lambda log_t: F.cross_entropy(logits / np.exp(log_t), targets).item()  # noqa: E731
    oracle = np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded", options={"xatol": 1e-8}).x)
    assert TemperatureScaling().fit(logits.float(), targets).temperature == pytest.approx(oracle, rel=1e-4)


def test_temperature_scaling_keeps_argmax_and_cuts_ece_of_overconfident_logits():
    logits, targets = _logits_from(2.0, 4_000, 10, seed=2, temperature=3.0)
    scaler = TemperatureScaling().fit(logits[:2000], targets[:2000])
    test, test_targets = logits[2000:].float(), targets[2000:]
    calibrated = scaler(test)
    assert torch.equal(calibrated.argmax(1), test.argmax(1))
    torch.testing.assert_close(calibrated, test / scaler.temperature)
    ece = lambda z: multiclass_calibration_error(z.softmax(1), test_targets, 10).item()  # noqa: E731
    assert ece(calibrated) < 0.5 * ece(test)
    assert "temperature=" in repr(scaler) and isinstance(scaler.temperature, float)


def test_richer_scalings_fit_the_calibration_set_at_least_as_well():
    logits, targets = _logits_from(2.0, 3_000, 4, seed=3, temperature=2.0)
    logits = logits + torch.tensor([0.8, 0.0, -0.5, 0.2], dtype=torch.float64)  # a class bias TS cannot undo
    nll = {"identity": F.cross_entropy(logits, targets).item()}
    for name, calibrator in (("temperature", TemperatureScaling()), ("vector", VectorScaling(4)),
                             ("matrix", MatrixScaling(4))):
        nll[name] = F.cross_entropy(calibrator.fit(logits, targets)(logits), targets).item()
    assert nll["matrix"] <= nll["vector"] + 1e-6 <= nll["temperature"] + 2e-6 <= nll["identity"] + 3e-6
    assert nll["vector"] < nll["temperature"] - 1e-3  # the bias was real


def test_matrix_scaling_penalty_pulls_towards_the_identity():
    logits, targets = _logits_from(2.0, 200, 4, seed=4, temperature=1.0)
    free = MatrixScaling(4).fit(logits, targets)
    tied = MatrixScaling(4, off_diagonal_l2=100.0).fit(logits, targets)
    off = ~torch.eye(4, dtype=torch.bool)
    assert tied.weight[off].abs().max() < 0.1 * free.weight[off].abs().max()


def test_histogram_binning_stores_bin_frequencies_of_a_plain_loop():
    logits, targets = _logits_from(2.0, 500, 3, seed=5, temperature=2.0)
    n_bins = 5
    binning = HistogramBinning(n_bins).fit(logits, targets)
    probs = logits.softmax(1).numpy()
    for c in range(3):
        for b in range(n_bins):
            inside = (probs[:, c] >= b / n_bins) & ((probs[:, c] < (b + 1) / n_bins) | (b == n_bins - 1))
            expected = (targets.numpy()[inside] == c).mean() if inside.any() else (b + 0.5) / n_bins
            assert binning.bin_values[c, b].item() == pytest.approx(expected), (c, b)
    calibrated = binning.predict_proba(logits)
    torch.testing.assert_close(calibrated.sum(1), torch.ones(500, dtype=torch.float64))


def test_isotonic_calibration_equals_sklearn_per_class_renormalized():
    logits, targets = _logits_from(2.0, 400, 3, seed=6, temperature=2.0)
    iso = IsotonicCalibration().fit(logits[:300], targets[:300])
    train_probs, test_probs = logits[:300].softmax(1).numpy(), logits[300:].softmax(1).numpy()
    expected = np.stack([IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
                         .fit(train_probs[:, c], targets[:300].numpy() == c).predict(test_probs[:, c])
                         for c in range(3)], 1)
    expected = expected / expected.sum(1, keepdims=True)
    np.testing.assert_allclose(iso.predict_proba(logits[300:]).numpy(), expected, atol=1e-9)
    restored = IsotonicCalibration()
    restored.load_state_dict(iso.state_dict())
    torch.testing.assert_close(restored(logits[300:]), iso(logits[300:]))


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
@pytest.mark.parametrize("logits, targets, error, match", [
    (torch.tensor([[0.7, 0.3], [0.1, 0.9]]), torch.tensor([0, 1]), ValueError, "look like probabilities"),
    (torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), ValueError, "NaN"),
    (torch.tensor([[2.0, 1.0]]), torch.tensor([0, 1]), ValueError, "targets must have shape"),
    (torch.empty(0, 2), torch.empty(0, dtype=torch.long), ValueError, "empty"),
    (torch.tensor([[2.0, 1.0]]), torch.tensor([2]), ValueError, "class indices"),
    (torch.tensor([2.0, 1.0]), torch.tensor([0, 1]), ValueError, r"shape \(N, C\)"),
])
def test_calibrators_reject_bad_inputs_naming_the_argument(name, logits, targets, error, match):
    calibrator = CALIBRATORS[name](2) if name in ("vector", "matrix") else CALIBRATORS[name]()
    with pytest.raises(error, match=match):
        calibrator.fit(logits, targets)


def test_binning_calibrators_must_be_fitted_and_class_counts_must_match():
    with pytest.raises(RuntimeError, match="not fitted"):
        HistogramBinning()(torch.randn(3, 4))
    with pytest.raises(ValueError, match="num_classes=3"):
        VectorScaling(3).fit(torch.randn(5, 4), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaling(temperature=0.0)


# ---- the callback, with a minimal LightningModule ------------------------------------------------
class _Tiny(pl.LightningModule):
    """Any LightningModule whose forward returns logits: a linear model on separable-ish blobs."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(2, 3)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=2.0)


def _blobs(n, seed):
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])
    return centres[targets] + torch.randn(n, 2, generator=g), targets


def _trainer(callback, max_epochs=4):
    return pl.Trainer(max_epochs=max_epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


def test_callback_fits_temperature_on_validation_logits_and_module_returns_scaled_logits():
    pl.seed_everything(0, verbose=False)
    x_train, y_train = _blobs(400, 0)
    x_val, y_val = _blobs(300, 1)
    module, callback = _Tiny(), TemperatureScalingCallback()
    _trainer(callback).fit(module, TensorBatchLoader(x_train, y_train, batch_size=100, shuffle=True),
                           TensorBatchLoader(x_val, y_val, batch_size=64))
    raw = module.net(x_val).detach()
    oracle = TemperatureScaling().fit(raw, y_val).temperature
    assert callback.fitted and callback.num_validation_samples == 300
    assert callback.temperature == pytest.approx(oracle, rel=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(module(x_val), raw / callback.temperature)
    # a second fit trains on raw logits: the hook is removed at fit start and re-attached at the end
    trainer = _trainer(callback, max_epochs=1)
    trainer.fit(module, TensorBatchLoader(x_train, y_train, batch_size=32),
                TensorBatchLoader(x_val, y_val, batch_size=64))
    assert len(module._forward_hooks) == 1


def test_callback_state_round_trips():
    callback = TemperatureScalingCallback()
    callback.fitted, callback.num_validation_samples = True, 10
    restored = TemperatureScalingCallback()
    restored.load_state_dict(callback.state_dict())
    assert restored.fitted and restored.num_validation_samples == 10


def test_callback_with_an_empty_validation_set_raises():
    x_train, y_train = _blobs(64, 0)
    empty = TensorBatchLoader(torch.empty(0, 2), torch.empty(0, dtype=torch.long), batch_size=8)
    with pytest.raises(ValueError, match="validation set is empty"):
        _trainer(TemperatureScalingCallback(), max_epochs=1).fit(
            _Tiny(), TensorBatchLoader(x_train, y_train, batch_size=32), empty)


def test_callback_without_a_validation_loader_raises():
    x_train, y_train = _blobs(64, 0)
    with pytest.raises(ValueError, match="needs a validation set"):
        _trainer(TemperatureScalingCallback(), max_epochs=1).fit(
            _Tiny(), TensorBatchLoader(x_train, y_train, batch_size=32))


def test_callback_calibrates_a_classifier_module_trained_with_fit():
    from torchmetrics.functional.classification import multiclass_calibration_error

    from toolkit.data import DigitsDataModule
    from toolkit.models import MLP
    from toolkit.training import ClassifierModule, fit, predict_logits

    dm = DigitsDataModule(flatten=True, train_fraction=0.2, batch_size=128)
    callback = TemperatureScalingCallback()
    result = fit(lambda: ClassifierModule(MLP(64, 10, hidden_sizes=(32,)), num_classes=10, lr=1e-2), dm,
                 max_epochs=3, callbacks=[callback], enable_checkpointing=False)
    x_test, y_test = dm.tensors("test")
    raw = result.module.backbone(x_test).detach()
    calibrated = predict_logits(result.module, dm.test_dataloader())
    torch.testing.assert_close(calibrated, raw / callback.temperature)
    expected_ece = multiclass_calibration_error(calibrated.softmax(1), y_test, 10, n_bins=15).item()
    assert result.metrics["test_ece"] == pytest.approx(expected_ece, abs=1e-6), "fit's test loop saw calibrated logits"


def test_callback_rejects_a_module_whose_forward_does_not_return_logits():
    class IntOutput(_Tiny):
        def forward(self, x):
            return self.net(x).argmax(1)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self(batch[0])

    x, y = _blobs(64, 0)
    with pytest.raises(TypeError, match="floating-point tensor"):
        _trainer(TemperatureScalingCallback(), max_epochs=1).fit(
            IntOutput(), TensorBatchLoader(x, y, batch_size=32), TensorBatchLoader(x, y, batch_size=32))


class _Checkpointed(_Tiny):
    """Logs val_loss (for ModelCheckpoint) and, in test_step, records what its forward returns."""

    def __init__(self):
        super().__init__()
        self.tested = []

    def test_step(self, batch, batch_idx):
        self.tested.append((self(batch[0]).detach(), self.net(batch[0]).detach()))


def test_trainer_test_with_the_best_checkpoint_tests_with_that_checkpoints_own_temperature(tmp_path):
    """B1 of the drop-in review: ModelCheckpoint used to save before the temperature was fitted, so
    trainer.test(ckpt_path="best") restored T = 1 and tested uncalibrated."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    pl.seed_everything(0, verbose=False)
    x_train, y_train = _blobs(400, 0)
    x_val, y_val = _blobs(300, 1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="val_loss", mode="min", save_top_k=1)
    module, callback = _Checkpointed(), TemperatureScalingCallback()
    trainer = pl.Trainer(max_epochs=4, callbacks=[callback, checkpoint], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    val = TensorBatchLoader(x_val, y_val, batch_size=64)
    trainer.fit(module, TensorBatchLoader(x_train, y_train, batch_size=100, shuffle=True), val)
    saved = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    best = _Tiny()
    best.net.load_state_dict({k.removeprefix("net."): v for k, v in saved.items() if k.startswith("net.")})
    with torch.no_grad():
        oracle = TemperatureScaling().fit(best.net(x_val), y_val).temperature
    assert float(saved["temperature_scaling.log_temperature"].exp()) == pytest.approx(oracle, rel=1e-6), \
        "the checkpoint holds the temperature fitted on its own weights"
    assert abs(oracle - 1.0) > 0.05, "the test needs a temperature visibly different from 1"
    trainer.test(ckpt_path="best", dataloaders=val, verbose=False)
    scaled, raw = (torch.cat(parts) for parts in zip(*module.tested))
    torch.testing.assert_close(scaled, raw / oracle, rtol=1e-5, atol=1e-6)


def test_temperature_is_part_of_the_state_dict_and_reloads_into_a_fresh_module():
    pl.seed_everything(0, verbose=False)
    x_train, y_train = _blobs(400, 0)
    x_val, y_val = _blobs(300, 1)
    module, callback = _Tiny(), TemperatureScalingCallback()
    _trainer(callback, max_epochs=3).fit(module, TensorBatchLoader(x_train, y_train, batch_size=100),
                                         TensorBatchLoader(x_val, y_val, batch_size=64))
    state = module.state_dict()
    assert float(state["temperature_scaling.log_temperature"].exp()) == pytest.approx(callback.temperature)
    with pytest.raises(RuntimeError, match="temperature_scaling.log_temperature"):
        _Tiny().load_state_dict(state)  # loud, not silent: the plain class does not know the scaler
    fresh = _Tiny()
    attach_temperature_scaling(fresh)
    fresh.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x_val), module.net(x_val) / callback.temperature)
    exported = torch.export.export(fresh.eval(), (x_val[:8],))
    torch.testing.assert_close(exported.module()(x_val[:8]), fresh(x_val[:8]).detach())
    copied = copy.deepcopy(fresh)
    copied.temperature_scaling.log_temperature.fill_(0.0)
    with torch.no_grad():
        torch.testing.assert_close(copied(x_val), fresh.net(x_val)), "a copy's hook uses the copy's own scaler"


@dataclasses.dataclass
class _Output:
    logits: torch.Tensor
    features: torch.Tensor


class _EncoderHead(pl.LightningModule):
    """Dict batches, an output object with .logits, and steps that call encoder and head directly."""

    def __init__(self):
        super().__init__()
        self.encoder, self.head = nn.Linear(2, 8), nn.Linear(8, 3)

    def forward(self, x):
        features = self.encoder(x)
        return _Output(self.head(features), features)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.head(self.encoder(batch["features"])), batch["label"])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.cross_entropy(self.head(self.encoder(batch["features"])), batch["label"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=2.0)


def _dict_batches(x, y, batch_size):
    return torch.utils.data.DataLoader([{"features": a, "label": b} for a, b in zip(x, y)], batch_size=batch_size)


@pytest.mark.parametrize("logits_module", ["head", None])
def test_callback_with_dict_batches_output_objects_and_steps_that_bypass_forward(logits_module):
    pl.seed_everything(0, verbose=False)
    x_train, y_train = _blobs(400, 0)
    x_val, y_val = _blobs(300, 1)
    module, callback = _EncoderHead(), TemperatureScalingCallback(logits_module=logits_module)
    trainer = _trainer(callback, max_epochs=3)
    if logits_module is None:  # validation_step never calls self(x): nothing to calibrate on, said clearly
        with pytest.raises(ValueError, match="recorded 0 rows of logits"):
            trainer.fit(module, _dict_batches(x_train, y_train, 100), _dict_batches(x_val, y_val, 64))
        return
    trainer.fit(module, _dict_batches(x_train, y_train, 100), _dict_batches(x_val, y_val, 64))
    with torch.no_grad():
        raw = module.head.weight @ module.encoder(x_val).T
        raw = raw.T + module.head.bias
        oracle = TemperatureScaling().fit(raw, y_val).temperature
        assert callback.temperature == pytest.approx(oracle, rel=1e-6)
        out = module(x_val)
        assert isinstance(out, _Output)
        torch.testing.assert_close(out.logits, raw / oracle, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(module.head(module.encoder(x_val)), raw / oracle, rtol=1e-5, atol=1e-6)


def test_callback_fits_on_a_final_pass_when_the_last_epoch_was_not_validated():
    pl.seed_everything(0, verbose=False)
    x_train, y_train = _blobs(400, 0)
    x_val, y_val = _blobs(300, 1)
    module, callback = _Tiny(), TemperatureScalingCallback()
    trainer = pl.Trainer(max_epochs=3, check_val_every_n_epoch=2, callbacks=[callback], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, TensorBatchLoader(x_train, y_train, batch_size=100, shuffle=True),
                TensorBatchLoader(x_val, y_val, batch_size=64))
    with torch.no_grad():
        oracle = TemperatureScaling().fit(module.net(x_val), y_val).temperature
    assert callback.temperature == pytest.approx(oracle, rel=1e-6), "fitted on the final weights"


def test_a_checkpoint_written_without_the_callback_still_loads_with_it(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    x, y = _blobs(128, 0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    plain = pl.Trainer(max_epochs=1, callbacks=[checkpoint], logger=False, enable_progress_bar=False,
                       enable_model_summary=False)
    plain.fit(_Checkpointed(), TensorBatchLoader(x, y, batch_size=32))
    module = _Checkpointed()
    trainer = _trainer(TemperatureScalingCallback(), max_epochs=1)
    trainer.test(module, TensorBatchLoader(x, y, batch_size=32), ckpt_path=checkpoint.last_model_path, verbose=False)
    scaled, raw = (torch.cat(parts) for parts in zip(*module.tested))
    torch.testing.assert_close(scaled, raw), "no temperature in the checkpoint: T stays 1"


def _overconfident_logits(seed=1, n=433, c=8):
    """Logits of a confident, 86 %-accurate model with per-class scales and offsets (|logit| up to ~50):
    LBFGS needs several hundred iterations to reach the optimum of matrix scaling here."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    targets = torch.randint(0, c, (n,), generator=g)
    z = 2 * torch.randn(n, c, generator=g)
    predicted = torch.where(torch.rand(n, generator=g) < 0.86, targets, torch.randint(0, c, (n,), generator=g))
    z[torch.arange(n), predicted] += float(rng.uniform(5, 20))
    z = z * torch.tensor(rng.uniform(0.3, 3, c)).float() + torch.tensor(rng.normal(0, 5, c)).float()
    return z, targets


def _scipy_scaling_optimum(logits, targets, kind):
    """Minimum of the same NLL with scipy's L-BFGS-B, closed-form gradient, run to machine precision."""
    from scipy.optimize import minimize

    z, y = logits.double().numpy(), targets.numpy()
    n, c = z.shape
    one_hot = np.eye(c)[y]

    def nll_and_grad(theta):
        scores = z * theta[:c] + theta[c:] if kind == "vector" else z @ theta[:c * c].reshape(c, c).T + theta[c * c:]
        top = scores.max(1, keepdims=True)
        lse = np.log(np.exp(scores - top).sum(1)) + top[:, 0]
        residual = (np.exp(scores - lse[:, None]) - one_hot) / n
        grad_w = (residual * z).sum(0) if kind == "vector" else (residual.T @ z).ravel()
        return (lse - scores[np.arange(n), y]).mean(), np.r_[grad_w, residual.sum(0)]

    start = np.r_[np.ones(c) if kind == "vector" else np.eye(c).ravel(), np.zeros(c)]
    result = minimize(nll_and_grad, start, jac=True, method="L-BFGS-B",
                      options={"maxiter": 20_000, "maxfun": 40_000, "gtol": 1e-13, "ftol": 1e-16})
    return result.fun, lambda theta: nll_and_grad(theta)[0]


@pytest.mark.parametrize("kind, cls", [("vector", VectorScaling), ("matrix", MatrixScaling)])
def test_vector_and_matrix_scaling_reach_scipys_nll_optimum(kind, cls):
    """At the former fixed 100 LBFGS iterations matrix scaling stopped 3.5e-6 nats above the optimum here
    (probabilities off by 0.004); it must converge by its tolerance instead, without a warning."""
    import warnings

    logits, targets = _overconfident_logits()
    best, nll = _scipy_scaling_optimum(logits, targets, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        scaler = cls(logits.shape[1]).fit(logits, targets)
    ours = nll(np.r_[scaler.weight.numpy().ravel(), scaler.bias.numpy()])
    assert ours - best < 1e-8, (ours, best)


@pytest.mark.parametrize("build", [lambda: TemperatureScaling(max_iter=1), lambda: VectorScaling(8, max_iter=3),
                                   lambda: MatrixScaling(8, max_iter=3)])
def test_scaling_warns_when_the_iteration_cap_stops_it_before_convergence(build):
    logits, targets = _overconfident_logits()
    with pytest.warns(RuntimeWarning, match="max_iter"):
        build().fit(logits * 3, targets)


def test_temperature_scaling_starts_its_search_from_the_given_temperature():
    """Started at the optimum, one iteration keeps it there; started from 1 it cannot get there in one."""
    logits, targets = _logits_from(2.0, 4_000, 10, seed=7, temperature=6.0)
    optimum = TemperatureScaling().fit(logits, targets).temperature
    assert optimum == pytest.approx(6.0, rel=0.1)
    warm = TemperatureScaling(temperature=optimum, max_iter=1).fit(logits, targets)
    assert warm.temperature == pytest.approx(optimum, rel=1e-6)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        cold = TemperatureScaling(max_iter=1).fit(logits, targets)
    assert abs(cold.temperature - optimum) > 0.1
