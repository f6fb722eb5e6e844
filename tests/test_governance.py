"""Governance: dataset cards, manifests, duplicates and leakage, label noise, slice metrics."""

import json

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, precision_score, recall_score
from sklearn.model_selection import StratifiedKFold

from toolkit.data import ArrayDataModule, DigitsDataModule, MoonsDataModule
from toolkit.governance import (dataset_card, detection_scores, find_duplicates, find_label_issues, find_leakage,
                                inject_label_noise, out_of_fold_probs, slice_metrics, split_leakage, verify_splits,
                                worst_slice)

DIGITS = load_digits()


def _distances(a, b):
    """Euclidean distances by broadcasting, independent of scipy."""
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


# ---- duplicates and leakage ------------------------------------------------------------------------
def test_find_duplicates_finds_planted_exact_duplicates_exactly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    x[[17, 150, 199]] = x[3]            # a group of four copies
    x[42] = x[7]
    pairs = set(map(tuple, find_duplicates(x)[["i", "j"]].to_numpy()))
    group = [3, 17, 150, 199]
    expected = {(a, b) for k, a in enumerate(group) for b in group[k + 1:]} | {(7, 42)}
    assert pairs == expected


@pytest.mark.parametrize("threshold", [0.5, 1.5, 2.5])
def test_find_duplicates_near_matches_brute_force_distances(threshold):
    x = np.random.default_rng(1).normal(size=(120, 4))
    distances = _distances(x, x)
    i, j = np.nonzero(np.triu(distances <= threshold, k=1))
    frame = find_duplicates(torch.as_tensor(x), threshold=threshold)
    assert list(zip(frame.i, frame.j)) == sorted(zip(i.tolist(), j.tolist()))
    np.testing.assert_allclose(frame.distance, distances[i, j][np.lexsort((j, i))], rtol=1e-10)


@pytest.mark.parametrize("threshold", [0.0, 2.0])
def test_find_leakage_matches_brute_force(threshold):
    rng = np.random.default_rng(2)
    train, test = rng.normal(size=(80, 3)), rng.normal(size=(40, 3))
    test[[5, 9]] = train[[60, 2]]
    d = _distances(train, test)
    i, j = np.nonzero(d <= threshold)
    frame = find_leakage(train, test, threshold=threshold)
    assert sorted(zip(frame.train_index, frame.test_index)) == sorted(zip(i.tolist(), j.tolist()))
    if threshold == 0:
        assert set(zip(frame.train_index, frame.test_index)) == {(60, 5), (2, 9)}


def test_find_leakage_is_the_same_in_small_memory_chunks(monkeypatch):
    from toolkit.governance import duplicates

    rng = np.random.default_rng(3)
    train, test = rng.normal(size=(90, 3)), rng.normal(size=(70, 3))
    whole = find_leakage(train, test, threshold=1.0)
    monkeypatch.setattr(duplicates, "_CHUNK_DISTANCES", 200)    # two test rows per chunk
    pd.testing.assert_frame_equal(find_leakage(train, test, threshold=1.0), whole)
    assert len(whole) > 10


def _sklearn_radius_pairs(train, test, radius):
    from sklearn.neighbors import NearestNeighbors

    found = NearestNeighbors(radius=radius, algorithm="brute").fit(train).radius_neighbors(
        test, return_distance=False)
    return {(int(i), j) for j, row in enumerate(found) for i in row}


@pytest.mark.parametrize("offset, radius", [(0.0, 6.0), (0.0, 10.0), (1e4, 6.0)])
def test_near_duplicate_search_equals_sklearn_radius_neighbors(offset, radius):
    """Digits plus noised copies (and far from the origin, where float32 products lose digits)."""
    rng = np.random.default_rng(4)
    x = DIGITS.data[:600]
    x = np.concatenate([x, np.clip(x + rng.normal(0, 1.0, x.shape), 0, 16)]) + offset
    train, test = x[::2], x[1::2]
    leaks = find_leakage(train, test, threshold=radius)
    assert set(zip(leaks.train_index, leaks.test_index)) == _sklearn_radius_pairs(train, test, radius)
    pairs = find_duplicates(x, threshold=radius)
    assert set(zip(pairs.i, pairs.j)) == {(i, j) for i, j in _sklearn_radius_pairs(x, x, radius) if i < j}
    assert len(pairs) > 100


