"""Membership inference against scikit-learn, Poisson sampling, and DP-SGD against a per-sample loop."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from toolkit.data import TensorBatchLoader
from toolkit.models import MLP
from toolkit.security import (DPClassifierModule, PoissonBatchLoader, membership_auc, membership_inference,
                              per_sample_loss)

from _helpers import quiet_trainer as _trainer


def test_membership_auc_equals_sklearn_with_ties():
    g = torch.Generator().manual_seed(0)
    members = torch.randint(0, 5, (40,), generator=g).float() / 4
    nonmembers = torch.randint(0, 7, (60,), generator=g).float() / 4
    labels = [1] * 40 + [0] * 60
    expected = roc_auc_score(labels, (-torch.cat([members, nonmembers])).numpy())
    assert membership_auc(members, nonmembers) == pytest.approx(expected, abs=1e-6)


def test_membership_inference_follows_yeom_on_known_losses():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    xm, ym = torch.randn(30, 5), torch.randint(0, 3, (30,))
    xn, yn = torch.randn(40, 5), torch.randint(0, 3, (40,))
    out = membership_inference(model, (xm, ym), (xn, yn))
    lm = F.cross_entropy(model(xm), ym, reduction="none").detach()
    ln = F.cross_entropy(model(xn), yn, reduction="none").detach()
    torch.testing.assert_close(per_sample_loss(model, xm, ym), lm)
    tau = lm.mean()
    assert out["threshold"] == pytest.approx(tau.item())
    assert out["advantage"] == pytest.approx((lm <= tau).float().mean().item() - (ln <= tau).float().mean().item())
    assert out["auc"] == pytest.approx(roc_auc_score([1] * 30 + [0] * 40, (-torch.cat([lm, ln])).numpy()), abs=1e-6)
    with pytest.raises(TypeError, match="members"):
        membership_inference(model, xm, (xn, yn))


def test_poisson_loader_samples_each_point_at_the_rate_and_repeats():
    x = torch.arange(1000)
    loader = PoissonBatchLoader(x, sample_rate=0.05, seed=1)
    sizes = [len(b[0]) for b in loader]
    assert len(sizes) == len(loader) == 20
    # mean batch size 50, std of the mean over 20 batches sqrt(1000*0.05*0.95/20) ~ 1.5
    assert abs(sum(sizes) / 20 - 50) < 5
    assert [b[0].tolist() for b in loader] == [b[0].tolist() for b in PoissonBatchLoader(x, sample_rate=0.05, seed=1)]
    loader.set_epoch(1)
    assert [len(b[0]) for b in loader] != sizes
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonBatchLoader(x, sample_rate=0.0)


def test_dp_sgd_step_equals_the_mean_of_clipped_per_sample_gradients():
    """noise 0, SGD, lr 1, full batch: the update is -sum_i clip(g_i, C) / N (Abadi et al., Alg. 1)."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    backbone = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    reference = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    reference.load_state_dict(backbone.state_dict())
    clip = 0.05
    module = DPClassifierModule(backbone, num_classes=3, noise_multiplier=0.0, max_grad_norm=clip,
                                optimizer="sgd", lr=1.0, momentum=0.0)
    _trainer(max_steps=1).fit(module, TensorBatchLoader(x, y, batch_size=16))
    total = [torch.zeros_like(p) for p in reference.parameters()]
    for i in range(16):
        grads = torch.autograd.grad(F.cross_entropy(reference(x[i:i + 1]), y[i:i + 1]), list(reference.parameters()))
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        for t, g in zip(total, grads):
            t += g * min(1.0, clip / (norm.item() + 1e-6))
    for p0, t, p1 in zip(reference.parameters(), total, module.backbone._module.parameters()):
        torch.testing.assert_close(p1.detach(), p0.detach() - t / 16, atol=1e-6, rtol=1e-5)


def test_dp_module_logs_the_accountants_epsilon():
    from opacus.accountants import RDPAccountant

    torch.manual_seed(0)
    x, y = torch.randn(200, 4), torch.randint(0, 2, (200,))
    module = DPClassifierModule(MLP(4, 2, hidden_sizes=(8,)), num_classes=2, noise_multiplier=1.1,
                                max_grad_norm=1.0, delta=1e-3)

    trainer = _trainer(max_epochs=2)
    trainer.fit(module, PoissonBatchLoader(x, y, sample_rate=0.1, seed=0))
    oracle = RDPAccountant()
    for _ in range(trainer.global_step):
        oracle.step(noise_multiplier=1.1, sample_rate=0.1)
    assert trainer.global_step == 20
    expected = oracle.get_epsilon(delta=1e-3)
    assert trainer.callback_metrics["epsilon"].item() == pytest.approx(expected, rel=1e-5)
    assert module.epsilon == pytest.approx(expected) and math.isfinite(expected) and expected > 0


def test_dp_module_refuses_batch_norm_and_bad_settings():
    with pytest.raises(ValueError, match="batch norm|BatchNorm"):
        DPClassifierModule(MLP(4, 2, hidden_sizes=(8,), norm="batch"), num_classes=2)
    with pytest.raises(ValueError, match="noise_multiplier"):
        DPClassifierModule(MLP(4, 2), num_classes=2, noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="delta"):
        DPClassifierModule(MLP(4, 2), num_classes=2, delta=1.0)


def test_poisson_sampled_datamodule_swaps_only_the_training_loader():
    from toolkit.data import DigitsDataModule
    from toolkit.security import PoissonSampledDataModule

    base = DigitsDataModule(image_size=8, flatten=True, batch_size=50)
    dm = PoissonSampledDataModule(base)
    dm.setup()
    loader = dm.train_dataloader()
    n = len(base.tensors("train")[1])
    assert isinstance(loader, PoissonBatchLoader) and loader.sample_rate == pytest.approx(50 / n)
    assert loader.dataset_size == n and len(loader) == round(n / 50)
    assert dm.num_classes == 10 and dm.input_range == base.input_range
    assert torch.equal(next(iter(dm.val_dataloader()))[0], next(iter(base.val_dataloader()))[0])
    with pytest.raises(TypeError, match="base"):
        PoissonSampledDataModule(object())


def test_dp_accountant_history_survives_a_checkpoint():
    module = DPClassifierModule(MLP(4, 2, hidden_sizes=(8,)), num_classes=2, noise_multiplier=1.0, delta=1e-3)
    for _ in range(30):
        module.accountant.step(noise_multiplier=1.0, sample_rate=0.05)
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    resumed = DPClassifierModule(MLP(4, 2, hidden_sizes=(8,)), num_classes=2, noise_multiplier=1.0, delta=1e-3)
    assert resumed.epsilon == 0.0
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.epsilon == pytest.approx(module.epsilon) and module.epsilon > 0
