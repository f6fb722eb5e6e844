"""Calibration metrics against independent oracles (scikit-learn, torchmetrics, closed forms, hand-built
cases), as functions and as stateful, mergeable Metrics; bad input raises naming the argument."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from toolkit.calibration import (AdaptiveCalibrationError, BrierScore, ClasswiseCalibrationError,
                                 NegativeLogLikelihood, ReliabilityDiagram, adaptive_calibration_error, brier_score,
                                 classwise_calibration_error, negative_log_likelihood, reliability_bins)


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



# ---- reliability bins, adaptive and classwise ECE, NLL -------------------------------------------
def _sharp(n, c, seed, scale=3.0):
    """Softmax of scaled gaussian logits (no confidence is exactly 1.0) and labels drawn independently."""
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=g)
    return logits.softmax(1), torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("n, c, n_bins", [(500, 10, 15), (64, 3, 5), (1000, 2, 10), (7, 4, 20)])
def test_reliability_bins_ece_and_mce_equal_torchmetrics(n, c, n_bins):
    probs, targets = _sharp(n, c, seed=n)
    bins = reliability_bins(probs, targets, n_bins)
    for norm, ours in (("l1", bins.ece), ("max", bins.mce)):
        expected = multiclass_calibration_error(probs, targets, c, n_bins=n_bins, norm=norm)
        assert ours.item() == pytest.approx(expected.item(), abs=1e-6), norm
    assert bins.count.sum().item() == n and len(bins.count) == n_bins


def test_reliability_bins_hold_the_mean_confidence_and_accuracy_of_their_samples():
    probs = torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.3, 0.7], [0.55, 0.45]])
    targets = torch.tensor([0, 1, 1, 0])
    bins = reliability_bins(probs, targets, n_bins=2)  # [0, .5): none; [.5, 1]: all four
    assert bins.count.tolist() == [0, 4]
    assert bins.confidence[1].item() == pytest.approx((0.95 + 0.6 + 0.7 + 0.55) / 4)
    assert bins.accuracy[1].item() == pytest.approx(3 / 4)
    assert torch.isnan(bins.accuracy[0])


def _stream_equals_function(metric, function, probs, targets, batch=97):
    for start in range(0, len(targets), batch):
        metric.update(probs[start:start + batch], targets[start:start + batch])
    return metric.compute(), function(probs, targets)


def test_reliability_diagram_metric_streams_and_merges():
    probs, targets = _sharp(400, 5, seed=3)
    streamed, direct = _stream_equals_function(ReliabilityDiagram(n_bins=10), lambda p, t: reliability_bins(p, t, 10),
                                               probs, targets)
    torch.testing.assert_close(streamed.count, direct.count)
    torch.testing.assert_close(streamed.accuracy, direct.accuracy, equal_nan=True)
    a, b = ReliabilityDiagram(n_bins=10), ReliabilityDiagram(n_bins=10)
    a.update(probs[:150], targets[:150])
    b.update(probs[150:], targets[150:])
    a.merge_state(b)
    assert a.compute().ece.item() == pytest.approx(direct.ece.item(), abs=1e-9)


def test_adaptive_ece_on_a_hand_built_case():
    # confidences sorted: .8 (wrong) .9 (wrong) | .9 (right) .95 (right) -> gaps .85 and .075
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.05, 0.95]])
    targets = torch.tensor([1, 1, 1, 1])
    assert adaptive_calibration_error(probs, targets, n_bins=2).item() == pytest.approx(0.5 * 0.85 + 0.5 * 0.075)
    assert adaptive_calibration_error(probs, targets, n_bins=2, norm="max").item() == pytest.approx(0.85)
    # one bin: |overall accuracy - mean confidence|
    assert adaptive_calibration_error(probs, targets, n_bins=1).item() == pytest.approx(abs(0.5 - 0.8875))


def test_adaptive_ece_equals_equal_width_ece_when_every_bin_holds_the_same_count():
    n_bins, per_bin = 5, 40
    g = torch.Generator().manual_seed(0)
    # per_bin confidences inside each equal-width bin above 0.5 -> equal-mass bins = equal-width bins
    conf = torch.cat([0.5 + (b + 0.05 + 0.9 * torch.rand(per_bin, generator=g)) * 0.1 for b in range(n_bins)])
    probs = torch.stack([conf, 1 - conf], 1).double()
    targets = torch.randint(0, 2, (len(conf),), generator=g)
    expected = multiclass_calibration_error(probs, targets, 2, n_bins=10)
    assert adaptive_calibration_error(probs, targets, n_bins=n_bins).item() == pytest.approx(expected.item(), abs=1e-6)


def test_adaptive_ece_is_zero_for_a_calibrated_toy_and_metric_matches_function():
    probs = torch.tensor([[0.5, 0.5]] * 4 + [[1.0, 0.0]] * 4)
    targets = torch.tensor([0, 1, 0, 1, 0, 0, 0, 0])
    assert adaptive_calibration_error(probs, targets, n_bins=2).item() == pytest.approx(0.0, abs=1e-7)
    probs, targets = _sharp(300, 4, seed=5)
    streamed, direct = _stream_equals_function(AdaptiveCalibrationError(n_bins=7),
                                               lambda p, t: adaptive_calibration_error(p, t, 7), probs, targets)
    assert streamed.item() == pytest.approx(direct.item(), abs=1e-7)


@pytest.mark.parametrize("n, c, n_bins", [(300, 4, 10), (50, 10, 15), (200, 2, 5)])
def test_classwise_ece_is_the_mean_of_torchmetrics_binary_ece_per_class(n, c, n_bins):
    probs, targets = _sharp(n, c, seed=c)
    expected = torch.stack([binary_calibration_error(probs[:, k].contiguous(), (targets == k).long(), n_bins=n_bins)
                            for k in range(c)]).mean()
    assert classwise_calibration_error(probs, targets, n_bins).item() == pytest.approx(expected.item(), abs=1e-6)
    streamed, direct = _stream_equals_function(ClasswiseCalibrationError(c, n_bins),
                                               lambda p, t: classwise_calibration_error(p, t, n_bins), probs, targets)
    assert streamed.item() == pytest.approx(direct.item(), abs=1e-6)


def test_nll_equals_cross_entropy_and_sklearn_log_loss():
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(250, 6, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 6, (250,), generator=g)
    probs = logits.softmax(1)
    expected = F.cross_entropy(logits, targets).item()
    assert negative_log_likelihood(probs, targets).item() == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(log_loss(targets.numpy(), probs.numpy(), labels=list(range(6))), rel=1e-9)
    streamed, _ = _stream_equals_function(NegativeLogLikelihood(), negative_log_likelihood, probs, targets)
    assert streamed.item() == pytest.approx(expected, rel=1e-6)


def test_nll_of_a_zero_probability_is_finite_and_huge():
    value = negative_log_likelihood(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))
    assert torch.isfinite(value) and value.item() > 80


FUNCTIONS = [reliability_bins, adaptive_calibration_error, classwise_calibration_error, negative_log_likelihood]


@pytest.mark.parametrize("function", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("probs, targets, error, match", [
    (torch.tensor([[0.2, 0.3]]), torch.tensor([0]), ValueError, "sum to 1"),
    (torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]), ValueError, "NaN"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), ValueError, "targets must have shape"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), TypeError, "targets must be an integer"),
    (torch.empty(0, 3), torch.empty(0, dtype=torch.long), ValueError, "empty"),
])
def test_every_metric_rejects_bad_inputs_naming_the_argument(function, probs, targets, error, match):
    with pytest.raises(error, match=match):
        function(probs, targets)


def test_metrics_accept_logits_and_low_precision_probabilities_like_torchmetrics():
    """torchmetrics applies softmax to inputs outside [0, 1]; bf16 softmax rows miss 1 by up to ~C * 2^-8
    (the drop-in review's B9: 2-22 % of rows were refused)."""
    from torchmetrics.classification import MulticlassCalibrationError

    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(500, 10, generator=g)
    targets = torch.randint(0, 10, (500,), generator=g)
    bf16_probs = logits.bfloat16().softmax(1)
    assert ((bf16_probs.float().sum(1) - 1).abs() > 1e-3).any(), "the case the old tolerance refused"
    oracle = MulticlassCalibrationError(10, n_bins=15)(bf16_probs, targets)  # torchmetrics accepts it
    bins = reliability_bins(bf16_probs, targets)
    assert bins.ece.dtype != torch.bfloat16, "computed in float32 or wider, not in the input's bf16"
    assert float(bins.ece) == pytest.approx(float(oracle), abs=2e-3)
    for function in FUNCTIONS:
        torch.testing.assert_close(function(logits, targets), function(logits.softmax(1), targets), equal_nan=True)
        metric = {reliability_bins: ReliabilityDiagram, adaptive_calibration_error: AdaptiveCalibrationError,
                  classwise_calibration_error: lambda: ClasswiseCalibrationError(10),
                  negative_log_likelihood: NegativeLogLikelihood}[function]()
        metric.update(bf16_probs, targets)
        value = metric.compute()
        expected = function(bf16_probs.float() / bf16_probs.float().sum(1, keepdim=True), targets)
        torch.testing.assert_close(value.ece if hasattr(value, "ece") else value,
                                   expected.ece if hasattr(expected, "ece") else expected, equal_nan=True)
    torch.testing.assert_close(brier_score(logits, targets), brier_score(logits.softmax(1), targets))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):  # a rounding error below 0: refused, not softmaxed
        brier_score(torch.tensor([[1.0 + 1e-5, -1e-5]]), torch.tensor([0]))