def test_near_duplicate_search_keeps_pairs_exactly_at_the_threshold():
    """Integer points 5 apart (3-4-5): the float32 candidate step must not drop a pair on the boundary."""
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [100.0, 100.0], [103.0, 104.0]])
    assert find_duplicates(x, threshold=5.0)[["i", "j"]].values.tolist() == [[0, 1], [1, 2], [3, 4]]
    test = np.array([[-3.0, -4.0], [6.0, 13.0]])
    assert find_leakage(x[:3], test, threshold=5.0).values.tolist() == [[0, 0, 5.0], [2, 1, 5.0]]


class _PlantedDataModule(ArrayDataModule):
    """Digits with three copies of sample 0 appended: wherever the split puts them, copies may leak."""

    name = "planted"
    class_names = tuple(str(c) for c in range(10))

    def load_arrays(self):
        x, y = DIGITS.data.astype(np.float32), DIGITS.target.astype(np.int64)
        return np.concatenate([x, x[[0, 0, 0]]]), np.concatenate([y, y[[0, 0, 0]]])


def test_split_leakage_reports_copies_that_land_in_different_splits():
    dm = _PlantedDataModule(seed=4)
    where = {int(i): s for s, idx in dm.split_indices.items() for i in idx}
    copies = [0, 1797, 1798, 1799]
    order = {"train": 0, "val": 1, "test": 2}
    expected = {(f"{where[a]}-{where[b]}", a, b) for a in copies for b in copies
                if order[where[a]] < order[where[b]]}
    expected = {(p, a, b) if order[p.split("-")[0]] == order[where[a]] else (p, b, a) for p, a, b in expected}
    leaks = split_leakage(dm)
    assert set(zip(leaks.pair, leaks.index_a, leaks.index_b)) == expected
    assert expected, "the seed should scatter the copies over several splits"
    assert split_leakage(DigitsDataModule()).empty  # the real digits have no exact copies across splits


# ---- label noise -----------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 1.0])
def test_inject_label_noise_flips_exactly_the_rate_to_other_classes(rate):
    labels = DIGITS.target
    noisy, flipped = inject_label_noise(labels, rate, num_classes=10, seed=3)
    assert flipped.sum() == round(rate * len(labels))
    assert np.all(noisy[flipped] != labels[flipped]) and np.all(noisy[~flipped] == labels[~flipped])
    assert noisy.min() >= 0 and noisy.max() <= 9


def test_inject_label_noise_targets_are_uniform_over_other_classes():
    labels = np.zeros(20000, dtype=np.int64)
    noisy, _ = inject_label_noise(labels, 1.0, num_classes=5, seed=0)
    shares = np.bincount(noisy, minlength=5)[1:] / len(labels)
    assert np.abs(shares - 0.25).max() < 4 * np.sqrt(0.25 * 0.75 / len(labels))


def test_out_of_fold_probs_equal_a_manual_fold_loop():
    x, y = DIGITS.data[:300], DIGITS.target[:300]
    estimator = LogisticRegression(max_iter=500)
    probs = out_of_fold_probs(x, y, n_splits=3, seed=5, estimator=estimator)
    expected = np.zeros_like(probs)
    for train, held in StratifiedKFold(3, shuffle=True, random_state=5).split(x, y):
        expected[held] = LogisticRegression(max_iter=500).fit(x[train], y[train]).predict_proba(x[held])
    np.testing.assert_allclose(probs, expected, atol=1e-8)


def test_confident_learning_recovers_injected_noise_on_digits():
    noisy, flipped = inject_label_noise(DIGITS.target, 0.1, seed=0)
    found = find_label_issues(noisy, out_of_fold_probs(DIGITS.data, noisy, seed=0))
    scores = detection_scores(found, flipped)
    assert scores["precision"] > 0.7 and scores["recall"] > 0.8, scores


