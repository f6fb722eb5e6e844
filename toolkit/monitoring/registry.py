"""Model versions on disk with a manifest, a production pointer and a rollback.

Each registered version is a ``state_dict`` file whose SHA-256, metrics and creation time go into
``manifest.json``. Loading verifies the hash first (a file edited or swapped after registration is
refused) and uses ``torch.load(..., weights_only=True)``, which never runs code from the file.
Promotions are kept as a history, so ``rollback`` returns production to the previous version.

Example:
    >>> registry = ModelRegistry(tempfile.mkdtemp())                  # doctest: +SKIP
    >>> v1 = registry.register(module.backbone, metrics={"accuracy": 0.96})  # doctest: +SKIP
    >>> registry.promote(v1); registry.production                      # doctest: +SKIP
    'v1'
    >>> registry.rollback()  # after promoting v2                       # doctest: +SKIP
    'v1'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from toolkit.monitoring.gate import _scalar

__all__ = ["ModelRegistry"]

MANIFEST = "manifest.json"
_CHUNK_BYTES = 1 << 20


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ModelRegistry:
    """Versions of one model under ``root``: ``v1.pt``, ``v2.pt``, ... and ``manifest.json``.

    Args:
        root: folder of the registry (created if missing; an existing manifest is read).
    """

    def __init__(self, root: str | Path) -> None:
        if not isinstance(root, (str, Path)):
            raise TypeError(f"root must be a path, got {type(root).__name__}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        self._manifest: dict[str, Any] = (json.loads(path.read_text()) if path.exists()
                                          else {"versions": {}, "history": []})

    # ---- state -----------------------------------------------------------------------------------
    def _save(self) -> None:
        tmp = self.root / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self._manifest, indent=1))
        tmp.replace(self.root / MANIFEST)  # atomic: a crash never leaves half a manifest

    @property
    def versions(self) -> list[str]:
        return list(self._manifest["versions"])

    @property
    def production(self) -> str | None:
        """The version in production, or None before the first promotion."""
        history = self._manifest["history"]
        return history[-1] if history else None

    def _check_version(self, version: Any) -> str:
        if version not in self._manifest["versions"]:
            raise ValueError(f"version must be one of {self.versions}, got {version!r}")
        return version

    # ---- actions ---------------------------------------------------------------------------------
    def register(self, model: nn.Module, metrics: dict[str, float] | None = None, note: str = "") -> str:
        """Save ``model``'s weights as a new version; return its name ("v1", "v2", ...)."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        metrics = {key: _scalar(value) for key, value in dict(metrics or {}).items()}  # 0-d tensors too
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"metrics[{key!r}] must be a finite number, got {value!r}")
        version = f"v{len(self._manifest['versions']) + 1}"
        path = self.root / f"{version}.pt"
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        self._manifest["versions"][version] = {
            "file": path.name, "sha256": _sha256_file(path), "model": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "metrics": {k: float(v) for k, v in metrics.items()}, "note": str(note)}
        self._save()
        return version

    def promote(self, version: str) -> None:
        """Put ``version`` in production (after it passed the gate)."""
        self.verify(self._check_version(version))
        if self.production != version:
            self._manifest["history"].append(version)
            self._save()

    def rollback(self) -> str:
        """Return production to the version promoted before the current one; return its name."""
        history = self._manifest["history"]
        if len(history) < 2:
            raise ValueError(f"nothing to roll back to: promotion history is {history}")
        history.pop()
        self.verify(history[-1])
        self._save()
        return history[-1]

    def verify(self, version: str) -> None:
        """Raise ``ValueError`` if the file of ``version`` is missing or no longer matches its SHA-256."""
        entry = self._manifest["versions"][self._check_version(version)]
        path = self.root / entry["file"]
        if not path.is_file():
            raise ValueError(f"checkpoint of {version} is missing: {path}")
        actual = _sha256_file(path)
        if actual != entry["sha256"]:
            raise ValueError(f"checkpoint of {version} does not match the manifest: sha256 {actual[:12]}... "
                             f"!= {entry['sha256'][:12]}... (the file changed after registration)")

    def load(self, model: nn.Module, version: str | None = None) -> nn.Module:
        """Load the weights of ``version`` (default: production) into ``model``, after verifying them."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        version = self.production if version is None else version
        if version is None:
            raise ValueError("no version in production yet: pass version= or promote one first")
        self.verify(version)
        from toolkit.security.checkpoints import load_checkpoint_file  # clear errors for a corrupt file

        state = load_checkpoint_file(self.root / self._manifest["versions"][version]["file"],
                                     lambda path: torch.load(path, weights_only=True, map_location="cpu"))
        model.load_state_dict(state)
        return model

    def table(self) -> pd.DataFrame:
        """One row per version: model, parameters, created, sha256 (short), metrics, in production."""
        rows = []
        for version, entry in self._manifest["versions"].items():
            rows.append({"version": version, "model": entry["model"], "parameters": entry["parameters"],
                         "created": entry["created"], "sha256": entry["sha256"][:12], **entry["metrics"],
                         "production": version == self.production, "note": entry["note"]})
        return pd.DataFrame(rows).set_index("version") if rows else pd.DataFrame()
