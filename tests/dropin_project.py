"""A user's own Lightning project (no toolkit modules or DataModules) that plugs in the toolkit's
callbacks, metrics and helpers and checks each one's behaviour against an oracle.

Run as a script (Lightning's DDP re-runs the script file in the second process):

    python tests/dropin_project.py --namespace {pytorch_lightning,lightning} --scenario SCENARIO --out result.json

Scenarios: base, accum2 (accumulate_grad_batches=2), bf16 (bf16-mixed), clip (gradient_clip_val),
resume (1 epoch with ModelCheckpoint(save_last), then fresh module and callbacks resumed from
last.ckpt to epoch 2), ddp (2 CPU processes). The modules:

- R: regression on dict batches {"features", "target"}, residual blocks with toolkit DropPath, AdamW
  with a per-step StepLR;
- C: a classifier with encoder/head whose forward returns an output object with .logits, dict
  batches {"x", "label"}, torchmetrics-style metrics in validation;
- G: a GAN with manual optimization and two optimizers (generator, discriminator);
- D: the user's classifier on the toolkit's own DigitsDataModule (a DataModule of the namespace's
  Trainer, under DDP sharded by rank).

The result file holds one record per (component, module): ``ok`` and a ``detail`` with the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

parser = argparse.ArgumentParser()
parser.add_argument("--namespace", choices=("pytorch_lightning", "lightning"), default="pytorch_lightning")
parser.add_argument("--scenario", default="base")
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()

if args.namespace == "lightning":
    import lightning.pytorch as pl
else:
    import pytorch_lightning as pl

from toolkit.calibration import BrierScore, NegativeLogLikelihood, TemperatureScaling, TemperatureScalingCallback
from toolkit.cost import CostMeter, pruning_callback, weight_sparsity
from toolkit.regularization import DropBlockSchedule, DropPath
from toolkit.data import DigitsDataModule
from toolkit.security import RobustAccuracyCallback, pgd, robust_accuracy, safe_load, sha256_file
from toolkit.stability import (AdaptiveGradientClipping, GradientNormMonitor, LossSpikeGuard, NonFiniteGuard,
                               SkippedStepWarning, unitwise_norm)

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
SCENARIO = args.scenario
DDP = SCENARIO == "ddp"
N_TRAIN, N_VAL, BATCH = 128, 96, 16  # N_VAL divisible by 2 ranks: no padded duplicates under DDP
EPOCHS = 2
RESULTS: list[dict] = []


def record(component: str, module: str, ok: bool, **detail) -> None:
    RESULTS.append({"component": component, "module": module, "ok": bool(ok), "detail": detail})


# ---- data and modules: the user's own ---------------------------------------------------------------------
class DictDataset(torch.utils.data.Dataset):
    def __init__(self, columns: dict):
        self.columns = columns

    def __len__(self):
        return len(next(iter(self.columns.values())))

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.columns.items()}


def loader(columns, shuffle=False):
    return torch.utils.data.DataLoader(DictDataset(columns), batch_size=BATCH, shuffle=shuffle)


g = torch.Generator().manual_seed(0)
REG = {"features": torch.randn(N_TRAIN + N_VAL, 8, generator=g)}
REG["target"] = REG["features"][:, :2].sum(1) + 0.1 * torch.randn(N_TRAIN + N_VAL, generator=g)
CLS_X = torch.rand(N_TRAIN + N_VAL, 16, generator=g)
CLS_Y = (CLS_X[:, :8].sum(1) > CLS_X[:, 8:].sum(1)).long() + 2 * (CLS_X[:, 0] > 0.5).long()
CLS_Y = torch.where(torch.rand(len(CLS_Y), generator=g) < 0.15, torch.randint(0, 4, CLS_Y.shape, generator=g), CLS_Y)


def split(columns, part):
    return {k: (v[:N_TRAIN] if part == "train" else v[N_TRAIN:]) for k, v in columns.items()}


class Poison:
    """Faults injected at chosen optimizer steps: "nan" or a loss multiplier."""

    def __init__(self, plan=None):
        self.plan = dict(plan or {})

    def __call__(self, loss, key):
        kind = self.plan.get(key)
        if kind == "nan":
            return loss * float("nan")
        return loss * kind if kind is not None else loss


class Residual(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layer, self.drop = nn.Linear(width, width), DropPath(0.1)

    def forward(self, x):
        return x + self.drop(torch.relu(self.layer(x)))


class R(pl.LightningModule):
    def __init__(self, poison=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), Residual(32), Residual(32), nn.Dropout(0.1), nn.Linear(32, 1))
        self.poison = Poison(poison)

    def training_step(self, batch, batch_idx):
        loss = F.mse_loss(self.net(batch["features"]).squeeze(1), batch["target"])
        return self.poison(loss, self.global_step)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.mse_loss(self.net(batch["features"]).squeeze(1), batch["target"]), sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=1e-2)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 5, 0.9),
                                                   "interval": "step"}}


@dataclasses.dataclass
class ClsOutput:
    logits: torch.Tensor
    features: torch.Tensor


class C(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)
        self.brier, self.nll = BrierScore(), NegativeLogLikelihood()

    def forward(self, x):
        features = self.encoder(x)
        return ClsOutput(self.head(features), features)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch["x"]).logits, batch["label"])

    def validation_step(self, batch, batch_idx):
        probs = self(batch["x"]).logits.softmax(-1)  # bf16 on CPU under bf16-mixed
        self.brier.update(probs, batch["label"])
        self.nll.update(probs, batch["label"])
        self.log_dict({"val_brier": self.brier, "val_nll": self.nll})

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=2e-2)


class G(pl.LightningModule):
    def __init__(self, poison=None):
        super().__init__()
        torch.manual_seed(0)
        self.automatic_optimization = False
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8))
        self.discriminator = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.poison = Poison(poison)
        self.noise = torch.Generator().manual_seed(1)

    def training_step(self, batch, batch_idx):
        real = batch["features"]
        self.calls = self.global_step // 2  # training_step calls so far (two optimizer steps each)
        opt_g, opt_d = self.optimizers()
        fake = self.generator(torch.randn(len(real), 4, generator=self.noise).to(real))
        ones, zeros = torch.ones(len(real), 1, device=real.device), torch.zeros(len(real), 1, device=real.device)
        g_loss = self.poison(F.binary_cross_entropy_with_logits(self.discriminator(fake), ones), (self.calls, "g"))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        d_loss = (F.binary_cross_entropy_with_logits(self.discriminator(real), ones)
                  + F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()), zeros))
        d_loss = self.poison(d_loss, (self.calls, "d"))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

    def configure_optimizers(self):
        return (torch.optim.Adam(self.generator.parameters(), lr=5e-3),
                torch.optim.Adam(self.discriminator.parameters(), lr=5e-3))


class Spy(pl.Callback):
    """The oracle side of the stability checks: before the toolkit callback acts, record the global
    gradient norm of the parameters of the optimizer being stepped, and its index."""

    def __init__(self):
        self.norms: dict[int, list[float]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        index = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([gr.float().norm() for gr in grads])) if grads else torch.zeros(())
        self.norms.setdefault(index, []).append(float(norm))


class GradSnapshot(pl.Callback):
    """Copies of every gradient and weight at ``on_before_optimizer_step``, with the index of the
    optimizer being stepped; one placed before and one after a callback shows what it changed."""

    def __init__(self):
        self.steps: list[tuple[int, dict, dict]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        index = next(i for i, o in enumerate(trainer.optimizers) if o is optimizer)
        named = [(n, p) for n, p in pl_module.named_parameters() if p.grad is not None]
        self.steps.append((index, {n: p.grad.detach().clone() for n, p in named},
                           {n: p.detach().clone() for n, p in named}))


# ---- running ----------------------------------------------------------------------------------------------
MANUAL = {"G"}
KWARGS = {"base": {}, "accum2": {"accumulate_grad_batches": 2}, "bf16": {"precision": "bf16-mixed"},
          "clip": {"gradient_clip_val": 0.5}, "resume": {}, "ddp": {}}[SCENARIO]


def trainer(callbacks, root, max_epochs=EPOCHS, **extra):
    options = dict(max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   accelerator="cpu", num_sanity_val_steps=0, default_root_dir=root, callbacks=callbacks,
                   log_every_n_steps=1)
    if DDP:
        options.update(strategy=pl.strategies.DDPStrategy(find_unused_parameters=True), devices=2)
    else:
        options.update(devices=1)
    options.update(KWARGS)
    options.update(extra)
    return pl.Trainer(**options)


def data_for(name):
    if name == "C":
        cols = {"x": CLS_X, "label": CLS_Y}
    else:
        cols = REG
    return loader(split(cols, "train"), shuffle=True), loader(split(cols, "val"))


def run(name, make_module, make_callbacks, enable_checkpointing=False):
    """Train; with the resume scenario, stop after epoch 1 and resume fresh objects from last.ckpt."""
    train, val = data_for(name)
    root = tempfile.mkdtemp()
    if SCENARIO != "resume":
        module, callbacks = make_module(), make_callbacks()
        t = trainer(callbacks, root, enable_checkpointing=enable_checkpointing)
        t.fit(module, train, val)
        return module, callbacks, t
    first = trainer([*make_callbacks(), pl.callbacks.ModelCheckpoint(dirpath=root, save_last=True)], root, max_epochs=1)
    first.fit(make_module(), train, val)
    module, callbacks = make_module(), make_callbacks()
    t = trainer([*callbacks, pl.callbacks.ModelCheckpoint(dirpath=root + "/2", save_last=True)], root)
    t.fit(module, train, val, ckpt_path=os.path.join(root, "last.ckpt"))
    return module, callbacks, t


def steps_per_epoch(name):
    batches = math.ceil(N_TRAIN / BATCH / (2 if DDP else 1))
    if name in MANUAL:
        return 2 * batches
    return math.ceil(batches / KWARGS.get("accumulate_grad_batches", 1))


def check_gradient_norm_monitor(name, make):
    module, (spy, monitor), t = run(name, make, lambda: [Spy(), GradientNormMonitor(layer_every_n_steps=3)])
    epochs_here = 1 if SCENARIO == "resume" else EPOCHS  # the resumed run's spy saw epoch 2 only
    ok, detail = True, {}
    for index, norms in spy.norms.items():
        got = [n for _, n in monitor.histories[index]][-len(norms):]
        ok &= len(norms) == epochs_here * steps_per_epoch(name) // (2 if name in MANUAL else 1)
        ok &= all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-8) for a, b in zip(got, norms))
        detail[f"optimizer{index}"] = {"steps": len(norms), "last": got[-1], "oracle": norms[-1]}
    if SCENARIO == "resume":
        ok &= len(monitor.history) == EPOCHS * steps_per_epoch(name) // (2 if name in MANUAL else 1)
    ok &= math.isclose(float(t.callback_metrics["grad_norm"]), monitor.history[-1][1], rel_tol=1e-5)
    record("GradientNormMonitor", name, ok, **detail)


def check_nonfinite_skip(name, make):
    bad_step = steps_per_epoch(name) + 1  # in epoch 2 (after the resume)
    poison = {bad_step: "nan"} if name != "G" else {(bad_step // 2, "d"): "nan"}
    caught = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedStepWarning)
        module, (guard,), t = run(name, lambda: make(poison), lambda: [NonFiniteGuard("skip")])
    warned = sum(issubclass(w.category, SkippedStepWarning) for w in caught)
    finite = all(bool(torch.isfinite(p).all()) for p in module.parameters())
    record("NonFiniteGuard(skip)", name, guard.skipped == 1 and finite and warned >= 1 * (t.global_rank == 0),
           skipped=guard.skipped, warned=warned, finite=finite)


def check_nonfinite_rollback(name, make):
    bad = steps_per_epoch(name) + 3
    poison = {bad: "nan"} if name != "G" else {(bad // 2, "d"): "nan"}
    module, (guard,), t = run(name, lambda: make(poison), lambda: [NonFiniteGuard("rollback", snapshot_every_n_steps=3)])
    finite = all(bool(torch.isfinite(p).all()) for p in module.parameters())
    lrs = [o.param_groups[0]["lr"] for o in t.optimizers]
    poisoned = 1 if name == "G" else 0  # the discriminator's optimizer in G
    optimizer = guard.events[0].get("optimizer") if guard.events else None
    record("NonFiniteGuard(rollback)", name, guard.rollbacks == 1 and finite and not guard.stopped
           and optimizer == poisoned, rollbacks=guard.rollbacks, finite=finite, lrs=lrs, optimizer=optimizer,
           expected_optimizer=poisoned)


def check_loss_spike(name, make):
    spike = steps_per_epoch(name) + 2
    poison = {spike: 1000.0} if name != "G" else {(spike // 2, "d"): 1000.0}
    guard_factory = lambda: [LossSpikeGuard(window=12, k=12.0, min_history=4)]  # noqa: E731
    module, (guard,), t = run(name, lambda: make(poison), guard_factory)
    expected = [2 * (spike // 2) + 1] if name == "G" else [spike]  # G: the discriminator's step
    record("LossSpikeGuard", name, guard.skipped_steps == expected, skipped_steps=guard.skipped_steps,
           expected=expected)


def check_agc(name, make):
    """The oracle is eq. (3) of Brock et al. (2021) on the gradients seen just before and just after
    the callback: every unit of the stepped optimizer's parameters ends within ``clip_factor`` of its
    weight norm, the units over it are the ones counted, and the other optimizer's gradients (G's
    stale discriminator gradients at the generator's step) are left as they were."""
    clip, eps = 0.01, 1e-3
    module, (before, agc, after), t = run(name, make, lambda: [GradSnapshot(), AdaptiveGradientClipping(clip, eps),
                                                               GradSnapshot()])
    total = (1 if SCENARIO == "resume" else EPOCHS) * steps_per_epoch(name)
    ok, over, worst = len(before.steps) == len(after.steps) == total, 0, 0.0
    for (index, grads, weights), (_, clipped, _) in zip(before.steps, after.steps):
        stepped = {n for n, p in module.named_parameters()
                   if any(p is q for q in t.optimizers[index].param_groups[0]["params"])}
        for n, grad in grads.items():
            if n not in stepped:
                ok &= torch.equal(clipped[n], grad)
                continue
            bound = clip * unitwise_norm(weights[n]).clamp_min(eps)
            over += int((unitwise_norm(grad) > bound).sum())
            worst = max(worst, float((unitwise_norm(clipped[n]) / bound).max()))
    ok &= worst <= 1 + 1e-4 and over > 0 and agc.steps == EPOCHS * steps_per_epoch(name)
    if SCENARIO != "resume":  # the resumed callback's count includes the first run's units
        ok &= agc.clipped_units == over
    record("AdaptiveGradientClipping", name, ok, steps=agc.steps, expected_steps=EPOCHS * steps_per_epoch(name),
           clipped_units=agc.clipped_units, oracle_units_over=over, worst_ratio_after=worst)


