"""Uncertainty (MC dropout, ensembles, entropy/MI), OOD scores and metrics, selective prediction and
conformal sets, against plain loops, scipy and scikit-learn; plus the figures draw."""

import math
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from scipy.stats import entropy as scipy_entropy
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from torch import nn

from toolkit.calibration import (OOD_SCORES, SplitConformal, aurc, coverage_lower_bound, ensemble_predict,
                                 excess_aurc, expected_entropy, mc_dropout_predict, mutual_information,
                                 ood_evaluate, ood_metrics, ood_score, predictive_entropy, risk_coverage_curve,
                                 set_coverage, set_sizes)
from toolkit.data import TensorBatchLoader

matplotlib.use("Agg")


def _net(dropout=0.5, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


# ---- MC dropout and ensembles --------------------------------------------------------------------
def test_mc_dropout_equals_a_plain_loop_with_only_dropout_in_train_mode():
    net, x = _net(), torch.randn(20, 4)
    net.train()
    samples = mc_dropout_predict(net, x, n_samples=5, seed=3)
    assert net.training and all(m.training for m in net.modules()), "modes are restored"
    net.eval()
    net[3].train()
    torch.manual_seed(3)
    with torch.no_grad():
        expected = torch.stack([net(x).softmax(1) for _ in range(5)])
    torch.testing.assert_close(samples, expected)
    assert not torch.allclose(samples[0], samples[1]), "passes differ"
    running_mean = net[1].running_mean.clone()
    mc_dropout_predict(net, TensorBatchLoader(x, torch.zeros(20, dtype=torch.long), batch_size=7), n_samples=2)
    torch.testing.assert_close(net[1].running_mean, running_mean, msg="batch norm stays in eval mode")


def test_mc_dropout_is_seeded_and_accepts_loaders():
    net, x = _net(), torch.randn(10, 4)
    loader = TensorBatchLoader(x, torch.zeros(10, dtype=torch.long), batch_size=3)
    torch.testing.assert_close(mc_dropout_predict(net, x, 4, seed=1), mc_dropout_predict(net, x, 4, seed=1))
    assert mc_dropout_predict(net, loader, 4, seed=1).shape == (4, 10, 3)


def test_mc_dropout_without_dropout_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="no dropout layer"):
        mc_dropout_predict(nn.Linear(4, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="n_samples"):
        mc_dropout_predict(_net(), torch.randn(2, 4), n_samples=0)
    with pytest.raises(TypeError, match="data must be"):
        mc_dropout_predict(_net(), 3.0)


def test_ensemble_predict_stacks_each_member_in_eval_mode_and_accepts_fit_results():
    members = [_net(seed=s) for s in range(3)]
    x = torch.randn(8, 4)
    out = ensemble_predict([SimpleNamespace(module=m) for m in members], x)
    with torch.no_grad():
        expected = torch.stack([m.eval()(x).softmax(1) for m in members])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="models is empty"):
        ensemble_predict([], x)
    with pytest.raises(TypeError, match=r"models\[0\]"):
        ensemble_predict(["not a model"], x)


# ---- entropy and mutual information --------------------------------------------------------------
def test_entropies_match_scipy_and_decompose():
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(6, 50, 4, generator=g, dtype=torch.float64).mul(2).softmax(-1)
    mean = samples.mean(0).numpy()
    total = scipy_entropy(mean, axis=1)
    aleatoric = np.mean([scipy_entropy(s, axis=1) for s in samples.numpy()], axis=0)
    np.testing.assert_allclose(predictive_entropy(samples).numpy(), total, rtol=1e-10)
    np.testing.assert_allclose(expected_entropy(samples).numpy(), aleatoric, rtol=1e-10)
    np.testing.assert_allclose(mutual_information(samples).numpy(), total - aleatoric, atol=1e-12)
    assert (mutual_information(samples) > 0).all()


def test_entropy_extremes_and_agreeing_samples():
    uniform = torch.full((3, 5), 0.2)
    one_hot = torch.eye(5)[:3]
    torch.testing.assert_close(predictive_entropy(uniform), torch.full((3,), math.log(5)))
    torch.testing.assert_close(predictive_entropy(one_hot), torch.zeros(3))
    agreeing = torch.tensor([[0.7, 0.2, 0.1]]).expand(4, 2, 3).contiguous()
    torch.testing.assert_close(mutual_information(agreeing), torch.zeros(2), atol=1e-7, rtol=0)


