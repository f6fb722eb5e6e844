"""Loading checkpoints safely: no code execution, optional SHA-256 pinning, a clear refusal.

A ``.pt``/``.ckpt`` file is a pickle, and unpickling can call any importable function (``os.system``,
``pathlib.Path.touch``, ...) through ``__reduce__``. ``torch.load(..., weights_only=True)`` (the
default since torch 2.6) unpickles only tensors, containers and primitive types and refuses anything
else before it runs. Pinning the file's SHA-256 (published beside the weights) also catches a file
swapped or corrupted in transit. See the PyTorch "Serialization semantics" notes and
Trail of Bits, 2021, "Never a dill moment: Exploiting machine learning pickle files".

Example:
    >>> digest = sha256_file("model.pt")                       # doctest: +SKIP
    >>> state = safe_load("model.pt", expected_sha256=digest)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["ChecksumMismatchError", "UnsafeCheckpointError", "safe_load", "sha256_file"]

_CHUNK_BYTES = 1 << 20
_SHA256_HEX_DIGITS = 64


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint holds objects other than tensors and plain data: loading it could run code."""


class ChecksumMismatchError(ValueError):
    """The file's SHA-256 differs from the pinned one."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
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
        ChecksumMismatchError: the digest differs from ``expected_sha256``.
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
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        culprit = f"`{found.group(1)}`" if found else "an object outside the weights-only allow-list"
        raise UnsafeCheckpointError(
            f"refusing {path.name}: it is not a weights-only checkpoint; unpickling it would import and "
            f"call {culprit}. Nothing was executed. Load only files you trust, and only with "
            "weights_only=True; re-save trusted weights as a plain state_dict.") from error
