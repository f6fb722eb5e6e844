"""Report card: every column against a plain computation, seeds, rendering, missing topics, bad input."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data import DigitsDataModule
from toolkit.report import card as card_module
from toolkit.report import missing_axes, card_html, card_markdown, evaluate_model, plot_dashboard, report_card, summarize_card

matplotlib.use("Agg")
FAST = {"corruptions": ["contrast", "rotation"], "adversarial_samples": 40, "pgd_steps": 3, "latency_batch": 8}


@pytest.fixture(scope="module")
def dm():
    module = DigitsDataModule(image_size=8, flatten=True, ood_classes=(8, 9))
    module.setup()
    return module


def _trained(dm, seed=0, scale=1.0, epochs=30):
    """A logistic regression fitted with a plain full-batch loop; ``scale`` sharpens its logits."""
    torch.manual_seed(seed)
    model = nn.Linear(64, dm.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = dm.tensors("train")
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        model.weight.mul_(scale)
        model.bias.mul_(scale)
    return model


def _numpy_ece(probs, targets, n_bins=15):
    conf, pred = probs.max(1), probs.argmax(1)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    return sum(abs((pred[bins == b] == targets[bins == b]).mean() - conf[bins == b].mean()) * (bins == b).mean()
               for b in range(n_bins) if (bins == b).any())


def test_evaluate_model_columns_match_plain_computations(dm):
    model = _trained(dm)
    row = evaluate_model(model, dm, **FAST)
    x, y = dm.tensors("test")
    with torch.no_grad():
        logits = model(x)
    assert row["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert row["nll"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert row["ece"] == pytest.approx(_numpy_ece(logits.softmax(1).numpy(), y.numpy()), abs=1e-5)
    shift = []
    for name in FAST["corruptions"]:
        xs, ys = dm.shifted_tensors(name, 3)
        with torch.no_grad():
            shift.append((model(xs).argmax(1) == ys).float().mean().item())
    assert row["shift_accuracy"] == pytest.approx(np.mean(shift))
    assert row["parameters"] == 64 * dm.num_classes + dm.num_classes
    assert 0.5 < row["ood_auroc"] <= 1 and 0 <= row["robust_accuracy"] <= 1
    if "toolkit.cost" not in missing_axes():
        assert row["latency_ms"] > 0 and row["size_kb"] > 0


def test_temperature_scaling_column_undoes_planted_overconfidence(dm):
    base, sharp = evaluate_model(_trained(dm), dm, **FAST), evaluate_model(_trained(dm, scale=5.0), dm, **FAST)
    assert sharp["temperature"] == pytest.approx(5 * base["temperature"], rel=1e-3)
    assert sharp["ece"] > base["ece"] and sharp["ece_ts"] == pytest.approx(base["ece_ts"], abs=1e-4)
    assert sharp["accuracy"] == base["accuracy"]                 # scaling never moves the argmax


def test_robust_accuracy_at_zero_budget_is_clean_accuracy_on_the_attacked_samples(dm):
    model = _trained(dm)
    row = evaluate_model(model, dm, **{**FAST, "adversarial_samples": 100}, epsilon=0.0)
    x, y = dm.tensors("test")
    with torch.no_grad():
        assert row["robust_accuracy"] == pytest.approx((model(x[:100]).argmax(1) == y[:100]).float().mean().item())
    assert evaluate_model(model, dm, **FAST, epsilon=0.3)["robust_accuracy"] < row["robust_accuracy"]


def test_report_card_rows_per_seed_and_summary(dm):
    models = {"lr": [_trained(dm, 0), _trained(dm, 1, epochs=10)], "sharp": _trained(dm, scale=4.0)}
    frame = report_card(models, dm, **FAST)
    assert list(frame.model) == ["lr", "lr", "sharp"] and list(frame.seed) == [0, 1, 0]
    summary = summarize_card(frame)
    expected = frame[frame.model == "lr"]["ece"]
    assert summary.loc["lr", ("ece", "mean")] == pytest.approx(expected.mean())
    assert summary.loc["lr", ("ece", "std")] == pytest.approx(expected.std())
    markdown = card_markdown(frame)
    assert "| lr (2 seeds) | sharp (1 seed) |" in markdown and "★" in markdown
    ece_line = next(line for line in markdown.splitlines() if line.startswith("| test ECE"))
    assert ece_line.split("|")[3].strip().endswith("★")       # the unsharpened model is better calibrated
    fig = plot_dashboard(frame)
    assert len([ax for ax in fig.axes if ax.axison]) == 8
    html = card_html(frame.assign(model=frame.model.replace("sharp", "<b>x</b>")))
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


def test_a_missing_topic_package_leaves_its_columns_out_with_a_note(dm, monkeypatch):
    real = card_module._optional
    monkeypatch.setattr(card_module, "_optional", lambda name: None if name == "toolkit.cost" else real(name))
    frame = report_card({"lr": _trained(dm)}, dm, **FAST)
    assert "latency_ms" not in frame and "size_kb" not in frame and "robust_accuracy" in frame
    assert "`toolkit.cost` is not available here: columns latency_ms, size_kb are left out." in card_markdown(frame)


def test_no_ood_column_without_held_out_classes():
    plain = DigitsDataModule(image_size=8, flatten=True)
    row = evaluate_model(nn.Linear(64, 10), plain, **FAST)
    assert "ood_auroc" not in row and "accuracy" in row


@pytest.mark.parametrize("call, error, match", [
    (lambda dm: evaluate_model("net", dm), TypeError, "model must be an nn.Module"),
    (lambda dm: evaluate_model(nn.Linear(64, 8), object()), TypeError, "datamodule"),
    (lambda dm: evaluate_model(nn.Linear(64, 8), dm, severity=6), ValueError, "severity"),
    (lambda dm: evaluate_model(nn.Linear(64, 8), dm, epsilon=-1), ValueError, "epsilon"),
    (lambda dm: evaluate_model(nn.Linear(64, 8), dm, adversarial_samples=0), ValueError, "adversarial_samples"),
    (lambda dm: evaluate_model(nn.Linear(64, 8), dm, corruptions=["fog"]), ValueError, "corruptions"),
    (lambda dm: report_card({}, dm), TypeError, "models"),
    (lambda dm: report_card({"a": []}, dm), ValueError, "empty"),
    (lambda dm: summarize_card(pd.DataFrame({"x": [1]})), ValueError, "model"),
    (lambda dm: card_markdown(pd.DataFrame({"x": [1]})), ValueError, "report_card"),
    (lambda dm: plot_dashboard(pd.DataFrame({"model": ["a"]})), ValueError, "metrics"),
])
def test_bad_input_raises_a_clear_error(dm, call, error, match):
    with pytest.raises(error, match=match):
        call(dm)
