"""Knowledge distillation: the loss against its closed form (scipy) and Hinton et al.'s high-temperature
gradient limit; the LightningModule trains the student only; clear errors."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from scipy.special import log_softmax, rel_entr, softmax
from torch import nn

from toolkit.cost import DistillationModule, distillation_loss
from toolkit.data import TensorBatchLoader
from toolkit.models import MLP


@pytest.mark.parametrize("temperature", [1.0, 2.5, 8.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_loss_matches_the_closed_form(temperature, alpha):
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(16, 5, generator=g) * 3, torch.randn(16, 5, generator=g) * 3
    targets = torch.randint(0, 5, (16,), generator=g)
    s, t, y = student.double().numpy(), teacher.double().numpy(), targets.numpy()
    kl = rel_entr(softmax(t / temperature, axis=1), softmax(s / temperature, axis=1)).sum(1).mean()
    ce = -log_softmax(s, axis=1)[np.arange(16), y].mean()
    expected = alpha * temperature**2 * kl + (1 - alpha) * ce
    loss = distillation_loss(student, teacher, targets, temperature=temperature, alpha=alpha)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_high_temperature_gradient_approaches_logit_matching():
    """Hinton et al. (2015), section 2.1: for zero-mean logits and large T, the gradient of the soft
    term (times T^2) with respect to logit i tends to (z_i - v_i) / C, i.e. matching logits."""
    g = torch.Generator().manual_seed(0)
    classes = 6
    student = torch.randn(1, classes, generator=g, dtype=torch.float64)
    teacher = torch.randn(1, classes, generator=g, dtype=torch.float64)
    student, teacher = student - student.mean(), teacher - teacher.mean()
    student.requires_grad_(True)
    distillation_loss(student, teacher, temperature=100.0, alpha=1.0).backward()
    limit = (student.detach() - teacher) / classes
    torch.testing.assert_close(student.grad, limit, rtol=0, atol=0.02 * limit.abs().max().item())  # O(1/T)
    student.grad = None
    distillation_loss(student, teacher, temperature=1.0, alpha=1.0).backward()
    assert not torch.allclose(student.grad, limit, atol=0.02 * limit.abs().max().item()), "not so at T=1"


def test_teacher_logits_get_no_gradient():
    teacher = torch.randn(4, 3, requires_grad=True)
    distillation_loss(torch.randn(4, 3, requires_grad=True), teacher, torch.zeros(4, dtype=torch.long)).backward()
    assert teacher.grad is None


def _blobs(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return torch.randn(3, 8, generator=g)[y] * 2 + torch.randn(n, 8, generator=g), y


def _module(**kwargs):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 32), nn.Dropout(0.5), nn.ReLU(), nn.Linear(32, 3))
    return DistillationModule(MLP(8, 3, hidden_sizes=(4,)), teacher=teacher, num_classes=3, **kwargs)


def test_training_step_is_the_distillation_loss_of_student_and_teacher():
    module = _module(temperature=3.0, alpha=0.7).train()
    x, y = _blobs(n=32)
    loss = module.training_step((x, y), 0)
    with torch.no_grad():
        expected = distillation_loss(module.backbone(x), module.teacher(x), y, temperature=3.0, alpha=0.7)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert not module.teacher.training, "the teacher's dropout stays off while the student trains"


def test_only_the_student_trains_and_is_saved():
    module = _module(lr=1e-2)
    teacher_before = [p.clone() for p in module.teacher.parameters()]
    student_before = [p.clone() for p in module.backbone.parameters()]
    x, y = _blobs()
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, TensorBatchLoader(x, y, batch_size=32), TensorBatchLoader(x, y, batch_size=64))
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, module.teacher.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(student_before, module.backbone.parameters()))
    assert all(key.startswith(("backbone.", "train_metrics", "val_metrics", "test_metrics"))
               for key in module.state_dict()), "the checkpoint holds the student only"
    assert "teacher" not in module.hparams and module.hparams.temperature == 4.0
    assert trainer.callback_metrics["val_loss"] == pytest.approx(trainer.callback_metrics["val_nll"].item()), \
        "validation uses plain cross-entropy"


@pytest.mark.parametrize("kwargs, name", [(dict(temperature=0.0), "temperature"), (dict(temperature=-1), "temperature"),
                                          (dict(alpha=1.5), "alpha"), (dict(alpha=-0.1), "alpha")])
def test_bad_temperature_and_alpha_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _module(**kwargs)
    with pytest.raises(ValueError, match=name):
        distillation_loss(torch.randn(2, 3), torch.randn(2, 3), torch.zeros(2, dtype=torch.long), **kwargs)


def test_other_bad_inputs_are_named():
    with pytest.raises(TypeError, match="teacher"):
        DistillationModule(MLP(8, 3), teacher="big model", num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        DistillationModule(MLP(8, 3), teacher=MLP(8, 5), num_classes=3)
    with pytest.raises(ValueError, match="teacher_logits"):
        distillation_loss(torch.randn(2, 3), torch.randn(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        distillation_loss(torch.randn(2, 3), torch.randn(2, 3), None, alpha=0.5)
