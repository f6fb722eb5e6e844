"""toolkit.stats against scipy.stats, closed forms (R's power.prop.test) and simulation (coverage, power)."""

import dataclasses
import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from toolkit.stats import (BootstrapCI, PairedDifference, bootstrap_ci, compare, detectable_difference,
                           metric_label, paired_difference, plot_comparison, samples_needed, summarize)

N_EXPERIMENTS = 1000  # simulated experiments per coverage test
Z_TOLERANCE = 3.5     # coverage may miss its nominal rate by this many binomial standard errors


def _coverage_tolerance(rate: float, experiments: int) -> float:
    return Z_TOLERANCE * math.sqrt(rate * (1 - rate) / experiments)


# ---------------------------------------------------------------- paired_difference

@pytest.mark.parametrize("n", [2, 5, 12])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_paired_difference_equals_scipy_ttest_rel(n, confidence):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.9, 0.02, n), rng.normal(0.89, 0.02, n)
    result = paired_difference(a, b, confidence=confidence)
    reference = stats.ttest_rel(a, b)
    interval = reference.confidence_interval(confidence_level=confidence)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-12)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high), rel=1e-12)
    assert result.difference == pytest.approx(np.mean(a - b), rel=1e-12) and result.n == n


def test_paired_interval_is_mean_plus_minus_t_quantile_times_standard_error():
    a = np.array([0.91, 0.93, 0.92, 0.94, 0.92, 0.95])
    b = np.array([0.90, 0.91, 0.91, 0.92, 0.90, 0.92])
    d = a - b
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    result = paired_difference(a, b)
    assert (result.low, result.high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-12)
    assert result.half_width == pytest.approx(half) and result.sd == pytest.approx(d.std(ddof=1))


def test_paired_interval_covers_the_true_difference_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    n_seeds, true_difference = 5, 0.01
    seed_effect = rng.normal(0.9, 0.02, (N_EXPERIMENTS, n_seeds))  # shared by both arms: cancels in a - b
    a = seed_effect + true_difference + rng.normal(0, 0.01, (N_EXPERIMENTS, n_seeds))
    b = seed_effect + rng.normal(0, 0.01, (N_EXPERIMENTS, n_seeds))
    results = [paired_difference(x, y) for x, y in zip(a, b)]
    vectorized = stats.ttest_rel(a, b, axis=1).confidence_interval(0.95)
    np.testing.assert_allclose([r.low for r in results], vectorized.low, rtol=1e-10)
    np.testing.assert_allclose([r.high for r in results], vectorized.high, rtol=1e-10)
    coverage = np.mean([r.low <= true_difference <= r.high for r in results])
    assert abs(coverage - 0.95) < _coverage_tolerance(0.95, N_EXPERIMENTS)
    # under "no difference" the interval excludes 0 in about 5% of experiments: the false-alarm rate
    null = [paired_difference(x, y) for x, y in zip(b + rng.normal(0, 0.01, b.shape), b)]
    assert abs(np.mean([r.excludes_zero for r in null]) - 0.05) < _coverage_tolerance(0.05, N_EXPERIMENTS)
    assert abs(np.mean([r.p_value < 0.05 for r in null]) - 0.05) < _coverage_tolerance(0.05, N_EXPERIMENTS)


