"""train_members: vectorized members are the runs they stand for (oracle: a plain PyTorch loop, fit)."""

import math

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping
from torch import nn
from torch.func import functional_call, vmap
from torchmetrics.functional.classification import multiclass_calibration_error

from toolkit.data import DigitsDataModule
from toolkit.models import MLP
from toolkit.regularization import DropBlock2d, DropBlockSchedule
from toolkit.stats import compare
from toolkit.training import (ClassifierModule, evaluate, fit, member_generators, predict_logits, run_seeds,
                              train_members)
from toolkit.training.members import _member_brier, _MemberAdamW, _MemberDropout, _top_label_ece

pytestmark = pytest.mark.slow
QUIET = {"enable_progress_bar": False, "accelerator": "cpu"}


@pytest.fixture(scope="module")
def digits():
    return DigitsDataModule(flatten=True, batch_size=64)


def _factory(dropout=0.0, **settings):
    return lambda: ClassifierModule(MLP(64, 10, hidden_sizes=(32,), dropout=dropout), num_classes=10,
                                    **({"lr": 3e-3} | settings))


def _plain_loop(factory, data, member, epochs, settings):
    """One member trained alone: torch.optim and a hand-written loop, no Lightning, no vmap."""
    pl.seed_everything(member["seed"], verbose=False)
    module = factory()
    net = module.backbone
    lr = member.get("lr", module.hparams.lr)
    wd = member.get("weight_decay", module.hparams.weight_decay)
    groups = [{"params": [p for p in net.parameters() if p.dim() > 1], "weight_decay": wd},
              {"params": [p for p in net.parameters() if p.dim() <= 1], "weight_decay": 0.0}]
    if settings.get("optimizer", "adamw") == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=settings.get("momentum", 0.9))
    x, y = data.tensors("train")
    steps_per_epoch = math.ceil(len(x) / data.batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
                 if settings.get("schedule") == "cosine" else None)
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(member["seed"] + epoch))
        for start in range(0, len(x), data.batch_size):
            idx = order[start:start + data.batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx], label_smoothing=settings.get("label_smoothing", 0.0))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    return net


MEMBERS = [{"seed": 0}, {"seed": 1, "weight_decay": 0.3}, {"seed": 2, "lr": 1e-2}, {"seed": 0, "lr": 1e-3}]


@pytest.mark.parametrize("settings", [{"optimizer": "adamw", "weight_decay": 0.05},
                                      {"optimizer": "sgd", "lr": 0.05, "schedule": "cosine", "label_smoothing": 0.1}],
                         ids=["adamw-constant", "sgd-cosine-smoothing"])
def test_each_member_ends_where_a_plain_loop_trained_alone_ends(digits, settings):
    epochs = 3
    factory = _factory(**settings)
    frame, members = train_members(factory, digits, MEMBERS, max_epochs=epochs, return_members=True, **QUIET)
    assert len(frame) == len(MEMBERS)
    for k, member in enumerate(MEMBERS):
        alone = _plain_loop(factory, digits, member, epochs, settings)
        mine = members.member_backbone(k)
        for (name, expected), got in zip(alone.state_dict().items(), mine.state_dict().values()):
            torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4, msg=f"member {k}, {name}")
    # the per-member hyperparameters really differ: members 0 and 3 share their init, not their end
    first, last = members.member_backbone(0), members.member_backbone(3)
    assert not torch.allclose(first.classifier.weight, last.classifier.weight)


def test_a_member_reports_the_metrics_of_fit_with_its_seed(digits):
    frame = train_members(_factory(), digits, [{"seed": 5}, {"seed": 6}], max_epochs=2, **QUIET)
    alone = fit(_factory(), digits, seed=6, max_epochs=2, **QUIET)
    row = frame.iloc[1]
    for name in ("train_loss", "val_acc", "val_nll", "val_ece", "test_acc", "test_nll", "test_brier"):
        assert row[name] == pytest.approx(alone.metrics[name], abs=1e-4), name
    assert row["steps"] == alone.trainer.global_step and row["epochs"] == alone.trainer.current_epoch == 2


