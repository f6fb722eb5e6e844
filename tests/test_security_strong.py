"""Strong evaluations: PGD with restarts and the margin loss, APGD, and the attacks' defaults.

Oracles: torchattacks (PGD and APGD, installed with ``--no-deps`` as a test oracle), the losses'
closed forms, the step-size checkpoints of Croce & Hein's reference code, and a model whose softmax
saturates (cross-entropy gradients vanish, the margin's do not).
"""

import pytest
from _helpers import digits_mlp
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.security import apgd, apgd_checkpoints, dlr_loss, fgsm, margin_loss, pgd, robust_accuracy


class PixelModel(nn.Module):
    """Pixels in [0, 1] -> the digits' normalized inputs -> an MLP (torchattacks wants [0, 1] inputs)."""

    def __init__(self, net, low, high):
        super().__init__()
        self.net, self.low, self.scale = net, low, high - low

    def forward(self, p):
        return self.net(self.low + p.flatten(1) * self.scale)


@pytest.fixture(scope="module")
def digits():
    """An MLP trained on 8x8 digits with a plain loop; 300 test digits as (N, 1, 8, 8) pixels in [0, 1]."""
    net, dm = digits_mlp()
    low, high = dm.input_range
    xt, yt = dm.tensors("test")
    return PixelModel(net, low, high).eval(), ((xt[:300] - low) / (high - low)).clamp(0, 1).view(-1, 1, 8, 8), yt[:300]


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_margin_and_dlr_losses_match_their_closed_forms():
    logits = torch.tensor([[3.0, 1.0, 2.0, -1.0], [0.0, 5.0, 4.0, 1.0]])
    y = torch.tensor([0, 2])
    torch.testing.assert_close(margin_loss(logits, y), torch.tensor([2.0 - 3.0, 5.0 - 4.0]))
    # DLR: -(z_y - max_{j != y} z_j) / (z_(1) - z_(3)); sorted rows (3, 2, 1, -1) and (5, 4, 1, 0)
    torch.testing.assert_close(dlr_loss(logits, y), torch.tensor([-(3.0 - 2.0) / (3.0 - 1.0), -(4.0 - 5.0) / (5.0 - 1.0)]))
    with pytest.raises(ValueError, match="3 classes"):
        dlr_loss(logits[:, :2], torch.tensor([0, 1]))


def test_apgd_checkpoints_are_those_of_the_reference_code():
    # auto-attack's apgd: first check after 22% of the iterations, then the gap shrinks by 3% down to 6%
    n, k, checks, i = 100, 22, [], 0
    while i + k < n:
        i += k
        checks.append(i)
        k = max(k - 3, 6)
    assert apgd_checkpoints(100) == checks == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9]


def test_pgd_equals_torchattacks_pgd_without_random_start(digits):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = digits
    theirs = torchattacks.PGD(model, eps=0.1, alpha=0.025, steps=10, random_start=False)(x, y)
    ours = pgd(model, x, y, 0.1, steps=10, step_size=0.025, random_start=False, input_range=(0.0, 1.0))
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_strongest_toolkit_attack_is_at_least_as_strong_as_torchattacks_pgd(digits):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = digits
    torch.manual_seed(0)
    theirs = _acc(model, torchattacks.PGD(model, eps=0.05, alpha=0.0125, steps=10, random_start=True)(x, y), y)
    kwargs = dict(input_range=(0.0, 1.0))
    restarts = _acc(model, pgd(model, x, y, 0.05, steps=20, restarts=3, loss="margin", **kwargs), y)
    auto = _acc(model, apgd(model, x, y, 0.05, steps=20, **kwargs), y)
    assert min(restarts, auto) <= theirs < _acc(model, x, y)
    assert restarts <= theirs + 1 / len(y) and auto <= theirs + 1 / len(y)


def test_apgd_is_at_least_as_strong_as_torchattacks_apgd(digits):
    torchattacks = pytest.importorskip("torchattacks")
    model, x, y = digits
    for loss in ("ce", "dlr"):
        theirs = _acc(model, torchattacks.APGD(model, eps=0.05, steps=20, loss=loss, seed=0)(x, y), y)
        ours = _acc(model, apgd(model, x, y, 0.05, steps=20, loss=loss, input_range=(0.0, 1.0)), y)
        assert ours <= theirs + 2 / len(y), loss  # two digits of slack: different random starts