def test_paired_difference_of_identical_methods_is_no_difference_with_p_one():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's catastrophic-cancellation warning is handled
        result = paired_difference([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert math.isnan(stats.ttest_rel([0.9, 0.8, 0.7], [0.9, 0.8, 0.7]).pvalue)  # what scipy gives
    assert (result.difference, result.low, result.high, result.p_value, result.sd) == (0, 0, 0, 1.0, 0)
    assert not result.excludes_zero


def test_paired_difference_constant_across_seeds_is_a_zero_width_interval():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = paired_difference([3.0, 4.0, 5.0], [1.0, 2.0, 3.0])
    assert (result.low, result.high, result.p_value) == (2.0, 2.0, 0.0) and result.excludes_zero


def test_paired_difference_accepts_lists_series_and_tensors_alike():
    a, b = [0.9, 0.92, 0.95, 0.91, 0.93], [0.88, 0.9, 0.92, 0.9, 0.9]
    reference = paired_difference(a, b)
    assert paired_difference(pd.Series(a), np.array(b)) == reference
    assert paired_difference(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)) == reference


def test_paired_difference_renders_as_one_table_row_and_is_frozen():
    result = paired_difference([0.9, 0.92, 0.95, 0.91, 0.93], [0.88, 0.9, 0.92, 0.9, 0.9])
    text = str(result).splitlines()
    assert len(text) == 2 and text[0].split()[:3] == ["difference", "low", "high"]
    assert result._repr_html_().count("<tr") == 2  # header and one row
    row = result.to_dict()
    assert row["excludes_zero"] is True and row["n"] == 5 and set(row) >= {"difference", "low", "high", "p_value"}
    assert len(pd.DataFrame([row, row])) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.difference = 0.0  # type: ignore[misc]
    assert isinstance(result, PairedDifference)


@pytest.mark.parametrize("a, b, error, match", [
    ([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], ValueError, "a must be 1-D"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], ValueError, "same length"),
    ([1.0], [2.0], ValueError, "at least 2 pairs"),
    ([1.0, np.nan, 2.0], [1.0, 2.0, 3.0], ValueError, "a must be finite; positions \\[1\\]"),
    ([1.0, 2.0, 3.0], [1.0, np.inf, 3.0], ValueError, "b must be finite"),
    (["x", "y"], [1.0, 2.0], TypeError, "a must hold real numbers"),
    ([1.0, 2.0], 3.0, TypeError, "b must be a 1-D sequence"),
    ([1.0, 2.0], "12", TypeError, "b must be a 1-D sequence"),
    ([1 + 1j, 2j], [1.0, 2.0], TypeError, "a must hold real numbers"),
])
def test_paired_difference_refuses_bad_samples(a, b, error, match):
    with pytest.raises(error, match=match):
        paired_difference(a, b)


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1, True, "0.95", None])
def test_paired_difference_refuses_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence must be a number in \\(0, 1\\)"):
        paired_difference([1.0, 2.0, 3.0], [0.0, 1.0, 1.0], confidence=confidence)


# ---------------------------------------------------------------- bootstrap_ci

def _binary_predictions(n=300, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    return y, score


def _accuracy(y, score):
    return ((score > 0.5) == y).mean()


def _accuracy_batched(y, score):
    return ((score > 0.5) == y).mean(-1)


@pytest.mark.parametrize("method", ["percentile", "basic", "BCa"])
@pytest.mark.parametrize("batched", [True, False])
def test_bootstrap_ci_equals_scipy_paired_bootstrap(method, batched):
    y, score = _binary_predictions()
    n_resamples = 2000 if batched else 499
    result = bootstrap_ci(_accuracy_batched if batched else _accuracy, y, score, n_resamples=n_resamples,
                          method=method, seed=3, batched=batched)
    reference = stats.bootstrap((y, score), lambda y, s, axis: ((s > 0.5) == y).mean(axis), paired=True,
                                vectorized=True, n_resamples=n_resamples, method=method,
                                rng=np.random.default_rng(3))
    assert (result.low, result.high) == pytest.approx(tuple(reference.confidence_interval), rel=1e-12)
    assert result.standard_error == pytest.approx(reference.standard_error, rel=1e-12)
    assert result.estimate == _accuracy(y, score) and result.n == len(y)


def test_bootstrap_ci_of_sklearn_auroc_equals_scipy_unvectorized_bootstrap():
    y, score = _binary_predictions(n=200)
    result = bootstrap_ci(roc_auc_score, y, score, n_resamples=99, seed=0)
    reference = stats.bootstrap((y, score), roc_auc_score, paired=True, vectorized=False, n_resamples=99,
                                method="percentile", rng=np.random.default_rng(0))
    assert (result.low, result.high) == pytest.approx(tuple(reference.confidence_interval), rel=1e-12)
    assert result.estimate == pytest.approx(roc_auc_score(y, score))


def test_bootstrap_resamples_arrays_jointly_whatever_their_trailing_shape():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 250)
    probs = rng.dirichlet(np.ones(3), 250) + 0.8 * np.eye(3)[targets]
    correct = (probs.argmax(1) == targets).astype(float)
    from_probs = bootstrap_ci(lambda t, p: (p.argmax(-1) == t).mean(-1), targets, probs, n_resamples=999,
                              batched=True)
    from_correct = bootstrap_ci(lambda c: c.mean(-1), correct, n_resamples=999, batched=True)
    assert (from_probs.low, from_probs.high) == (from_correct.low, from_correct.high)


