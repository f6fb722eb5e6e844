"""Label noise on every classification DataModule: exact counts, train only, pair mapping, seeds."""

import numpy as np
import pytest
import torch
from scipy import stats

from toolkit.data import (LABEL_NOISE_KINDS, ArrayDataModule, BreastCancerDataModule, DigitsDataModule,
                          MNIST1DDataModule, MoonsDataModule, flip_labels)
from toolkit.governance import inject_label_noise

MODULES = {
    "digits": lambda **kw: DigitsDataModule(**kw),
    "digits_ood": lambda **kw: DigitsDataModule(ood_classes=(3, 7), **kw),
    "breast_cancer": lambda **kw: BreastCancerDataModule(**kw),
    "moons": lambda **kw: MoonsDataModule(**kw),
    "mnist1d": lambda **kw: MNIST1DDataModule(num_samples=1000, **kw),
}


# ---- flip_labels --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", LABEL_NOISE_KINDS)
@pytest.mark.parametrize("rate, n", [(0.0, 50), (0.1, 57), (0.35, 1000), (1.0, 30)])
def test_flip_labels_flips_exactly_round_rate_n_and_always_changes_the_class(kind, rate, n):
    labels = np.arange(n) % 4
    noisy, flipped = flip_labels(labels, rate, 4, kind, seed=3)
    assert flipped.sum() == round(rate * n)
    assert np.array_equal(noisy != labels, flipped)       # every chosen label changed, no other did
    if kind == "pairs":
        assert np.array_equal(noisy[flipped], (labels[flipped] + 1) % 4)


def test_symmetric_noise_picks_the_other_classes_uniformly():
    k, n = 5, 20000
    labels = np.zeros(n, dtype=np.int64)
    noisy, flipped = flip_labels(labels, 0.5, k, "symmetric", seed=0)
    counts = np.bincount(noisy[flipped], minlength=k)
    assert counts[0] == 0
    assert stats.chisquare(counts[1:]).pvalue > 1e-3     # uniform over the k - 1 other classes


def test_flipped_samples_are_chosen_uniformly():
    hits = np.zeros(100)
    for seed in range(400):
        hits += flip_labels(np.arange(100) % 2, 0.2, 2, seed=seed)[1]
    assert stats.chisquare(hits).pvalue > 1e-3            # each sample flips with the same probability


def test_symmetric_flip_labels_is_the_governance_injection():
    labels = np.random.default_rng(0).integers(0, 7, 300)
    for seed in range(3):
        a, b = flip_labels(labels, 0.3, 7, seed=seed), inject_label_noise(labels, 0.3, 7, seed=seed)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_flip_labels_accepts_tensors_and_leaves_the_input_alone():
    labels = torch.arange(20) % 3
    noisy, _ = flip_labels(labels, 0.5, 3, seed=0)
    assert torch.equal(labels, torch.arange(20) % 3) and isinstance(noisy, np.ndarray)


# ---- on every DataModule ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", LABEL_NOISE_KINDS)
@pytest.mark.parametrize("name", MODULES)
def test_only_the_training_labels_change_by_the_exact_count(name, kind):
    clean = MODULES[name]()
    noisy = MODULES[name](label_noise=0.2, label_noise_kind=kind)
    x_train, y_train = noisy.tensors("train")
    y_clean = clean.tensors("train")[1]
    assert torch.equal(noisy.clean_targets("train"), y_clean)
    assert torch.equal(x_train, clean.tensors("train")[0])
    changed = np.flatnonzero((y_train != y_clean).numpy())
    assert len(changed) == round(0.2 * len(y_train))
    assert np.array_equal(noisy.noisy_indices, changed)
    assert torch.equal(noisy.noisy_mask("train"), y_train != y_clean)
    if kind == "pairs":
        assert torch.equal(y_train[changed], (y_clean[changed] + 1) % noisy.num_classes)
    assert y_train.min() >= 0 and y_train.max() < noisy.num_classes
    for split in ("val", "test"):
        assert torch.equal(noisy.tensors(split)[1], clean.tensors(split)[1])
        assert not noisy.noisy_mask(split).any()
    # the training loader serves the noisy labels (each sample once, shuffled)
    served = torch.cat([y for _, y in noisy.train_dataloader()])
    assert torch.equal(served.sort().values, y_train.sort().values)


@pytest.mark.parametrize("name", ["digits", "digits_ood", "mnist1d"])
def test_noisy_array_indices_point_at_the_flipped_samples_in_load_arrays(name):
    dm = MODULES[name](label_noise=0.3)
    _, y_raw = dm.load_arrays()
    indices = dm.noisy_array_indices
    assert set(indices) <= set(dm.split_indices["train"])
    relabel = dm._relabel if hasattr(dm, "_relabel") else np.arange(dm.num_classes)
    assert torch.equal(torch.as_tensor(relabel[y_raw[indices]]), dm.clean_targets("train")[dm.noisy_indices])
    assert not torch.equal(torch.as_tensor(relabel[y_raw[indices]]), dm.tensors("train")[1][dm.noisy_indices])