def test_detection_scores_match_sklearn():
    rng = np.random.default_rng(0)
    found, truth = rng.random(500) < 0.2, rng.random(500) < 0.1
    scores = detection_scores(found, truth)
    assert scores["precision"] == pytest.approx(precision_score(truth, found))
    assert scores["recall"] == pytest.approx(recall_score(truth, found))
    assert np.isnan(detection_scores(np.zeros(3, bool), np.ones(3, bool))["precision"])


# ---- slices ----------------------------------------------------------------------------------------
def _numpy_ece(probs, targets, n_bins):
    conf, pred = probs.max(1), probs.argmax(1)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    return sum(abs((pred[bins == b] == targets[bins == b]).mean() - conf[bins == b].mean()) * (bins == b).mean()
               for b in range(n_bins) if (bins == b).any())


def test_slice_metrics_match_sklearn_and_a_numpy_ece():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(600, 4, generator=g) * 2, 1)
    targets = torch.randint(0, 4, (600,), generator=g)
    groups = np.array(["a", "b", "c"])[np.arange(600) % 3]
    frame = slice_metrics(probs, targets, groups=groups, n_bins=10)
    p, t = probs.numpy(), targets.numpy()
    for name in ("a", "b", "c", "all"):
        mask = groups == name if name != "all" else np.ones(600, bool)
        assert frame.loc[name, "n"] == mask.sum()
        assert frame.loc[name, "accuracy"] == pytest.approx(accuracy_score(t[mask], p[mask].argmax(1)), abs=1e-6)
        assert frame.loc[name, "ece"] == pytest.approx(_numpy_ece(p[mask], t[mask], 10), abs=1e-5)


def test_worst_slice_finds_the_planted_bad_class():
    targets = torch.arange(300) % 3
    probs = torch.nn.functional.one_hot(targets, 3).float() * 0.8 + 0.2 / 3
    wrong = (targets == 2) & (torch.arange(300) % 2 == 0)    # half of class 2 is predicted as class 0
    probs[wrong] = torch.tensor([0.8, 0.1, 0.1])
    frame = slice_metrics(probs, targets, min_size=10)
    assert worst_slice(frame) == ("2", pytest.approx(0.5))
    assert worst_slice(frame, "ece")[0] == "2"


class _CountingModule(pl.LightningModule):
    """Predicts the label frequencies of the samples it was trained on: an exact oracle for out-of-fold."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.register_buffer("counts", torch.zeros(num_classes))

    def training_step(self, batch, batch_idx):
        if self.current_epoch == 0:
            self.counts += torch.bincount(batch[1], minlength=len(self.counts)).float()
        return (self.weight * 0).sum()

    def predict_step(self, batch, batch_idx):
        return torch.log(self.counts / self.counts.sum()).expand(len(batch[0]), -1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_out_of_fold_probs_of_a_module_come_only_from_the_other_folds():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 90)
    x = rng.normal(size=(90, 2, 2))
    probs = out_of_fold_probs(x, labels, n_splits=3, seed=7, module=_CountingModule, max_epochs=2, batch_size=16)
    for train, held_out in StratifiedKFold(3, shuffle=True, random_state=7).split(x.reshape(90, -1), labels):
        expected = np.bincount(labels[train], minlength=3) / len(train)
        np.testing.assert_allclose(probs[held_out], np.tile(expected, (len(held_out), 1)), rtol=1e-6)


@pytest.mark.slow
def test_out_of_fold_probs_of_the_course_mlp_find_flipped_digits():
    from toolkit.models import MLP
    from toolkit.training import ClassifierModule

    x, y = DIGITS.data[:600] / 16, DIGITS.target[:600]
    noisy, flipped = inject_label_noise(y, 0.1, seed=0)
    probs = out_of_fold_probs(x.astype(np.float32), noisy, n_splits=3, module=lambda: ClassifierModule(
        MLP(64, 10), 10, lr=3e-3), max_epochs=15)
    assert accuracy_score(y, probs.argmax(1)) > 0.85
    assert detection_scores(find_label_issues(noisy, probs), flipped)["recall"] > 0.7


# ---- dataset card and manifests --------------------------------------------------------------------
def test_dataset_card_reports_the_modules_splits_and_checksums():
    dm = DigitsDataModule()
    card = dataset_card(dm)
    manifest = dm.manifest()
    for split, info in manifest["splits"].items():
        assert f"| {split} | {info['size']} |" in card and info["sha256"][:12] in card
    assert manifest["data_sha256"] in card and "CC BY 4.0" in card and "matches `digits.json`" in card


def _card_text(name):
    from toolkit.governance.card import DATASET_INFO

    return " ".join(DATASET_INFO[name].values())


def test_digits_card_states_the_writers_of_the_part_sklearn_ships():
    """sklearn's DESCR: 'From a total of 43 people, 30 contributed to the training set and different 13 to
    the test set', and load_digits is the test set: the card must say 13 writers, never 43."""
    import re

    descr = " ".join(DIGITS.DESCR.split())
    assert "This is a copy of the test set" in descr
    total, train, test = map(int, re.search(r"total of (\d+) people, (\d+) contributed to the training set "
                                            r"and different (\d+) to the test set", descr).groups())
    card = dataset_card(DigitsDataModule())
    assert f"written by {test} writers" in card and f"{total} writers" not in card
    assert f"{train} wrote the UCI training part, {test} others the test part" in card
    instances = int(re.search(r":Number of Instances: (\d+)", descr).group(1))
    assert f"{instances:,} images" in card and f"{instances:,} samples" in card  # the text and the data
    assert re.search(r"integer pixels in the range 0\.\.(\d+)", descr).group(1) == "16" and "0..16" in card
    assert "leakage" in card


