"""The stability callbacks with several optimizers (a GAN under manual optimization): state per
optimizer, acting on the parameters of the optimizer being stepped; logging through Lightning (so
EarlyStopping and ModelCheckpoint see the values); several instances side by side (state_key); and
guards that never skip silently."""

import copy
import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch import nn

from toolkit.data import TensorBatchLoader
from toolkit.stability import (AdaptiveGradientClipping, GradientNormMonitor, LossSpikeGuard, NonFiniteGuard,
                               SkippedStepWarning, adaptive_clip_grad_)
from toolkit.training import quiet_lightning

N_BATCHES, BATCH = 12, 16


def _real(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N_BATCHES * BATCH, 2, generator=g) * 0.5 + torch.tensor([1.0, -1.0])


class GAN(pl.LightningModule):
    """A tiny GAN: manual optimization, optimizers (generator, discriminator) in that order.
    ``poison`` maps (call, "g" | "d") to "nan" or a loss multiplier."""

    def __init__(self, poison=None):
        super().__init__()
        torch.manual_seed(0)
        self.automatic_optimization = False
        self.generator = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
        self.poison, self.calls = dict(poison or {}), 0
        self.noise = torch.Generator().manual_seed(1)

    def _poisoned(self, loss, which):
        kind = self.poison.get((self.calls, which))
        if kind == "nan":
            return loss * float("nan")
        return loss * kind if kind is not None else loss

    def training_step(self, batch, batch_idx):
        real = batch[0]
        opt_g, opt_d = self.optimizers()
        fake = self.generator(torch.randn(len(real), 2, generator=self.noise))
        ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        g_loss = self._poisoned(F.binary_cross_entropy_with_logits(self.discriminator(fake), ones), "g")
        opt_g.zero_grad()
        self.manual_backward(g_loss)  # also fills the discriminator's gradients
        opt_g.step()
        d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
                  + F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), zeros))
        d_loss = self._poisoned(d_loss, "d")
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.calls += 1

    def configure_optimizers(self):
        return (torch.optim.Adam(self.generator.parameters(), lr=1e-2),
                torch.optim.Adam(self.discriminator.parameters(), lr=1e-2))


def _train(module, callbacks, epochs=1, **kwargs):
    with quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PossibleUserWarning)
        warnings.filterwarnings("ignore", category=SkippedStepWarning)
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                             deterministic=True, **kwargs)
        trainer.fit(module, TensorBatchLoader(_real(), batch_size=BATCH))
    return trainer


class _Spy(pl.Callback):
    """Runs ``fn(trainer, module, optimizer_index)`` in on_before_optimizer_step (place it before or
    after the callback under test)."""

    def __init__(self, fn):
        self.fn = fn

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        index = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
        self.fn(trainer, pl_module, index)


def _grad_norm(params):
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))


def test_gradient_norm_monitor_reads_the_norm_of_the_optimizer_being_stepped():
    expected = {0: [], 1: []}
    oracle = _Spy(lambda t, m, i: expected[i].append(
        _grad_norm((m.generator if i == 0 else m.discriminator).parameters())))
    monitor = GradientNormMonitor(layer_every_n_steps=1)
    _train(GAN(), [monitor, oracle])
    for index in (0, 1):
        got = [norm for _, norm in monitor.histories[index]]
        assert got == pytest.approx(expected[index], rel=1e-6)
        assert len(got) == N_BATCHES
    names = set(monitor.layer_frame()["parameter"])
    assert names == {"generator.0.weight", "generator.2.weight", "discriminator.0.weight", "discriminator.2.weight"}
    assert set(monitor.frame()["optimizer"]) == {0, 1}


def test_rollback_with_two_optimizers_restores_the_right_optimizer_and_only_its_network():
    """B3 of the drop-in review: one snapshot taken from whichever optimizer stepped loaded G's Adam
    state into D's optimizer (a crash, or weights rolled back without their state)."""
    before_d, after = {}, {}

    def record(trainer, module, index):
        if index == 1:
            before_d[module.calls] = (copy.deepcopy(module.discriminator.state_dict()),
                                      copy.deepcopy(trainer.optimizers[1].state_dict()))

    def check(trainer, module, index):
        if index == 1 and module.calls == 7:
            after["d"] = (copy.deepcopy(module.discriminator.state_dict()),
                          copy.deepcopy(trainer.optimizers[1].state_dict()))
            after["lrs"] = [o.param_groups[0]["lr"] for o in trainer.optimizers]

    guard = NonFiniteGuard("rollback", snapshot_every_n_steps=3, lr_factor=0.5)
    module = GAN(poison={(7, "d"): "nan"})
    _train(module, [_Spy(record), guard, _Spy(check)], epochs=2)
    assert guard.rollbacks == 1 and guard.events[0]["optimizer"] == 1
    weights, state = after["d"]  # D's snapshots were taken before D-steps 0, 3 and 6
    for name, value in before_d[6][0].items():
        assert torch.equal(weights[name], value), name
    assert state["state"].keys() == before_d[6][1]["state"].keys()
    for key, value in state["state"][0].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(before_d[6][1]["state"][0][key])), key
    assert after["lrs"] == [pytest.approx(1e-2), pytest.approx(5e-3)], "only D's learning rate is cut"
    assert all(torch.isfinite(p).all() for p in module.parameters()), "training went on past the rollback"