def test_apgd_stays_feasible_repeats_and_beats_plain_pgd(digits):
    model, x, y = digits
    for norm, eps in (("linf", 0.05), ("l2", 0.5)):
        a = apgd(model, x, y, eps, norm=norm, steps=20, seed=1, input_range=(0.0, 1.0))
        assert torch.equal(a, apgd(model, x, y, eps, norm=norm, steps=20, seed=1, input_range=(0.0, 1.0)))
        size = (a - x).flatten(1).abs().amax(1) if norm == "linf" else (a - x).flatten(1).norm(dim=1)
        assert size.max() <= eps + 1e-5 and a.min() >= 0 and a.max() <= 1
        plain = pgd(model, x, y, eps, norm=norm, steps=20, input_range=(0.0, 1.0))
        assert _acc(model, a, y) <= _acc(model, plain, y)
    assert _acc(model, apgd(model, x, y, 0.5, steps=20, input_range=(0.0, 1.0)), y) == 0.0


def test_restarts_keep_every_success_and_attack_only_what_resists(digits):
    model, x, y = digits
    one = pgd(model, x, y, 0.04, steps=5, input_range=(0.0, 1.0))
    many = pgd(model, x, y, 0.04, steps=5, restarts=4, input_range=(0.0, 1.0))
    with torch.no_grad():
        fooled_one, fooled_many = model(one).argmax(1) != y, model(many).argmax(1) != y
    assert bool((fooled_many | ~fooled_one).all()), "a sample fooled by the first start stays fooled"
    assert torch.equal(many[fooled_one], one[fooled_one]), "the first start is the same run"
    assert fooled_many.sum() >= fooled_one.sum()
    assert (many - x).abs().max() <= 0.04 + 1e-6


def test_margin_loss_sees_through_a_saturated_softmax(digits):
    """A logit scale of 1e4 leaves cross-entropy with exactly zero gradient on confident samples
    (gradient masking); the margin loss is unchanged by the scale."""
    model, x, y = digits
    masked = nn.Sequential(model, nn.Identity())
    masked[1].forward = lambda z: z * 1e4
    ce = _acc(masked, pgd(masked, x, y, 0.1, steps=10, input_range=(0.0, 1.0)), y)
    margin = _acc(masked, pgd(masked, x, y, 0.1, steps=10, loss="margin", input_range=(0.0, 1.0)), y)
    assert ce >= _acc(model, x, y) - 0.01 and margin < ce - 0.3  # CE does not move; the margin does
    assert margin == pytest.approx(_acc(model, pgd(model, x, y, 0.1, steps=10, loss="margin",
                                                    input_range=(0.0, 1.0)), y), abs=0.02)


def test_default_input_range_leaves_normalized_inputs_unclamped():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x, y = torch.randn(16, 4) * 5, torch.randint(0, 3, (16,))  # standardized features, far outside [0, 1]
    for attack in (pgd, fgsm, apgd):
        x_adv = attack(model, x, y, 0.3)
        assert (x_adv - x).abs().max() <= 0.3 + 1e-5 and (x_adv - x).abs().max() > 0.29
        assert x_adv.min() < -1 and x_adv.max() > 2, attack.__name__
    assert robust_accuracy(model, (x, y), pgd, epsilons=(0.3,)).robust_acc.item() <= 1.0


def test_float_targets_with_a_loss_fn():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    x, target = torch.rand(16, 4), torch.randn(16, 2)
    mse = lambda out, t: F.mse_loss(out, t, reduction="none").sum(1)  # noqa: E731
    before = mse(model(x), target).mean()
    for attack in (pgd, apgd):
        x_adv = attack(model, x, target, 0.1, loss_fn=mse, input_range=(0.0, 1.0))
        assert mse(model(x_adv), target).mean() > before, attack.__name__
    soft = torch.softmax(torch.randn(16, 2), 1)  # soft labels through cross-entropy
    assert pgd(model, x, soft, 0.1, loss_fn=F.cross_entropy).shape == x.shape
    with pytest.raises(ValueError, match="one loss per sample"):
        pgd(model, x, target, 0.1, restarts=2, loss_fn=F.mse_loss)
    with pytest.raises(TypeError, match="targets"):
        pgd(model, x, target, 0.1)


@pytest.mark.parametrize("kwargs, name", [(dict(restarts=0), "restarts"), (dict(loss="cw"), "loss"),
                                          (dict(restarts=2, random_start=False), "restarts"),
                                          (dict(loss="margin", loss_fn=F.cross_entropy), "loss")])
def test_bad_strong_attack_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        pgd(nn.Linear(4, 3), torch.rand(5, 4), torch.zeros(5, dtype=torch.long), 0.1, **kwargs)
