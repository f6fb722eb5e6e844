"""ClassifierModule: its logged metrics against independent references, schedules, clear errors."""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

from toolkit.data import TensorBatchLoader
from toolkit.training import ClassifierModule

from _helpers import quiet_trainer as _trainer


def _blobs(n=300, features=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    centers = torch.randn(classes, features, generator=g) * 2
    return centers[y] + torch.randn(n, features, generator=g), y


@pytest.mark.parametrize("flush_rows", [1, 100, 4096])  # every batch, every 2 batches (64 rows each), once
def test_logged_test_metrics_equal_sklearn_on_the_same_logits(flush_rows, monkeypatch):
    """Metrics accumulated over several batches equal references computed on all logits at once,
    however the buffered batches are grouped into metric updates."""
    monkeypatch.setattr("toolkit.training.module.METRIC_FLUSH_ROWS", flush_rows)
    torch.manual_seed(0)
    x, y = _blobs()
    module = ClassifierModule(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)), num_classes=4)
    results = _trainer().test(module, TensorBatchLoader(x, y, batch_size=64), verbose=False)[0]
    with torch.no_grad():
        logits = module(x).double()
    probs = logits.softmax(1).numpy()
    assert results["test_acc"] == pytest.approx(accuracy_score(y, probs.argmax(1)), abs=1e-6)
    assert results["test_nll"] == pytest.approx(log_loss(y, probs, labels=range(4)), rel=1e-5)
    assert results["test_loss"] == pytest.approx(results["test_nll"], rel=1e-6)
    assert results["test_brier"] == pytest.approx(
        brier_score_loss(y, probs, labels=range(4), scale_by_half=False), rel=1e-5)
    ece = multiclass_calibration_error(torch.as_tensor(probs).float(), y, 4, n_bins=15)
    assert results["test_ece"] == pytest.approx(ece.item(), abs=1e-6)


def test_an_interrupted_epoch_leaves_nothing_behind_for_the_next_run():
    """Predictions buffered or accumulated by a run that never reached its epoch end (an exception,
    a stop) must not leak into the next run's metrics."""
    torch.manual_seed(0)
    x, y = _blobs()
    module = ClassifierModule(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)), num_classes=4)
    wrong = torch.full((50, 4), -10.0).index_fill_(1, torch.tensor([0]), 10.0)  # 50 confident "class 0"
    module.update_metrics("test", wrong, torch.full((50,), 3), torch.tensor(9.0))  # buffered, never flushed
    module.test_metrics["acc"].update(wrong, torch.full((50,), 3))  # and already in the metric state
    results = _trainer().test(module, TensorBatchLoader(x, y, batch_size=64), verbose=False)[0]
    with torch.no_grad():
        expected = (module(x).argmax(1) == y).float().mean().item()
    assert results["test_acc"] == pytest.approx(expected, abs=1e-6)
    assert results["test_loss"] < 9.0


def test_label_smoothing_loss_follows_its_closed_form():
    eps = 0.2
    module = ClassifierModule(nn.Linear(6, 4), num_classes=4, label_smoothing=eps)
    logits, y = torch.randn(32, 4), torch.randint(0, 4, (32,))
    log_p = logits.log_softmax(1)
    expected = (1 - eps) * F.nll_loss(log_p, y) + eps * (-log_p.mean(1)).mean()
    torch.testing.assert_close(module.loss(logits, y), expected)


def test_training_reduces_loss_with_any_backbone():
    x, y = _blobs(n=400)
    module = ClassifierModule(nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 4)), num_classes=4, lr=1e-2)
    before = F.cross_entropy(module(x), y).item()
    _trainer(max_epochs=5).fit(module, TensorBatchLoader(x, y, batch_size=32, shuffle=True))
    after = F.cross_entropy(module(x), y).item()
    assert after < 0.5 * before


def test_predict_returns_logits():
    x, y = _blobs(n=50)
    module = ClassifierModule(nn.Linear(6, 4), num_classes=4)
    predictions = _trainer().predict(module, TensorBatchLoader(x, y, batch_size=16))
    torch.testing.assert_close(torch.cat(predictions), module(x).detach())


class _LRTrace(pl.Callback):
    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["constant", "cosine", "warmup_cosine", "warmup_constant"])
def test_learning_rate_schedules_follow_their_closed_forms(schedule):
    x, y = _blobs(n=64)
    lr, total, warmup_fraction = 0.1, 40, 0.25
    module = ClassifierModule(nn.Linear(6, 4), num_classes=4, optimizer="sgd", lr=lr, schedule=schedule,
                              warmup_fraction=warmup_fraction)
    trace = _LRTrace()
    _trainer(max_epochs=10, callbacks=[trace]).fit(module, TensorBatchLoader(x, y, batch_size=16))
    warmup = int(warmup_fraction * total) if schedule.startswith("warmup") else 0

    def expected(step):
        if step < warmup:  # linear from 1% of lr to lr
            return lr * (0.01 + 0.99 * step / warmup)
        if schedule.endswith("cosine"):
            return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        return lr

    np.testing.assert_allclose(trace.lrs, [expected(s) for s in range(total)], rtol=1e-6, atol=1e-9)


def test_weight_decay_skips_biases_and_norm_scales():
    backbone = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 4))
    module = ClassifierModule(backbone, num_classes=4, weight_decay=0.05)
    decayed, plain = module._param_groups()
    assert {p.dim() for p in decayed["params"]} == {2} and decayed["weight_decay"] == 0.05
    assert {p.dim() for p in plain["params"]} == {1} and plain["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(plain["params"]) == len(list(backbone.parameters()))


def test_declared_class_count_mismatch_fails_at_construction():
    from toolkit.models import MLP

    with pytest.raises(ValueError, match="num_classes=10"):
        ClassifierModule(MLP(64, 5), num_classes=10)


def test_undeclared_output_mismatch_fails_on_the_first_batch():
    x, y = _blobs(n=32)
    module = ClassifierModule(nn.Linear(6, 3), num_classes=4)
    with pytest.raises(ValueError, match=r"num_classes=4\), got \(16, 3\)"):
        _trainer(max_epochs=1).fit(module, TensorBatchLoader(x, y, batch_size=16))


def test_targets_out_of_range_fail_clearly():
    x, _ = _blobs(n=32)
    module = ClassifierModule(nn.Linear(6, 4), num_classes=4)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\)"):
        _trainer().test(module, TensorBatchLoader(x, torch.full((32,), 7), batch_size=16), verbose=False)


@pytest.mark.parametrize("kwargs, name", [
    ({"optimizer": "adam"}, "optimizer"), ({"lr": 0}, "lr"), ({"lr": -1.0}, "lr"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"momentum": 1.0}, "momentum"),
    ({"schedule": "step"}, "schedule"), ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"warmup_fraction": 1.0}, "warmup_fraction"), ({"num_classes": 1}, "num_classes"),
    ({"ece_bins": 0}, "ece_bins"),
])

def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ClassifierModule(nn.Linear(6, 4), **({"num_classes": 4} | kwargs))


def test_backbone_must_be_a_module():
    with pytest.raises(TypeError, match="backbone"):
        ClassifierModule(lambda x: x, num_classes=4)
