"""RegularizedClassifierModule and DropBlockSchedule with minimal modules: the loss against hand-written
references, sparse VD sparsifies while training, the schedule follows its linear ramp, clear errors."""

import warnings

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data import TensorBatchLoader
from toolkit.regularization import (ConcreteDropout, DropBlock2d, DropBlockSchedule, RegularizedClassifierModule,
                                    VariationalLinear, mixup, sparsity)
from toolkit.training import ClassifierModule

from _helpers import quiet_trainer as _trainer


def _blobs(n=300, features=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    centers = torch.randn(classes, features, generator=g) * 2
    return centers[y] + torch.randn(n, features, generator=g), y


def _step(module, x, y, seed):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer only warns
        return module.training_step((x, y), 0)


def test_without_options_it_trains_exactly_like_classifier_module():
    x, y = _blobs()
    weights = []
    for cls in (ClassifierModule, RegularizedClassifierModule):
        pl.seed_everything(0, verbose=False)
        module = cls(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4)), num_classes=4, lr=1e-2)
        _trainer(max_epochs=2).fit(module, TensorBatchLoader(x, y, batch_size=32, shuffle=True))
        weights.append(module.state_dict())
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name])


def test_mixup_loss_is_the_lam_weighted_cross_entropy_of_both_labels():
    x, y = _blobs(n=32)
    backbone = nn.Linear(6, 4)
    module = RegularizedClassifierModule(backbone, num_classes=4, mixup_alpha=0.4, label_smoothing=0.1)
    loss = _step(module, x, y, seed=3)
    torch.manual_seed(3)
    mixed, y_a, y_b, lam = mixup(x, y, 0.4)
    logits = backbone(mixed)
    expected = (lam * F.cross_entropy(logits, y_a, label_smoothing=0.1)
                + (1 - lam) * F.cross_entropy(logits, y_b, label_smoothing=0.1))
    assert 0 < lam < 1
    torch.testing.assert_close(loss, expected)


def test_penalties_of_layers_enter_the_loss_divided_by_num_train():
    x, y = _blobs(n=32)
    backbone = nn.Sequential(VariationalLinear(6, 8), nn.ReLU(), ConcreteDropout(0.2), nn.Linear(8, 4))
    module = RegularizedClassifierModule(backbone, num_classes=4, num_train=500, penalty_weight=0.5)
    loss = _step(module, x, y, seed=1)
    torch.manual_seed(1)
    data_loss = F.cross_entropy(backbone(x), y)
    expected = data_loss + 0.5 * (backbone[0].kl() + backbone[2].penalty()) / 500
    torch.testing.assert_close(loss, expected)


def test_num_train_is_read_from_the_loader_and_sparse_vd_sparsifies_while_training():
    x, y = _blobs(n=400)
    pl.seed_everything(0, verbose=False)
    backbone = nn.Sequential(VariationalLinear(6, 64), nn.ReLU(), VariationalLinear(64, 4))
    module = RegularizedClassifierModule(backbone, num_classes=4, lr=3e-2)
    before = sparsity(backbone)
    trainer = _trainer(max_epochs=8)
    trainer.fit(module, TensorBatchLoader(x, y, batch_size=100, shuffle=True))
    assert module.num_train == 400
    after = sparsity(backbone)
    assert before < 0.05 and after > 0.2, (before, after)
    module.eval()
    assert (module(x).argmax(1) == y).float().mean() > 0.9, "the sparse network still classifies the blobs"


def test_concrete_dropout_rate_is_learned_in_training():
    x, y = _blobs(n=200)
    pl.seed_everything(0, verbose=False)
    layer = ConcreteDropout(p_init=0.3)
    module = RegularizedClassifierModule(nn.Sequential(nn.Linear(6, 32), nn.ReLU(), layer, nn.Linear(32, 4)),
                                         num_classes=4, lr=5e-2)
    _trainer(max_epochs=5).fit(module, TensorBatchLoader(x, y, batch_size=50, shuffle=True))
    assert abs(layer.drop_prob.item() - 0.3) > 0.01


class _Record(pl.Callback):
    def __init__(self, layer):
        self.layer, self.rates = layer, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(self.layer.drop_prob)


def test_drop_block_schedule_ramps_linearly_and_restores_its_state():
    x, y = torch.randn(40, 1, 6, 6), torch.randint(0, 2, (40,))
    block = DropBlock2d(0.4, block_size=2)
    module = ClassifierModule(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), block, nn.Flatten(), nn.Linear(144, 2)),
                              num_classes=2)
    schedule = DropBlockSchedule(start_drop_prob=0.1, ramp_fraction=0.5)
    record = _Record(block)
    # 4 epochs of 4 batches: 16 steps, ramped over the first 8
    _trainer(max_epochs=4, callbacks=[schedule, record]).fit(module, TensorBatchLoader(x, y, batch_size=10))
    expected = [0.1 + 0.3 * min(1.0, step / 8) for step in range(16)]
    assert record.rates == pytest.approx(expected)
    restored = DropBlockSchedule()
    restored.load_state_dict(schedule.state_dict())
    assert restored.targets == [0.4]


def test_drop_block_schedule_needs_a_drop_block_layer():
    x, y = _blobs(n=20)
    with pytest.raises(ValueError, match="no layer"):
        _trainer(max_epochs=1, callbacks=[DropBlockSchedule()]).fit(
            ClassifierModule(nn.Linear(6, 4), num_classes=4), TensorBatchLoader(x, y, batch_size=10))


@pytest.mark.parametrize("kwargs, name", [
    (dict(mixup_alpha=-1.0), "mixup_alpha"),
    (dict(cutmix_alpha="1"), "cutmix_alpha"),
    (dict(mix_prob=1.5), "mix_prob"),
    (dict(cutout_size=-2), "cutout_size"),
    (dict(penalty_weight=-1), "penalty_weight"),
    (dict(num_train=0), "num_train"),
    (dict(lr=0), "lr"),
])
def test_bad_module_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        RegularizedClassifierModule(nn.Linear(6, 4), num_classes=4, **kwargs)


@pytest.mark.parametrize("kwargs, name", [
    (dict(drop_prob=1.0), "drop_prob"), (dict(start_drop_prob=-0.1), "start_drop_prob"),
    (dict(ramp_fraction=0), "ramp_fraction"),
])

def test_bad_schedule_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DropBlockSchedule(**kwargs)