@pytest.mark.parametrize("function", [mutual_information, expected_entropy])
def test_sample_based_measures_need_three_dims_and_probabilities(function):
    with pytest.raises(ValueError, match=r"\(S, N, C\)"):
        function(torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="not logits"):
        function(torch.randn(2, 3, 4) * 5)


# ---- OOD scores and metrics ----------------------------------------------------------------------
def test_ood_scores_have_their_closed_forms():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 0.4]], dtype=torch.float64)
    probs = logits.softmax(1)
    torch.testing.assert_close(ood_score(logits, "msp"), probs.max(1).values)
    torch.testing.assert_close(ood_score(logits, "max_logit"), torch.tensor([2.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(ood_score(logits, "energy"), torch.log(torch.exp(logits).sum(1)))
    torch.testing.assert_close(ood_score(logits, "entropy"),
                               torch.from_numpy(-scipy_entropy(probs.numpy(), axis=1)))


@pytest.mark.parametrize("scale", [1.0, 60.0])  # 60: logits far beyond where a sigmoid saturates
def test_ood_metrics_equal_sklearn(scale):
    g = torch.Generator().manual_seed(int(scale))
    scores_in = scale * (torch.randn(300, generator=g) + 1.0)
    scores_out = scale * torch.randn(200, generator=g)
    scores = torch.cat([scores_in, scores_out]).numpy()
    is_in = np.r_[np.ones(300), np.zeros(200)]
    fpr, tpr, _ = roc_curve(is_in, scores)
    ours = ood_metrics(scores_in, scores_out)
    assert ours["auroc"] == pytest.approx(roc_auc_score(is_in, scores), abs=1e-6)
    assert ours["aupr_in"] == pytest.approx(average_precision_score(is_in, scores), abs=1e-6)
    assert ours["aupr_out"] == pytest.approx(average_precision_score(1 - is_in, -scores), abs=1e-6)
    assert ours["fpr_at_95_tpr"] == pytest.approx(fpr[tpr >= 0.95].min(), abs=1e-6)


def test_ood_evaluate_gives_one_row_per_score_and_rejects_bad_input():
    g = torch.Generator().manual_seed(0)
    sharp, flat = 5 * torch.randn(100, 4, generator=g), 0.5 * torch.randn(80, 4, generator=g)
    table = ood_evaluate(sharp, flat)
    assert list(table.index) == list(OOD_SCORES) and (table["auroc"] > 0.8).all()
    with pytest.raises(ValueError, match="method"):
        ood_score(sharp, "mahalanobis")
    with pytest.raises(ValueError, match="logits_out"):
        ood_evaluate(sharp, flat.softmax(1))
    with pytest.raises(ValueError, match="scores_out is empty"):
        ood_metrics(torch.rand(3), torch.empty(0))


# ---- selective prediction ------------------------------------------------------------------------
def test_risk_coverage_equals_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    conf, correct = torch.rand(60, generator=g), torch.rand(60, generator=g) < 0.7
    coverage, risk = risk_coverage_curve(conf, correct)
    order = sorted(range(60), key=lambda i: -conf[i].item())
    for k in range(1, 61):
        kept = [correct[i].item() for i in order[:k]]
        assert risk[k - 1].item() == pytest.approx(1 - sum(kept) / k)
        assert coverage[k - 1].item() == pytest.approx(k / 60)
    assert aurc(conf, correct) == pytest.approx(risk.mean().item())


def test_excess_aurc_is_zero_for_a_perfect_ranking_and_positive_otherwise():
    correct = torch.tensor([True, True, False, True, False])
    assert excess_aurc(correct.float() + 0.1, correct) == pytest.approx(0.0)
    assert excess_aurc(1.0 - correct.float(), correct) > 0
    with pytest.raises(ValueError, match="correct must have shape"):
        aurc(torch.rand(3), torch.tensor([True]))
    with pytest.raises(ValueError, match="empty"):
        aurc(torch.empty(0), torch.empty(0, dtype=torch.bool))


# ---- conformal prediction ------------------------------------------------------------------------
def _exchangeable(n, c=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = (2.5 * torch.randn(n, c, generator=g, dtype=torch.float64)).softmax(1)
    return probs, torch.multinomial(probs, 1, generator=g).squeeze(1)


@pytest.mark.parametrize("method", ["lac", "aps", "raps"])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_split_conformal_coverage_is_at_least_one_minus_alpha_within_finite_sample_tolerance(method, alpha):
    probs, targets = _exchangeable(6000, seed=int(alpha * 100))
    conformal = SplitConformal(alpha=alpha, method=method).fit(probs[:2000], targets[:2000])
    coverage = set_coverage(conformal.predict(probs[2000:]), targets[2000:])
    assert coverage >= coverage_lower_bound(alpha, 2000, 4000, delta=1e-3)
    # and not trivially: the upper side of the same beta-binomial holds too (continuous scores)
    assert coverage <= 1 - alpha + 1 / 2001 + 3 * math.sqrt(alpha * (1 - alpha) * (1 / 4000 + 1 / 2000))


def test_lac_threshold_is_the_corrected_empirical_quantile():
    probs, targets = _exchangeable(99, seed=1)
    conformal = SplitConformal(alpha=0.1, method="lac").fit(probs, targets)
    scores = np.sort(1 - probs[torch.arange(99), targets].numpy())
    assert conformal.qhat == pytest.approx(scores[math.ceil(100 * 0.9) - 1])  # the 90th smallest of 99
    sets = conformal.predict(probs)
    torch.testing.assert_close(sets, (1 - probs) <= conformal.qhat)


def test_aps_sets_are_nested_prefixes_and_raps_penalty_shrinks_them():
    probs, targets = _exchangeable(3000, seed=2)
    aps = SplitConformal(0.1, "aps", randomized=False).fit(probs[:1000], targets[:1000])
    sets = aps.predict(probs[1000:])
    ranked = sets.gather(1, probs[1000:].argsort(1, descending=True))
    assert (ranked[:, 1:] <= ranked[:, :-1]).all(), "each set is the top-k labels for some k"
    raps = SplitConformal(0.1, "raps", lam=0.5, k_reg=1).fit(probs[:1000], targets[:1000])
    assert set_sizes(raps.predict(probs[1000:])).float().mean() <= set_sizes(sets).float().mean()


def _one_hard_class(n, c=5, seed=0):
    """Probabilities whose true label is likely except for class 0, where the model is often wrong."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g, dtype=torch.float64)
    sharp = torch.where(targets == 0, 0.3, 3.0)  # class 0: the true logit barely stands out
    logits[torch.arange(n), targets] += sharp
    return logits.softmax(1), targets


def test_class_conditional_thresholds_are_each_class_corrected_quantile():
    probs, targets = _one_hard_class(500, seed=1)
    mondrian = SplitConformal(alpha=0.1, method="lac", class_conditional=True).fit(probs, targets)
    for c in range(5):  # plain NumPy: the ceil((n_c + 1)(1 - alpha))-th smallest LAC score of class c
        scores = np.sort(1 - probs[targets == c, c].numpy())
        assert mondrian.qhat_per_class[c].item() == pytest.approx(scores[math.ceil((len(scores) + 1) * 0.9) - 1])
    sets = mondrian.predict(probs)
    torch.testing.assert_close(sets, (1 - probs) <= mondrian.qhat_per_class)
    assert mondrian.qhat == mondrian.qhat_per_class.max().item()
    rare = SplitConformal(alpha=0.1, class_conditional=True).fit(probs[:40], targets[:40].clamp(max=1) * 0)
    assert math.isinf(rare.qhat_per_class[1].item()), "a class with no calibration sample enters every set"


def test_class_conditional_coverage_holds_per_class_where_marginal_coverage_does_not():
    probs, targets = _one_hard_class(20000, seed=2)
    cal, test = slice(0, 10000), slice(10000, None)
    per_class = {}
    for mondrian in (False, True):
        sets = SplitConformal(alpha=0.1, class_conditional=mondrian).fit(probs[cal], targets[cal]).predict(probs[test])
        hits = sets.gather(1, targets[test, None]).squeeze(1).double()
        per_class[mondrian] = [hits[targets[test] == c].mean().item() for c in range(5)]
    n_c = int((targets[test] == 0).sum())
    slack = 3 * math.sqrt(0.1 * 0.9 / n_c) + 3 * math.sqrt(0.1 * 0.9 / (10000 / 5))
    assert per_class[False][0] < 0.9 - slack, "marginal LAC under-covers the hard class"
    assert min(per_class[True]) > 0.9 - slack, "Mondrian covers every class"


def test_coverage_lower_bound_matches_its_normal_approximation():
    alpha, n_cal, n_test = 0.1, 5000, 5000
    l = math.floor((n_cal + 1) * alpha)
    a, b = n_cal + 1 - l, l
    mean = a / (a + b)
    var_beta = a * b / ((a + b) ** 2 * (a + b + 1))
    sd = math.sqrt(var_beta + mean * (1 - mean) / n_test)
    assert coverage_lower_bound(alpha, n_cal, n_test, delta=0.05) == pytest.approx(mean + norm.ppf(0.05) * sd,
                                                                                  abs=2e-3)
    assert coverage_lower_bound(0.1, n_calibration=5, n_test=10) == 1.0  # too few points: all labels


def test_conformal_rejects_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        SplitConformal(alpha=1.0)
    with pytest.raises(ValueError, match="method"):
        SplitConformal(method="thr")
    with pytest.raises(RuntimeError, match="not calibrated"):
        SplitConformal().predict(torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="empty"):
        SplitConformal().fit(torch.empty(0, 3), torch.empty(0, dtype=torch.long))
    with pytest.raises(ValueError, match="sum to 1"):  # logits are softmaxed (as torchmetrics); scores are not
        SplitConformal().fit(torch.tensor([[0.3, 0.3]]), torch.tensor([0]))


# ---- figures -------------------------------------------------------------------------------------
def test_calibration_figures_draw():
    import matplotlib.pyplot as plt
    import pandas as pd

    from toolkit.calibration.plots import (plot_ece_vs_severity, plot_ood_scores, plot_reliability_diagram,
                                           plot_risk_coverage)

    probs, targets = _exchangeable(200, seed=3)
    top, bottom = plot_reliability_diagram(probs, targets, n_bins=10, title="toy")
    assert "ECE" in top.get_title() and len(bottom.patches) > 0
    counts = [int(t.get_text()) for t in bottom.texts]
    assert sum(counts) == 200 and len(counts) == int((torch.bincount((probs.max(1).values * 10).long().clamp(max=9),
                                                                      minlength=10) > 0).sum())
    frame = pd.DataFrame({"severity": [0, 1, 0, 1], "ece": [0.1, 0.2, 0.05, 0.1], "method": ["a", "a", "b", "b"]})
    assert len(plot_ece_vs_severity(frame).lines) >= 2
    with pytest.raises(ValueError, match="lacks columns"):
        plot_ece_vs_severity(frame, y="acc")
    plot_ood_scores(torch.rand(50), torch.rand(40), "msp")
    ax = plot_risk_coverage({"msp": (probs.max(1).values, probs.argmax(1) == targets)})
    assert "AURC" in ax.get_legend().get_texts()[0].get_text()
    plt.close("all")


def test_split_conformal_accepts_logits_and_bf16_probabilities_like_the_metrics():
    """bf16 softmax rows miss 1 by up to ~C * 2^-8 (``precision="bf16-mixed"`` on a CPU); fit, scores and
    predict must take them (computed in float32) and take logits through softmax, as torchmetrics does."""
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(600, 10, generator=g)
    targets = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    bf16 = logits.bfloat16().softmax(1)
    assert ((bf16.float().sum(1) - 1).abs() > 1e-3).any(), "the rows the fixed 1e-3 tolerance refused"
    renormalized = bf16.float() / bf16.float().sum(1, keepdim=True)
    for method in ("lac", "aps"):
        reference = SplitConformal(alpha=0.1, method=method).fit(renormalized[:300], targets[:300])
        from_bf16 = SplitConformal(alpha=0.1, method=method).fit(bf16[:300], targets[:300])
        assert from_bf16.qhat == pytest.approx(reference.qhat, abs=1e-6)
        assert torch.equal(from_bf16.predict(bf16[300:]), reference.predict(renormalized[300:]))
        torch.testing.assert_close(from_bf16.scores(bf16, targets), reference.scores(renormalized, targets))
        from_logits = SplitConformal(alpha=0.1, method=method).fit(logits[:300], targets[:300])
        exact = SplitConformal(alpha=0.1, method=method).fit(logits[:300].softmax(1), targets[:300])
        assert from_logits.qhat == exact.qhat