def check_cost_meter(name, make):
    """``CostMeter()`` (its default reads the batch size of dict batches) and a second instance with
    ``batch_size_fn`` in the same run (distinct state keys), against the counts the set-up implies."""
    by_hand = lambda batch: len(batch["features"])  # noqa: E731
    module, (meter, twin), t = run(name, make, lambda: [CostMeter(), CostMeter(batch_size_fn=by_hand)])
    batches = EPOCHS * math.ceil(N_TRAIN / BATCH / (2 if DDP else 1))
    samples = EPOCHS * N_TRAIN // (2 if DDP else 1)
    optimizer_steps = EPOCHS * steps_per_epoch(name)
    for component, summary in (("CostMeter()", meter.summary()), ("CostMeter(batch_size_fn)", twin.summary())):
        record(component, name, summary["steps"] == batches and summary["samples"] == samples
               and summary["optimizer_steps"] == optimizer_steps and summary["samples_per_s"] > 0,
               steps=summary["steps"], optimizer_steps=summary["optimizer_steps"], samples=summary["samples"],
               expected=(batches, optimizer_steps, samples))


def check_pruning(name, make):
    module, _, t = run(name, make, lambda: [pruning_callback(0.5, at_epoch=0)])
    sparsity = weight_sparsity(module)
    record("pruning_callback(0.5)", name, abs(sparsity - 0.5) < 0.01, sparsity=sparsity)


