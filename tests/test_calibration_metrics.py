"""Brier score against scikit-learn, as a function and as a stateful, mergeable Metric."""

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss

from toolkit.calibration import BrierScore, brier_score


def _data(n, c, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=g, dtype=torch.float64).softmax(1), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("n, c", [(1, 2), (50, 2), (200, 10), (37, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_brier_equals_sklearn_multiclass_brier(n, c, dtype):
    probs, targets = _data(n, c, seed=n + c)
    expected = brier_score_loss(targets.numpy(), probs.double().numpy(), labels=list(range(c)),
                                scale_by_half=False)
    assert brier_score(probs.to(dtype), targets).item() == pytest.approx(expected, rel=1e-5)


def test_binary_brier_is_twice_the_one_column_form():
    probs, targets = _data(100, 2, seed=0)
    binary = brier_score_loss(targets.numpy(), probs[:, 1].numpy())
    assert brier_score(probs, targets).item() == pytest.approx(2 * binary, rel=1e-5)


def test_metric_over_batches_equals_function_on_all():
    probs, targets = _data(300, 5, seed=1)
    metric = BrierScore()
    for chunk in range(0, 300, 64):
        metric.update(probs[chunk:chunk + 64], targets[chunk:chunk + 64])
    assert metric.compute().item() == pytest.approx(brier_score(probs, targets).item(), rel=1e-6)


def test_metric_states_merge_as_ddp_would():
    probs, targets = _data(100, 4, seed=2)
    a, b = BrierScore(), BrierScore()
    a.update(probs[:30], targets[:30])
    b.update(probs[30:], targets[30:])
    a.merge_state(b)
    assert a.compute().item() == pytest.approx(brier_score(probs, targets).item(), rel=1e-6)


@pytest.mark.parametrize("probs, targets, error, match", [
    (torch.tensor([[2.0, -1.0]]), torch.tensor([0]), ValueError, r"\[0, 1\]"),
    (torch.tensor([[0.2, 0.2]]), torch.tensor([0]), ValueError, "sum to 1"),
    (torch.tensor([[np.nan, 1.0]]), torch.tensor([0]), ValueError, "NaN"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), ValueError, "targets must have shape"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([2]), ValueError, "class indices"),
    (torch.tensor([0.5, 0.5]), torch.tensor([0, 1]), ValueError, r"shape \(N, C\)"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), TypeError, "integer"),
    (torch.empty(0, 3), torch.empty(0, dtype=torch.long), ValueError, "empty"),
])
def test_bad_inputs_raise_clear_errors(probs, targets, error, match):
    with pytest.raises(error, match=match):
        brier_score(probs, targets)
