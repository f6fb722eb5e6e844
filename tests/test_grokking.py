"""The modular-addition data of the grokking experiment (Power et al., 2022, arXiv:2201.02177).

Oracles: the closed form of the table (pair ``i`` is ``(i // p, i % p)``, its label ``(a + b) mod p``
computed in plain Python), exact split sizes ``round(fraction * p**2)``, set algebra on the splits,
and, for the training path, a plain PyTorch loop.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from toolkit.data import ModularAdditionDataModule, modular_addition_table
from toolkit.data.modular import MODULAR_ENCODINGS

SPLITS = ("train", "val", "test")


@pytest.mark.parametrize("p", [2, 5, 13, 97])
def test_table_holds_every_pair_once_with_its_sum_mod_p(p):
    pairs, labels = modular_addition_table(p)
    assert pairs.shape == (p * p, 2) and pairs.dtype == labels.dtype == np.int64
    assert {tuple(row) for row in pairs.tolist()} == set(itertools.product(range(p), repeat=2))
    assert labels.tolist() == [(a + b) % p for a, b in pairs.tolist()]
    assert np.bincount(labels, minlength=p).tolist() == [p] * p  # each residue is the sum of exactly p pairs


@pytest.mark.parametrize("p,train_fraction,val_fraction", [(7, 0.5, 0.0), (23, 0.8, 0.0), (31, 0.3, 0.2), (5, 0.6, 0.1)])
def test_split_sizes_are_rounded_fractions_and_splits_are_disjoint(p, train_fraction, val_fraction):
    dm = ModularAdditionDataModule(modulus=p, train_fraction=train_fraction, val_fraction=val_fraction)
    index = dm.split_indices
    n_train, n_val = round(train_fraction * p * p), round(val_fraction * p * p)
    assert len(index["train"]) == n_train == dm.batch_size and dm.full_batch
    held_out = set(index["test"]) | set(index["val"])
    assert not set(index["train"]) & held_out
    assert set(index["train"]) | held_out == set(range(p * p))
    if val_fraction:
        assert len(index["val"]) == n_val and len(index["test"]) == p * p - n_train - n_val
        assert not set(index["val"]) & set(index["test"])
    else:  # the validation split is the held-out (test) split
        assert np.array_equal(index["val"], index["test"]) and len(index["test"]) == p * p - n_train


@pytest.mark.parametrize("encoding", MODULAR_ENCODINGS)
def test_inputs_encode_the_pairs_and_targets_are_their_sums(encoding):
    p = 11
    dm = ModularAdditionDataModule(modulus=p, train_fraction=0.4, val_fraction=0.2, encoding=encoding, seed=3)
    for split in SPLITS:
        x, y = dm.tensors(split)
        pairs = dm.pairs(split)
        assert np.array_equal(pairs, np.stack([dm.split_indices[split] // p, dm.split_indices[split] % p], 1))
        assert y.dtype == torch.long and y.tolist() == [(a + b) % p for a, b in pairs.tolist()]
        if encoding == "tokens":
            assert x.dtype == torch.long and x.tolist() == pairs.tolist()
        else:
            assert x.dtype == torch.float32 and x.shape == (len(y), 2 * p) and tuple(x.shape[1:]) == dm.input_shape
            assert torch.all(x.sum(1) == 2) and set(x.unique().tolist()) == {0.0, 1.0}
            assert x[:, :p].argmax(1).tolist() == pairs[:, 0].tolist()
            assert x[:, p:].argmax(1).tolist() == pairs[:, 1].tolist()
    assert dm.num_classes == p


def test_split_is_a_pure_function_of_the_seed():
    first = ModularAdditionDataModule(modulus=13, train_fraction=0.5, seed=4).split_indices
    again = ModularAdditionDataModule(modulus=13, train_fraction=0.5, seed=4).split_indices
    other = ModularAdditionDataModule(modulus=13, train_fraction=0.5, seed=5).split_indices
    assert all(np.array_equal(first[s], again[s]) for s in SPLITS)
    assert not np.array_equal(first["train"], other["train"])
    assert ModularAdditionDataModule(modulus=13, seed=4).manifest() == ModularAdditionDataModule(modulus=13, seed=4).manifest()


def test_split_is_uniform_not_stratified():
    # a uniform draw of 40 of 169 pairs leaves residue counts uneven (stratifying would give 3 or 4 each)
    dm = ModularAdditionDataModule(modulus=13, train_fraction=40 / 169, seed=0)
    counts = np.bincount(dm.tensors("train")[1].numpy(), minlength=13)
    assert counts.sum() == 40 and counts.max() - counts.min() > 1


def test_full_batch_loader_gives_the_whole_training_split_in_one_step():
    dm = ModularAdditionDataModule(modulus=7, train_fraction=0.5)
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and sorted(batches[0][1].tolist()) == sorted(dm.tensors("train")[1].tolist())
    assert len(list(dm.val_dataloader())) == 1
    minibatch = ModularAdditionDataModule(modulus=7, train_fraction=0.5, batch_size=10, eval_batch_size=5)
    assert [len(b[1]) for b in minibatch.train_dataloader()] == [10, 10, 4]
    assert [len(b[1]) for b in minibatch.test_dataloader()] == [5, 5, 5, 5, 5]


def test_manifest_records_the_split():
    dm = ModularAdditionDataModule(modulus=7, train_fraction=0.5, val_fraction=0.2, seed=2)
    manifest = dm.manifest()
    assert manifest["dataset"] == "modular_addition" and manifest["settings"]["modulus"] == 7
    assert {s: manifest["splits"][s]["indices"] for s in SPLITS} == {s: dm.split_indices[s].tolist() for s in SPLITS}


@pytest.mark.slow
def test_train_members_trains_on_it_as_a_plain_full_batch_adamw_loop(tmp_path):
    from toolkit.models import MLP
    from toolkit.training import ClassifierModule, silence_lightning, train_members

    silence_lightning()
    p, epochs, lr = 7, 5, 1e-2
    dm = ModularAdditionDataModule(modulus=p, train_fraction=0.6)
    factory = lambda: ClassifierModule(MLP(2 * p, p, hidden_sizes=(16,)), p, lr=lr)  # noqa: E731
    _, stacked = train_members(factory, dm, [{"seed": 0}], max_epochs=epochs, return_members=True,
                               enable_progress_bar=False, test=False, runs_dir=tmp_path)
    torch.manual_seed(0)
    model = MLP(2 * p, p, hidden_sizes=(16,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    x, y = dm.tensors("train")
    for _ in range(epochs):  # one optimizer step per epoch: the whole training split
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        torch.testing.assert_close(stacked.member_backbone(0)(x), model(x), atol=1e-5, rtol=1e-4)