def test_the_frame_has_run_seeds_columns_and_feeds_toolkit_stats(digits):
    members = [{"seed": s, "weight_decay": wd} for wd in (0.0, 0.1) for s in range(3)]
    frame = train_members(_factory(), digits, members, max_epochs=1, config={"arm": "mlp"}, **QUIET)
    reference = run_seeds(_factory(), digits, seeds=[0], max_epochs=1, config={"arm": "mlp"}, **QUIET)
    assert set(reference.columns) <= set(frame.columns)
    assert list(frame["seed"]) == [0, 1, 2, 0, 1, 2] and list(frame["weight_decay"]) == [0.0] * 3 + [0.1] * 3
    assert (frame["arm"] == "mlp").all() and (frame["steps"] == math.ceil(len(digits.tensors("train")[0]) / 64)).all()
    table = compare(frame, by="weight_decay", baseline=0.0, metric="test_nll", higher_is_better=False)
    assert list(table.index) == [0.1] and table.loc[0.1, "n"] == 3


def test_same_members_give_identical_numbers(digits):
    members = [{"seed": 0, "dropout": 0.3}, {"seed": 1, "dropout": 0.3}]
    a, b = (train_members(_factory(dropout=0.5), digits, members, max_epochs=1, **QUIET) for _ in range(2))
    pd.testing.assert_frame_equal(a.drop(columns="fit_time_s"), b.drop(columns="fit_time_s"))


def test_member_dropout_draws_its_own_masks_at_its_own_rate():
    layer = _MemberDropout(0.0)
    rates = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.5])
    torch.manual_seed(0)
    x = torch.ones(20_000)
    out = vmap(lambda p, x: functional_call(layer, {"p": p}, (x,)), in_dims=(0, None), randomness="different")(rates, x)
    dropped = (out == 0).float().mean(dim=1)
    torch.testing.assert_close(dropped, rates, atol=4 * math.sqrt(0.25 / 20_000), rtol=0)  # 4 sd of a share
    kept = out[1][out[1] != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.75))  # inverted dropout: kept units scaled
    assert not torch.equal(out[2] == 0, out[4] == 0)  # the same rate, not the same mask
    layer.eval()
    assert torch.equal(layer(x), x)


def test_dropout_members_match_separate_runs_in_distribution(digits):
    seeds = list(range(6))
    factory = _factory(dropout=0.5)
    stacked = train_members(factory, digits, [{"seed": s} for s in seeds], max_epochs=3, **QUIET)
    separate = run_seeds(factory, digits, seeds=seeds, max_epochs=3, **QUIET)
    for name, tolerance in (("test_acc", 0.03), ("train_loss", 0.05)):
        spread = math.sqrt(separate[name].var() / len(seeds) + stacked[name].var() / len(seeds))
        gap = abs(stacked[name].mean() - separate[name].mean())
        assert gap < max(tolerance, 4 * spread), (name, gap, spread)
    # dropout is on in training (not the deterministic run of the same seeds) and off in evaluation
    plain = train_members(factory, digits, [{"seed": s, "dropout": 0.0} for s in seeds], max_epochs=3, **QUIET)
    assert (plain["train_loss"] < stacked["train_loss"]).all()


def test_a_zero_rate_member_is_the_deterministic_run(digits):
    factory = _factory(dropout=0.5)
    frame, members = train_members(factory, digits, [{"seed": 3, "dropout": 0.0}, {"seed": 3, "dropout": 0.5}],
                                   max_epochs=2, return_members=True, **QUIET)
    alone = _plain_loop(_factory(), digits, {"seed": 3}, 2, {})
    torch.testing.assert_close(members.member_backbone(0).classifier.weight, alone.classifier.weight,
                               atol=2e-5, rtol=1e-4)
    assert list(frame["dropout"]) == [0.0, 0.5]
    assert members.member_backbone(1).features[3].p == 0.5


