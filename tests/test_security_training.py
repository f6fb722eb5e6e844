"""Adversarial training (PGD-AT, FGSM-RS) and the robust-accuracy callback, with minimal modules."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data import DigitsDataModule, TensorBatchLoader
from toolkit.models import MLP
from toolkit.security import AdversarialClassifierModule, RobustAccuracyCallback, fgsm, pgd, robust_accuracy
from toolkit.training import ClassifierModule

from _helpers import quiet_trainer as _trainer


@pytest.mark.parametrize("attack", ["pgd", "fgsm_rs", "fgsm"])
def test_training_step_is_the_loss_on_the_attacks_examples(attack):
    torch.manual_seed(0)
    module = AdversarialClassifierModule(nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)),
                                         num_classes=3, epsilon=0.1, attack=attack, attack_steps=3)
    x, y = torch.rand(16, 6), torch.randint(0, 3, (16,))
    module.train()
    torch.manual_seed(5)
    loss = module.training_step((x, y), 0)
    assert module.training and all(m.training for m in module.modules())
    torch.manual_seed(5)
    if attack == "pgd":
        x_adv = pgd(module, x, y, 0.1, steps=3, seed=None)
    else:
        x_adv = fgsm(module, x, y, 0.1, random_start=attack == "fgsm_rs", seed=None)
    torch.testing.assert_close(loss, F.cross_entropy(module(x_adv), y))
    assert loss > F.cross_entropy(module(x), y)


def test_clean_weight_mixes_clean_and_adversarial_losses():
    torch.manual_seed(0)
    module = AdversarialClassifierModule(nn.Linear(6, 3), num_classes=3, epsilon=0.1, attack_steps=2,
                                         clean_weight=0.25)
    x, y = torch.rand(16, 6), torch.randint(0, 3, (16,))
    torch.manual_seed(1)
    loss = module.training_step((x, y), 0)
    torch.manual_seed(1)
    adv = F.cross_entropy(module(pgd(module, x, y, 0.1, steps=2, seed=None)), y)
    torch.testing.assert_close(loss, 0.75 * adv + 0.25 * F.cross_entropy(module(x), y))


def test_adversarial_training_raises_robust_accuracy_on_digits():
    dm = DigitsDataModule(image_size=8, flatten=True, batch_size=128)
    x, y = dm.tensors("test")
    accs = {}
    for name in ("standard", "pgd_at"):
        pl.seed_everything(0, verbose=False)
        backbone = MLP(64, 10, hidden_sizes=(64,))
        module = (ClassifierModule(backbone, 10, lr=1e-2) if name == "standard" else
                  AdversarialClassifierModule(backbone, 10, lr=1e-2, epsilon=0.1, attack="fgsm_rs",
                                              input_range=dm.input_range))
        _trainer(max_epochs=5, limit_val_batches=0).fit(module, datamodule=dm)
        accs[name] = robust_accuracy(module, (x, y), pgd, epsilons=(0.1,), input_range=dm.input_range,
                                     steps=5).robust_acc.item()
    assert accs["pgd_at"] > accs["standard"] + 0.1


def test_robust_accuracy_callback_logs_every_n_epochs_and_resumes():
    torch.manual_seed(0)
    x, y = torch.rand(64, 6), torch.randint(0, 3, (64,))
    module = ClassifierModule(nn.Linear(6, 3), num_classes=3, lr=1e-2)
    callback = RobustAccuracyCallback(epsilon=0.05, every_n_epochs=2, num_samples=40, data=(x, y), steps=3)
    trainer = _trainer(max_epochs=4, callbacks=[callback])
    trainer.fit(module, TensorBatchLoader(x, y, batch_size=16))
    assert [epoch for epoch, _ in callback.history] == [1, 3] and callback.evaluations == 2
    expected = robust_accuracy(module, (x[:40], y[:40]), pgd, epsilons=(0.05,), steps=3, seed=0).robust_acc.item()
    assert callback.history[-1][1] == pytest.approx(expected)
    assert trainer.callback_metrics["val_robust_acc"].item() == pytest.approx(expected)
    restored = RobustAccuracyCallback(epsilon=0.05, every_n_epochs=2)
    restored.load_state_dict(callback.state_dict())
    assert restored.history == callback.history and restored.evaluations == 2


def test_callback_reads_the_datamodules_validation_split_and_range():
    dm = DigitsDataModule(image_size=8, flatten=True)
    module = ClassifierModule(MLP(64, 10, hidden_sizes=(16,)), num_classes=10)
    callback = RobustAccuracyCallback(epsilon=0.1, num_samples=32, steps=2)
    _trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[callback]).fit(module, datamodule=dm)
    xv, yv = dm.tensors("val")
    expected = robust_accuracy(module, (xv[:32], yv[:32]), pgd, epsilons=(0.1,), steps=2, seed=0,
                               input_range=dm.input_range).robust_acc.item()
    assert callback.history == [(0, pytest.approx(expected))]


@pytest.mark.parametrize("kwargs, name", [(dict(epsilon=-1.0), "epsilon"), (dict(attack="cw"), "attack"),
                                          (dict(attack_steps=0), "attack_steps"), (dict(norm="l0"), "norm"),
                                          (dict(clean_weight=1.0), "clean_weight")])
def test_adversarial_module_refuses_bad_settings(kwargs, name):
    args = dict(epsilon=0.1) | kwargs
    with pytest.raises(ValueError, match=name):
        AdversarialClassifierModule(nn.Linear(4, 2), num_classes=2, **args)


@pytest.mark.parametrize("kwargs, name", [(dict(epsilon=0.0), "epsilon"), (dict(epsilon=0.1, every_n_epochs=0),
                                                                           "every_n_epochs"),
                                          (dict(epsilon=0.1, attack="cw"), "attack")])

def test_callback_refuses_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RobustAccuracyCallback(**kwargs)