def test_breast_cancer_card_matches_sklearn_description():
    import re

    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    descr = " ".join(data.DESCR.split())
    malignant, benign = map(int, re.search(r"Class Distribution: (\d+) - Malignant, (\d+) - Benign", descr).groups())
    assert (malignant, benign) == tuple(np.bincount(data.target))
    text = _card_text("breast_cancer")
    assert f"{malignant} malignant (class 0) and {benign} benign (class 1)" in text
    assert f"{len(data.target)} samples" in text and f"{data.data.shape[1]} real-valued features" in text
    for name in ("Wolberg", "Street", "Mangasarian"):
        assert name in descr and name in text


def test_mnist1d_card_matches_the_generators_arguments_and_license():
    from importlib.metadata import metadata

    import mnist1d.data

    args = vars(mnist1d.data.get_dataset_args())
    text = _card_text("mnist1d")
    low, high = args["padding"]
    assert f"padded with {low}-{high} zeros" in text and f"resampled to {args['final_seq_length']} points" in text
    assert f"templates of {args['template_len']} points" in text and f"default {args['num_samples']:,}" in text
    for knob in ("scale_coeff", "corr_noise_scale", "iid_noise_scale", "shear_scale"):
        assert f"{knob} {args[knob]}" in text, knob
    assert f"up to {args['max_translation']} points (max_translation)" in text
    assert f"generator code is {metadata('mnist1d')['License']}" in text


def test_every_card_has_gebrus_seven_sections_filled():
    from toolkit.data import BreastCancerDataModule, MNIST1DDataModule
    from toolkit.governance.card import SECTIONS

    for dm in (DigitsDataModule(), BreastCancerDataModule(), MoonsDataModule(), MNIST1DDataModule()):
        card = dataset_card(dm)
        positions = [card.index(f"## {title}\n") for _, title in SECTIONS]
        assert positions == sorted(positions) and "not documented" not in card, dm.name


def test_datasheets_in_datasets_folder_have_the_seven_sections_and_the_right_writers():
    from pathlib import Path

    from toolkit.governance.card import SECTIONS

    folder = Path(__file__).resolve().parents[1] / "datasets"
    for name in ("digits", "breast_cancer", "moons", "mnist1d"):
        sheet = (folder / f"{name}.md").read_text()
        for _, title in SECTIONS:
            assert f"## {title}" in sheet, (name, title)
    digits = (folder / "digits.md").read_text()
    assert "13 writers" in digits and "43 writers" not in digits