def test_predict_logits_are_each_members_own(digits):
    frame, members = train_members(_factory(dropout=0.5), digits, [{"seed": 0}, {"seed": 1}], max_epochs=1,
                                   return_members=True, **QUIET)
    logits = members.predict_logits(digits.test_dataloader())
    assert logits.shape == (2, len(digits.tensors("test")[1]), 10)
    for k in range(2):
        alone = predict_logits(members.member_module(k), digits.test_dataloader(), accelerator="cpu")
        torch.testing.assert_close(logits[k], alone, atol=1e-5, rtol=1e-5)
        accuracy = (logits[k].argmax(1) == digits.tensors("test")[1]).float().mean().item()
        assert accuracy == pytest.approx(frame.loc[k, "test_acc"], abs=1e-6)
    assert torch.equal(members.predict_logits(digits.test_dataloader()), logits)  # eval mode: no dropout


def test_lightning_callbacks_apply_to_the_members(digits):
    stop = EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)  # stops after the second epoch
    frame, members = train_members(_factory(), digits, [{"seed": 0}, {"seed": 1}], max_epochs=5,
                                   callbacks=[stop], return_members=True, **QUIET)
    assert (frame["epochs"] == 2).all() and stop.stopped_epoch == 1
    history = members.fit_result.history
    assert {"val_loss", "val_loss/member_0", "val_loss/member_1"} <= set(history.columns)
    torch.testing.assert_close(torch.tensor(history["val_loss"].values),
                               torch.tensor(history[["val_loss/member_0", "val_loss/member_1"]].mean(axis=1).values))
    assert any((members.fit_result.run_dir / "checkpoints").glob("*.ckpt"))


def test_a_plain_network_factory_trains_with_classifier_defaults(digits):
    frame = train_members(lambda: nn.Sequential(nn.Linear(64, 10)), digits, [{"seed": 0, "lr": 1e-2}],
                          max_epochs=2, **QUIET)
    assert frame.loc[0, "test_acc"] > 0.8


# ---- per-epoch history, restore_best, per-member regularizers ---------------------------------------
def test_history_has_every_members_epochs_as_fit_logs_them(digits):
    frame, history = train_members(_factory(), digits, [{"seed": 5, "weight_decay": 0.1}, {"seed": 6}],
                                   max_epochs=3, return_history=True, **QUIET)
    steps_per_epoch = math.ceil(len(digits.tensors("train")[0]) / 64)
    assert list(history["member"]) == [0] * 3 + [1] * 3 and list(history["epoch"]) == [1, 2, 3] * 2
    assert list(history["step"]) == [steps_per_epoch * e for e in (1, 2, 3)] * 2
    assert list(history["weight_decay"]) == [0.1] * 3 + [0.0] * 3
    alone = fit(_factory(), digits, seed=6, max_epochs=3, **QUIET).history  # the oracle: a separate run's log
    mine = history[history["member"] == 1].reset_index(drop=True)
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "val_nll", "val_ece", "val_brier"):
        torch.testing.assert_close(torch.tensor(mine[name].values), torch.tensor(alone[name].values),
                                   atol=1e-4, rtol=0, msg=name)
    last = history[history["epoch"] == 3].reset_index(drop=True)
    assert (last["val_nll"] == frame["val_nll"]).all()  # the frame's row is the last epoch


