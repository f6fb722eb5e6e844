"""DataModules against the arrays scikit-learn ships, and the Digits-C corruptions."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits, make_moons

from toolkit.data import (CORRUPTIONS, SEVERITIES, BreastCancerDataModule, DigitsDataModule,
                          MoonsDataModule, corrupt)

DIGITS = load_digits()


@pytest.mark.parametrize("image_size", [8, 16, 32])
@pytest.mark.parametrize("flatten", [False, True])
def test_digits_shapes(image_size, flatten):
    dm = DigitsDataModule(image_size=image_size, flatten=flatten)
    x, y = dm.tensors("train")
    expected = (image_size**2,) if flatten else (1, image_size, image_size)
    assert tuple(x.shape[1:]) == expected == dm.input_shape
    assert x.dtype == torch.float32 and y.dtype == torch.long
    assert sum(len(dm.tensors(s)[0]) for s in ("train", "val", "test")) == len(DIGITS.target)


def test_digits_inputs_are_sklearn_pixels_standardized_on_train():
    dm = DigitsDataModule(image_size=8)
    x_train, _ = dm.tensors("train")
    assert abs(x_train.mean().item()) < 1e-5 and abs(x_train.std().item() - 1) < 1e-4
    x_test, y_test = dm.tensors("test")
    index = dm.split_indices["test"]
    pixels = torch.as_tensor(DIGITS.images[index] / 16.0, dtype=torch.float32)
    torch.testing.assert_close(dm.to_images01(x_test)[:, 0], pixels, atol=1e-5, rtol=0)
    assert torch.equal(y_test, torch.as_tensor(DIGITS.target[index]))


def test_digits_input_range_maps_black_and_white():
    dm = DigitsDataModule()
    dm.setup()
    low, high = dm.input_range
    assert low == pytest.approx(-dm.mean / dm.std) and high == pytest.approx((1 - dm.mean) / dm.std)
    x, _ = dm.tensors("train")
    assert low - 1e-5 <= x.min().item() and x.max().item() <= high + 1e-5


def test_train_fraction_shrinks_only_the_training_split():
    full, small = DigitsDataModule(), DigitsDataModule(train_fraction=0.25)
    assert len(small.tensors("train")[0]) == pytest.approx(0.25 * len(full.tensors("train")[0]), abs=1)
    for split in ("val", "test"):
        assert torch.equal(small.tensors(split)[1], full.tensors(split)[1])


def test_ood_classes_are_held_out_and_relabelled():
    dm = DigitsDataModule(ood_classes=(3, 7))
    assert dm.num_classes == 8 and dm.class_names == ("0", "1", "2", "4", "5", "6", "8", "9")
    for split in ("train", "val", "test"):
        labels = dm.tensors(split)[1]
        assert labels.min() >= 0 and labels.max() == 7
    # the relabelled classes are the original ones: "4" (index 3) must be digit 4
    index = dm.split_indices["train"]
    kept = index[np.isin(DIGITS.target[index], dm.in_classes)]
    original = DIGITS.target[kept]
    assert np.array_equal(np.array(dm.in_classes)[dm.tensors("train")[1].numpy()], original)
    assert len(dm.ood_tensors()) == np.isin(DIGITS.target, (3, 7)).sum()
    assert (torch.cat([b[1] for b in dm.ood_dataloader()]) == -1).all()


def test_ood_dataloader_without_ood_classes_raises():
    with pytest.raises(ValueError, match="ood_classes"):
        DigitsDataModule().ood_dataloader()


@pytest.mark.parametrize("kwargs, name", [({"image_size": 10}, "image_size"), ({"ood_classes": (1, 1)}, "ood_classes"),
                                          ({"ood_classes": (12,)}, "ood_classes"), ({"train_fraction": 0}, "train_fraction"),
                                          ({"batch_size": 0}, "batch_size"), ({"val_fraction": 0.6, "test_fraction": 0.5}, "val_fraction")])
def test_digits_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DigitsDataModule(**kwargs)


def test_breast_cancer_matches_sklearn_and_is_standardized():
    dm = BreastCancerDataModule()
    data = load_breast_cancer()
    x_train, _ = dm.tensors("train")
    torch.testing.assert_close(x_train.mean(0), torch.zeros(30), atol=1e-5, rtol=0)
    torch.testing.assert_close(x_train.std(0, unbiased=False), torch.ones(30), atol=1e-4, rtol=0)
    index = dm.split_indices["test"]
    x_test, y_test = dm.tensors("test")
    raw = x_test.double().numpy() * dm.std + dm.mean
    np.testing.assert_allclose(raw, data.data[index], rtol=1e-5, atol=1e-6)
    assert np.array_equal(y_test.numpy(), data.target[index]) and dm.num_classes == 2


def test_moons_match_make_moons():
    dm = MoonsDataModule(n_samples=200, noise=0.1, seed=3)
    x, y = make_moons(n_samples=200, noise=0.1, random_state=3)
    index = dm.split_indices["val"]
    assert np.array_equal(dm.tensors("val")[1].numpy(), y[index])
    np.testing.assert_allclose(dm.tensors("val")[0].double().numpy() * dm.std + dm.mean, x[index], rtol=1e-5)
    with pytest.raises(ValueError, match="n_samples"):
        MoonsDataModule(n_samples=5)
    with pytest.raises(ValueError, match="noise"):
        MoonsDataModule(noise=-1)


# ---- corruptions -------------------------------------------------------------------------------
IMAGES = DigitsDataModule(image_size=16, normalize=False).tensors("test")[0][:64]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruptions_keep_shape_and_range_and_are_seeded(name):
    for severity in SEVERITIES:
        out = corrupt(IMAGES, name, severity, seed=1)
        assert out.shape == IMAGES.shape and out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, corrupt(IMAGES, name, severity, seed=1))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_strength_grows_with_severity(name):
    distance = [(corrupt(IMAGES, name, s, seed=0) - IMAGES).abs().mean().item() for s in SEVERITIES]
    assert distance[0] > 0
    assert all(a < b for a, b in zip(distance, distance[1:])), distance


def test_gaussian_noise_has_the_stated_std():
    """On mid-grey images nothing is clipped, so the noise std is the severity's sigma."""
    grey = torch.full((200, 1, 16, 16), 0.5)
    noise = corrupt(grey, "gaussian_noise", 1, seed=0) - grey
    # the sample std of 51,200 normals has relative standard error ~ 1/sqrt(2n) ~ 0.3%
    assert noise.std().item() == pytest.approx(0.04, rel=0.02)


