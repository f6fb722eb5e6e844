"""Faults: a run killed with SIGKILL resumes in its own folder and ends bitwise equal to an
uninterrupted one; the loader's position survives a checkpoint; corrupt and altered checkpoints are
refused clearly."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolkit.data import TensorBatchLoader

SCRIPT = Path(__file__).with_name("resume_script.py")
REPO = SCRIPT.parent.parent


def _run(mode: str, runs_dir: Path, out: Path, schedule: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOOLKIT_QUIET": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), mode, str(runs_dir), str(out), schedule], env=env,
                          capture_output=True, text=True, timeout=600)


# ---- the loader's position ------------------------------------------------------------------------
def test_loader_state_resumes_a_plain_loop_mid_epoch_without_replaying_or_skipping():
    x, y = torch.arange(50).float().unsqueeze(1), torch.arange(50)
    full = TensorBatchLoader(x, y, batch_size=8, shuffle=True, seed=4)
    full.sampler.set_epoch(2)
    expected = [b[1] for b in full]
    first = TensorBatchLoader(x, y, batch_size=8, shuffle=True, seed=4)
    first.sampler.set_epoch(2)
    seen = []
    for batch in first:
        seen.append(batch[1])
        if len(seen) == 3:
            break
    state = first.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 3
    second = TensorBatchLoader(x, y, batch_size=8, shuffle=True, seed=4)
    second.load_state_dict(state)
    seen += [b[1] for b in second]
    assert len(seen) == len(expected) and all(torch.equal(a, b) for a, b in zip(seen, expected))
    # the iteration after that is a whole epoch again
    assert len(list(second)) == len(second)


def test_loader_state_after_the_last_batch_points_at_the_next_epoch():
    loader = TensorBatchLoader(torch.zeros(10, 1), batch_size=4, shuffle=True)
    list(loader)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batches"] == 0


def test_loader_refuses_a_state_from_a_different_dataset():
    state = TensorBatchLoader(torch.zeros(10, 1), batch_size=4).state_dict()
    with pytest.raises(ValueError, match="num_samples"):
        TensorBatchLoader(torch.zeros(12, 1), batch_size=4).load_state_dict(state)
    with pytest.raises(ValueError, match="state_dict"):
        TensorBatchLoader(torch.zeros(10, 1), batch_size=4).load_state_dict({"batch": 1})


# ---- kill -9 and resume through fit -------------------------------------------------------------
_spec = importlib.util.spec_from_file_location("resume_script", SCRIPT)
_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_script)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["cosine", "constant"])  # cosine reads estimated_stepping_batches (#20550)
def test_a_run_killed_with_sigkill_mid_epoch_resumes_its_folder_and_ends_bitwise_equal(tmp_path, schedule):
    killed = _run("kill", tmp_path / "a", tmp_path / "unused.pt", schedule)
    assert killed.returncode == -9, killed.stderr[-2000:]          # SIGKILL, mid-training
    run_dir = tmp_path / "a" / "run" / "version_0"
    assert (run_dir / "checkpoints" / "epoch=1-step=20.ckpt").is_file()  # the last one is mid-epoch 1
    assert not (run_dir / "checkpoints" / "epoch=1-step=25.ckpt").exists()
    resumed = _script.train("resume", str(tmp_path / "a"), schedule)   # a new process would do the same
    # the same folder (no version_1), from the last checkpoint, not from step 0
    assert resumed.run_dir == run_dir and not (tmp_path / "a" / "run" / "version_1").exists()
    assert resumed.extra["resumed_from"].name == "last.ckpt"
    assert len(resumed.history) == _script.EPOCHS                   # epoch 0's row survived the kill
    full = _script.train("full", str(tmp_path / "b"), schedule)
    assert full.trainer.global_step == resumed.trainer.global_step
    a, b = resumed.module.state_dict(), full.module.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs by {(a[key] - b[key]).abs().max().item()}"


def test_fit_last_with_no_previous_run_starts_fresh_and_a_missing_path_is_refused(tmp_path):
    from toolkit.data import MoonsDataModule
    from toolkit.models import MLP
    from toolkit.training import ClassifierModule, fit

    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        fit(lambda: ClassifierModule(MLP(2, 2), num_classes=2), MoonsDataModule(n_samples=100),
            ckpt_path=str(tmp_path / "none.ckpt"))
    result = fit(lambda: ClassifierModule(MLP(2, 2, hidden_sizes=(8,)), num_classes=2),
                 MoonsDataModule(n_samples=100), max_epochs=1, test=False, accelerator="cpu",
                 runs_dir=tmp_path, ckpt_path="last", enable_progress_bar=False)
    assert result.run_dir == tmp_path / "run" / "version_0" and result.extra["resumed_from"] is None


def test_inside_lightning_the_saved_loader_position_is_the_batches_trained_on():
    """Lightning prefetches a batch only from loaders without a length; if it ever read ahead of this
    one, the position saved in a checkpoint would skip a batch on resume. Checked at every step."""
    import pytorch_lightning as pl

    x, y = torch.randn(40, 2), torch.randint(0, 2, (40,))
    loader = TensorBatchLoader(x, y, batch_size=8, shuffle=True)
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((batch_idx, loader.state_dict()["batches"], loader.state_dict()["epoch"]))

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[Probe()])
    trainer.fit(Tiny(), loader)
    # within an epoch: batches handed out == batches trained; after its last batch: the next epoch's start
    assert seen == [(i, (i + 1) % 5, e + (i == 4)) for e in range(2) for i in range(5)]


def test_plain_lightning_resume_from_a_checkpoint_written_at_an_epochs_last_batch(tmp_path):
    """A step checkpoint written at the last batch of an epoch: the resumed run trains the next epoch
    in full (the loader's saved position is the next epoch's start, not 'all batches of this one')."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    x, y = torch.randn(40, 2, generator=torch.Generator().manual_seed(0)), torch.arange(40) % 2

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(2, 2)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def trainer(epochs, **kwargs):
        return pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=tmp_path, **kwargs)

    straight = Tiny()
    trainer(2, enable_checkpointing=False).fit(straight, TensorBatchLoader(x, y, batch_size=8, shuffle=True))
    first = trainer(1, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=5, save_top_k=-1)])
    first.fit(Tiny(), TensorBatchLoader(x, y, batch_size=8, shuffle=True))
    resumed, second = Tiny(), trainer(2, enable_checkpointing=False)
    second.fit(resumed, TensorBatchLoader(x, y, batch_size=8, shuffle=True), ckpt_path=tmp_path / "ck" /
               "epoch=0-step=5.ckpt")
    assert second.global_step == 10
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_fit_last_resumes_the_run_of_the_same_seed_only(tmp_path):
    """``run_seeds`` gives every seed the same name: "last" must not resume another seed's run."""
    from toolkit.data import MoonsDataModule
    from toolkit.models import MLP
    from toolkit.training import ClassifierModule, fit

    def run(seed, epochs, ckpt_path=None):
        return fit(lambda: ClassifierModule(MLP(2, 2, hidden_sizes=(8,)), num_classes=2),
                   MoonsDataModule(n_samples=100), max_epochs=epochs, seed=seed, test=False, accelerator="cpu",
                   runs_dir=tmp_path, ckpt_path=ckpt_path, enable_progress_bar=False)

    first = run(0, 1)
    other_seed = run(1, 1, "last")
    assert other_seed.extra["resumed_from"] is None and other_seed.run_dir != first.run_dir
    again = run(0, 2, "last")
    assert again.run_dir == first.run_dir and again.extra["resumed_from"] is not None
    assert again.trainer.global_step == 2 * first.trainer.global_step  # one more epoch, not two