def test_restore_best_gives_each_member_its_own_best_epoch(digits):
    members = [{"seed": s} for s in range(4)]
    epochs, factory = 5, _factory(lr=3e-2)  # a high rate: validation accuracy goes up and down
    frame, history, stacked = train_members(factory, digits, members, max_epochs=epochs, restore_best="val_acc",
                                            return_history=True, return_members=True, **QUIET)
    pd.testing.assert_frame_equal(history, stacked.history)  # given no member keys, the same frame
    by_epoch = history.pivot(index="epoch", columns="member", values="val_acc")
    assert list(frame["best_epoch"]) == list(by_epoch.idxmax())  # the first best epoch of each member
    assert frame["best_epoch"].min() < epochs and frame["best_epoch"].nunique() > 1  # the test can fail
    steps_per_epoch = math.ceil(len(digits.tensors("train")[0]) / 64)
    assert list(frame["best_step"]) == [e * steps_per_epoch for e in frame["best_epoch"]]
    assert (frame["epochs"] == epochs).all() and list(frame["val_acc"]) == list(by_epoch.max())
    for k, member in enumerate(members):
        best = int(frame.loc[k, "best_epoch"])
        alone = _plain_loop(factory, digits, member, best, {})  # oracle: trained alone for its best epochs
        torch.testing.assert_close(stacked.member_backbone(k).classifier.weight, alone.classifier.weight,
                                   atol=5e-5, rtol=1e-4, msg=f"member {k}")
        measured = evaluate(stacked.member_module(k), digits.test_dataloader(), accelerator="cpu")
        for name in ("test_acc", "test_nll", "test_ece", "test_brier"):
            assert frame.loc[k, name] == pytest.approx(measured[name], abs=1e-5), (k, name)


