"""toolkit.stability callbacks: the guards act before the step (bitwise), the monitor and AGC match
independent computations, everything resumes, and bad arguments raise."""

import copy
import statistics
import warnings

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch import nn

from toolkit.data import DigitsDataModule, TensorBatchLoader
from toolkit.models import MLP
from toolkit.stability import (AdaptiveGradientClipping, GradientNormMonitor, LossSpikeGuard, NonFiniteGuard,
                               SkippedStepWarning, adaptive_clip_grad_)
from toolkit.training import ClassifierModule, fit, quiet_lightning

N_SAMPLES, BATCH = 96, 8  # 12 steps per epoch


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N_SAMPLES, 6, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()


class Tiny(pl.LightningModule):
    """Linear -> tanh -> Linear; ``poison`` maps a step to "nan" (loss), "spike" (loss x 50) or a parameter
    name (its gradient gets an Inf after backward)."""

    def __init__(self, optimizer="adamw", lr=0.05, poison=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
        self.optimizer, self.lr, self.poison = optimizer, lr, dict(poison or {})

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        kind = self.poison.get(self.global_step)
        if kind == "nan":
            loss = loss * float("nan")
        elif kind == "spike":
            loss = loss * 50.0
        return loss

    def on_after_backward(self):
        name = self.poison.get(self.global_step)
        if name not in (None, "nan", "spike"):
            grad = dict(self.named_parameters())[name].grad
            grad.view(-1)[0] = float("inf")

    def configure_optimizers(self):
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)


class Recorder(pl.Callback):
    """Copies of the weights and optimizer state before every step, and after the last batch of each step."""

    def __init__(self):
        self.before, self.after, self.lrs = {}, {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before[trainer.global_step] = (copy.deepcopy(pl_module.state_dict()),
                                            copy.deepcopy(trainer.optimizers[0].state_dict()))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[trainer.global_step - 1] = (copy.deepcopy(pl_module.state_dict()),
                                               copy.deepcopy(trainer.optimizers[0].state_dict()))
        self.lrs[trainer.global_step - 1] = trainer.optimizers[0].param_groups[0]["lr"]


def _train(module, callbacks, epochs=1, **kwargs):
    loader = TensorBatchLoader(*_data(), batch_size=BATCH)
    with quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PossibleUserWarning)
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             callbacks=callbacks, deterministic=True, **kwargs)
        trainer.fit(module, loader)
    return trainer


def _assert_states_equal(a, b):
    """Bitwise equality of (model state_dict, optimizer state_dict) pairs."""
    for name, value in a[0].items():
        assert torch.equal(value, b[0][name]), name
    assert a[1]["state"].keys() == b[1]["state"].keys()
    for index, state in a[1]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b[1]["state"][index][key])), (index, key)


def _plain_loop(skip_steps=(), epochs=1):
    """The same training as ``Tiny`` with AdamW, written as a plain PyTorch loop that omits ``skip_steps``."""
    module = Tiny()
    optimizer = module.configure_optimizers()
    x, y = _data()
    step = 0
    for _ in range(epochs):
        for start in range(0, N_SAMPLES, BATCH):
            loss = nn.functional.cross_entropy(module.net(x[start:start + BATCH]), y[start:start + BATCH])
            loss.backward()
            if step not in skip_steps:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
    return module.state_dict()


# --- NonFiniteGuard ------------------------------------------------------------------------------------------

def test_without_a_guard_one_nan_ruins_the_weights():
    module = Tiny(poison={3: "nan"})
    _train(module, [])
    assert not all(torch.isfinite(p).all() for p in module.parameters())


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_skip_leaves_weights_and_optimizer_state_bitwise_unchanged(optimizer):
    recorder, guard = Recorder(), NonFiniteGuard("skip")
    module = Tiny(optimizer=optimizer, poison={5: "nan"})
    _train(module, [guard, recorder])
    _assert_states_equal(recorder.after[5], recorder.before[5])
    assert guard.skipped == 1 and guard.events[0]["step"] == 5 and guard.events[0]["culprit"] == "the loss"
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_skip_equals_a_plain_loop_that_omits_the_step():
    module = Tiny(poison={4: "nan", 9: "nan"})
    _train(module, [NonFiniteGuard("skip")], epochs=2)
    expected = _plain_loop(skip_steps={4, 9}, epochs=2)
    for name, value in expected.items():
        torch.testing.assert_close(module.state_dict()[name], value, rtol=0, atol=0, msg=name)


