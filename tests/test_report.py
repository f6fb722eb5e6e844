"""Report card: every column against a plain computation, seeds, rendering, missing topics, bad input."""

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data import DigitsDataModule
from toolkit import report
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


# ---- latency side by side, ties, any DataModule --------------------------------------------------
class _Clock:
    """A fake ``time.perf_counter``: each model call advances it by its cost times the machine's slowness."""

    def __init__(self, slope=0.0, noise=0.0, seed=0):
        self.now, self.calls, self.slope, self.noise = 0.0, 0, slope, noise
        self.rng = np.random.default_rng(seed)

    def perf_counter(self):
        return self.now

    def tick(self, cost):
        self.now += cost * (1 + self.slope * self.calls) * (1 + self.noise * self.rng.random())
        self.calls += 1


class _Timed(nn.Module):
    """A linear model whose every call costs ``cost`` units on the fake clock."""

    def __init__(self, linear, clock, cost=1.0):
        super().__init__()
        self.linear, self.clock, self.cost = linear, clock, cost

    def forward(self, x):
        self.clock.tick(self.cost)
        return self.linear(x)


@pytest.fixture
def clock(monkeypatch):
    from types import SimpleNamespace

    from toolkit.cost import profile

    fake = _Clock()
    monkeypatch.setattr(profile, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def test_identical_models_get_the_same_latency_while_the_machine_slows_down(dm, clock):
    # the machine slows down steadily (load arriving): a model timed after the other would look slower
    clock.slope = 0.01
    linear = _trained(dm)
    frame = report_card({"a": _Timed(linear, clock), "b": _Timed(linear, clock)}, dm, **FAST)
    a, b = frame.set_index("model")["latency_ms"]
    assert b / a == pytest.approx(1.0, abs=0.05)


def test_gate_rules_widen_the_latency_tolerance_by_the_timing_spread_and_still_block_a_slower_model(dm, clock):
    from toolkit.monitoring import GateRule, regression_gate

    clock.noise = 1.0
    linear = _trained(dm)
    frame = report_card({"production": _Timed(linear, clock), "same": _Timed(linear, clock),
                         "slower": _Timed(linear, clock, cost=3.0)}, dm, **FAST).set_index("model")
    base = GateRule("latency_ms", higher_is_better=False, tolerance=0.2, relative=True)
    (rule,) = report.gate_rules(frame.reset_index(), [base])
    spread = ((frame.latency_p75_ms - frame.latency_p25_ms) / frame.latency_ms).max()
    assert spread > 0.1 and rule.tolerance == pytest.approx(0.2 + spread)
    assert regression_gate(frame.loc["same"], frame.loc["production"], [rule]).passed
    assert not regression_gate(frame.loc["slower"], frame.loc["production"], [rule]).passed
    kept = report.gate_rules(frame.reset_index().drop(columns="latency_p25_ms"), [base, GateRule("ece", False, 0.01)])
    assert [r.metric for r in kept] == ["ece"]  # no spread measured: no latency rule to judge noise with


def test_no_star_on_a_tie_at_the_shown_precision():
    frame = pd.DataFrame({"model": ["a", "b"], "seed": [0, 0], "accuracy": [0.9, 0.95], "parameters": [650.0, 650.0],
                          "latency_ms": [0.0312, 0.0308], "ece": [0.05, 0.05]})
    rows = {line.split("|")[1].strip(): line.split("|")[3:5] for line in card_markdown(frame).splitlines()
            if line.startswith("| ") and "notebook" not in line}
    assert rows["test accuracy ↑"][1].strip().endswith("★") and "★" not in rows["test accuracy ↑"][0]
    for metric in ("parameters ↓", "latency per batch (ms) ↓", "test ECE ↓"):
        assert "★" not in "".join(rows[metric]), (metric, rows[metric])
    # latency: a gap at the shown precision within the spread of single calls gets no star; beyond it, one
    timed = frame.assign(latency_ms=[0.43, 0.42], latency_p25_ms=[0.40, 0.39], latency_p75_ms=[0.46, 0.45])
    line = next(row for row in card_markdown(timed).splitlines() if row.startswith("| latency"))
    assert "★" not in line
    timed = timed.assign(latency_ms=[0.43, 0.21], latency_p25_ms=[0.40, 0.20], latency_p75_ms=[0.46, 0.22])
    line = next(row for row in card_markdown(timed).splitlines() if row.startswith("| latency"))
    assert line.split("|")[4].strip().endswith("★")


def _plain_accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_report_card_takes_mnist1d_its_shift_and_held_out_classes():
    from toolkit.data import MNIST1DDataModule

    dm1d = MNIST1DDataModule(num_samples=1000, flatten=True, ood_classes=(9,))
    dm1d.setup()
    torch.manual_seed(0)
    model = nn.Linear(40, dm1d.num_classes)
    frame = report_card({"lr": model}, dm1d, corruptions=["translation"], adversarial_samples=20, pgd_steps=2,
                        latency_batch=8, latency_repeats=3)
    row = frame.iloc[0]
    assert row["accuracy"] == pytest.approx(_plain_accuracy(model, *dm1d.tensors("test")))
    assert row["shift_accuracy"] == pytest.approx(_plain_accuracy(model, *dm1d.shifted_tensors("translation", 3)))
    assert 0 <= row["ood_auroc"] <= 1 and "ece_ts" in row and "robust_accuracy" in row
    with pytest.raises(ValueError, match="corruptions"):
        evaluate_model(model, dm1d, corruptions=["contrast"])  # a Digits-C corruption is not an MNIST-1D-C one


@pytest.mark.parametrize("package", ["pytorch_lightning", "lightning.pytorch"])
def test_report_card_takes_any_lightning_datamodule_with_dict_batches(dm, package):
    pl = pytest.importorskip(package)
    x_test, y_test = dm.tensors("test")
    x_val, y_val = dm.tensors("val")

    class Dicts(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"inputs": self.x[i], "label": self.y[i]}

    class PlainDataModule(pl.LightningDataModule):
        def setup(self, stage):
            self.test, self.val = Dicts(x_test, y_test), Dicts(x_val, y_val)

        def test_dataloader(self):
            return torch.utils.data.DataLoader(self.test, batch_size=50)

        def val_dataloader(self):
            return torch.utils.data.DataLoader(self.val, batch_size=50)

    model = _trained(dm)
    row = report_card({"lr": model}, PlainDataModule(), **{**FAST, "corruptions": None}).iloc[0]
    expected = evaluate_model(model, (x_test, y_test), **{**FAST, "corruptions": None})
    assert row["accuracy"] == pytest.approx(_plain_accuracy(model, x_test, y_test))
    assert row["ece"] == pytest.approx(expected["ece"]) and "ece_ts" in row and "shift_accuracy" not in row


def test_report_card_takes_a_dataloader_and_shifted_loaders(dm):
    x, y = dm.tensors("test")
    xs, ys = dm.shifted_tensors("contrast", 3)
    model = _trained(dm)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    shift = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=64)
    row = report_card({"lr": model}, loader, shift=shift, **{**FAST, "corruptions": None}).iloc[0]
    assert row["accuracy"] == pytest.approx(_plain_accuracy(model, x, y))
    assert row["shift_accuracy"] == pytest.approx(_plain_accuracy(model, xs, ys))
    assert "ece_ts" not in row  # no validation split in a bare loader
    with pytest.raises(TypeError, match="datamodule"):
        report_card({"lr": model}, 3.0)
