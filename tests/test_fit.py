"""fit and run_seeds: reproducible, resumable, and usable with any LightningModule."""

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from torch import nn

from toolkit.data import DigitsDataModule, MoonsDataModule
from toolkit.models import MLP
from toolkit.training import ClassifierModule, fit, read_history, run_seeds, summarize


def _digits_mlp(dropout=0.0):
    return ClassifierModule(MLP(64, 10, hidden_sizes=(64,), dropout=dropout), num_classes=10, lr=3e-3)


@pytest.fixture(scope="module")
def digits():
    return DigitsDataModule(flatten=True)


def test_fit_learns_the_digits(digits):
    result = fit(_digits_mlp, digits, max_epochs=5)
    assert result.metrics["test_acc"] > 0.9
    assert list(result.history["epoch"]) == list(range(5))
    assert result.history["train_loss"].iloc[-1] < result.history["train_loss"].iloc[0]
    assert (result.run_dir / "metrics.csv").exists()


def test_same_seed_gives_identical_numbers_and_other_seeds_differ(digits):
    a, b, c = (fit(lambda: _digits_mlp(dropout=0.2), digits, max_epochs=2, seed=s) for s in (1, 1, 2))
    assert a.metrics == b.metrics
    for (name, pa), pb in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert a.metrics["test_nll"] != c.metrics["test_nll"]


def test_resumed_run_matches_an_uninterrupted_one(digits):
    """Stop after 2 epochs, resume from the last checkpoint to 4: the same weights as 4 straight."""
    straight = fit(_digits_mlp, digits, max_epochs=4, seed=3, test=False)
    first = fit(_digits_mlp, digits, max_epochs=2, seed=3, test=False, name="resume")
    checkpoint = next((first.run_dir / "checkpoints").glob("*.ckpt"))
    resumed = fit(_digits_mlp, digits, max_epochs=4, seed=3, test=False, name="resume", ckpt_path=str(checkpoint))
    for name, value in straight.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[name], value), name  # bitwise, as on one machine


