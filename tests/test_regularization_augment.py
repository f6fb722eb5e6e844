"""1-D signal augmentation (random_shift_1d, RandomShift1d) and its batched path in train_members.

Oracles: scipy.ndimage.shift (order 0, mode "nearest": an integer shift with the edges repeated) on
the documented draws, a chi-square test of the shifts' uniformity, the per-member calls for the
batched path, and train_members' per-member path for its batched one.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage, stats

from toolkit.data import MNIST1DDataModule
from toolkit.models import MLP
from toolkit.regularization import RandomShift1d, random_shift_1d
from toolkit.training import ClassifierModule, member_generators, train_members


def _generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("shape", [(16, 40), (8, 3, 25)], ids=["B-L", "B-C-L"])
@pytest.mark.parametrize(("max_shift", "noise_sd"), [(0, 0.3), (3, 0.0), (5, 0.1)])
def test_random_shift_is_scipy_nearest_shift_of_the_drawn_shifts_plus_noise(shape, max_shift, noise_sd):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    out = random_shift_1d(x, max_shift, noise_sd, generator=torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)  # the documented draws: shifts first, then the noise
    shifts = torch.randint(-max_shift, max_shift + 1, (shape[0],), generator=replay)
    noise = torch.randn(shape, generator=replay) if noise_sd > 0 else torch.zeros(shape)
    for b in range(shape[0]):
        moved = ndimage.shift(x[b].numpy(), [0] * (x.dim() - 2) + [int(shifts[b])], order=0, mode="nearest")
        np.testing.assert_allclose(out[b].numpy(), moved + noise_sd * noise[b].numpy(), rtol=0, atol=1e-6)


def test_shifts_are_uniform_over_the_integers_up_to_max_shift():
    max_shift, n, length = 4, 4500, 30
    ramp = torch.arange(float(length)).expand(n, length)
    out = random_shift_1d(ramp, max_shift, generator=torch.Generator().manual_seed(0))
    shifts = (ramp[:, length // 2] - out[:, length // 2]).long()  # the ramp's middle moved by s reads t - s
    counts = torch.bincount(shifts + max_shift, minlength=2 * max_shift + 1).numpy()
    assert len(counts) == 2 * max_shift + 1 and (counts > 0).all()  # every integer in [-4, 4], none outside
    assert stats.chisquare(counts).pvalue > 1e-3


def test_noise_has_the_documented_standard_deviation():
    augment = RandomShift1d(noise_per_shift=0.05)
    x = torch.zeros(200, 50)
    out = augment(x, 8.0, torch.Generator().manual_seed(0))  # zeros shift to zeros: only the noise is left
    assert out.std().item() == pytest.approx(0.05 * 8.0, rel=0.02)  # 10,000 draws: sd's rel. error ~0.7%
    assert out.mean().abs().item() < 4 * 0.4 / 100


@pytest.mark.parametrize("shape", [(5, 32, 40), (4, 6, 2, 20)], ids=["M-B-L", "M-B-C-L"])
@pytest.mark.parametrize("noise_per_shift", [0.0, 0.02])
def test_batched_gives_exactly_the_per_member_calls(shape, noise_per_shift):
    augment = RandomShift1d(noise_per_shift)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    strengths = [2.0, 0.0, 4.5, 12.0, 1.0][:shape[0]]  # a zero and a fractional strength among them
    out = augment.batched(x, strengths, _generators(range(shape[0])))
    alone = torch.stack([augment(x[i], s, g) for i, (s, g) in enumerate(zip(strengths, _generators(range(shape[0]))))])
    assert torch.equal(out, alone)
    assert not torch.equal(out[0], x[0])  # the test can fail: the augmentation changed the batch


def test_a_members_augmentation_does_not_depend_on_the_others():
    augment = RandomShift1d(0.02)
    x = torch.randn(3, 16, 40, generator=torch.Generator().manual_seed(0))
    alone = augment.batched(x[1:2], [4.0], _generators([11]))
    among = augment.batched(x, [8.0, 4.0, 2.0], _generators([5, 11, 6]))
    assert torch.equal(among[1], alone[0])


def test_a_seeded_generator_repeats():
    augment, x = RandomShift1d(0.02), torch.randn(2, 16, 40)
    a, b = (augment.batched(x, [3.0, 6.0], _generators([0, 1])) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a[0], augment.batched(x, [3.0, 6.0], _generators([2, 1]))[0])


# ---- inside train_members --------------------------------------------------------------------------
QUIET = {"enable_progress_bar": False, "accelerator": "cpu"}


class _Counted(RandomShift1d):
    """RandomShift1d that counts its batched calls."""

    calls = 0

    def batched(self, x, strengths, generators):
        type(self).calls += 1
        return super().batched(x, strengths, generators)


class _PerMember:
    """The same augmentation without ``batched``: train_members calls it member by member."""

    def __init__(self, augment):
        self.augment = augment

    def __call__(self, x, strength, generator):
        return self.augment(x, strength, generator)


@pytest.fixture(scope="module")
def signals():
    return MNIST1DDataModule(flatten=True, train_fraction=0.05, batch_size=32, seed=0)


def _factory():
    return lambda: ClassifierModule(MLP(40, 10, hidden_sizes=(16,)), 10, lr=3e-3)


MEMBERS = [{"seed": 0, "augment": 4.0}, {"seed": 1}, {"seed": 2, "augment": 8.0, "mixup": 0.4}, {"seed": 0}]


@pytest.mark.slow
def test_train_members_batched_path_trains_the_members_the_per_member_path_trains(signals):
    augment = _Counted(0.02)
    runs = {}
    for name, hook in (("batched", augment), ("per member", _PerMember(augment))):
        runs[name] = train_members(_factory(), signals, MEMBERS, max_epochs=2, augment=hook, return_members=True,
                                   **QUIET)
    (batched, stacked), (per_member, reference) = runs["batched"], runs["per member"]
    assert _Counted.calls == batched["steps"].iloc[0]  # one batched call per step, none per member
    assert torch.equal(stacked.flat, reference.flat)
    pd.testing.assert_frame_equal(batched.drop(columns="fit_time_s"), per_member.drop(columns="fit_time_s"))
    plain = train_members(_factory(), signals, [{"seed": s} for s in (0, 1, 2, 0)], max_epochs=2, **QUIET)
    assert (plain["train_loss"].iloc[[0, 2]].to_numpy() != batched["train_loss"].iloc[[0, 2]].to_numpy()).all()


@pytest.mark.slow
def test_a_members_run_is_unchanged_when_other_members_are_added(signals):
    augment = RandomShift1d(0.02)
    _, alone = train_members(_factory(), signals, [MEMBERS[2]], max_epochs=2, augment=augment,
                             return_members=True, **QUIET)
    _, among = train_members(_factory(), signals, MEMBERS, max_epochs=2, augment=augment, return_members=True,
                             **QUIET)
    # the same augmented batches; the stacked products of 1 or 4 members may round differently
    torch.testing.assert_close(among.flat[2], alone.flat[0], atol=1e-5, rtol=1e-4)


def test_member_generators_feed_the_documented_stream():
    """train_members hands member k the torch generator of member_generators(seed_k): the batched path
    on those generators is the per-member path on fresh copies of them."""
    augment, x = RandomShift1d(0.02), torch.randn(2, 8, 40)
    out = augment.batched(x, [4.0, 2.0], [member_generators(s)[1] for s in (3, 9)])
    assert torch.equal(out[1], augment(x[1], 2.0, member_generators(9)[1]))
