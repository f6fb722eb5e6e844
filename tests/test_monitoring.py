"""Monitoring: drift detectors (false alarms and power), the regression gate, versions and rollback."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ks_2samp
from sklearn.datasets import load_digits
from torch import nn

from toolkit.data import CORRUPTIONS, DigitsDataModule
from toolkit.monitoring import (DEFAULT_RULES, GateRule, ModelRegistry, input_drift, output_drift, psi,
                                regression_gate)
from toolkit.monitoring.drift import _ks_statistic

DIGITS = load_digits().data
SEEDS = 100


def _rate_bound(alpha, n):
    """Largest alarm rate over ``n`` independent tries still consistent with a true rate ``alpha``."""
    return alpha + 3 * np.sqrt(alpha * (1 - alpha) / n)


# ---- input drift -----------------------------------------------------------------------------------
def test_input_drift_false_alarm_rate_on_same_distribution_digits_stays_below_alpha():
    alpha = 0.05
    alarms = []
    for seed in range(SEEDS):
        order = np.random.default_rng(seed).permutation(len(DIGITS))
        alarms.append(input_drift(DIGITS[order[:600]], DIGITS[order[600:870]], alpha=alpha).drift)
    assert np.mean(alarms) <= _rate_bound(alpha, SEEDS)


def test_input_drift_bonferroni_rate_is_close_to_alpha_for_independent_continuous_features():
    alpha, features, n = 0.2, 8, 200
    alarms = [input_drift(*np.split(np.random.default_rng(s).normal(size=(400, features)), 2), alpha=alpha).drift
              for s in range(n)]
    exact = 1 - (1 - alpha / features) ** features          # family-wise rate of independent tests
    assert abs(np.mean(alarms) - exact) <= 3 * np.sqrt(exact * (1 - exact) / n)


@pytest.fixture(scope="module")
def digits8():
    dm = DigitsDataModule(image_size=8, flatten=True)
    dm.setup()
    return dm


@pytest.mark.parametrize("severity", [3, 4, 5])
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_input_drift_alarms_on_every_corruption_at_severity_3_or_more(digits8, corruption, severity):
    result = input_drift(digits8.tensors("train")[0], digits8.shifted_tensors(corruption, severity)[0])
    assert result.drift and result.verdict.startswith("DRIFT")


def test_input_drift_stays_quiet_on_the_clean_test_split(digits8):
    for method in ("ks", "psi"):
        result = input_drift(digits8.tensors("train")[0], digits8.tensors("test")[0], method=method)
        assert not result.drift and result.verdict.startswith("no drift")


def test_input_drift_columns_match_scipy_per_feature():
    rng = np.random.default_rng(0)
    ref, live = rng.normal(size=(300, 5)), rng.normal(0.2, 1.3, size=(120, 5))
    details = input_drift(ref, live).details
    for j in range(5):
        expected = ks_2samp(ref[:, j], live[:, j], method="asymp")
        assert details.loc[j, "ks_statistic"] == pytest.approx(expected.statistic)
        assert details.loc[j, "p_value"] == pytest.approx(expected.pvalue, rel=1e-6)


def test_psi_closed_form_on_two_bins():
    ref = np.repeat([0.0, 1.0], 500)[:, None]
    live = np.repeat([0.0, 1.0], [200, 800])[:, None]
    expected = (0.2 - 0.5) * np.log(0.2 / 0.5) + (0.8 - 0.5) * np.log(0.8 / 0.5)
    assert psi(ref, live, n_bins=2)[0] == pytest.approx(expected)
    assert psi(ref, ref, n_bins=2)[0] == 0


def test_psi_approaches_the_symmetric_kl_of_a_gaussian_mean_shift():
    # J-divergence of N(0, 1) and N(d, 1) is d**2; fine quantile bins on large samples approach it
    rng = np.random.default_rng(0)
    shift = 0.5
    value = psi(rng.normal(size=(200_000, 1)), rng.normal(shift, size=(200_000, 1)), n_bins=50)[0]
    assert value == pytest.approx(shift**2, rel=0.1)


# ---- output drift ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_vectorized_ks_statistic_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 6, 80).astype(float), rng.integers(0, 7, 50).astype(float)
    assert _ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic)
    batch = _ks_statistic(np.stack([a, a[::-1]]), np.stack([b, b]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(batch[1])


@pytest.mark.parametrize("statistic", ["ks", "mean"])
def test_output_drift_false_alarm_rate_is_alpha(statistic):
    alpha, n = 0.1, 60
    alarms = []
    for seed in range(n):
        rng = np.random.default_rng(seed)
        conf = rng.beta(8, 2, size=300)
        alarms.append(output_drift(conf[:200], conf[200:], alpha=alpha, statistic=statistic,
                                   n_permutations=199, seed=seed).drift)
    assert np.mean(alarms) <= _rate_bound(alpha, n)


def test_output_drift_fires_when_a_model_meets_rotated_digits(digits8):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=500).fit(*[t.numpy() for t in digits8.tensors("train")])
    reference = model.predict_proba(digits8.tensors("val")[0].numpy())
    clean = model.predict_proba(digits8.tensors("test")[0].numpy())
    rotated = model.predict_proba(digits8.shifted_tensors("rotation", 4)[0].numpy())
    assert not output_drift(reference, clean).drift
    shifted = output_drift(reference, torch.as_tensor(rotated))
    assert shifted.drift and shifted.details.loc[0, "live_mean_confidence"] < shifted.details.loc[0, "reference_mean_confidence"]


# ---- regression gate -------------------------------------------------------------------------------
PRODUCTION = {"accuracy": 0.95, "ece": 0.03, "robust_accuracy": 0.60, "latency_ms": 2.0}


@pytest.mark.parametrize("change, failures", [
    ({}, []),
    ({"accuracy": 0.97, "ece": 0.02, "robust_accuracy": 0.65, "latency_ms": 1.0}, []),   # better everywhere
    ({"accuracy": 0.97, "ece": 0.06}, ["ece"]),                # more accurate, worse calibrated
    ({"accuracy": 0.97, "robust_accuracy": 0.50}, ["robust_accuracy"]),   # more accurate, less robust
    ({"accuracy": 0.945}, []),                                 # worse by exactly the tolerance
    ({"accuracy": 0.94}, ["accuracy"]),
    ({"latency_ms": 2.3}, []),                                 # 15% slower, 20% allowed
    ({"latency_ms": 2.5}, ["latency_ms"]),                     # 25% slower
    ({"accuracy": 0.9, "ece": 0.1, "robust_accuracy": 0.1, "latency_ms": 9.0},
     ["accuracy", "ece", "robust_accuracy", "latency_ms"]),
])
def test_gate_verdicts_on_hand_built_tables(change, failures):
    result = regression_gate({**PRODUCTION, **change}, PRODUCTION)
    assert result.failures == failures and result.passed == (not failures) and bool(result) == result.passed
    assert list(result.table.index) == [r.metric for r in DEFAULT_RULES]
    assert result.verdict.startswith("PASS" if not failures else "BLOCK")
    table = result.table
    np.testing.assert_allclose(table["change"], table["candidate"] - table["production"])


def test_gate_accepts_report_rows_and_custom_rules():
    rules = [GateRule("nll", higher_is_better=False, tolerance=0.1, relative=True)]
    production, candidate = pd.Series({"nll": 0.20}), pd.Series({"nll": 0.23})
    assert regression_gate(candidate, production, rules).failures == ["nll"]
    assert regression_gate(pd.Series({"nll": 0.21}), production, rules).passed


# ---- registry --------------------------------------------------------------------------------------
def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_registry_promotes_rolls_back_and_reloads_exact_weights(tmp_path):
    registry = ModelRegistry(tmp_path)
    first, second = _net(0), _net(1)
    v1 = registry.register(first, {"accuracy": 0.9})
    v2 = registry.register(second, {"accuracy": 0.95}, note="candidate")
    assert (v1, v2) == ("v1", "v2") and registry.production is None
    registry.promote(v1)
    registry.promote(v2)
    assert registry.production == "v2"
    assert registry.rollback() == "v1" and registry.production == "v1"
    loaded = registry.load(_net(2))
    for a, b in zip(loaded.state_dict().values(), first.state_dict().values()):
        assert torch.equal(a, b)
    reopened = ModelRegistry(tmp_path)             # the manifest persists
    assert reopened.production == "v1" and reopened.versions == ["v1", "v2"]
    table = reopened.table()
    assert table.loc["v2", "accuracy"] == 0.95 and table.loc["v1", "production"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    import hashlib
    assert manifest["versions"]["v2"]["sha256"] == hashlib.sha256((tmp_path / "v2.pt").read_bytes()).hexdigest()


def test_registry_refuses_a_checkpoint_changed_after_registration(tmp_path):
    registry = ModelRegistry(tmp_path)
    version = registry.register(_net(0))
    torch.save(_net(1).state_dict(), tmp_path / "v1.pt")
    with pytest.raises(ValueError, match="does not match the manifest"):
        registry.load(_net(0), version)
    with pytest.raises(ValueError, match="does not match the manifest"):
        registry.promote(version)


# ---- bad input -------------------------------------------------------------------------------------
X = np.zeros((10, 3))


@pytest.mark.parametrize("call, error, match", [
    (lambda: input_drift(X, np.zeros((10, 4))), ValueError, "same number of features"),
    (lambda: input_drift(X, np.zeros((0, 3))), ValueError, "live is an empty window"),
    (lambda: input_drift(np.zeros((0, 3)), X), ValueError, "reference is an empty window"),
    (lambda: input_drift(X, X, alpha=0), ValueError, "alpha"),
    (lambda: input_drift(X, X, alpha=1.5), ValueError, "alpha"),
    (lambda: input_drift(X, X, method="t"), ValueError, "method"),
    (lambda: input_drift(X, X, psi_threshold=0), ValueError, "psi_threshold"),
    (lambda: input_drift(X, [[1.0]]), TypeError, "live must be"),
    (lambda: input_drift(X, np.full((2, 3), np.nan)), ValueError, "NaN"),
    (lambda: psi(X, X, n_bins=1), ValueError, "n_bins"),
    (lambda: output_drift(np.full((5, 2), 0.7), np.full((5, 2), 0.5)), ValueError, "sum to 1"),
    (lambda: output_drift(np.full(5, 1.5), np.full(5, 0.5)), ValueError, r"\[0, 1\]"),
    (lambda: output_drift(np.full(5, 0.5), np.full(5, 0.5), statistic="t"), ValueError, "statistic"),
    (lambda: output_drift(np.full(5, 0.5), np.full(5, 0.5), n_permutations=10), ValueError, "n_permutations"),
    (lambda: output_drift(np.full(5, 0.5), np.zeros(0)), ValueError, "empty window"),
    (lambda: GateRule("accuracy", True, tolerance=-0.1), ValueError, "tolerance"),
    (lambda: GateRule("", True), TypeError, "metric"),
    (lambda: regression_gate({"accuracy": 0.9}, PRODUCTION), ValueError, "candidate has no metric 'ece'"),
    (lambda: regression_gate({**PRODUCTION, "ece": float("nan")}, PRODUCTION), ValueError, "finite"),
    (lambda: regression_gate([0.9], PRODUCTION), TypeError, "candidate must be a mapping"),
    (lambda: regression_gate(PRODUCTION, PRODUCTION, rules=[DEFAULT_RULES[0]] * 2), ValueError, "twice"),
    (lambda: regression_gate(PRODUCTION, PRODUCTION, rules=[]), TypeError, "rules"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_registry_bad_input(tmp_path):
    registry = ModelRegistry(tmp_path)
    with pytest.raises(TypeError, match="model"):
        registry.register("net")
    with pytest.raises(ValueError, match="metrics"):
        registry.register(_net(0), {"accuracy": float("nan")})
    with pytest.raises(ValueError, match="no version in production"):
        registry.load(_net(0))
    registry.promote(registry.register(_net(0)))
    with pytest.raises(ValueError, match="nothing to roll back"):
        registry.rollback()
    with pytest.raises(ValueError, match="version must be one of"):
        registry.promote("v9")
    with pytest.raises(TypeError, match="root"):
        ModelRegistry(3)
