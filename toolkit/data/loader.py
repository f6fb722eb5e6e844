"""An in-memory batch loader for small tensor datasets.

The whole dataset lives in a few tensors; a batch is one fancy-indexing call per tensor. There is
no per-sample ``__getitem__`` and no collate step, which is what makes a CPU epoch over a few
thousand samples take milliseconds instead of seconds.

Lightning accepts any iterable with ``__len__`` as a dataloader. Under DDP it only injects a
``DistributedSampler`` into ``torch.utils.data.DataLoader`` instances, so this loader shards
itself: each process takes every ``world_size``-th index of a shared permutation, exactly as
``DistributedSampler`` does, and Lightning's call to ``sampler.set_epoch`` reshuffles each epoch.

The loader is resumable: ``state_dict()`` records the epoch and how many batches of it were handed
out, ``load_state_dict()`` makes the next iteration continue from there, and Lightning saves and
restores that state in its checkpoints: a mid-epoch resume replays no batch and skips none (for
Lightning issue #20550 and the random generators, see :class:`toolkit.training.ExactResume`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from toolkit._validate import check_bool, check_int

__all__ = ["TensorBatchLoader"]


def _dist_context() -> tuple[int, int]:
    """Return ``(world_size, rank)`` of the default process group, or ``(1, 0)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class _ShardedIndexSampler:
    """Index order for one epoch: shuffled by ``seed + epoch``, then sharded across ranks.

    ``pad=True`` repeats indices from the start so every rank gets the same count (needed for
    training, where each step all-reduces gradients); ``pad=False`` gives every sample to exactly
    one rank (evaluation metrics stay exact; torchmetrics syncs at ``compute``).
    """

    def __init__(self, num_samples: int, shuffle: bool, seed: int, pad: bool,
                 num_replicas: int | None, rank: int | None) -> None:
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.pad = pad
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _context(self) -> tuple[int, int]:
        world, rank = _dist_context()
        return (self.num_replicas or world), (rank if self.rank is None else self.rank)

    def shard_size(self) -> int:
        world, rank = self._context()
        if self.pad:
            return math.ceil(self.num_samples / world)
        return len(range(rank, self.num_samples, world))

    def indices(self) -> Tensor:
        world, rank = self._context()
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        if self.pad and world > 1:
            total = math.ceil(self.num_samples / world) * world
            repeats = math.ceil(total / self.num_samples)
            order = order.repeat(repeats)[:total]
        return order[rank::world]


class TensorBatchLoader:
    """Iterate over mini-batches of tensors that share their first dimension.

    Args:
        *tensors: one or more tensors with the same length ``N`` (e.g. inputs and targets).
        batch_size: samples per batch, ``>= 1``.
        shuffle: reshuffle every epoch (seeded by ``seed + epoch``, so runs repeat).
        drop_last: drop the last incomplete batch.
        seed: base seed of the shuffle.
        pad: under DDP, repeat samples so all ranks get equal counts (use for training).
        num_replicas, rank: override the process group (default: read it when iterating).

    Example:
        >>> x, y = torch.randn(10, 3), torch.arange(10)
        >>> loader = TensorBatchLoader(x, y, batch_size=4)
        >>> [len(b[1]) for b in loader]
        [4, 4, 2]
    """

    def __init__(self, *tensors: Tensor, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, pad: bool = True,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if not tensors:
            raise ValueError("tensors: pass at least one tensor, got none")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"tensors[{i}] must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() == 0:
                raise ValueError(f"tensors[{i}] must have a first (sample) dimension, got a 0-d tensor")
        lengths = {len(t) for t in tensors}
        if len(lengths) != 1:
            raise ValueError(f"tensors must share their first dimension, got lengths {[len(t) for t in tensors]}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if num_replicas is not None:
            check_int("num_replicas", num_replicas, 1)
        if rank is not None:
            check_int("rank", rank, 0, (num_replicas or 1 << 30) - 1)
        check_int("seed", seed, 0)
        check_bool("shuffle", shuffle)
        check_bool("drop_last", drop_last)
        check_bool("pad", pad)
        self.tensors = tensors
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = _ShardedIndexSampler(len(tensors[0]), shuffle, seed, pad, num_replicas, rank)
        self.batch_sampler = None  # read by Lightning beside ``sampler``, as on a DataLoader
        self._yielded = 0          # batches of the current iteration handed out so far
        self._exhausted = False    # the current iteration ran to its end
        self._resume_at = 0        # first batch of the next iteration (set by load_state_dict)

    @property
    def dataset_size(self) -> int:
        return self.sampler.num_samples

    def __len__(self) -> int:
        n = self.sampler.shard_size()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        start, self._resume_at = self._resume_at, 0
        self._yielded, self._exhausted = start, False
        order = self.sampler.indices()
        for i in range(start, len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            self._yielded = i + 1
            yield tuple(t[idx] for t in self.tensors)
        self._exhausted = True

    def state_dict(self) -> dict[str, Any]:
        """The position to resume from: the epoch and the batches of it already handed out.

        After the last batch of an epoch the position is the start of the next epoch. The count is of
        batches *handed out*: a consumer that read ahead would have to subtract what it holds
        (Lightning reads ahead only from loaders without a length, never from this one).
        """
        done = self._exhausted or self._yielded >= len(self)  # the last batch is out: nothing left of this epoch
        epoch, batches = (self.sampler.epoch + 1, 0) if done else (self.sampler.epoch, self._yielded)
        return {"epoch": epoch, "batches": batches, "num_samples": self.sampler.num_samples,
                "batch_size": self.batch_size, "shuffle": self.sampler.shuffle, "seed": self.sampler.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue the next iteration from ``state_dict`` (as returned by :meth:`state_dict`)."""
        if not isinstance(state_dict, dict) or not {"epoch", "batches"} <= set(state_dict):
            raise ValueError(f"state_dict must be a dict from TensorBatchLoader.state_dict(), got {state_dict!r}")
        for key, mine in (("num_samples", self.sampler.num_samples), ("batch_size", self.batch_size),
                          ("shuffle", self.sampler.shuffle), ("seed", self.sampler.seed)):
            if key in state_dict and state_dict[key] != mine:
                raise ValueError(f"state_dict was saved by a loader with {key}={state_dict[key]!r}, this loader "
                                 f"has {key}={mine!r}: resuming would not continue the same batch order")
        batches = int(state_dict["batches"])
        if not 0 <= batches <= len(self):
            raise ValueError(f"state_dict['batches'] must be in [0, {len(self)}], got {batches}")
        self.sampler.set_epoch(int(state_dict["epoch"]))
        self._resume_at = batches
        self._yielded, self._exhausted = batches, False

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={self.dataset_size}, batch_size={self.batch_size}, "
                f"shuffle={self.sampler.shuffle}, drop_last={self.drop_last})")
