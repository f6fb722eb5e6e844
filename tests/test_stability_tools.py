"""toolkit.stability helpers: the LR range test's divergence threshold and the seed-variance study."""

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from toolkit.data import DigitsDataModule
from toolkit.models import MLP
from toolkit.stability import (LossSpikeGuard, LRRangeResult, divergence_lr, lr_range_test, plot_lr_range,
                               seed_spread, seed_variance)
from toolkit.training import ClassifierModule

matplotlib.use("Agg")


@pytest.mark.parametrize("losses, expected", [
    ([1.0, 0.9, 0.8, 0.7], None),                  # never diverges
    ([1.0, 0.5, 1.9, 2.1, 9.0], 1e-1),             # 2.1 > 4 * 0.5: first point past 4x the best so far
    ([1.0, 0.5, float("nan"), 0.1], 1e-2),         # a non-finite loss is divergence
    ([10.0, 1.0, 50.0], 1e-2),                      # the first point is never a divergence
])
def test_divergence_lr_closed_form(losses, expected):
    lrs = [10.0 ** (i - 4) for i in range(len(losses))]
    assert divergence_lr(lrs, losses, threshold=4.0) == expected


def test_lr_range_test_stops_where_divergence_lr_says(capfd):
    data = DigitsDataModule(flatten=True, batch_size=32)
    module = ClassifierModule(MLP(64, 10, hidden_sizes=(32,)), 10, optimizer="sgd", lr=0.1)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = lr_range_test(module, data, min_lr=1e-3, max_lr=1e3, num_training=60, early_stop_threshold=4.0)
    frame = result.frame
    assert isinstance(result, LRRangeResult) and list(frame.columns) == ["lr", "loss", "loss_lightning"]
    assert len(frame) < 60, "SGD at lr up to 1e3 must diverge before the end"
    # the curve ends at the point our rule flags
    assert result.divergence_lr == pytest.approx(frame["lr"].iloc[-1])
    ratios = np.diff(np.log(frame["lr"].to_numpy()))[1:]  # Lightning's first recorded lr is min_lr, then one step on
    assert np.allclose(ratios, math.log(1e6) / 60, rtol=1e-4), "exponential sweep from min_lr to max_lr"
    assert result.suggestion is not None and 1e-3 <= result.suggestion < result.divergence_lr
    for name, value in module.state_dict().items():  # lr_find restores the weights
        assert torch.equal(value, before[name]), name
    assert "Finding best initial lr" not in capfd.readouterr().err, "the finder's progress bar is hidden"
    ax = plot_lr_range(result, label="sgd")
    assert ax.get_xscale() == "log" and any(line.get_linestyle() == "--" for line in ax.get_lines())


class _Recording(ClassifierModule):
    """A ClassifierModule that keeps every raw training loss, the input of the hand-computed curve."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.raw_losses.append(float(loss.detach()))
        return loss


def test_range_test_curve_equals_a_hand_computed_debiased_average():
    module = _Recording(MLP(64, 10, hidden_sizes=(32,)), 10, optimizer="sgd", lr=0.1)
    module.raw_losses = []
    result = lr_range_test(module, DigitsDataModule(flatten=True, batch_size=32), min_lr=1e-4, max_lr=1.0,
                           num_training=30, early_stop_threshold=1e6)
    beta, average, expected = 0.98, 0.0, []
    for n, loss in enumerate(module.raw_losses, start=1):  # a_n = b a_{n-1} + (1 - b) l_n, s_n = a_n / (1 - b^n)
        average = beta * average + (1 - beta) * loss
        expected.append(average / (1 - beta ** n))
    assert len(result.frame) == len(expected) == 30
    np.testing.assert_allclose(result.frame["loss"], expected, rtol=1e-6)
    assert result.frame["loss"].iloc[0] == pytest.approx(module.raw_losses[0], rel=1e-6)  # s_1 = l_1
    # Lightning's own first point is l_1 / (1 + beta), about half: the artefact this corrects
    assert result.frame["loss_lightning"].iloc[0] == pytest.approx(module.raw_losses[0] / (1 + beta), rel=1e-6)
    window = result.frame.iloc[3:]  # the fastai window: after the first 10% of the points
    assert result.min_loss_lr == window["lr"][window["loss"].idxmin()]


def test_seed_variance_builds_fresh_callbacks_per_seed_and_spread_matches_pandas():
    data = DigitsDataModule(flatten=True, train_fraction=0.2)
    built = []

    def callbacks():
        built.append(LossSpikeGuard())
        return [built[-1]]

    model = lambda: ClassifierModule(MLP(64, 10, hidden_sizes=(16,)), 10, lr=3e-3)  # noqa: E731
    frame = seed_variance({"plain": {"model": model}, "guarded": {"model": model, "callbacks": callbacks}},
                          data, seeds=[0, 1], max_epochs=1, enable_checkpointing=False)
    assert list(frame["variant"]) == ["plain", "plain", "guarded", "guarded"] and list(frame["seed"]) == [0, 1, 0, 1]
    assert len(built) == 2 and built[0] is not built[1] and all(len(g.losses) > 0 for g in built)
    assert frame["test_acc"].between(0, 1).all()
    table = seed_spread(frame, "test_acc")
    for variant, rows in frame.groupby("variant"):
        values = rows["test_acc"]
        assert table.loc[variant, "mean"] == pytest.approx(values.mean())
        assert table.loc[variant, "std"] == pytest.approx(np.std(values, ddof=1))
        assert table.loc[variant, "range"] == pytest.approx(values.max() - values.min())
        assert table.loc[variant, "iqr"] == pytest.approx(np.percentile(values, 75) - np.percentile(values, 25))


def test_bad_input_raises():
    module = ClassifierModule(MLP(64, 10, hidden_sizes=(8,)), 10)
    data = DigitsDataModule(flatten=True)
    with pytest.raises(ValueError, match="min_lr must be < max_lr"):
        lr_range_test(module, data, min_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="early_stop_threshold must be a number > 1"):
        lr_range_test(module, data, early_stop_threshold=0.5)
    with pytest.raises(ValueError, match="num_training"):
        lr_range_test(module, data, num_training=1)
    with pytest.raises(TypeError, match="model must be a LightningModule"):
        lr_range_test(lambda: module, data)
    with pytest.raises(ValueError, match="same length"):
        divergence_lr([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="threshold"):
        divergence_lr([1.0], [1.0], threshold=-1)
    with pytest.raises(ValueError, match="variants must be a non-empty mapping"):
        seed_variance({}, data)
    with pytest.raises(ValueError, match="must be a dict with a 'model' factory"):
        seed_variance({"a": {"callbacks": list}}, data)
    with pytest.raises(TypeError, match="zero-argument factory returning a list"):
        seed_variance({"a": {"model": lambda: module, "callbacks": [LossSpikeGuard()]}}, data)
    with pytest.raises(ValueError, match="seeds must be"):
        seed_variance({"a": {"model": lambda: module}}, data, seeds=[1, 1])
    with pytest.raises(ValueError, match="columns"):
        seed_spread(pd.DataFrame({"x": [1]}), "test_acc")
    with pytest.raises(TypeError, match="LRRangeResult"):
        plot_lr_range(pd.DataFrame())
