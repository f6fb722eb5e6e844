"""``calibration_ci``: the estimate is torchmetrics' metric, and every batched resample equals the
metric recomputed by torchmetrics / a plain loop on that resample (the same resamples as
``toolkit.stats.bootstrap_ci`` with one call per resample)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

from toolkit.calibration import CI_METRICS, brier_score, calibration_ci
from toolkit.stats import bootstrap_ci


def _data(n=400, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, c, generator=g)
    targets = torch.multinomial((logits / 2).softmax(1), 1, generator=g).squeeze(1)  # overconfident
    return logits.softmax(1), targets


def _oracle(metric, n_bins):
    return {
        "ece": lambda p, y: multiclass_calibration_error(p, y, p.shape[1], n_bins=n_bins).item(),
        "gap": lambda p, y: (p.max(1).values.double().mean() - (p.argmax(1) == y).double().mean()).item(),
        "nll": lambda p, y: F.nll_loss(p.double().log(), y).item(),
        "brier": lambda p, y: brier_score(p, y).item(),
        "acc": lambda p, y: (p.argmax(1) == y).double().mean().item(),
    }[metric]


@pytest.mark.parametrize("metric", CI_METRICS)
@pytest.mark.parametrize("n_bins", [5, 15])
def test_calibration_ci_equals_the_per_resample_oracle(metric, n_bins):
    probs, targets = _data(seed=n_bins)
    fast = calibration_ci(probs, targets, metric, n_bins=n_bins, n_resamples=60, seed=3)
    oracle = _oracle(metric, n_bins)
    assert fast.estimate == pytest.approx(oracle(probs, targets), abs=1e-6)
    slow = bootstrap_ci(oracle, probs, targets, n_resamples=60, seed=3)  # one torchmetrics call per resample
    assert (fast.low, fast.high) == pytest.approx((slow.low, slow.high), abs=1e-6)
    assert fast.standard_error == pytest.approx(slow.standard_error, rel=1e-4)


def test_calibration_ci_width_shrinks_like_one_over_root_n():
    widths = {}
    for n in (500, 8000):
        probs, targets = _data(n=n, seed=1)
        ci = calibration_ci(probs, targets, "ece", n_resamples=999)
        widths[n] = ci.high - ci.low
    assert widths[500] / widths[8000] == pytest.approx(4.0, rel=0.35)


def test_calibration_ci_rejects_bad_arguments():
    probs, targets = _data(n=10)
    with pytest.raises(ValueError, match="metric"):
        calibration_ci(probs, targets, "auroc")
    with pytest.raises(ValueError, match="n_bins"):
        calibration_ci(probs, targets, n_bins=0)
    with pytest.raises(ValueError, match="at least 2"):
        calibration_ci(probs[:1], targets[:1])
