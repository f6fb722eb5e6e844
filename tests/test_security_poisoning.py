"""Label flipping, the BadNets DataModule, attack success rate and spectral signatures."""

import numpy as np
import pytest
import torch
from torch import nn

from toolkit.data import DigitsDataModule
from toolkit.models import MLP
from toolkit.security import (PoisonedDataModule, add_trigger, attack_success_rate, flip_labels,
                              penultimate_activations, spectral_signatures)


@pytest.fixture(scope="module")
def base():
    dm = DigitsDataModule(image_size=8, flatten=True)
    dm.setup()
    return dm


def test_flip_labels_flips_exactly_the_rate_to_other_classes():
    y = torch.arange(200) % 5
    flipped, mask = flip_labels(y, 0.3, num_classes=5, seed=1)
    assert mask.sum().item() == 60
    assert (flipped[mask] != y[mask]).all() and torch.equal(flipped[~mask], y[~mask])
    assert flipped.max() < 5 and flipped.min() >= 0
    again, _ = flip_labels(y, 0.3, num_classes=5, seed=1)
    assert torch.equal(flipped, again)


@pytest.mark.parametrize("rate", [-0.1, 1.5, True])
def test_a_poison_rate_outside_zero_one_is_refused(base, rate):
    with pytest.raises(ValueError, match="rate"):
        flip_labels(torch.zeros(10, dtype=torch.long), rate, num_classes=2)
    with pytest.raises(ValueError, match="poison_rate"):
        PoisonedDataModule(base, poison_rate=rate)


def test_add_trigger_sets_only_the_corner_patch():
    images = torch.rand(3, 1, 8, 8) * 0.5
    out = add_trigger(images, patch_size=3, value=1.0, corner="top_left")
    assert (out[:, :, :3, :3] == 1).all()
    mask = torch.ones(8, 8, dtype=torch.bool)
    mask[:3, :3] = False
    assert torch.equal(out[:, :, mask], images[:, :, mask])
    with pytest.raises(ValueError, match="patch_size"):
        add_trigger(images, patch_size=9)


def test_backdoor_module_poisons_the_training_split_only(base):
    dm = PoisonedDataModule(base, poison_rate=0.05, target_label=3, patch_size=2, seed=0)
    x, y = dm.tensors("train")
    x0, y0 = base.tensors("train")
    mask = dm.poison_mask
    assert mask.sum().item() == round(0.05 * len(y0))
    assert (y[mask] == 3).all() and (y0[mask] != 3).all() and torch.equal(y[~mask], y0[~mask])
    assert torch.equal(x[~mask], x0[~mask])
    pixels = base.to_images01(x[mask])
    torch.testing.assert_close(pixels[:, :, -2:, -2:], torch.ones_like(pixels[:, :, -2:, -2:]))
    assert all(torch.equal(a, b) for a, b in zip(dm.tensors("test"), base.tensors("test")))
    assert dm.num_classes == base.num_classes and dm.input_range == base.input_range
    xt, yt = dm.triggered_tensors("test")
    assert (yt != 3).all() and len(yt) == (base.tensors("test")[1] != 3).sum()


def test_label_flip_module_and_without_drop_the_chosen_samples(base):
    dm = PoisonedDataModule(base, poison="label_flip", poison_rate=0.1, seed=2)
    _, y = dm.tensors("train")
    y0 = base.tensors("train")[1]
    assert (y != y0).sum().item() == round(0.1 * len(y0)) == dm.poison_mask.sum().item()
    drop = torch.nonzero(dm.poison_mask).flatten()[:50]
    filtered = dm.without(drop)
    xf, yf = filtered.tensors("train")
    assert len(yf) == len(y) - 50 and filtered.poison_mask.sum().item() == dm.poison_mask.sum().item() - 50
    twice = filtered.without([0, 1])  # indices refer to the filtered split
    assert len(twice.tensors("train")[1]) == len(y) - 52
    torch.testing.assert_close(twice.tensors("train")[0], xf[2:])


def test_attack_success_rate_counts_target_predictions_outside_the_target_class():
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))  # always predicts class 2
    x, y = torch.randn(10, 2), torch.tensor([2, 2, 0, 0, 0, 1, 1, 1, 1, 1])
    assert attack_success_rate(model, x, target_label=2, true_labels=y) == 1.0
    assert attack_success_rate(model, x, target_label=0) == 0.0


def test_penultimate_activations_are_the_inputs_of_the_classifier():
    torch.manual_seed(0)
    model = MLP(64, 10, hidden_sizes=(32, 16))
    model.train()
    x = torch.randn(50, 64)
    feats = penultimate_activations(model, x, batch_size=16)
    model.eval()
    torch.testing.assert_close(feats, model.features(x))
    with pytest.raises(ValueError, match="layer"):
        penultimate_activations(nn.Linear(3, 2), torch.randn(2, 3))


def test_spectral_scores_equal_a_numpy_svd_per_class():
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(120, 6, generator=g), torch.arange(120) % 3
    scores, flagged = spectral_signatures(feats, labels, poison_rate=0.1)
    for c in range(3):
        f = feats[labels == c].double().numpy()
        centred = f - f.mean(0)
        v = np.linalg.svd(centred, full_matrices=False)[2][0]
        np.testing.assert_allclose(scores[labels == c].numpy(), (centred @ v) ** 2, rtol=1e-5, atol=1e-6)
        k = round(1.5 * 0.1 * 40)
        assert flagged[labels == c].sum().item() == k
        top = np.argsort(-(centred @ v) ** 2)[:k]
        assert flagged[labels == c].nonzero().flatten().sort().values.tolist() == sorted(top.tolist())


def test_spectral_signatures_find_planted_outliers():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(300, 20, generator=g)
    labels = torch.zeros(300, dtype=torch.long)
    poisoned = torch.zeros(300, dtype=torch.bool)
    poisoned[:30] = True
    feats[poisoned] += 4.0 * torch.nn.functional.normalize(torch.ones(20), dim=0)
    _, flagged = spectral_signatures(feats, labels, poison_rate=0.1)
    assert (flagged & poisoned).sum().item() >= 27


def test_spectral_signatures_check_their_inputs():
    with pytest.raises(ValueError, match="poison_rate"):
        spectral_signatures(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), poison_rate=2.0)
    with pytest.raises(ValueError, match="labels"):
        spectral_signatures(torch.randn(4, 2), torch.zeros(3, dtype=torch.long), poison_rate=0.1)
