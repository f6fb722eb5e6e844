"""``ExactResume``: a run killed mid-epoch and resumed ends with the same weights, bit for bit.

Lightning saves the state of every *stateful* training loader (one with ``state_dict`` and
``load_state_dict``, like :class:`toolkit.data.TensorBatchLoader`) in its checkpoints and restores
it on resume. (Lightning prefetches one batch only from loaders without a length; it knows the
length of ours, so the position it saves is the batches trained on, which a test checks.) Two gaps
remain, and this callback closes them:

- Lightning issue #20550: when ``configure_optimizers`` reads ``trainer.estimated_stepping_batches``
  (every learning-rate schedule does), the training loader is built and its first batch fetched
  before the checkpoint is read, and the saved loader state is never applied. At ``on_train_start``
  the states are applied and the fetcher restarted, so the prefetched stale batch is dropped.
- Lightning does not save the random number generators. Their states (Python, NumPy, torch, CUDA)
  are saved with the callback and restored when training resumes, so dropout masks continue the
  same sequence.

:func:`toolkit.training.fit` adds it to every run; add it yourself to a plain ``pl.Trainer``.

Example:
    >>> trainer = pl.Trainer(callbacks=[ExactResume(), ModelCheckpoint(save_last=True)])  # doctest: +SKIP
    >>> trainer.fit(module, datamodule, ckpt_path="last")                                 # doctest: +SKIP
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from toolkit.data.loader import TensorBatchLoader

__all__ = ["ExactResume"]


def _rng_state() -> dict[str, Any]:
    """Every global generator's state as tensors and lists (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _stateful_loaders(trainer: pl.Trainer) -> list[Any]:
    combined = trainer.fit_loop._combined_loader
    if combined is None:
        return []
    return [loader for loader in combined.flattened
            if callable(getattr(loader, "state_dict", None)) and callable(getattr(loader, "load_state_dict", None))]


class ExactResume(pl.Callback):
    """Make a resumed run continue exactly: the loader position (Lightning #20550) and the RNG states.

    No argument; no per-step cost (it acts when a checkpoint is written and once when training starts).
    """

    def __init__(self) -> None:
        self._rng_to_load: dict[str, Any] | None = None
        self._loader_states_to_load: list[dict[str, Any]] | None = None

    # ---- saving ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state()}

    # ---- resuming -------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_load = state_dict.get("rng")

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        fit_state = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
        self._loader_states_to_load = fit_state.get("combined_loader") or None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        states, self._loader_states_to_load = self._loader_states_to_load, None
        fit_loop = trainer.fit_loop
        if states is not None and fit_loop._data_fetcher is not None:
            loaders = _stateful_loaders(trainer)
            if len(loaders) == len(states):
                epoch = fit_loop.epoch_progress.current.processed
                for loader, state in zip(loaders, states):
                    if not isinstance(loader, TensorBatchLoader) or state.get("epoch") == epoch:
                        loader.load_state_dict(state)
                    else:  # a state from another epoch: start this epoch afresh, in its own order
                        loader.sampler.set_epoch(epoch)
                fit_loop._combined_loader_states_to_load = []
                iter(fit_loop._data_fetcher)  # restart from the restored position; drops a stale prefetch
        rng, self._rng_to_load = self._rng_to_load, None
        if rng is not None:
            _set_rng_state(rng)