def _mixup_loop(factory, data, member, epochs, augment):
    """One member alone with its regularizers, as train_members documents them: a ClassifierModule
    with the member's label smoothing and z-loss (its ``loss``), ``augment`` then mixup drawn from
    ``member_generators(seed)``, torch.optim.AdamW."""
    pl.seed_everything(member["seed"], verbose=False)
    built = factory()
    module = ClassifierModule(built.backbone, 10, label_smoothing=member.get("label_smoothing", 0.0),
                              z_loss=member.get("z_loss", built.hparams.z_loss))
    net = module.backbone
    groups = [{"params": [p for p in net.parameters() if p.dim() > 1], "weight_decay": built.hparams.weight_decay},
              {"params": [p for p in net.parameters() if p.dim() <= 1], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=built.hparams.lr)
    mixing, augmenting = member_generators(member["seed"])
    alpha, strength = member.get("mixup", 0.0), member.get("augment", 0.0)
    x, y = data.tensors("train")
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(member["seed"] + epoch))
        for start in range(0, len(x), data.batch_size):
            idx = order[start:start + data.batch_size]
            inputs, targets = x[idx], y[idx]
            if strength > 0:
                inputs = augment(inputs, strength, augmenting)
            if alpha > 0:
                lam = mixing.beta(alpha, alpha)
                perm = torch.from_numpy(mixing.permutation(len(idx)))
                logits = net(lam * inputs + (1 - lam) * inputs[perm])
                loss = lam * module.loss(logits, targets) + (1 - lam) * module.loss(logits, targets[perm])
            else:
                loss = module.loss(net(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net


def _jitter(x, strength, generator):
    return x + strength * torch.randn(x.shape, generator=generator)


def test_per_member_regularizers_are_the_runs_they_stand_for(digits):
    members = [{"seed": 0}, {"seed": 1, "label_smoothing": 0.2, "z_loss": 0.0}, {"seed": 2, "mixup": 0.4},
               {"seed": 3, "augment": 0.5, "label_smoothing": 0.05}, {"seed": 1, "mixup": 1.0, "augment": 0.2}]
    factory = _factory(z_loss=0.01)  # the factory's z-loss applies to every member that does not set one
    frame, stacked = train_members(factory, digits, members, max_epochs=2, augment=_jitter, return_members=True,
                                   **QUIET)
    for k, member in enumerate(members):
        alone = _mixup_loop(factory, digits, member, 2, _jitter)
        for (name, expected), got in zip(alone.state_dict().items(), stacked.member_backbone(k).state_dict().values()):
            torch.testing.assert_close(got, expected, atol=5e-5, rtol=1e-4, msg=f"member {k}, {name}")
    assert list(frame["mixup"]) == [0.0, 0.0, 0.4, 0.0, 1.0] and list(frame["z_loss"]) == [0.01, 0.0, 0.01, 0.01, 0.01]
    module = stacked.member_module(1)
    assert module.hparams.label_smoothing == 0.2 and module.hparams.z_loss == 0.0


def test_regularized_members_repeat_under_their_seeds(digits):
    members = [{"seed": 0, "mixup": 0.2, "augment": 0.3}, {"seed": 1, "augment": 0.3}]
    a, b = (train_members(_factory(), digits, members, max_epochs=1, augment=_jitter, **QUIET) for _ in range(2))
    pd.testing.assert_frame_equal(a.drop(columns="fit_time_s"), b.drop(columns="fit_time_s"))
    plain = train_members(_factory(), digits, [{"seed": 0}, {"seed": 1}], max_epochs=1, **QUIET)
    assert (plain["train_loss"] != a["train_loss"]).all()  # the regularizers changed the runs


def test_augment_must_keep_the_batch_shape(digits):
    with pytest.raises(ValueError, match="augment must return"):
        train_members(_factory(), digits, [{"seed": 0, "augment": 1.0}], max_epochs=1,
                      augment=lambda x, strength, generator: x[:, :10], **QUIET)


# ---- the vectorized pieces against their references ------------------------------------------------
@pytest.mark.parametrize("lrs", [(1e-2,) * 4, (1e-2, 3e-3, 1e-2, 1e-3)], ids=["shared-rate-fused", "member-rates"])
def test_member_adamw_is_torch_adamw_for_each_member(lrs):
    torch.manual_seed(0)
    decays, decayed = (0.0, 0.1, 0.2, 0.3), 30
    start, grads = torch.randn(4, 50), [torch.randn(4, 50) for _ in range(6)]
    flat = nn.Parameter(start.clone())
    optimizer = _MemberAdamW(flat, decayed, torch.tensor(lrs, dtype=torch.float64),
                             torch.tensor(decays, dtype=torch.float64))
    assert (optimizer._shared_lr is not None) == (len(set(lrs)) == 1)
    for grad in grads:
        flat.grad = grad.clone()
        optimizer.step()
    for k, (lr, wd) in enumerate(zip(lrs, decays)):
        weights, biases = nn.Parameter(start[k, :decayed].clone()), nn.Parameter(start[k, decayed:].clone())
        alone = torch.optim.AdamW([{"params": [weights], "weight_decay": wd}, {"params": [biases], "weight_decay": 0.0}],
                                  lr=lr)
        for grad in grads:
            weights.grad, biases.grad = grad[k, :decayed].clone(), grad[k, decayed:].clone()
            alone.step()
        torch.testing.assert_close(flat.detach()[k], torch.cat([weights, biases]).detach(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_top_label_ece_of_all_members_is_torchmetrics_per_member(n_bins):
    g = torch.Generator().manual_seed(n_bins)
    probs = (2 * torch.randn(5, 700, 10, generator=g)).softmax(dim=2)
    probs[0, :3] = torch.nn.functional.one_hot(torch.tensor([1, 2, 3]), 10).float()  # confidence 1.0: the last slot
    targets = torch.randint(0, 10, (5, 700), generator=g)
    confidences, predictions = probs.max(dim=2)
    got = _top_label_ece(confidences, predictions == targets, n_bins)
    expected = torch.stack([multiclass_calibration_error(probs[k], targets[k], 10, n_bins=n_bins, norm="l1")
                            for k in range(5)])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_restore_best_restores_buffers_too(digits):
    """With BatchNorm (running statistics are buffers) a restored member is the run stopped at its best
    epoch (oracle: the same members trained for that many epochs; members are independent, and the same
    K keeps the arithmetic identical: BatchNorm's sums under vmap depend on K in the last bits)."""
    factory = lambda: ClassifierModule(MLP(64, 10, hidden_sizes=(32,), norm="batch"), num_classes=10, lr=3e-2)  # noqa: E731
    members = [{"seed": 0}, {"seed": 1}, {"seed": 2}]
    frame, stacked = train_members(factory, digits, members, max_epochs=4, restore_best="val_acc",
                                   return_members=True, **QUIET)
    assert frame["best_epoch"].min() < 4 and frame["best_epoch"].nunique() > 1
    stopped = {best: train_members(factory, digits, members, max_epochs=best, return_members=True, **QUIET)[1]
               for best in set(frame["best_epoch"].tolist())}
    for k, best in enumerate(frame["best_epoch"].tolist()):
        for (name, expected), got in zip(stopped[best].member_backbone(k).state_dict().items(),
                                         stacked.member_backbone(k).state_dict().values()):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5, msg=f"member {k}, {name}")


class _RecordingDropBlock(DropBlock2d):
    """DropBlock2d that records the rate of every training forward (once per batch under vmap)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rates = []

    def forward(self, x):
        if self.training:
            self.rates.append(self.drop_prob)
        return super().forward(x)


def test_drop_block_schedule_ramps_the_layers_of_stacked_members():
    images = DigitsDataModule(image_size=8, train_fraction=0.2, batch_size=64, seed=0)
    factory = lambda: ClassifierModule(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), _RecordingDropBlock(0.3, block_size=3),
                                                     nn.Flatten(), nn.Linear(256, 10)), num_classes=10)
    schedule = DropBlockSchedule(start_drop_prob=0.05, ramp_fraction=0.5)
    _, members = train_members(factory, images, [{"seed": 0}, {"seed": 1}], max_epochs=3, callbacks=[schedule],
                               return_members=True, test=False, **QUIET)
    layer = next(m for m in members.shared_network.modules() if isinstance(m, _RecordingDropBlock))
    steps = len(layer.rates)
    assert steps == 3 * math.ceil(len(images.tensors("train")[1]) / 64)
    # the oracle: the same schedule on the same network under a plain fit
    module = factory()
    fit(module, images, seed=0, max_epochs=3, callbacks=[DropBlockSchedule(start_drop_prob=0.05, ramp_fraction=0.5)],
        test=False, **QUIET)
    alone = next(m for m in module.modules() if isinstance(m, _RecordingDropBlock)).rates
    assert layer.rates == pytest.approx(alone)
    assert layer.rates == pytest.approx([0.05 + 0.25 * min(1.0, step / max(1.0, 0.5 * steps)) for step in range(steps)])


def test_member_brier_is_sklearns_per_member_and_exact_on_a_confident_member():
    from sklearn.metrics import brier_score_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 500, 10, generator=g)
    targets = torch.randint(0, 10, (3, 500), generator=g)
    targets[2] = logits[2].argmax(1)
    logits[2, torch.arange(500), targets[2]] += 12  # member 2 is sure of every (right) answer
    probs = logits.softmax(2)
    got = _member_brier(probs.transpose(1, 2), targets)
    for k in range(3):
        expected = brier_score_loss(targets[k].numpy(), probs[k].double().numpy(), labels=list(range(10)),
                                    scale_by_half=False)
        assert got[k].item() == pytest.approx(expected, rel=1e-4, abs=1e-12)


def test_a_dropout_member_trains_the_same_whichever_members_train_beside_it(digits):
    """Each member's masks come from its own generator: member 0 alone and beside two others (one
    dropping at another rate, one not dropping) ends with the same weights. With one random stream
    for all members (vmap's randomness="different") its masks, and so its weights, would differ."""
    factory, member = _factory(dropout=0.5), {"seed": 0, "dropout": 0.3}
    _, alone = train_members(factory, digits, [member], max_epochs=2, return_members=True, **QUIET)
    _, beside = train_members(factory, digits, [{"seed": 1, "dropout": 0.6}, member, {"seed": 2, "dropout": 0.0}],
                              max_epochs=2, return_members=True, **QUIET)
    torch.testing.assert_close(beside.member_backbone(1).classifier.weight, alone.member_backbone(0).classifier.weight,
                               atol=1e-5, rtol=1e-5)
    _, other_seed = train_members(factory, digits, [{"seed": 5, "dropout": 0.3}], max_epochs=2, return_members=True,
                                  **QUIET)
    assert not torch.allclose(other_seed.member_backbone(0).classifier.weight, alone.member_backbone(0).classifier.weight)