@pytest.mark.parametrize("build, match", [
    (lambda: ReliabilityDiagram(n_bins=0), "n_bins"),
    (lambda: AdaptiveCalibrationError(norm="l3"), "norm"),
    (lambda: ClasswiseCalibrationError(num_classes=1), "num_classes"),
])
def test_metric_arguments_are_validated(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_classwise_metric_rejects_a_different_number_of_classes():
    with pytest.raises(ValueError, match="num_classes=3"):
        ClasswiseCalibrationError(3).update(torch.tensor([[0.5, 0.5]]), torch.tensor([0]))


def test_bin_index_equals_torchmetrics_bucketize_rule_even_on_boundaries():
    from toolkit.calibration.metrics import _bin_index

    for n_bins in (1, 7, 10, 15):
        edges = torch.linspace(0, 1, n_bins + 1)
        above, below = torch.nextafter(edges, torch.tensor(2.0)), torch.nextafter(edges, torch.tensor(-1.0))
        values = torch.cat([edges, above, below,
                            torch.rand(1000, generator=torch.Generator().manual_seed(n_bins))]).clamp(0, 1)
        expected = (torch.bucketize(values, edges, right=True) - 1).clamp(0, n_bins - 1)
        assert torch.equal(_bin_index(values, n_bins), expected), n_bins


def test_the_scatter_histogram_used_off_cpu_equals_bincount():
    from toolkit.calibration.metrics import _bincount, _scatter_count

    g = torch.Generator().manual_seed(0)
    index, weights = torch.randint(0, 30, (500,), generator=g), torch.rand(500, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_scatter_count(index, 40), _bincount(index, 40))
    torch.testing.assert_close(_scatter_count(index, 40, weights), _bincount(index, 40, weights))


@pytest.mark.parametrize("n", [1_000, 300_000])  # one chunk, and several (1 << 20 values each)
def test_brier_is_exact_on_a_confident_model(n):
    """Every term is a square: the identity sum p^2 - 2 p_y + 1 cancels there (a negative score in float32)."""
    g = torch.Generator().manual_seed(n)
    logits = torch.randn(n, 10, generator=g)
    targets = logits.argmax(1)
    logits[torch.arange(n), targets] += 12
    probs = logits.softmax(1)
    expected = ((probs.double() - torch.nn.functional.one_hot(targets, 10)) ** 2).sum(1).mean().item()
    assert brier_score(probs, targets).item() == pytest.approx(expected, rel=1e-4)
    metric = BrierScore()
    for chunk in range(0, n, 100_000):
        metric.update(probs[chunk:chunk + 100_000], targets[chunk:chunk + 100_000])
    assert metric.compute().item() == pytest.approx(expected, rel=1e-4)