def test_a_discriminator_spike_is_skipped_once_and_does_not_freeze_it():
    """B4 of the drop-in review: one window for G and D losses skipped every later D step."""
    guard = LossSpikeGuard(window=12, k=6.0, min_history=4)
    d_after = {}
    spy_after = _Spy(lambda t, m, i: i == 1 and d_after.setdefault(m.calls,
                                                                  [p.grad for p in m.discriminator.parameters()]))
    with pytest.warns(SkippedStepWarning, match=r"LossSpikeGuard: loss .* above the threshold .*optimizer 1"):
        with quiet_lightning():
            trainer = pl.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, callbacks=[guard, spy_after])
            trainer.fit(GAN(poison={(6, "d"): 1000.0}), TensorBatchLoader(_real(), batch_size=BATCH))
    assert guard.skipped_steps == [2 * 6 + 1], "the discriminator's step of call 6 (steps alternate G, D)"
    assert all(g is None for g in d_after[6]) and all(g is not None for c, gs in d_after.items() if c != 6 for g in gs)
    assert set(guard.windows) == {0, 1} and len(guard.windows[1]) == 12
    assert trainer.callback_metrics["spike_skipped"] == 1.0


def test_agc_clips_only_the_parameters_of_the_optimizer_being_stepped():
    seen = {}

    def before(trainer, module, index):
        if index == 0 and module.calls == 3:
            seen["d_grads"] = [p.grad.clone() for p in module.discriminator.parameters()]
            params = [nn.Parameter(p.detach().clone()) for p in module.generator.parameters()]
            for copy_, p in zip(params, module.generator.parameters()):
                copy_.grad = p.grad.clone()
            adaptive_clip_grad_(params, clip_factor=0.01)
            seen["g_expected"] = [p.grad for p in params]

    def after(trainer, module, index):
        if index == 0 and module.calls == 3:
            seen["d_after"] = [p.grad.clone() for p in module.discriminator.parameters()]
            seen["g_after"] = [p.grad.clone() for p in module.generator.parameters()]

    agc = AdaptiveGradientClipping(clip_factor=0.01)
    _train(GAN(), [_Spy(before), agc, _Spy(after)])
    for a, b in zip(seen["d_after"], seen["d_grads"]):
        assert torch.equal(a, b), "the discriminator's gradients are left alone at the generator's step"
    for a, b in zip(seen["g_after"], seen["g_expected"]):
        torch.testing.assert_close(a, b)
    assert agc.steps == 2 * N_BATCHES


class Tiny(pl.LightningModule):
    def __init__(self, nan_every_step=False):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(2, 2)
        self.nan_every_step = nan_every_step

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        return loss * float("nan") if self.nan_every_step else loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _blobs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g)
    return TensorBatchLoader(x, (x[:, 0] > 0).long(), batch_size=8)


def test_stability_values_reach_callback_metrics_early_stopping_and_model_checkpoint(tmp_path):
    monitor, agc = GradientNormMonitor(), AdaptiveGradientClipping()
    early = EarlyStopping(monitor="grad_norm", mode="min", patience=100, check_on_train_epoch_end=True)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="grad_norm", mode="min", save_on_train_epoch_end=True)
    with quiet_lightning():
        trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[monitor, agc, early, best], default_root_dir=tmp_path)
        trainer.fit(Tiny(), _blobs(), _blobs())
    assert float(trainer.callback_metrics["grad_norm"]) == pytest.approx(monitor.history[-1][1], rel=1e-6)
    assert float(trainer.callback_metrics["agc_clipped_units"]) == agc.clipped_units
    epoch_ends = [monitor.history[7][1], monitor.history[15][1]]  # 8 steps an epoch
    assert float(early.best_score) == pytest.approx(min(epoch_ends), rel=1e-6)
    assert best.best_model_path and float(best.best_model_score) > 0


def test_two_instances_of_a_stateful_callback_coexist_and_both_resume(tmp_path):
    first, second = GradientNormMonitor(layer_every_n_steps=1), GradientNormMonitor(layer_every_n_steps=4)
    with quiet_lightning():
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             callbacks=[first, second, ModelCheckpoint(dirpath=tmp_path, save_last=True)])
        trainer.fit(Tiny(), _blobs(), _blobs())
    restored = [GradientNormMonitor(layer_every_n_steps=1), GradientNormMonitor(layer_every_n_steps=4)]
    with quiet_lightning():
        trainer = pl.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                             callbacks=restored)
        trainer.fit(Tiny(), _blobs(), _blobs(), ckpt_path=tmp_path / "last.ckpt")
    assert restored[0].history[:8] == first.history and restored[1].history[:8] == second.history
    assert len(restored[0].layer_history) == 16 and len(restored[1].layer_history) == 4
    for a, b in [(LossSpikeGuard(window=10), LossSpikeGuard(window=20)),
                 (NonFiniteGuard("skip"), NonFiniteGuard("stop")),
                 (AdaptiveGradientClipping(0.01), AdaptiveGradientClipping(0.02))]:
        assert a.state_key != b.state_key


def test_a_run_that_is_non_finite_at_every_step_raises_instead_of_finishing_normally():
    guard = NonFiniteGuard("skip", max_consecutive_skips=5)
    with pytest.warns(SkippedStepWarning, match="step skipped"), pytest.raises(RuntimeError, match="5 steps in a row"):
        with quiet_lightning():
            pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, callbacks=[guard]).fit(Tiny(nan_every_step=True), _blobs())
    assert guard.skipped == 5


def test_every_skip_warns_and_is_counted_in_callback_metrics():
    guard = NonFiniteGuard("skip", max_consecutive_skips=None)
    with pytest.warns(SkippedStepWarning) as caught:
        with quiet_lightning():
            trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, callbacks=[guard])
            trainer.fit(Tiny(nan_every_step=True), _blobs())
    assert guard.skipped == 8 and sum(issubclass(w.category, SkippedStepWarning) for w in caught) == 8
    assert float(trainer.callback_metrics["nonfinite_skipped"]) == 8.0