@pytest.mark.slow
def test_fit_last_resumes_a_unified_lightning_module_exactly_with_its_digests(tmp_path):
    """A ``lightning.pytorch`` module gets that namespace's Trainer, checksum plugin, ExactResume and
    resumed logger: interrupted after 2 epochs and resumed to 4, it ends bitwise equal to 4 epochs straight."""
    L = pytest.importorskip("lightning")
    from torch import nn

    from toolkit.training import fit

    class UsersData(L.LightningDataModule):  # the toolkit's DataModules are pytorch_lightning ones
        def train_dataloader(self):  # a stateful loader, as exact resuming needs (ExactResume's docstring)
            x = torch.randn(160, 2, generator=torch.Generator().manual_seed(0))
            return TensorBatchLoader(x, (x[:, 0] * x[:, 1] > 0).long(), batch_size=32, shuffle=True, seed=1)

    class Users(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))

        def training_step(self, batch, batch_idx):
            loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    def run(epochs, root, ckpt_path=None):
        return fit(Users, UsersData(), max_epochs=epochs, seed=5, test=False,
                   accelerator="cpu", runs_dir=root, ckpt_path=ckpt_path, enable_progress_bar=False,
                   callbacks=[L.pytorch.callbacks.ModelCheckpoint(save_last=True)])

    straight = run(4, tmp_path / "straight")
    first = run(2, tmp_path / "resumed")
    assert type(first.trainer).__module__.startswith("lightning.pytorch")
    last = first.run_dir / "checkpoints" / "last.ckpt"
    assert (last.parent / "last.ckpt.sha256").is_file()
    resumed = run(4, tmp_path / "resumed", "last")
    assert resumed.run_dir == first.run_dir and resumed.extra["resumed_from"] is not None
    for name, value in straight.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[name], value), name
    assert list(resumed.history["epoch"]) == [0, 1, 2, 3]  # the rows before the interruption kept
