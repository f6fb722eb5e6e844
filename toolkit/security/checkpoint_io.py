"""``Sha256CheckpointIO``: Lightning's checkpoint I/O with a SHA-256 beside every checkpoint.

Kept apart from :mod:`toolkit.security.checkpoints` so that ``safe_load`` needs only torch, never Lightning.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from toolkit.security.checkpoints import load_checkpoint_file, sidecar_path, verify_sidecar, write_sidecar

__all__ = ["Sha256CheckpointIO"]


class Sha256CheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer/reader that keeps a SHA-256 beside every checkpoint and checks it.

    Pass it to a Trainer (``pl.Trainer(plugins=[Sha256CheckpointIO()])``; :func:`toolkit.training.fit`
    does): every file that Lightning's ``ModelCheckpoint`` (or ``trainer.save_checkpoint``) writes gets
    ``<file>.sha256``; resuming (``trainer.fit(ckpt_path=...)``) verifies it first and refuses a
    mismatch with :class:`ChecksumMismatchError`, and a file that is not a checkpoint with
    :class:`CorruptCheckpointError`. Removing a checkpoint (``save_top_k``) removes its digest too.

    It is a ``pytorch_lightning`` plugin; a ``lightning.pytorch`` Trainer refuses those, so build
    that one's with :meth:`for_namespace` (``Sha256CheckpointIO.for_namespace(lightning.pytorch)``).

    Args:
        require_sha256: refuse a checkpoint that has no ``.sha256`` beside it (default: load it
            unverified, e.g. one written by another tool).
    """

    @classmethod
    def for_namespace(cls, namespace: ModuleType, require_sha256: bool = False) -> "Sha256CheckpointIO":
        """The plugin for a Trainer of ``namespace``: ``pytorch_lightning`` or ``lightning.pytorch``.

        The ``lightning.pytorch`` one is also an instance of that package's ``CheckpointIO`` (which its
        Trainer requires) and behaves the same.
        """
        name = getattr(namespace, "__name__", None)
        if name == "pytorch_lightning":
            return cls(require_sha256=require_sha256)
        if name == "lightning.pytorch":
            return _unified_class(cls)(require_sha256=require_sha256)
        raise ValueError(f"namespace must be the module pytorch_lightning or lightning.pytorch, got {namespace!r}")

    def __init__(self, require_sha256: bool = False) -> None:
        if not isinstance(require_sha256, bool):
            raise TypeError(f"require_sha256 must be a bool, got {type(require_sha256).__name__}")
        super().__init__()
        self.require_sha256 = require_sha256

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options=storage_options)
        write_sidecar(path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, **kwargs: Any) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} is not a file")
        verify_sidecar(path, required=self.require_sha256)
        return load_checkpoint_file(
            path, lambda p: super(Sha256CheckpointIO, self).load_checkpoint(p, map_location=map_location, **kwargs))

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        sidecar_path(path).unlink(missing_ok=True)


@lru_cache(maxsize=None)
def _unified_class(base: type) -> type:
    from lightning.pytorch.plugins.io import TorchCheckpointIO as UnifiedTorchCheckpointIO

    return type(base.__name__, (base, UnifiedTorchCheckpointIO), {"__module__": base.__module__,
                                                                   "__doc__": base.__doc__})
