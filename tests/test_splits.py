"""Stratified splits and the committed split manifests."""

import json
from pathlib import Path

import numpy as np
import pytest

from toolkit.data import (BreastCancerDataModule, DigitsDataModule, MNIST1DDataModule, MoonsDataModule,
                          check_manifest, stratified_split, stratified_subsample)

MANIFESTS = Path(__file__).parents[1] / "datasets" / "manifests"
LABELS = np.repeat(np.arange(4), [40, 30, 20, 10])


def test_split_is_a_partition_with_requested_sizes():
    splits = stratified_split(LABELS, 0.2, 0.3, seed=0)
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined.tolist()) == list(range(len(LABELS)))
    assert len(splits["test"]) == 30 and len(splits["val"]) == 20


def test_split_preserves_class_proportions():
    splits = stratified_split(LABELS, 0.2, 0.3, seed=1)
    overall = np.bincount(LABELS) / len(LABELS)
    for index in splits.values():
        share = np.bincount(LABELS[index], minlength=4) / len(index)
        # stratification rounds each class to whole samples: within one sample of the ideal share
        assert np.all(np.abs(share - overall) <= 1 / len(index) + 1e-12)


def test_split_is_a_function_of_the_seed():
    a, b, c = (stratified_split(LABELS, 0.2, 0.2, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_subsample_keeps_the_fraction_and_stays_stratified():
    index = np.arange(len(LABELS))
    kept = stratified_subsample(index, LABELS, 0.5, seed=0)
    assert len(kept) == 50 and set(kept) <= set(index)
    assert np.array_equal(np.bincount(LABELS[kept]), [20, 15, 10, 5])


@pytest.mark.parametrize("val, test, name", [(-0.1, 0.2, "val_fraction"), (0.2, 1.0, "test_fraction"),
                                             (0.5, 0.5, "val_fraction \\+ test_fraction")])
def test_bad_fractions_raise_value_error(val, test, name):
    with pytest.raises(ValueError, match=name):
        stratified_split(LABELS, val, test, seed=0)


@pytest.mark.parametrize("module", [DigitsDataModule(), BreastCancerDataModule(), MoonsDataModule(),
                                    MNIST1DDataModule()],
                         ids=lambda m: m.name)
def test_committed_manifest_matches_the_split(module):
    """A changed split (library upgrade, seed, code edit) fails here, naming what changed."""
    check_manifest(module.manifest(), MANIFESTS / f"{module.name}.json")


def test_check_manifest_names_the_changed_split(tmp_path):
    manifest = DigitsDataModule().manifest()
    stored = json.loads(json.dumps(manifest))
    stored["splits"]["val"]["sha256"] = "0" * 64
    path = tmp_path / "digits.json"
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="split 'val'"):
        check_manifest(manifest, path)