def test_fit_accepts_any_lightning_module_and_lightning_callbacks():
    class Minimal(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    stopper = EarlyStopping("val_loss", patience=0, min_delta=10.0)  # stops after the first check
    result = fit(Minimal, MoonsDataModule(n_samples=200), max_epochs=5, callbacks=[stopper], test=False)
    assert result.trainer.current_epoch < 5 and "val_loss" in result.metrics


def test_run_seeds_gives_one_row_per_seed_and_summarize_agrees(digits):
    frame = run_seeds(_digits_mlp, digits, seeds=(0, 1, 2), max_epochs=1, config={"model": "mlp"})
    assert list(frame["seed"]) == [0, 1, 2] and set(frame["model"]) == {"mlp"}
    assert frame["test_acc"].nunique() > 1, "seeds must change the outcome"
    table = summarize(frame, ["test_acc", "test_ece"])
    assert table.loc["test_acc", "mean"] == pytest.approx(frame["test_acc"].mean())
    assert table.loc["test_acc", "std"] == pytest.approx(frame["test_acc"].std())
    grouped = summarize(pd.concat([frame, frame.assign(model="copy")]), ["test_acc"], by="model")
    assert grouped.shape == (2, 3)


def test_run_seeds_can_return_the_fitted_modules(digits):
    frame, results = run_seeds(_digits_mlp, digits, seeds=(0, 1), max_epochs=1, return_results=True)
    assert [r.seed for r in results] == [0, 1]
    assert results[0].metrics["test_acc"] == frame.loc[0, "test_acc"]


@pytest.mark.parametrize("call, error, match", [
    (lambda d: fit(_digits_mlp, d, max_epochs=0), ValueError, "max_epochs"),
    (lambda d: fit(_digits_mlp, d, seed=-1), ValueError, "seed"),
    (lambda d: fit(_digits_mlp, d, callbacks=[object()]), TypeError, r"callbacks\[0\]"),
    (lambda d: fit(lambda: nn.Linear(2, 2), d), TypeError, "model must be a LightningModule"),
    (lambda d: fit(_digits_mlp, "digits"), TypeError, "data must be a LightningDataModule"),
    (lambda d: run_seeds(_digits_mlp(), d), TypeError, "factory"),
    (lambda d: run_seeds(_digits_mlp, d, seeds=(1, 1)), ValueError, "seeds"),
    (lambda d: summarize(pd.DataFrame({"a": [1]}), ["b"]), ValueError, "columns"),
])
def test_bad_arguments_raise_clear_errors(digits, call, error, match):
    with pytest.raises(error, match=match):
        call(digits)


def test_checkpoint_reloads_with_weights_only_and_predicts_the_same(digits):
    """Checkpoints hold tensors and plain hyperparameters only, so the safe loader reads them."""
    result = fit(_digits_mlp, digits, max_epochs=1, test=False)
    path = next((result.run_dir / "checkpoints").glob("*.ckpt"))
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["lr"] == 3e-3
    restored = ClassifierModule.load_from_checkpoint(path, backbone=MLP(64, 10, hidden_sizes=(64,)), weights_only=True)
    x, _ = digits.tensors("test")
    result.module.eval(), restored.eval()
    torch.testing.assert_close(restored(x), result.module(x))


def test_read_history_merges_epochs_as_pandas_groupby_does(tmp_path):
    """The CSV reader behind ``history`` against the pandas recipe it replaces (read_csv, drop the
    rows without epoch or metrics, the last value of each column per epoch), on a log with replayed
    rows (a resumed run), test rows, a column never logged and an epoch logged in two rows."""
    (tmp_path / "metrics.csv").write_text(
        "epoch,step,test_acc,train_loss,val_acc,never\n"
        "0,9,,,0.5,\n0,9,,1.25,,\n1,19,,,0.625,\n1,19,,0.75,,\n"   # two epochs
        "1,14,,,0.5,\n1,19,,0.7,,\n,20,,,,\n"                        # epoch 1 replayed after a resume
        "2,29,,0.5,0.75,\n2,29,0.8,,,\n")                            # the test row is left out
    frame = pd.read_csv(tmp_path / "metrics.csv").drop(columns=["test_acc"])
    frame = frame.dropna(subset=["epoch"]).dropna(subset=["train_loss", "val_acc", "never"], how="all")
    expected = frame.groupby("epoch", as_index=False).last().dropna(axis=1, how="all")
    expected["epoch"] = expected["epoch"].astype(int)
    history = read_history(tmp_path)
    pd.testing.assert_frame_equal(history, expected)
    assert list(history["train_loss"]) == [1.25, 0.7, 0.5] and list(history["val_acc"]) == [0.5, 0.5, 0.75]


def test_fit_skips_the_sanity_check_unless_asked_and_keeps_lightnings_callbacks(digits):
    from toolkit.training.fit import _trainer_setup

    default = fit(_digits_mlp, digits, max_epochs=1, test=False)
    checked = fit(_digits_mlp, digits, max_epochs=1, test=False, num_sanity_val_steps=2)
    assert default.trainer.num_sanity_val_steps == 0 and checked.trainer.num_sanity_val_steps == 2
    assert default.metrics == checked.metrics  # the check trains nothing
    import lightning_fabric.utilities.registry as registry

    before = registry.entry_points
    with _trainer_setup():
        inside = pl.Trainer(logger=False)
    assert registry.entry_points is before  # the cached lookup is undone on leaving
    assert [type(c) for c in inside.callbacks] == [type(c) for c in pl.Trainer(logger=False).callbacks]


class _ExtraTestMetric(ClassifierModule):
    def test_step(self, batch, batch_idx):
        self.log("test_extra", 1.0, on_epoch=True)
        return super().test_step(batch, batch_idx)


def test_evaluate_and_predict_logits_without_a_trainer_give_the_trainers_numbers():
    from toolkit.training import evaluate, predict_logits
    from toolkit.training.fit import _eval_trainer, quiet_lightning

    pl.seed_everything(0, verbose=False)
    module = ClassifierModule(MLP(2, 2, hidden_sizes=(16,), dropout=0.5), num_classes=2)
    data = MoonsDataModule(n_samples=300, batch_size=32)
    data.setup()
    module.train()
    module.backbone.features[0].eval()  # a submodule in its own mode: kept as it was
    loader = data.test_dataloader()
    with quiet_lightning():  # the oracle: Lightning's own test and predict loops
        expected = _eval_trainer("cpu", module).test(module, loader, verbose=False)[0]
        expected_logits = torch.cat(_eval_trainer("cpu", module).predict(module, loader))
    module.train()
    module.backbone.features[0].eval()
    got = evaluate(module, loader, accelerator="cpu")
    assert set(got) == set(expected) == {"test_loss", "test_acc", "test_nll", "test_ece", "test_brier"}
    for name, value in expected.items():
        assert got[name] == pytest.approx(float(value), abs=1e-6), name
    torch.testing.assert_close(predict_logits(module, loader, accelerator="cpu"), expected_logits)  # no dropout
    assert module.training and not module.backbone.features[0].training and module.backbone.features[3].training
    assert evaluate(module, loader, accelerator="cpu") == got  # the metrics start empty each call
    # a module whose test hooks are its own runs in a Trainer, which logs what its test_step logs
    custom = _ExtraTestMetric(MLP(2, 2, hidden_sizes=(16,)), num_classes=2)
    assert evaluate(custom, loader, accelerator="cpu")["test_extra"] == 1.0


def test_a_new_run_claims_the_next_free_version_folder(tmp_path):
    from toolkit.training.fit import _claim_version

    root = tmp_path / "runs" / "study"
    assert _claim_version(root) == 0 and (root / "version_0").is_dir()
    (root / "version_3").mkdir()
    (root / "version_x").mkdir()  # not a version: ignored
    assert _claim_version(root) == 4 and _claim_version(root) == 5


def test_a_version_another_process_takes_first_is_skipped(tmp_path, monkeypatch):
    from pathlib import Path

    from toolkit.training.fit import _claim_version

    root, mkdir = tmp_path / "study", Path.mkdir

    def raced(self, *args, **kwargs):  # another process creates version_0 between the listing and our mkdir
        if self.name == "version_0" and not self.exists():
            mkdir(self)
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", raced)
    assert _claim_version(root) == 1 and sorted(d.name for d in root.iterdir()) == ["version_0", "version_1"]


def test_runs_that_see_the_same_listing_still_get_their_own_version(_runs_dir, monkeypatch, digits):
    """Two processes that list runs/same at the same moment: CSVLogger alone would give both version_0."""
    from lightning_fabric.loggers.csv_logs import CSVLogger

    monkeypatch.setattr(CSVLogger, "_get_next_version", lambda self: 0)  # the listing every racer saw
    runs = [fit(lambda: ClassifierModule(MLP(64, 10, hidden_sizes=(8,)), num_classes=10), digits, seed=seed,
                max_epochs=1, test=False, name="same") for seed in (0, 1)]
    assert [r.run_dir.name for r in runs] == ["version_0", "version_1"]
    assert all(len(r.history) == 1 and "val_acc" in r.history for r in runs)