class TinyBN(pl.LightningModule):
    """Linear -> batch norm (1d, or 2d over a 1x1 map) -> ReLU -> Linear; a NaN *input* at ``nan_steps``
    poisons the running statistics in the forward pass, before any guard sees the loss."""

    def __init__(self, norm="1d", nan_steps=()):
        super().__init__()
        torch.manual_seed(0)
        self.fc, self.head = nn.Linear(6, 8), nn.Linear(8, 2)
        self.norm_kind, self.bn = norm, nn.BatchNorm1d(8) if norm == "1d" else nn.BatchNorm2d(8)
        self.nan_steps = set(nan_steps)

    def forward(self, x):
        h = self.fc(x)
        h = self.bn(h) if self.norm_kind == "1d" else self.bn(h[:, :, None, None]).flatten(1)
        return self.head(torch.relu(h))

    def training_step(self, batch, batch_idx):
        x = batch[0] * float("nan") if self.global_step in self.nan_steps else batch[0]
        return nn.functional.cross_entropy(self(x), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


@pytest.mark.parametrize("norm", ["1d", "2d"])
def test_skip_restores_batch_norm_running_stats_bitwise(norm):
    recorder, guard = Recorder(), NonFiniteGuard("skip")
    module = TinyBN(norm, nan_steps={5})
    _train(module, [guard, recorder])
    _assert_states_equal(recorder.after[5], recorder.before[5])  # running_mean/var and num_batches_tracked too
    assert guard.skipped == 1
    # the oracle: a plain loop that never saw batch 5 (no forward, no step)
    twin = TinyBN(norm)
    optimizer = twin.configure_optimizers()
    x, y = _data()
    for step, start in enumerate(range(0, N_SAMPLES, BATCH)):
        if step == 5:
            continue
        nn.functional.cross_entropy(twin(x[start:start + BATCH]), y[start:start + BATCH]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for name, value in twin.state_dict().items():
        assert torch.equal(module.state_dict()[name], value), name
    module.eval()
    assert torch.isfinite(module(x)).all()


def _summary_warnings(caught):
    return [str(w.message) for w in caught if "NonFiniteGuard summary" in str(w.message)]


def test_guard_warns_when_more_than_the_stated_share_of_steps_is_skipped():
    guard = NonFiniteGuard("skip")  # max_skipped_fraction=0.05
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=SkippedStepWarning)  # the per-step warnings, silenced
        trainer = _train(Tiny(poison={2: "nan", 6: "nan", 9: "nan"}), [guard])
    assert guard.summary["guarded_steps"] == 12 and guard.summary["no_update_steps"] == 3
    assert guard.summary["too_many_skipped"] and guard.summary["skipped_share"] == 0.25
    assert trainer.callback_metrics["nonfinite_skipped_share"] == pytest.approx(0.25)
    [message] = _summary_warnings(caught)
    assert "3 of 12" in message and "25%" in message
    lenient = NonFiniteGuard("skip", max_skipped_fraction=0.3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train(Tiny(poison={2: "nan", 6: "nan", 9: "nan"}), [lenient])
    assert _summary_warnings(caught) == [] and not lenient.summary["too_many_skipped"]


def test_a_run_with_a_nan_loss_at_every_step_does_not_end_silently():
    guard = NonFiniteGuard("skip", max_consecutive_skips=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=SkippedStepWarning)
        _train(Tiny(poison={step: "nan" for step in range(12)}), [guard])
    [message] = _summary_warnings(caught)
    assert "12 of 12" in message and "100%" in message


def test_rollback_restores_last_snapshot_bitwise_and_lowers_lr():
    recorder, guard = Recorder(), NonFiniteGuard("rollback", lr_factor=0.25, snapshot_every_n_steps=3)
    module = Tiny(lr=0.04, poison={7: "nan"})
    _train(module, [recorder, guard])
    # snapshots at steps 0, 3, 6 (before their update): step 7 rolls back to the state before step 6
    _assert_states_equal(recorder.after[7], recorder.before[6])
    assert guard.rollbacks == 1 and guard.skipped == 0
    assert recorder.lrs[7] == pytest.approx(0.01) and recorder.lrs[6] == pytest.approx(0.04)
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_rollback_scales_the_whole_lr_schedule():
    """After a rollback, every later step's learning rate is ``lr_factor`` times the clean run's."""
    data = DigitsDataModule(flatten=True, train_fraction=0.25, batch_size=32)

    def run(poison):
        class Poisoned(ClassifierModule):
            def training_step(self, batch, batch_idx):
                loss = super().training_step(batch, batch_idx)
                return loss * float("nan") if self.global_step == poison else loss

        recorder = Recorder()
        model = lambda: Poisoned(MLP(64, 10, hidden_sizes=(16,)), 10, lr=0.01, schedule="warmup_cosine",  # noqa: E731
                                 warmup_fraction=0.3)
        fit(model, data, max_epochs=2, callbacks=[NonFiniteGuard("rollback", lr_factor=0.5, snapshot_every_n_steps=1),
                                                  recorder], test=False, enable_checkpointing=False,
            limit_val_batches=0)
        return recorder.lrs

    clean, rolled = run(poison=-1), run(poison=4)
    steps = sorted(clean)
    assert len(steps) > 10
    for step in steps:
        factor = 0.5 if step >= 4 else 1.0
        assert rolled[step] == pytest.approx(factor * clean[step], rel=1e-6), step


def test_stop_names_step_and_parameter_and_keeps_weights():
    recorder, guard = Recorder(), NonFiniteGuard("stop")
    module = Tiny(poison={4: "net.2.weight"})
    with pytest.warns(UserWarning, match=r"step 4: non-finite value in the gradient of 'net.2.weight'"):
        trainer = _train(module, [recorder, guard], epochs=3)
    assert guard.stopped and trainer.global_step == 5 and max(recorder.after) == 4
    _assert_states_equal(recorder.after[4], recorder.before[4])
    assert "net.2.weight" in guard.stop_message


def test_rollback_without_snapshot_stops():
    guard = NonFiniteGuard("rollback")
    with pytest.warns(UserWarning, match="no good snapshot"):
        _train(Tiny(poison={0: "nan"}), [guard])
    assert guard.stopped and guard.rollbacks == 0


# --- LossSpikeGuard ------------------------------------------------------------------------------------------

def _reference_spikes(losses, window, k, min_history, rel_floor, max_consecutive):
    """The rule, written independently: numpy-style median and MAD of the accepted losses."""
    import numpy as np

    kept, flagged, run = [], [], 0
    for i, loss in enumerate(losses):
        if len(kept) >= min_history:
            recent = np.array(kept[-window:])
            median = np.median(recent)
            scale = max(1.4826 * np.median(np.abs(recent - median)), rel_floor * abs(median))
            if loss > median + k * scale and run < max_consecutive:
                flagged.append(i)
                run += 1
                continue
        run = 0
        kept.append(loss)
    return flagged


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_spike_rule_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    losses = (2.0 * torch.exp(-torch.arange(300) / 100) + 0.05 * torch.randn(300, generator=generator)).tolist()
    for i in (40, 41, 120, 200, 201, 202, 203, 204, 205, 206, 207):  # isolated spikes and a lasting jump
        losses[i] += 3.0
    guard = LossSpikeGuard(window=30, k=5.0, min_history=10, rel_floor=0.01, max_consecutive=5)
    flagged = []
    for i, loss in enumerate(losses):
        if guard.is_spike(loss):
            flagged.append(i)
    assert flagged == _reference_spikes(losses, 30, 5.0, 10, 0.01, 5)
    assert {40, 41, 120, 200} <= set(flagged) and 205 not in flagged  # accepted after 5 skips in a row


def test_loss_spike_guard_skips_the_spiking_step_bitwise():
    recorder, guard = Recorder(), LossSpikeGuard(window=8, k=4.0, min_history=4)
    _train(Tiny(lr=0.01, poison={9: "spike"}), [guard, recorder])
    assert guard.skipped_steps == [9] and guard.skipped == 1
    _assert_states_equal(recorder.after[9], recorder.before[9])
    median = statistics.median(guard.losses)
    mad = statistics.median(abs(v - median) for v in guard.losses)
    assert guard.threshold() == pytest.approx(median + 4.0 * max(1.4826 * mad, 0.01 * median))


# --- GradientNormMonitor -------------------------------------------------------------------------------------

class _NormOracle(pl.Callback):
    def __init__(self):
        self.total, self.per_param = {}, {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        grads = [p for p in pl_module.parameters() if p.grad is not None]
        self.total[trainer.global_step] = float(torch.nn.utils.clip_grad_norm_(grads, float("inf")))
        self.per_param[trainer.global_step] = {n: float(p.grad.norm()) for n, p in pl_module.named_parameters()}


def test_gradient_norm_monitor_matches_clip_grad_norm():
    monitor, oracle = GradientNormMonitor(layer_every_n_steps=5, weights_only=True), _NormOracle()
    _train(Tiny(), [monitor, oracle])
    frame = monitor.frame()
    assert list(frame["step"]) == list(range(12))
    for step, norm in zip(frame["step"], frame["grad_norm"]):
        assert norm == pytest.approx(oracle.total[step], rel=1e-6)
    layers = monitor.layer_frame()
    assert sorted(layers["step"].unique()) == [0, 5, 10]
    assert set(layers["parameter"]) == {"net.0.weight", "net.2.weight"}
    for row in layers.itertuples():
        assert row.grad_norm == pytest.approx(oracle.per_param[row.step][row.parameter], rel=1e-6)


def test_gradient_norm_monitor_logs_grad_norm(tmp_path):
    data = DigitsDataModule(flatten=True, train_fraction=0.25)
    result = fit(lambda: ClassifierModule(MLP(64, 10, hidden_sizes=(16,)), 10), data, max_epochs=1,
                 callbacks=[GradientNormMonitor()], test=False, log_every_n_steps=1)
    import pandas as pd

    logged = pd.read_csv(result.run_dir / "metrics.csv")["grad_norm"].dropna()
    assert len(logged) > 3 and (logged > 0).all()


# --- adaptive gradient clipping ------------------------------------------------------------------------------

def _agc_paper(weight, grad, clip_factor, eps):
    """Brock et al. (2021), eq. (3), one unit (row / output channel) at a time."""
    out, count = grad.clone(), 0
    units = range(weight.shape[0]) if weight.ndim > 1 else [None]
    for i in units:
        w, g = (weight, grad) if i is None else (weight[i], grad[i])
        w_norm = max(float(w.norm()), eps)
        g_norm = float(g.norm())
        if g_norm / w_norm > clip_factor:
            count += 1
            scaled = clip_factor * w_norm / g_norm * g
            if i is None:
                out = scaled
            else:
                out[i] = scaled
    return out, count


@pytest.mark.parametrize("shape", [(5, 7), (4, 3, 3, 3), (6,)])
@pytest.mark.parametrize("clip_factor", [0.01, 0.1, 1.0])
def test_adaptive_clip_grad_matches_the_paper_unitwise(shape, clip_factor):
    generator = torch.Generator().manual_seed(sum(shape))
    weight = torch.randn(shape, generator=generator)
    weight[0] = 0.0  # a zero unit: the eps floor decides
    param = nn.Parameter(weight)
    unit_scale = torch.logspace(-3, 1, shape[0]).reshape(-1, *[1] * (len(shape) - 1))  # some units clip, some not
    param.grad = torch.randn(shape, generator=generator) * unit_scale
    expected, expected_count = _agc_paper(param.detach(), param.grad.clone(), clip_factor, 1e-3)
    clipped = adaptive_clip_grad_([param], clip_factor=clip_factor, eps=1e-3)
    torch.testing.assert_close(param.grad, expected, rtol=1e-5, atol=1e-7)
    assert clipped == expected_count


def test_adaptive_clip_grad_over_many_tensors_matches_the_paper_each():
    # the list is processed in one fused pass: every tensor must still be clipped as if alone
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 7), (5,), (4, 3, 3, 3), (4,), (6, 2)]
    params = [nn.Parameter(torch.randn(shape, generator=generator)) for shape in shapes]
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator) * 0.05
    frozen = nn.Parameter(torch.randn(3, 3))  # no gradient: skipped, not an error
    expected = [_agc_paper(p.detach(), p.grad.clone(), 0.02, 1e-3) for p in params]
    clipped = adaptive_clip_grad_([params[0], frozen, *params[1:]], clip_factor=0.02, eps=1e-3)
    for param, (grad, _) in zip(params, expected):
        torch.testing.assert_close(param.grad, grad, rtol=1e-5, atol=1e-7)
    assert clipped == sum(count for _, count in expected) > 0
    assert frozen.grad is None
    assert adaptive_clip_grad_([frozen]) == 0


