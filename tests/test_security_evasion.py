"""FGSM, PGD and robust accuracy against their definitions and a plain reference loop."""

import pytest
from _helpers import digits_mlp
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.data import TensorBatchLoader
from toolkit.security import fgsm, pgd, robust_accuracy


RANGE = (-0.6, 2.4)  # a normalized input range: pixel 0 -> -0.6, pixel 1 -> 2.4 (scale 3)


@pytest.fixture(scope="module")
def digits():
    """A small MLP trained on 8x8 digits with a plain loop, and 200 test samples."""
    model, dm = digits_mlp()
    xt, yt = dm.tensors("test")
    return model, xt[:200], yt[:200], dm.input_range


def _reference_pgd(model, x, y, eps, steps, alpha, low, high, norm="linf"):
    """The textbook loop, in pixel units, no random start."""
    scale = high - low
    p0 = (x - low) / scale
    p = p0.clone()
    for _ in range(steps):
        p.requires_grad_(True)
        loss = F.cross_entropy(model(low + p * scale), y)
        g, = torch.autograd.grad(loss, p)
        with torch.no_grad():
            if norm == "linf":
                p = p + alpha * g.sign()
                p = torch.min(torch.max(p, p0 - eps), p0 + eps)
            else:
                p = p + alpha * g / g.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None]
                d = p - p0
                d = d * (eps / d.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1)[:, None]
                p = p0 + d
            p = p.clamp(0, 1)
    return (low + p * scale).detach()


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_without_random_start_equals_a_plain_loop(digits, norm):
    model, x, y, (low, high) = digits
    eps = 0.1 if norm == "linf" else 1.0
    ours = pgd(model, x, y, eps, norm=norm, steps=5, step_size=eps / 4, random_start=False, input_range=(low, high))
    ref = _reference_pgd(model, x, y, eps, 5, eps / 4, low, high, norm)
    # the toolkit steps in input units, the reference in pixel units: 1e-5 of a pixel, times the scale
    torch.testing.assert_close(ours, ref, atol=1e-5 * (high - low), rtol=0)


def test_fgsm_is_one_signed_step_clipped_to_the_range(digits):
    model, x, y, (low, high) = digits
    xr = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)
    scale = high - low
    expected = (x + 0.1 * scale * g.sign()).clamp(low, high)
    torch.testing.assert_close(fgsm(model, x, y, 0.1, input_range=(low, high)), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attack", ["pgd", "fgsm_rs"])
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_adversarial_examples_lie_in_the_epsilon_ball_and_the_valid_range(norm, attack):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = RANGE[0] + torch.rand(32, 1, 4, 4) * (RANGE[1] - RANGE[0])
    x[:4] = RANGE[0]  # samples at the edge of the range
    y = torch.randint(0, 3, (32,))
    eps = 0.05 if norm == "linf" else 0.5
    if attack == "pgd":
        x_adv = pgd(model, x, y, eps, norm=norm, steps=7, step_size=eps, input_range=RANGE)
    else:
        x_adv = fgsm(model, x, y, eps, norm=norm, random_start=True, input_range=RANGE)
    delta_pixels = (x_adv - x) / (RANGE[1] - RANGE[0])
    size = delta_pixels.abs().flatten(1).amax(1) if norm == "linf" else delta_pixels.flatten(1).norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert (x_adv >= RANGE[0] - 1e-5).all() and (x_adv <= RANGE[1] + 1e-5).all()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and not x_adv.requires_grad


def test_pgd_raises_the_loss_more_than_fgsm_which_raises_it_above_clean(digits):
    model, x, y, input_range = digits
    loss = lambda inputs: F.cross_entropy(model(inputs), y).item()  # noqa: E731
    clean = loss(x)
    one_step = loss(fgsm(model, x, y, 0.1, input_range=input_range))
    many = loss(pgd(model, x, y, 0.1, steps=10, input_range=input_range))
    assert clean < one_step <= many


def test_attack_leaves_mode_gradients_and_buffers_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 3))
    model.train()
    model[2].eval()  # a mixed state must come back exactly
    x, y = torch.rand(20, 8), torch.randint(0, 3, (20,))
    F.cross_entropy(model(x), y).backward()
    model[4].bias.grad = None
    modes = [m.training for m in model.modules()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    pgd(model, x, y, 0.1, steps=3)
    fgsm(model, x, y, 0.1)
    assert [m.training for m in model.modules()] == modes
    for before, p in zip(grads, model.parameters()):
        assert (before is None and p.grad is None) or torch.equal(before, p.grad)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))


def test_seeded_attacks_repeat_and_other_seeds_differ(digits):
    model, x, y, input_range = digits
    a = pgd(model, x, y, 0.1, steps=2, seed=3, input_range=input_range)
    b = pgd(model, x, y, 0.1, steps=2, seed=3, input_range=input_range)
    c = pgd(model, x, y, 0.1, steps=2, seed=4, input_range=input_range)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_targeted_pgd_reaches_the_target_class(digits):
    model, x, y, input_range = digits
    target = (y + 1) % 10
    x_adv = pgd(model, x, target, 0.3, steps=20, targeted=True, input_range=input_range)
    hit = (model(x_adv).argmax(1) == target).float().mean().item()
    assert hit > 0.8


def test_robust_accuracy_matches_a_plain_evaluation_loop(digits):
    model, x, y, input_range = digits
    frame = robust_accuracy(model, TensorBatchLoader(x, y, batch_size=64), pgd, epsilons=(0.0, 0.1),
                            input_range=input_range, steps=5)
    assert list(frame.columns) == ["epsilon", "robust_acc", "n", "attack"]
    clean = (model(x).argmax(1) == y).float().mean().item()
    assert frame.robust_acc[0] == pytest.approx(clean)
    expected = sum((model(pgd(model, xb, yb, 0.1, steps=5, input_range=input_range)).argmax(1) == yb).sum().item()
                   for xb, yb in TensorBatchLoader(x, y, batch_size=64)) / len(y)
    assert frame.robust_acc[1] == pytest.approx(expected)
    assert frame.robust_acc[1] < frame.robust_acc[0] and (frame.n == 200).all()


@pytest.mark.parametrize("kwargs, name", [(dict(epsilon=-0.1), "epsilon"), (dict(steps=0), "steps"),
                                          (dict(norm="l1"), "norm"), (dict(step_size=0.0), "step_size"),
                                          (dict(input_range=(1.0, 0.0)), "input_range")])
def test_bad_attack_arguments_raise_a_clear_error(kwargs, name):
    model, x, y = nn.Linear(4, 3), torch.rand(5, 4), torch.zeros(5, dtype=torch.long)
    args = dict(epsilon=0.1) | kwargs
    with pytest.raises(ValueError, match=name):
        pgd(model, x, y, args.pop("epsilon"), **args)


def test_inputs_outside_the_declared_range_are_refused():
    model, y = nn.Linear(4, 3), torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="inputs must lie in input_range"):
        fgsm(model, torch.rand(5, 4) + 1.5, y, 0.1, input_range=(0.0, 1.0))
    with pytest.raises(TypeError, match="targets"):
        pgd(model, torch.rand(5, 4), torch.zeros(5), 0.1)
    with pytest.raises(ValueError, match="epsilons"):
        robust_accuracy(model, (torch.rand(5, 4), y), pgd, epsilons=(0.1, -1.0))