def check_drop_schedule(name, make):
    module, (schedule,), t = run(name, make, lambda: [DropBlockSchedule(drop_prob=0.2, ramp_fraction=0.5,
                                                                          layer_types=(DropPath,))])
    rates = [m.drop_prob for m in module.modules() if isinstance(m, DropPath)]
    record("DropBlockSchedule(DropPath)", name, len(rates) == 2 and all(math.isclose(r, 0.2) for r in rates),
           rates=rates)


def check_temperature(name):
    train, val = data_for(name)
    root = tempfile.mkdtemp()
    factory = lambda: [TemperatureScalingCallback()]  # noqa: E731
    best = lambda: pl.callbacks.ModelCheckpoint(dirpath=root, monitor="val_nll", mode="min")  # noqa: E731
    if SCENARIO == "resume":
        trainer([*factory(), pl.callbacks.ModelCheckpoint(dirpath=root + "/a", save_last=True)], root,
                max_epochs=1).fit(C(), train, val)
        module, (tsc,), checkpoint = C(), factory(), best()
        t = trainer([tsc, checkpoint], root)
        t.fit(module, train, val, ckpt_path=os.path.join(root, "a", "last.ckpt"))
    else:
        module, (tsc,), checkpoint = C(), factory(), best()
        t = trainer([tsc, checkpoint], root, enable_checkpointing=True)
        t.fit(module, train, val)
    pickled = torch.load(checkpoint.best_model_path, weights_only=False, map_location="cpu")
    verified = safe_load(checkpoint.best_model_path, expected_sha256=sha256_file(checkpoint.best_model_path))
    same = verified["state_dict"].keys() == pickled["state_dict"].keys() and all(
        torch.equal(verified["state_dict"][k], v) for k, v in pickled["state_dict"].items())
    record("safe_load(Lightning checkpoint)", "C", same and verified["callbacks"].keys() == pickled["callbacks"].keys()
           and len(verified["callbacks"]) >= 2, tensors=len(pickled["state_dict"]),
           callback_states=sorted(verified["callbacks"]))
    saved = pickled["state_dict"]
    fresh = C()
    attach = __import__("toolkit.calibration", fromlist=["attach_temperature_scaling"]).attach_temperature_scaling
    attach(fresh)
    fresh.load_state_dict(saved)
    fresh.temperature_scaling.applied = False
    with torch.no_grad():
        raw = fresh(split({"x": CLS_X}, "val")["x"]).logits.float()
    oracle = TemperatureScaling().fit(raw, split({"y": CLS_Y}, "val")["y"]).temperature
    in_ckpt = float(saved["temperature_scaling.log_temperature"].exp())
    fresh.temperature_scaling.applied = True
    with torch.no_grad():
        scaled = fresh(split({"x": CLS_X}, "val")["x"]).logits.float()
    ok = math.isclose(in_ckpt, oracle, rel_tol=2e-2 if SCENARIO == "bf16" else 1e-5)  # bf16: logits rounded
    ok &= torch.allclose(scaled, raw / in_ckpt, rtol=1e-4, atol=1e-5) and abs(in_ckpt - 1) > 1e-3
    record("TemperatureScalingCallback", "C", ok, temperature_in_best_ckpt=in_ckpt, oracle=oracle)