def _timm_agc():
    """timm's ``adaptive_clip_grad`` (the oracle), loaded from its file: ``import timm`` needs torchvision."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        pytest.skip("timm is not installed (the AGC oracle)")
    path = Path(spec.origin).parent / "utils" / "agc.py"
    module_spec = importlib.util.spec_from_file_location("_timm_agc", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.adaptive_clip_grad


def test_adaptive_clip_grad_spares_small_float16_units_as_timm_does():
    # the repro: a zero-initialized fp16 unit with gradient 1e-6 is far under its bound
    # clip_factor * eps = 1e-5 (norm sqrt(8) * 1e-6); flooring the gradient norm at fp16's smallest
    # normal (6.1e-5) clipped all four units
    ours, theirs = (nn.Parameter(torch.zeros(4, 8, dtype=torch.float16)) for _ in range(2))
    for param in (ours, theirs):
        param.grad = torch.full((4, 8), 1e-6, dtype=torch.float16)
    assert adaptive_clip_grad_([ours], clip_factor=0.01, eps=1e-3) == 0
    _timm_agc()([theirs], clip_factor=0.01, eps=1e-3)
    assert torch.equal(ours.grad, theirs.grad)
    assert torch.equal(ours.grad, torch.full((4, 8), 1e-6, dtype=torch.float16))


def test_adaptive_clip_grad_with_mixed_dtypes_matches_timm_per_tensor():
    # a float32 tensor sharing the list with a float16 one is decided by its own, unfloored norm
    generator = torch.Generator().manual_seed(1)
    small32 = nn.Parameter(torch.zeros(3, 5))
    small32.grad = torch.full((3, 5), 1e-6)  # norm 2.2e-6 < bound 1e-5: untouched
    half = nn.Parameter(torch.randn(6, 4, generator=generator).half())
    half.grad = (torch.randn(6, 4, generator=generator) * torch.logspace(-3, 0, 6)[:, None]).half()
    big32 = nn.Parameter(torch.randn(5, 7, generator=generator))
    big32.grad = torch.randn(5, 7, generator=generator) * torch.logspace(-4, 0, 5)[:, None]
    params = [small32, half, big32]
    twins = [nn.Parameter(p.detach().clone()) for p in params]
    for twin, param in zip(twins, params):
        twin.grad = param.grad.clone()
    originals = [p.grad.clone() for p in params]
    clipped = adaptive_clip_grad_(params, clip_factor=0.02, eps=1e-3)
    timm_agc = _timm_agc()
    for twin in twins:
        timm_agc([twin], clip_factor=0.02, eps=1e-3)
    assert torch.equal(small32.grad, twins[0].grad)
    torch.testing.assert_close(half.grad, twins[1].grad, rtol=2e-3, atol=1e-6)  # fp16 rounding of the norms
    torch.testing.assert_close(big32.grad, twins[2].grad, rtol=1e-5, atol=1e-8)
    changed = sum(int((twin.grad != original).flatten(1).any(1).sum()) for twin, original in zip(twins, originals))
    assert clipped == changed > 0


def test_agc_callback_bounds_units_and_spares_excluded():
    class After(pl.Callback):
        ratios, spared = [], []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            w, g = pl_module.net[0].weight.detach(), pl_module.net[0].weight.grad
            self.ratios.append(float((g.norm(dim=1) / w.norm(dim=1).clamp(min=1e-3)).max()))
            self.spared.append(float(pl_module.net[2].weight.grad.norm()))

    class Before(pl.Callback):
        norms = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.norms.append(float(pl_module.net[2].weight.grad.norm()))

    agc = AdaptiveGradientClipping(clip_factor=0.001, exclude=("net.2",))
    _train(Tiny(), [Before(), agc, After()])
    assert max(After.ratios) <= 0.001 * (1 + 1e-5)
    assert After.spared == Before.norms
    assert agc.steps == 12 and agc.clipped_units > 0


# --- resume and bad input ------------------------------------------------------------------------------------

def _all_callbacks():
    return [GradientNormMonitor(layer_every_n_steps=7), NonFiniteGuard("skip"),
            LossSpikeGuard(window=20, k=3.0, min_history=5), AdaptiveGradientClipping(0.05, exclude=("classifier",))]


def test_interrupted_and_resumed_run_matches_uninterrupted_one():
    data = DigitsDataModule(flatten=True, train_fraction=0.15, batch_size=32)  # 6 steps per epoch

    class Poisoned(ClassifierModule):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            return loss * float("nan") if self.global_step in (3, 15) else loss

    model = lambda: Poisoned(MLP(64, 10, hidden_sizes=(16,)), 10, lr=3e-3)  # noqa: E731
    straight_cbs, first_cbs, resumed_cbs = _all_callbacks(), _all_callbacks(), _all_callbacks()
    straight = fit(model, data, max_epochs=4, seed=1, test=False, callbacks=straight_cbs, name="straight")
    first = fit(model, data, max_epochs=2, seed=1, test=False, callbacks=first_cbs, name="resume")
    checkpoint = next((first.run_dir / "checkpoints").glob("*.ckpt"))
    resumed = fit(model, data, max_epochs=4, seed=1, test=False, callbacks=resumed_cbs, name="resume",
                  ckpt_path=str(checkpoint))
    for name, value in straight.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[name], value, msg=name)
    for a, b in zip(straight_cbs, resumed_cbs):
        assert repr(a.state_dict()) == repr(b.state_dict()), type(a).__name__  # repr: nan == nan
    assert straight_cbs[1].skipped == 2 and first_cbs[1].skipped == 1
    saved = torch.load(checkpoint, weights_only=True)["callbacks"]
    assert any("NonFiniteGuard" in key for key in saved)


@pytest.mark.parametrize("factory, match", [
    (lambda: NonFiniteGuard("ignore"), "policy must be one of"),
    (lambda: NonFiniteGuard("rollback", lr_factor=1.5), "lr_factor must be a number in \\(0, 1\\)"),
    (lambda: NonFiniteGuard("rollback", lr_factor=0), "lr_factor"),
    (lambda: NonFiniteGuard(snapshot_every_n_steps=0), "snapshot_every_n_steps"),
    (lambda: LossSpikeGuard(window=-5), "window must be an integer"),
    (lambda: LossSpikeGuard(k=0), "k must be a finite number > 0"),
    (lambda: LossSpikeGuard(window=10, min_history=11), "min_history must be an integer in \\[3, window=10\\]"),
    (lambda: LossSpikeGuard(rel_floor=-1), "rel_floor"),
    (lambda: GradientNormMonitor(layer_every_n_steps=0), "layer_every_n_steps"),
    (lambda: AdaptiveGradientClipping(clip_factor=-0.1), "clip_factor"),
    (lambda: AdaptiveGradientClipping(eps=float("nan")), "eps"),
])
def test_bad_arguments_raise_value_error_naming_them(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="exclude must be a sequence of strings"):
        AdaptiveGradientClipping(exclude="classifier")