def test_contrast_follows_its_closed_form():
    out = corrupt(IMAGES, "contrast", 3, seed=0)
    mean = IMAGES.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(out, (IMAGES - mean) * 0.65 + mean)


def test_blur_preserves_total_intensity_of_a_centred_dot():
    dot = torch.zeros(1, 1, 32, 32)
    dot[..., 16, 16] = 1.0
    blurred = corrupt(dot, "gaussian_blur", 3, seed=0)  # sigma 2 px: the kernel fits in the frame
    assert blurred.sum().item() == pytest.approx(1.0, rel=1e-5) and blurred.max() < 0.2


def test_shift_dataloader_keeps_test_labels():
    dm = DigitsDataModule(image_size=16)
    shifted = torch.cat([b[1] for b in dm.shift_dataloader("rotation", 2)])
    assert torch.equal(shifted, dm.tensors("test")[1])


@pytest.mark.parametrize("args, error, match", [
    (("fog", 1), ValueError, "corruption"), (("rotation", 0), ValueError, "severity"),
    (("rotation", 6), ValueError, "severity"), (("rotation", True), ValueError, "severity"),
])
def test_corrupt_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        corrupt(IMAGES, *args)


def test_corrupt_bad_images():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(IMAGES * 3 - 1, "rotation", 1)
    with pytest.raises(ValueError, match="shape"):
        corrupt(IMAGES[:, 0], "rotation", 1)
    with pytest.raises(TypeError, match="floating-point"):
        corrupt(IMAGES.long(), "rotation", 1)