def check_robust_accuracy(name):
    x, y = split({"x": CLS_X}, "val")["x"], split({"y": CLS_Y}, "val")["y"]
    module, (callback,), t = run(name, C, lambda: [RobustAccuracyCallback(epsilon=0.05, data=(x, y), steps=3,
                                                                          input_range=(0.0, 1.0))])
    expected = robust_accuracy(module, (x, y), pgd, epsilons=(0.05,), steps=3, input_range=(0.0, 1.0))
    value = callback.history[-1][1]
    record("RobustAccuracyCallback", "C", abs(value - float(expected["robust_acc"].iloc[0])) <= 2 / len(y),
           value=value, oracle=float(expected["robust_acc"].iloc[0]))


def check_metrics(name):
    module, _, t = run(name, C, lambda: [])
    x, y = split({"x": CLS_X}, "val")["x"], split({"y": CLS_Y}, "val")["y"]
    with torch.no_grad():
        probs = module(x).logits.float().softmax(-1)
    brier = float(((probs - F.one_hot(y, 4)) ** 2).sum(1).mean())  # the closed forms, float32
    nll = float(-probs[torch.arange(len(y)), y].log().mean())
    got, got_nll = float(t.callback_metrics["val_brier"]), float(t.callback_metrics["val_nll"])
    tol = 2e-2 if SCENARIO == "bf16" else 1e-5
    record("BrierScore/NLL in validation_step", "C", math.isclose(got, brier, abs_tol=tol)
           and math.isclose(got_nll, nll, abs_tol=tol), logged=(got, got_nll), oracle=(brier, nll))