def test_verify_splits_names_the_mismatch(tmp_path):
    assert verify_splits(DigitsDataModule()).name == "digits.json"
    with pytest.raises(ValueError, match="settings differ"):
        verify_splits(DigitsDataModule(seed=1))
    with pytest.raises(ValueError, match="does not exist"):
        verify_splits(DigitsDataModule(), manifest_dir=tmp_path)
    assert "**not checked**: no split manifest" in dataset_card(DigitsDataModule(), manifest_dir=tmp_path)
    stored = DigitsDataModule().manifest()
    stored["splits"]["test"]["sha256"] = "0" * 64
    (tmp_path / "digits.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="split 'test' has other indices"):
        verify_splits(DigitsDataModule(), manifest_dir=tmp_path)
    assert "**does not match**" in dataset_card(DigitsDataModule(), manifest_dir=tmp_path)
    assert "not documented" in dataset_card(_PlantedDataModule(), manifest_dir=tmp_path)


# ---- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, match", [
    (lambda: find_duplicates(np.zeros((4, 2)), threshold=-1), ValueError, "threshold"),
    (lambda: find_duplicates(np.zeros(4)), ValueError, "x must have shape"),
    (lambda: find_duplicates([[1, 2]]), TypeError, "x must be"),
    (lambda: find_duplicates(np.array([[np.nan, 1.0]])), ValueError, "NaN"),
    (lambda: find_leakage(np.zeros((4, 2)), np.zeros((4, 3))), ValueError, "same number of features"),
    (lambda: split_leakage(np.zeros(3)), TypeError, "datamodule"),
    (lambda: inject_label_noise(np.arange(4), 1.5), ValueError, "rate"),
    (lambda: inject_label_noise(np.arange(4.0), 0.1), TypeError, "labels"),
    (lambda: inject_label_noise(np.arange(4), 0.1, num_classes=3), ValueError, "num_classes"),
    (lambda: out_of_fold_probs(np.zeros((5, 2)), np.arange(4)), ValueError, "same length"),
    (lambda: out_of_fold_probs(np.zeros((4, 2)), np.arange(4), n_splits=1), ValueError, "n_splits"),
    (lambda: find_label_issues(np.arange(4), np.zeros((3, 4))), ValueError, "probs must have shape"),
    (lambda: find_label_issues(np.arange(4), np.full((4, 4), 0.25), filter_by="x"), ValueError, "filter_by"),
    (lambda: detection_scores(np.zeros(3), np.zeros(3, bool)), TypeError, "boolean"),
    (lambda: detection_scores(np.zeros(3, bool), np.zeros(4, bool)), ValueError, "same shape"),
    (lambda: slice_metrics(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)), ValueError, "empty"),
    (lambda: slice_metrics(torch.full((4, 2), 0.5), torch.zeros(4, dtype=torch.long), groups=[1, 2]),
     ValueError, "groups"),
    (lambda: slice_metrics(torch.full((4, 2), 0.5), torch.zeros(4)), TypeError, "targets"),
    (lambda: slice_metrics(torch.full((4, 2), 0.5), torch.zeros(4, dtype=torch.long), n_bins=0), ValueError, "n_bins"),
    (lambda: worst_slice(pd.DataFrame({"accuracy": [1.0]})), ValueError, "slice_metrics"),
    (lambda: dataset_card(MoonsDataModule(), info="x"), TypeError, "info"),
    (lambda: dataset_card(object()), TypeError, "datamodule"),
    (lambda: dataset_card(MoonsDataModule(), info={"limits": "x"}), ValueError, "unknown fields"),
    (lambda: out_of_fold_probs(np.zeros((4, 2)), np.arange(4), module="mlp"), TypeError, "module"),
    (lambda: out_of_fold_probs(np.zeros((4, 2)), np.arange(4), module=_CountingModule, max_epochs=0), ValueError,
     "max_epochs"),
    (lambda: out_of_fold_probs(np.zeros((4, 2)), np.arange(4), module=_CountingModule, estimator=LogisticRegression()),
     ValueError, "not both"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