def test_bootstrap_ci_works_with_torch_tensors_and_torchmetrics():
    from torchmetrics.functional.classification import multiclass_accuracy

    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (120,), generator=g)
    probs = torch.softmax(torch.randn(120, 4, generator=g) + 2 * torch.nn.functional.one_hot(targets, 4), 1)
    on_tensors = bootstrap_ci(lambda p, t: multiclass_accuracy(p, t, num_classes=4, average="micro"),
                              probs, targets, n_resamples=99)
    on_arrays = bootstrap_ci(lambda p, t: (p.argmax(1) == t).mean(), probs.numpy(), targets.numpy(),
                             n_resamples=99)
    assert (on_tensors.estimate, on_tensors.low, on_tensors.high) == pytest.approx(
        (on_arrays.estimate, on_arrays.low, on_arrays.high), abs=1e-6)


def test_bootstrap_interval_covers_the_true_accuracy_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    n_samples, accuracy = 200, 0.8
    hits = 0
    for experiment in range(N_EXPERIMENTS):
        correct = (rng.random(n_samples) < accuracy).astype(float)
        result = bootstrap_ci(lambda c: c.mean(-1), correct, n_resamples=499, seed=experiment, batched=True)
        hits += result.low <= accuracy <= result.high
    assert abs(hits / N_EXPERIMENTS - 0.95) < _coverage_tolerance(0.95, N_EXPERIMENTS)


def test_bootstrap_ci_is_deterministic_for_a_seed():
    y, score = _binary_predictions()
    first = bootstrap_ci(_accuracy_batched, y, score, n_resamples=999, seed=5, batched=True)
    assert bootstrap_ci(_accuracy_batched, y, score, n_resamples=999, seed=5, batched=True) == first
    assert bootstrap_ci(_accuracy_batched, y, score, n_resamples=999, seed=6, batched=True) != first
    assert isinstance(first, BootstrapCI) and len(str(first).splitlines()) == 2


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_bootstrap_of_an_errorless_test_set_is_a_zero_width_interval_without_warnings(method):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = bootstrap_ci(lambda c: c.mean(-1), np.ones(50), batched=True, method=method, n_resamples=199)
    assert (result.estimate, result.low, result.high) == (1.0, 1.0, 1.0)


def test_bootstrap_refuses_a_metric_undefined_on_some_resamples():
    y = np.array([0] * 19 + [1])
    score = np.linspace(0, 1, 20)

    def auroc_or_nan(y, s):
        return roc_auc_score(y, s) if 0 < y.sum() < len(y) else float("nan")

    with pytest.raises(ValueError, match="not finite on [0-9]+ of 199 resamples"):
        bootstrap_ci(auroc_or_nan, y, score, n_resamples=199)