def test_noise_is_seeded_by_the_data_seed():
    a, b, c = (DigitsDataModule(label_noise=0.25, seed=s) for s in (0, 0, 1))
    assert np.array_equal(a.noisy_indices, b.noisy_indices)
    assert torch.equal(a.tensors("train")[1], b.tensors("train")[1])
    assert not np.array_equal(a.noisy_array_indices, c.noisy_array_indices)


def test_validation_noise_only_when_asked_and_test_never():
    dm = DigitsDataModule(label_noise=0.3, label_noise_val=True)
    y_val, clean_val = dm.tensors("val")[1], dm.clean_targets("val")
    assert (y_val != clean_val).sum() == round(0.3 * len(y_val)) == dm.noisy_mask("val").sum()
    assert torch.equal(dm.tensors("test")[1], dm.clean_targets("test"))
    # validation draws its own sample: not the same positions as training
    assert not np.array_equal(np.flatnonzero(dm.noisy_mask("val").numpy()), dm.noisy_indices[:len(y_val)])


def test_noise_applies_to_the_reduced_training_split():
    dm = DigitsDataModule(label_noise=0.1, train_fraction=0.2)
    assert len(dm.noisy_indices) == round(0.1 * len(dm.tensors("train")[1])) == 25


def test_no_noise_means_no_flips_and_an_unchanged_manifest():
    dm = DigitsDataModule()
    assert len(dm.noisy_indices) == 0 and len(dm.noisy_array_indices) == 0
    assert "label_noise" not in dm.manifest() and "label_noise" not in dm.manifest()["settings"]


def test_manifest_records_the_noise_setting_and_the_flipped_samples():
    dm = MoonsDataModule(label_noise=0.15, label_noise_kind="pairs", label_noise_val=True)
    manifest = dm.manifest()
    assert manifest["settings"]["label_noise"] == 0.15 and manifest["settings"]["label_noise_kind"] == "pairs"
    assert manifest["settings"]["label_noise_val"] is True
    record = manifest["label_noise"]
    assert record["train"]["indices"] == dm.noisy_array_indices.tolist()
    assert record["train"]["flipped"] == round(0.15 * len(dm.tensors("train")[1]))
    assert record["val"]["flipped"] == round(0.15 * len(dm.tensors("val")[1]))
    assert record["train"]["noisy_labels"] == dm.tensors("train")[1][dm.noisy_indices].tolist()
    other = MoonsDataModule(label_noise=0.15, label_noise_kind="pairs", label_noise_val=True, seed=1).manifest()
    assert other["label_noise"]["train"]["sha256"] != record["train"]["sha256"]


def test_repr_shows_the_noise():
    module = DigitsDataModule(label_noise=0.2, label_noise_kind="pairs")
    assert "label_noise=0.2, label_noise_kind='pairs'" in repr(module)


# ---- bad inputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits", "breast_cancer", "moons", "mnist1d"])
@pytest.mark.parametrize("kwargs, error, match", [
    ({"label_noise": 1.0}, ValueError, "label_noise must be a share in \\[0, 1\\)"),
    ({"label_noise": -0.1}, ValueError, "label_noise"),
    ({"label_noise": True}, ValueError, "label_noise"),
    ({"label_noise": "0.1"}, ValueError, "label_noise"),
    ({"label_noise": 0.1, "label_noise_kind": "asymmetric"}, ValueError, "label_noise_kind must be one of"),
    ({"label_noise_val": 1}, TypeError, "label_noise_val"),
])
def test_bad_label_noise_arguments_are_refused(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        MODULES[name](**kwargs)


class _NoClasses(ArrayDataModule):
    def load_arrays(self):
        return np.zeros((40, 2)), np.arange(40) % 2


def test_label_noise_needs_class_names():
    with pytest.raises(ValueError, match="label_noise needs at least 2 classes"):
        _NoClasses(label_noise=0.1).setup()


@pytest.mark.parametrize("call, error, match", [
    (lambda: flip_labels(np.zeros(4), 0.5, 2), TypeError, "labels must be a 1-D array of integer"),
    (lambda: flip_labels(np.zeros((2, 2), dtype=int), 0.5, 2), TypeError, "labels"),
    (lambda: flip_labels(np.arange(4), 0.5, 1), ValueError, "num_classes"),
    (lambda: flip_labels(np.arange(4), 0.5, 3), ValueError, "num_classes must be an integer >= 2 above every"),
    (lambda: flip_labels(np.arange(4) - 1, 0.5, 4), ValueError, "labels must be class indices >= 0"),
    (lambda: flip_labels(np.arange(4), 1.5, 4), ValueError, "label_noise must be a share in \\[0, 1\\]"),
    (lambda: flip_labels(np.arange(4), 0.5, 4, kind="flip"), ValueError, "label_noise_kind"),
])
def test_flip_labels_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()
