"""Loading checkpoints safely: no code execution, optional SHA-256 pinning, a clear refusal.

A ``.pt``/``.ckpt`` file is a pickle, and unpickling can call any importable function (``os.system``,
``pathlib.Path.touch``, ...) through ``__reduce__``. ``torch.load(..., weights_only=True)`` (the
default since torch 2.6) unpickles only tensors, containers and primitive types and refuses anything
else before it runs. Pinning the file's SHA-256 (published beside the weights) also catches a file
swapped or corrupted in transit. See the PyTorch "Serialization semantics" notes and
Trail of Bits, 2021, "Never a dill moment: Exploiting machine learning pickle files".

A file that is not a checkpoint at all (truncated by a crash, empty, overwritten, a damaged header)
is refused with :class:`CorruptCheckpointError` naming the file; a bit flipped inside a weight is
invisible to the unpickler, so every checkpoint the toolkit writes gets a SHA-256 beside it
(:class:`Sha256CheckpointIO`, ``<file>.sha256`` in ``sha256sum`` format), checked before loading.

Example:
    >>> digest = sha256_file("model.pt")                       # doctest: +SKIP
    >>> state = safe_load("model.pt", expected_sha256=digest)  # doctest: +SKIP
    >>> trainer = pl.Trainer(plugins=[Sha256CheckpointIO()])   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["ChecksumMismatchError", "CorruptCheckpointError", "UnsafeCheckpointError",
           "safe_load", "sha256_file", "verify_sidecar", "write_sidecar"]

SIDECAR_SUFFIX = ".sha256"

_CHUNK_BYTES = 1 << 20
_SHA256_HEX_DIGITS = 64


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint holds objects other than tensors and plain data: loading it could run code."""


class ChecksumMismatchError(ValueError):
    """The file's SHA-256 differs from the pinned one."""


class CorruptCheckpointError(ValueError):
    """The file is not a readable checkpoint: truncated, empty, overwritten or with a damaged header."""


# what torch.load raises on bytes that are not a checkpoint (each seen on a truncated, empty, random or
# header-damaged file); an unpickling error that names a global is the unsafe case, not this one
_CORRUPT_ERRORS = (RuntimeError, EOFError, OSError, UnicodeDecodeError, ValueError, KeyError, IndexError,
                   zipfile.BadZipFile, pickle.UnpicklingError, MemoryError, OverflowError, TypeError,
                   AttributeError)
_UNSAFE_MARK = "Unsupported global"
_TORCH_REASON = re.compile(r"(?:WeightsUnpickler error:\s*|PytorchStreamReader failed )([^.\n]+(?:\n(?!\n)[^.\n]*)?)")


def _corrupt(path: Path, error: BaseException) -> CorruptCheckpointError:
    text = str(error)
    found = _TORCH_REASON.search(text)
    reason = (found.group(1) if found else text.splitlines()[0] if text.strip() else type(error).__name__)
    reason = " ".join(reason.split())[:200]
    if path.stat().st_size == 0:
        reason = "the file is empty"
    return CorruptCheckpointError(
        f"file {str(path)!r} is not a valid checkpoint (truncated/corrupt): {reason} "
        f"({path.stat().st_size} bytes). Restore it from a good copy or delete it; it cannot be repaired.")


def load_checkpoint_file(path: str | Path, load: Callable[[Path], Any]) -> Any:
    """Run ``load(path)`` (a ``torch.load`` wrapper) and translate its failures into clear errors.

    A file that unpickling refuses because it names a global raises :class:`UnsafeCheckpointError`;
    any other failure of the reader (truncated zip, empty file, random bytes, a damaged header) raises
    :class:`CorruptCheckpointError` naming the file. Neither message suggests ``weights_only=False``.
    """
    path = Path(path)
    try:
        return load(path)
    except pickle.UnpicklingError as error:
        if _UNSAFE_MARK not in str(error):
            raise _corrupt(path, error) from None
        found = re.search(r"GLOBAL (\S+)", str(error))
        culprit = f"`{found.group(1)}`" if found else "an object outside the weights-only allow-list"
        raise UnsafeCheckpointError(
            f"refusing {path.name}: it is not a weights-only checkpoint; unpickling it would import and "
            f"call {culprit}. Nothing was executed. Load only files you trust, and only with "
            "weights_only=True; re-save trusted weights as a plain state_dict.") from None
    except FileNotFoundError:
        raise
    except _CORRUPT_ERRORS as error:
        raise _corrupt(path, error) from None


def sidecar_path(path: str | Path) -> Path:
    """Where the SHA-256 of checkpoint ``path`` is kept: ``<path>.sha256``."""
    return Path(str(path) + SIDECAR_SUFFIX)


def write_sidecar(path: str | Path) -> str:
    """Write ``<path>.sha256`` (``sha256sum`` format, atomically) for the file ``path``; return the digest."""
    path = Path(path)
    digest = sha256_file(path)
    target = sidecar_path(path)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(f"{digest}  {path.name}\n")
    os.replace(partial, target)
    return digest


def verify_sidecar(path: str | Path, required: bool = False) -> str | None:
    """Check ``path`` against its ``<path>.sha256``; return the digest (``None`` when there is none).

    Raises:
        ChecksumMismatchError: the file's SHA-256 differs from the recorded one (a flipped bit, an
            edited or swapped file).
        FileNotFoundError: ``required`` and there is no ``.sha256`` beside the file.
    """
    path = _check_file(path)
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        if required:
            raise FileNotFoundError(f"no SHA-256 beside {str(path)!r} (expected {sidecar.name})")
        return None
    fields = sidecar.read_text().split()
    expected = fields[0].lower() if fields else ""
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"refusing {str(path)!r}: its SHA-256 is {actual}, but {sidecar.name} records "
            f"{expected or '(nothing)'}; the file changed after it was saved (a flipped bit, a partial copy or an edit)")
    return actual


def _check_file(path: Any) -> Path:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"path {str(path)!r} is not a file")
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    path = _check_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_load(path: str | Path, expected_sha256: str | None = None, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` after an optional SHA-256 check, with clear errors.

    Args:
        path: the checkpoint file.
        expected_sha256: 64 hex digits; the file is refused (before unpickling) if it differs.
        map_location: as for ``torch.load`` (default "cpu").

    Raises:
        FileNotFoundError: no such file.
        ChecksumMismatchError: the digest differs from ``expected_sha256``, or from the ``<path>.sha256``
            written beside the file when it was saved (checked whenever that file exists).
        CorruptCheckpointError: the file is not a checkpoint (truncated, empty, random bytes, bad header).
        UnsafeCheckpointError: the pickle references code (a class or function outside the weights-only
            allow-list); nothing in it was executed.
    """
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} is not a file")
    if expected_sha256 is not None:
        if (not isinstance(expected_sha256, str) or len(expected_sha256) != _SHA256_HEX_DIGITS
                or any(c not in "0123456789abcdefABCDEF" for c in expected_sha256)):
            raise ValueError(f"expected_sha256 must be 64 hexadecimal digits, got {expected_sha256!r}")
        actual = sha256_file(path)
        if actual != expected_sha256.lower():
            raise ChecksumMismatchError(f"refusing {path.name}: its SHA-256 is {actual}, expected "
                                        f"{expected_sha256.lower()} (expected_sha256); the file changed")
    else:
        verify_sidecar(path)
    return load_checkpoint_file(path, lambda p: torch.load(p, map_location=map_location, weights_only=True))