@pytest.mark.parametrize("call, error, match", [
    (lambda: bootstrap_ci("accuracy", [1, 0]), TypeError, "metric must be a callable"),
    (lambda: bootstrap_ci(np.mean), ValueError, "at least one array"),
    (lambda: bootstrap_ci(_accuracy, [0, 1, 1], [0.2, 0.8]), ValueError, "lengths \\[3, 2\\]"),
    (lambda: bootstrap_ci(np.mean, [1.0]), ValueError, "at least 2 samples"),
    (lambda: bootstrap_ci(np.mean, 3.0), ValueError, "arrays\\[0\\] must have a sample axis"),
    (lambda: bootstrap_ci(np.mean, np.array(["a", None], dtype=object)), TypeError, "dtype object"),
    (lambda: bootstrap_ci(np.mean, [1.0, 2.0], n_resamples=0), ValueError, "n_resamples must be an integer >= 2"),
    (lambda: bootstrap_ci(np.mean, [1.0, 2.0], n_resamples=99.5), ValueError, "n_resamples"),
    (lambda: bootstrap_ci(np.mean, [1.0, 2.0], confidence=95), ValueError, "confidence"),
    (lambda: bootstrap_ci(np.mean, [1.0, 2.0], method="bca"), ValueError, "method must be one of"),
    (lambda: bootstrap_ci(np.mean, [1.0, 2.0], seed="0"), TypeError, "seed must be an int"),
    (lambda: bootstrap_ci(np.mean, [1.0, 2.0], batched=1), TypeError, "batched must be True or False"),
    (lambda: bootstrap_ci(lambda c: c.mean(), [1.0, 2.0, 4.0], batched=True), ValueError,
     "one value per resample"),
    (lambda: bootstrap_ci(lambda c: float("nan"), [1.0, 2.0]), ValueError, "not finite on the full sample"),
    (lambda: bootstrap_ci(lambda c: c[:2], [1.0, 2.0, 3.0]), ValueError, "one number per call, got shape \\(2,\\)"),
])
def test_bootstrap_refuses_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- summarize

def _runs(n_seeds=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for method, shift in [("none", 0.0), ("dropout", 0.02), ("noise", 0.0005)]:
        for s in range(n_seeds):
            seed_effect = 0.01 * np.sin(3 * s)  # shared by every method on this seed
            rows.append({"method": method, "seed": s, "test_acc": 0.9 + shift + seed_effect + rng.normal(0, 0.002),
                         "test_ece": 0.05 - shift + rng.normal(0, 0.003)})
    return pd.DataFrame(rows)


def test_summarize_equals_scipy_t_interval_per_group():
    runs = _runs()
    table = summarize(runs, ["test_acc", "test_ece"], by="method", confidence=0.9)
    for (method, metric), row in table.iterrows():
        values = runs.loc[runs["method"] == method, metric]
        interval = stats.ttest_1samp(values, 0).confidence_interval(0.9)
        assert (row["low"], row["high"]) == pytest.approx((interval.low, interval.high), rel=1e-12)
        assert row["mean"] == pytest.approx(values.mean()) and row["n"] == 5
        assert row["text"] == f"{values.mean():.3f} ± {(interval.high - interval.low) / 2:.3f}"


def test_summarize_text_table_has_a_row_per_group_and_a_column_per_metric():
    runs = _runs()
    text = summarize(runs, ["test_acc", "test_ece"], by="method", as_text=True, digits=4)
    assert list(text.columns) == ["test_acc", "test_ece"] and list(text.index) == ["none", "dropout", "noise"]
    assert all(" ± " in cell for cell in text.to_numpy().ravel())
    overall = summarize(runs, "test_acc", as_text=True)
    assert overall.loc["all", "test_acc"] == summarize(runs, "test_acc").loc["test_acc", "text"]


def test_summarize_groups_by_several_columns_and_reports_single_runs():
    runs = _runs().assign(width=lambda f: np.where(f["seed"] < 4, "wide", "narrow"))
    table = summarize(runs, "test_acc", by=["method", "width"])
    single = table.loc[("none", "narrow", "test_acc")]
    assert single["n"] == 1 and math.isnan(single["half_width"]) and single["text"].endswith("(n=1)")
    assert table.loc[("none", "wide", "test_acc"), "n"] == 4


def test_summarize_t_interval_covers_the_true_mean_at_its_nominal_rate():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"experiment": np.repeat(np.arange(N_EXPERIMENTS), 5),
                          "acc": rng.normal(0.9, 0.02, 5 * N_EXPERIMENTS)})
    table = summarize(frame, "acc", by="experiment")
    coverage = ((table["low"] <= 0.9) & (0.9 <= table["high"])).mean()
    assert abs(coverage - 0.95) < _coverage_tolerance(0.95, N_EXPERIMENTS)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"metrics": "test_f1"}, ValueError, "metrics\\[0\\]='test_f1' is not a column"),
    ({"metrics": "test_acc", "by": "arm"}, ValueError, "by\\[0\\]='arm' is not a column"),
    ({"metrics": "method"}, TypeError, "must be numeric"),
    ({"metrics": []}, ValueError, "at least one"),
    ({"metrics": "test_acc", "confidence": 0.0}, ValueError, "confidence"),
    ({"metrics": "test_acc", "digits": -1}, ValueError, "digits"),
])
def test_summarize_refuses_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        summarize(_runs(), **kwargs)


