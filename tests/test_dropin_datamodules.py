"""The toolkit's DataModules under a ``pytorch_lightning`` and a ``lightning.pytorch`` Trainer, with a
LightningModule written here in each namespace. The oracle of each run is a plain PyTorch loop over
the DataModule's own loaders: the validation loss the Trainer logs equals the loop's mean
cross-entropy, the Trainer ran as many training batches as the train loader holds, and the user's
own batch hook is the one the Trainer calls (no hook of the other package taken for an override)."""

import importlib
import subprocess
import sys

import pytest
import pytorch_lightning
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data import (BreastCancerDataModule, DigitsDataModule, MNIST1DDataModule, ModularAdditionDataModule,
                          MoonsDataModule)

NAMESPACES = ["pytorch_lightning", "lightning.pytorch"]
DATAMODULES = {
    "digits": lambda: DigitsDataModule(batch_size=128),
    "mnist1d": lambda: MNIST1DDataModule(num_samples=600, flatten=True, batch_size=128),
    "breast_cancer": lambda: BreastCancerDataModule(batch_size=128),
    "moons": lambda: MoonsDataModule(batch_size=128),
    "modular": lambda: ModularAdditionDataModule(modulus=11, batch_size=32),
}


def _namespace(name):
    if name == "lightning.pytorch":
        pytest.importorskip("lightning", reason="the unified lightning package is not installed")
    return importlib.import_module(name)


def _user_module(pl, in_features, num_classes):
    """A user's LightningModule of namespace ``pl`` that counts the calls of its own batch hook."""

    class Linear(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))
            self.hook_calls = 0

        def on_after_batch_transfer(self, batch, dataloader_idx):
            self.hook_calls += 1
            return batch

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y), batch_size=len(y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Linear()


def _plain_loop_loss(module, loader):
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += float(F.cross_entropy(module.net(x), y, reduction="sum"))
            count += len(y)
    return total / count


@pytest.mark.slow
@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("name", list(DATAMODULES))
def test_a_toolkit_datamodule_trains_a_users_module_under_either_trainer(namespace, name, tmp_path):
    pl = _namespace(namespace)
    dm = DATAMODULES[name]()
    dm.setup()
    x, y = dm.tensors("train")
    module = _user_module(pl, x[0].numel(), int(y.max()) + 1)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         default_root_dir=tmp_path)
    trainer.fit(module, datamodule=dm)
    logged = trainer.validate(module, datamodule=dm, verbose=False)[0]["val_loss"]
    assert trainer.datamodule is dm and trainer.global_step == len(dm.train_dataloader())
    # the user's hook, not a DataModule hook of the other package taken for an override: fit's val + validate
    assert module.hook_calls == len(dm.train_dataloader()) + 2 * len(dm.val_dataloader())
    assert logged == pytest.approx(_plain_loop_loss(module, dm.val_dataloader()), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_the_security_wrappers_are_datamodules_of_either_namespace(namespace, tmp_path):
    pl = _namespace(namespace)
    from toolkit.security import PoisonedDataModule
    from toolkit.security.privacy import PoissonSampledDataModule

    for dm in (PoisonedDataModule(DigitsDataModule(batch_size=128), poison_rate=0.2),
               PoissonSampledDataModule(DigitsDataModule(batch_size=128))):
        assert isinstance(dm, pl.LightningDataModule) and isinstance(dm, pytorch_lightning.LightningDataModule)
        module = _user_module(pl, 64, 10)
        trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                             default_root_dir=tmp_path)
        trainer.fit(module, datamodule=dm)
        assert trainer.global_step == 2 and trainer.datamodule is dm and module.hook_calls == 2


@pytest.mark.slow
def test_a_pytorch_lightning_project_does_not_get_lightning_imported():
    """The toolkit adds ``lightning.pytorch``'s base only when the process has imported it: a
    ``pytorch_lightning`` project pays nothing; a DataModule built before ``import lightning`` is one
    of both namespaces after it, and pickles as the same class (``run_seeds`` workers)."""
    pytest.importorskip("lightning")
    code = """if True:
        import pickle, sys
        from toolkit.data import DigitsDataModule
        early = DigitsDataModule()
        print("lightning" in sys.modules, [c.__module__ for c in type(early).__mro__ if c.__module__.startswith("lightning")])
        import lightning.pytorch as L
        late = DigitsDataModule()
        again = pickle.loads(pickle.dumps(late))
        print(isinstance(early, L.LightningDataModule), isinstance(again, L.LightningDataModule), type(again) is type(late))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.split("\n")[:2] == ["False []", "True True True"], done.stdout


def _lr_module(pl):
    class Linear(pl.LightningModule):
        def __init__(self, lr=0.1):
            super().__init__()
            self.save_hyperparameters()
            torch.manual_seed(0)
            self.net = nn.Linear(64, 10)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x.flatten(1)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return Linear()


@pytest.mark.slow
def test_lr_range_test_takes_a_lightning_pytorch_module_and_a_plain_dataloader_and_leaves_the_callers_rng():
    """The same module in either namespace, fed a user's DataLoader: the same curve (Lightning's
    ``lr_find`` of that namespace), and the caller's random stream continues where it was."""
    from toolkit.stability import lr_range_test

    _namespace("lightning.pytorch")
    x, y = DigitsDataModule().tensors("train")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    curves = {}
    for name in NAMESPACES:
        module = _lr_module(importlib.import_module(name))
        torch.manual_seed(123)
        expected_next = torch.rand(3, generator=torch.Generator().manual_seed(0))  # a fresh seed-0 stream
        state = torch.get_rng_state()
        result = lr_range_test(module, loader, min_lr=1e-3, max_lr=10.0, num_training=20, early_stop_threshold=1e6)
        after = torch.rand(3)
        torch.set_rng_state(state)
        assert torch.equal(after, torch.rand(3)) and not torch.equal(after, expected_next)
        curves[name] = result.frame
    assert len(curves["pytorch_lightning"]) == 20
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(curves["pytorch_lightning"], curves["lightning.pytorch"])