class DigitsUser(pl.LightningModule):
    """The user's own classifier on the toolkit's DigitsDataModule; a torchmetrics mean of the
    per-sample validation losses, synced over ranks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        self.val_loss = __import__("torchmetrics").MeanMetric()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.val_loss.update(F.cross_entropy(self.net(x), y, reduction="none"))
        self.log("val_loss", self.val_loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def check_toolkit_datamodule():
    """A toolkit DataModule under this namespace's Trainer and set-up: the steps its loader implies
    (under DDP each rank a disjoint half), and a validation loss equal to a plain loop over the
    whole validation split (so the ranks' shards cover it exactly once)."""
    root = tempfile.mkdtemp()
    make_dm = lambda: DigitsDataModule(batch_size=64, flatten=True)  # noqa: E731
    if SCENARIO == "resume":
        trainer([pl.callbacks.ModelCheckpoint(dirpath=root, save_last=True)], root,
                max_epochs=1).fit(DigitsUser(), datamodule=make_dm())
        module, dm = DigitsUser(), make_dm()
        t = trainer([], root)
        t.fit(module, datamodule=dm, ckpt_path=os.path.join(root, "last.ckpt"))
    else:
        module, dm = DigitsUser(), make_dm()
        t = trainer([], root)
        t.fit(module, datamodule=dm)
    x, y = dm.tensors("val")
    with torch.no_grad():
        oracle = float(F.cross_entropy(module.net(x), y))
    n_train = len(dm.tensors("train")[1])
    per_epoch = math.ceil(math.ceil(n_train / 64 / (2 if DDP else 1)) / KWARGS.get("accumulate_grad_batches", 1))
    logged = float(t.callback_metrics["val_loss"])
    tol = 2e-2 if SCENARIO == "bf16" else 1e-5
    record("toolkit DataModule (DigitsDataModule)", "D", t.global_step == EPOCHS * per_epoch
           and isinstance(dm, pl.LightningDataModule) and math.isclose(logged, oracle, rel_tol=tol),
           global_step=t.global_step, expected=EPOCHS * per_epoch, val_loss=logged, oracle=oracle)


CHECKS = [
    ("R", lambda: check_gradient_norm_monitor("R", R)), ("G", lambda: check_gradient_norm_monitor("G", G)),
    ("R", lambda: check_nonfinite_skip("R", R)), ("G", lambda: check_nonfinite_skip("G", G)),
    ("R", lambda: check_nonfinite_rollback("R", R)), ("G", lambda: check_nonfinite_rollback("G", G)),
    ("R", lambda: check_loss_spike("R", R)), ("G", lambda: check_loss_spike("G", G)),
    ("R", lambda: check_agc("R", R)), ("G", lambda: check_agc("G", G)),
    ("R", lambda: check_cost_meter("R", R)), ("G", lambda: check_cost_meter("G", G)),
    ("R", lambda: check_pruning("R", R)), ("G", lambda: check_pruning("G", G)),
    ("R", lambda: check_drop_schedule("R", R)),
    ("C", lambda: check_temperature("C")), ("C", lambda: check_robust_accuracy("C")), ("C", lambda: check_metrics("C")),
    ("D", check_toolkit_datamodule),
]
if SCENARIO in ("accum2", "clip"):  # Lightning forbids them under manual optimization: no G
    CHECKS = [(name, check) for name, check in CHECKS if name != "G"]
ONLY = os.environ.get("DROPIN_ONLY")  # e.g. "R" to run one module's checks
for number, (name, check) in enumerate(CHECKS):
    if ONLY and name != ONLY:
        continue
    try:
        check()
    except Exception as error:  # a crash is a failed record, not the end of the run
        RESULTS.append({"component": f"crash in check {number}", "module": name, "ok": False,
                        "detail": {"error": f"{type(error).__name__}: {error}"[:500]}})

probe = trainer([], tempfile.mkdtemp(), max_epochs=1, limit_train_batches=1, limit_val_batches=0)
probe.fit(R(), data_for("R")[0])
record("the scenario itself", "-", probe.world_size == (2 if DDP else 1)
       and type(probe).__module__.startswith("lightning" if args.namespace == "lightning" else "pytorch_lightning"),
       world_size=probe.world_size, trainer=type(probe).__module__, toolkit=__import__("toolkit").__file__)
rank = int(os.environ.get("LOCAL_RANK", 0))
if rank == 0:
    args.out.write_text(json.dumps({"namespace": args.namespace, "scenario": SCENARIO, "results": RESULTS}))
sys.exit(0)