# ---------------------------------------------------------------- compare

def test_compare_pairs_by_seed_even_when_rows_are_shuffled():
    runs = _runs()
    shuffled = runs.sample(frac=1.0, random_state=0).reset_index(drop=True)
    table = compare(shuffled, baseline="none", metric="test_acc")
    for method in ["dropout", "noise"]:
        a = runs[runs["method"] == method].sort_values("seed")["test_acc"].to_numpy()
        b = runs[runs["method"] == "none"].sort_values("seed")["test_acc"].to_numpy()
        interval = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert (table.loc[method, "low"], table.loc[method, "high"]) == pytest.approx(tuple(interval), rel=1e-12)
        assert table.loc[method, "p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    # pairing by row position in the shuffled frame would give another (wrong) interval
    misaligned = paired_difference(shuffled.loc[shuffled["method"] == "noise", "test_acc"].to_numpy(),
                                   shuffled.loc[shuffled["method"] == "none", "test_acc"].to_numpy())
    assert misaligned.low != pytest.approx(table.loc["noise", "low"])
    pd.testing.assert_frame_equal(table, compare(runs, baseline="none", metric="test_acc"))


def test_compare_gives_one_row_per_method_with_its_verdict():
    runs = _runs()
    accuracy = compare(runs, baseline="none", metric="test_acc")
    assert list(accuracy.index) == ["dropout", "noise"]
    assert list(accuracy.columns) == ["mean", "baseline_mean", "difference", "low", "high", "p_value", "n",
                                      "excludes_zero", "verdict"]
    assert accuracy.loc["dropout", "verdict"] == "better" and accuracy.loc["dropout", "excludes_zero"]
    assert accuracy.loc["noise", "verdict"] == "no detectable difference"
    ece = compare(runs, baseline="none", metric="test_ece", higher_is_better=False)
    assert ece.loc["dropout", "verdict"] == "better" and ece.loc["dropout", "difference"] < 0
    worse = compare(runs, baseline="dropout", metric="test_acc")
    assert worse.loc["none", "verdict"] == "worse"
    assert accuracy.attrs["metric"] == "test_acc" and accuracy.attrs["baseline"] == "none"


def test_compare_bonferroni_uses_confidence_one_minus_alpha_over_the_number_of_comparisons():
    runs = _runs()
    table = compare(runs, baseline="none", metric="test_acc", correction="bonferroni")
    a = runs[runs["method"] == "dropout"].sort_values("seed")["test_acc"]
    b = runs[runs["method"] == "none"].sort_values("seed")["test_acc"]
    wide = paired_difference(a, b, confidence=1 - 0.05 / 2)
    assert (table.loc["dropout", "low"], table.loc["dropout", "high"]) == pytest.approx((wide.low, wide.high))


def test_compare_names_the_missing_and_extra_seeds():
    runs = _runs()
    runs = runs[~((runs["method"] == "noise") & (runs["seed"] == 3))]
    runs = pd.concat([runs, pd.DataFrame([{"method": "noise", "seed": 9, "test_acc": 0.9, "test_ece": 0.05}])])
    with pytest.raises(ValueError, match="method 'noise' .* lacks seeds \\[3\\] and has seeds \\[9\\]"):
        compare(runs, baseline="none")


@pytest.mark.parametrize("mutate, kwargs, error, match", [
    (lambda f: f, {"baseline": "adam"}, ValueError, "baseline must be one of"),
    (lambda f: f, {}, ValueError, "baseline must be one of"),
    (lambda f: f, {"baseline": "none", "metric": "val_acc"}, ValueError, "metric='val_acc' is not a column"),
    (lambda f: f, {"baseline": "none", "seed": "run"}, ValueError, "seed='run' is not a column"),
    (lambda f: pd.concat([f, f.iloc[[0]]]), {"baseline": "none"}, ValueError, "must appear once"),
    (lambda f: f.assign(test_acc=f["test_acc"].where(f.index != 7)), {"baseline": "none"}, ValueError, "is NaN"),
    (lambda f: f[f["method"] == "none"], {"baseline": "none"}, ValueError, "no method other than"),
    (lambda f: f, {"baseline": "none", "metric": "method"}, TypeError, "must be numeric"),
    (lambda f: f, {"baseline": "none", "correction": "holm"}, ValueError, "correction must be one of"),
    (lambda f: f, {"baseline": "none", "higher_is_better": "yes"}, TypeError, "higher_is_better"),
    (lambda f: f[f["seed"] == 0], {"baseline": "none"}, ValueError, "at least 2 pairs"),
    (lambda f: f.to_dict(), {"baseline": "none"}, TypeError, "frame must be a pandas DataFrame"),
])
def test_compare_refuses_bad_input(mutate, kwargs, error, match):
    with pytest.raises(error, match=match):
        compare(mutate(_runs()), **kwargs)


# ---------------------------------------------------------------- samples_needed / detectable_difference

def test_samples_needed_matches_r_power_prop_test():
    # the examples of R's ?power.prop.test: (p1 = .50, p2 = .75, power = .90) gives n = 76.7 per group,
    # (n = 50, p1 = .5, power = .90) gives p2 = 0.8026 (R solves with uniroot's default tolerance)
    assert samples_needed(0.25, 0.5, power=0.9) == 77
    assert detectable_difference(50, 0.5, power=0.9) == pytest.approx(0.8026 - 0.5, abs=5e-5)


@pytest.mark.parametrize("difference, accuracy, confidence, power", [
    (0.01, 0.95, 0.95, 0.8), (0.05, 0.85, 0.95, 0.8), (-0.1, 0.6, 0.99, 0.9), (0.002, 0.99, 0.9, 0.5)])
def test_samples_needed_is_the_closed_form(difference, accuracy, confidence, power):
    p1, p2 = accuracy, accuracy + difference
    z_a, z_b = stats.norm.ppf(1 - (1 - confidence) / 2), stats.norm.ppf(power)
    pooled = (p1 + p2) / 2
    root_n = (z_a * math.sqrt(2 * pooled * (1 - pooled)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) / difference
    n = root_n**2
    assert samples_needed(difference, accuracy, confidence, power) == math.ceil(n)


@pytest.mark.parametrize("difference, accuracy", [(0.05, 0.85), (-0.1, 0.6), (0.02, 0.7)])
def test_samples_needed_gives_the_promised_power_in_simulation(difference, accuracy):
    n = samples_needed(difference, accuracy)
    rng = np.random.default_rng(0)
    experiments = 40_000
    first, second = rng.binomial(n, accuracy, experiments) / n, rng.binomial(n, accuracy + difference, experiments) / n
    pooled = (first + second) / 2
    z = (second - first) / np.sqrt(2 * pooled * (1 - pooled) / n)  # the two-proportion z-test
    power = np.mean(2 * stats.norm.sf(np.abs(z)) < 0.05)
    assert abs(power - 0.8) < 0.015  # 3.5 simulation standard errors (0.002) plus the normal approximation's error


@pytest.mark.parametrize("n, accuracy", [(270, 0.9), (433, 0.8), (10_000, 0.99), (20, 0.5)])
def test_detectable_difference_inverts_samples_needed(n, accuracy):
    difference = detectable_difference(n, accuracy)
    assert 0 < difference <= 1 - accuracy
    assert samples_needed(difference, accuracy) == n
    assert samples_needed(difference * 0.99, accuracy) > n


def test_no_gain_over_99_percent_is_detectable_on_270_test_images():
    assert math.isnan(detectable_difference(270, 0.99))
    assert samples_needed(0.01, 0.99) > 270


@pytest.mark.parametrize("call, match", [
    (lambda: samples_needed(0, 0.9), "difference must be a non-zero number"),
    (lambda: samples_needed(0.2, 0.9), "accuracy \\+ difference in \\[0, 1\\]"),
    (lambda: samples_needed(0.01, 1.0), "accuracy must be a number in \\(0, 1\\)"),
    (lambda: samples_needed(0.01, 0.9, power=1.0), "power must be"),
    (lambda: samples_needed(0.01, 0.9, confidence=0.0), "confidence"),
    (lambda: detectable_difference(0, 0.9), "n must be an integer >= 1"),
    (lambda: detectable_difference(100.0, 0.9), "n must be an integer"),
    (lambda: detectable_difference(100, -0.1), "accuracy must be"),
])
def test_power_functions_refuse_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- plot_comparison

def test_plot_comparison_draws_each_interval_and_the_zero_line():
    table = compare(_runs(), baseline="none", metric="test_acc")
    ax = plot_comparison(table)
    try:
        containers = ax.containers
        assert len(containers) == len(table)
        for container, (_, row) in zip(containers, table.iterrows()):
            point, _, (bars,) = container.lines
            assert point.get_xdata()[0] == pytest.approx(row["difference"])
            (x_low, _), (x_high, _) = bars.get_segments()[0]
            assert (x_low, x_high) == pytest.approx((row["low"], row["high"]))
        zero = [line for line in ax.get_lines() if list(line.get_xdata()) == [0, 0]]
        assert len(zero) == 1
        assert ax.get_xlabel() == "test accuracy minus none\n(95% CI over 5 paired seeds)"
        ticks = {label.get_position()[1]: label.get_text() for label in ax.get_yticklabels()}
        assert [ticks[y] for y in sorted(ticks, reverse=True)] == ["dropout", "noise"]  # first method on top
        assert {t.get_text() for t in ax.get_legend().get_texts()} == {"better", "no detectable difference"}
    finally:
        plt.close("all")


def test_plot_comparison_refuses_anything_but_a_compare_table():
    with pytest.raises(ValueError, match="lacks columns"):
        plot_comparison(pd.DataFrame({"difference": [0.1]}))
    with pytest.raises(TypeError, match="compare\\(\\) returns"):
        plot_comparison([0.1, 0.2])


@pytest.mark.parametrize("name, label", [("test_acc", "test accuracy"), ("val_ece", "validation ECE"),
                                         ("nll", "NLL"), ("train_my_score", "training my score")])
def test_metric_labels_are_readable(name, label):
    assert metric_label(name) == label
