"""TensorBatchLoader: every sample once per epoch, seeded shuffles, DistributedSampler's sharding."""

import pytest
import torch
from torch.utils.data import DistributedSampler

from toolkit.data import TensorBatchLoader


def _indices(loader):
    return torch.cat([batch[0] for batch in loader]).tolist()


@pytest.mark.parametrize("n, batch_size", [(10, 3), (64, 64), (65, 8), (1, 5)])
def test_each_sample_appears_once_per_epoch(n, batch_size):
    loader = TensorBatchLoader(torch.arange(n), torch.arange(n) * 2, batch_size=batch_size, shuffle=True)
    seen = _indices(loader)
    assert sorted(seen) == list(range(n))
    assert len(loader) == -(-n // batch_size)
    for x, y in loader:
        assert torch.equal(y, x * 2), "tensors must be indexed together"


def test_drop_last_drops_the_incomplete_batch():
    loader = TensorBatchLoader(torch.arange(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(b[0]) for b in loader] == [4, 4]


def test_shuffle_is_seeded_and_changes_with_epoch():
    a = TensorBatchLoader(torch.arange(100), batch_size=7, shuffle=True, seed=3)
    b = TensorBatchLoader(torch.arange(100), batch_size=7, shuffle=True, seed=3)
    assert _indices(a) == _indices(b)
    first = _indices(a)
    a.sampler.set_epoch(1)
    assert _indices(a) != first
    assert _indices(TensorBatchLoader(torch.arange(100), batch_size=7)) == list(range(100))


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (13, 4), (3, 4)])
@pytest.mark.parametrize("epoch", [0, 2])
def test_padded_shards_match_distributed_sampler(shuffle, n, world, epoch):
    """Training shards are exactly torch's DistributedSampler order (same seed, same epoch)."""
    for rank in range(world):
        ours = TensorBatchLoader(torch.arange(n), batch_size=2, shuffle=shuffle, seed=5, pad=True,
                                 num_replicas=world, rank=rank)
        ours.sampler.set_epoch(epoch)
        reference = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=5)
        reference.set_epoch(epoch)
        assert _indices(ours) == list(reference)


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (13, 4)])
def test_unpadded_shards_partition_the_data(n, world):
    """Evaluation shards give every sample to exactly one rank, so metrics stay exact."""
    shards = [_indices(TensorBatchLoader(torch.arange(n), batch_size=3, pad=False, num_replicas=world, rank=r))
              for r in range(world)]
    assert sorted(sum(shards, [])) == list(range(n))


def test_lightning_calls_set_epoch_through_sampler():
    loader = TensorBatchLoader(torch.arange(4), batch_size=2)
    from lightning_fabric.utilities.data import _set_sampler_epoch

    _set_sampler_epoch(loader, 7)
    assert loader.sampler.epoch == 7


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"batch_size": 2, "num_replicas": 0}, "num_replicas"),
    ({"batch_size": 2, "num_replicas": 2, "rank": 2}, "rank"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TensorBatchLoader(torch.arange(4), **kwargs)


def test_bad_tensors_raise_clear_errors():
    with pytest.raises(ValueError, match="first dimension"):
        TensorBatchLoader(torch.arange(4), torch.arange(5), batch_size=2)
    with pytest.raises(TypeError, match=r"tensors\[1\]"):
        TensorBatchLoader(torch.arange(4), [1, 2, 3, 4], batch_size=2)
    with pytest.raises(ValueError, match="at least one tensor"):
        TensorBatchLoader(batch_size=2)
