"""Canary routing, the canary's live gate, live drift and its false-alarm rate (no server needed)."""

import math

import numpy as np
import pytest

from toolkit.deploy import CanaryMonitor, LiveDrift, clopper_pearson, false_alarm_rate, in_canary
from toolkit.monitoring import input_drift


def _softmax(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_canary_share_matches_the_requested_fraction_and_is_deterministic():
    ids = [f"request-{i}" for i in range(20000)]
    share = np.mean([in_canary(rid, 0.1) for rid in ids])
    assert abs(share - 0.1) <= 4 * math.sqrt(0.1 * 0.9 / len(ids))  # 4 binomial standard errors
    assert [in_canary(rid, 0.1) for rid in ids[:100]] == [in_canary(rid, 0.1) for rid in ids[:100]]
    assert not any(in_canary(rid, 0.0) for rid in ids[:100]) and all(in_canary(rid, 1.0) for rid in ids[:100])


@pytest.mark.parametrize("share", [-0.1, 1.5, True])
def test_in_canary_rejects_a_share_outside_0_1(share):
    with pytest.raises(ValueError, match="share"):
        in_canary("x", share)


def test_canary_gate_passes_an_identical_candidate_and_blocks_a_disagreeing_one():
    rng = np.random.default_rng(0)
    prod = _softmax(rng.normal(size=(200, 3)))
    assert CanaryMonitor(window=200, check_every=50).update(prod, prod).passed
    flipped = prod[:, ::-1]  # argmax changes on most rows
    verdict = CanaryMonitor(window=200, check_every=50).update(flipped, prod)
    assert verdict.failures == ["agreement"]


def test_canary_gate_blocks_a_worse_calibrated_candidate_when_labels_arrive():
    rng = np.random.default_rng(0)
    logits = 2 * rng.normal(size=(400, 4))
    prod = _softmax(logits)
    targets = np.array([rng.choice(4, p=p) for p in prod])  # production is calibrated by construction
    overconfident = _softmax(4 * logits)                    # same argmax, far too sure
    monitor = CanaryMonitor(window=400, check_every=400)
    verdict = monitor.update(overconfident, prod, targets)
    assert verdict.failures == ["ece"]
    candidate, production = monitor.metrics()
    assert candidate["agreement"] == 1.0 and candidate["accuracy"] == production["accuracy"]


def test_canary_gate_waits_for_a_full_window():
    prod = np.full((50, 2), 0.5)
    assert CanaryMonitor(window=200, check_every=10).update(prod, prod) is None


def test_clopper_pearson_matches_the_closed_form_at_zero_successes():
    low, high = clopper_pearson(0, 20)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 20), rel=1e-9)


@pytest.mark.slow
def test_false_alarm_rate_on_clean_traffic_is_consistent_with_alpha_and_shift_always_fires():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(4, 3))
    ref = rng.normal(size=(1000, 4))
    clean = rng.normal(size=(40 * 100, 4))
    table = false_alarm_rate(ref, _softmax(ref @ weights), clean, _softmax(clean @ weights), window=100,
                             alpha=0.05, n_permutations=199)
    assert (table["windows"] == 40).all()
    assert (table["ci_low"] <= 0.05).all(), table  # the nominal rate is not exceeded detectably
    from scipy.stats import binomtest

    for name, row in table.iterrows():
        assert row["p_above_alpha"] == pytest.approx(binomtest(int(row["alarms"]), 40, 0.05,
                                                               alternative="greater").pvalue)
    shifted = clean + 1.0
    shifted_table = false_alarm_rate(ref, _softmax(ref @ weights), shifted[:1000], _softmax(shifted[:1000] @ weights),
                                     window=100, alpha=0.05, n_permutations=199)
    assert shifted_table.loc["input_ks", "rate"] == 1.0


def test_live_drift_tests_only_when_a_window_is_full_and_due():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 2))
    live = LiveDrift(ref, np.full((300, 2), 0.5), window=100, every=50, n_permutations=99)
    live.update(rng.normal(size=(99, 2)), np.full((99, 2), 0.5))
    assert live.test() is None
    live.update(rng.normal(3.0, size=(1, 2)) + np.zeros((1, 2)), np.full((1, 2), 0.5))
    assert live.test() is not None and live.test() is None  # tested, then not due until 50 more
    assert live.seen == live.tested_at == 100
    live.update(rng.normal(3.0, size=(100, 2)), np.full((100, 2), 0.5))
    assert live.test()["input_ks"].drift


def test_live_drift_windows_end_at_multiples_of_every_however_the_traffic_is_chunked():
    rng = np.random.default_rng(1)
    ref, stream = rng.normal(size=(300, 3)), rng.normal(0.3, size=(400, 3))
    probs = _softmax(stream)
    results = []
    for chunks in ([400], [7, 93, 1, 299], [3] * 133 + [1]):
        live = LiveDrift(ref, _softmax(ref), window=100, every=50, n_permutations=99)
        at, start = [], 0
        for size in chunks:  # tests run between requests at arbitrary moments: here after every chunk
            live.update(stream[start:start + size], probs[start:start + size])
            start += size
            result = live.test()
            if result is not None:
                at.append((live.tested_at, result["input_ks"].p_value, result["output_confidence"].p_value))
        results.append(at)
    assert all(t % 50 == 0 for t, *_ in results[2]) and results[2][-1][0] == 400
    final = {tuple(r[-1]) for r in results}  # the last window, ending at input 400, tested identically
    assert len(final) == 1
    expected = input_drift(ref, stream[300:400])
    assert results[0][-1][1] == pytest.approx(expected.p_value)
