"""Model versions on disk with a manifest, a production pointer and a rollback.

Each registered version is a ``state_dict`` file whose SHA-256, metrics and creation time go into
``manifest.json``; given an ``example_input``, it also carries what serving needs: an ONNX graph and
a ``torch.export`` program (the temperature inside), the input shape and dtype, the normalization,
the class names and the calibrator, each file with its SHA-256 (see :mod:`toolkit.deploy`). Loading verifies the hash first (a file edited or swapped after registration is
refused) and uses ``torch.load(..., weights_only=True)``, which never runs code from the file.
Promotions are kept as a history, so ``rollback`` returns production to the previous version.

Example:
    >>> registry = ModelRegistry(tempfile.mkdtemp())                  # doctest: +SKIP
    >>> v1 = registry.register(module.backbone, metrics={"accuracy": 0.96})  # doctest: +SKIP
    >>> registry.promote(v1); registry.production                      # doctest: +SKIP
    'v1'
    >>> registry.rollback()  # after promoting v2                       # doctest: +SKIP
    'v1'
    >>> registry.register(model, metrics=trainer.callback_metrics, example_input=x)  # doctest: +SKIP
    'v3'

Every file is written to a temporary name and renamed (a kill mid-write leaves the old state), and an
operation that is refused (a corrupt target, a missing manifest beside existing checkpoints) changes
nothing, on disk or in memory.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.monitoring.gate import _scalar

if TYPE_CHECKING:  # torch, numpy and pandas are imported where a method needs them, so that the
    import pandas as pd  # registry command line (promote, rollback: manifest edits) starts without torch
    import torch
    from torch import nn

__all__ = ["ModelRegistry"]

MANIFEST = "manifest.json"
_CHUNK_BYTES = 1 << 20
_VERSION_FILE = re.compile(r"^v\d+\.(pt|onnx|pt2|reference\.npz)$")


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through ``write(tmp)`` on a temporary file in the same folder, then rename it.

    The rename is atomic, so a crash or a kill mid-write leaves the previous file (or none), never
    half a file; the temporary file is removed if ``write`` fails.
    """
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
        self._manifest: dict[str, Any] = self._read_manifest()

    # ---- state -----------------------------------------------------------------------------------
    def _read_manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        if not path.exists():
            return {"versions": {}, "history": []}
        try:
            manifest = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"the registry manifest {path} is corrupt (not valid JSON: {error}); restore it "
                             "from a backup, or move it away to start an empty registry") from None
        if not isinstance(manifest, dict) or not isinstance(manifest.get("versions"), dict) \
                or not isinstance(manifest.get("history"), list):
            raise ValueError(f"the registry manifest {path} is corrupt: it needs a 'versions' mapping and a "
                             "'history' list")
        return manifest

    def refresh(self) -> None:
        """Re-read ``manifest.json`` (another process, e.g. ``python -m toolkit registry``, may have changed it)."""
        self._manifest = self._read_manifest()

    def _save(self, manifest: dict[str, Any] | None = None) -> None:
        """Write ``manifest`` (default: the current one) atomically, then make it the current one."""
        manifest = self._manifest if manifest is None else manifest
        _atomic_write(self.root / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
        self._manifest = manifest

    def _orphans(self) -> list[str]:
        """Version files on disk that the manifest does not list (e.g. after ``manifest.json`` was lost)."""
        listed = {entry["file"] for entry in self._manifest["versions"].values()}
        listed |= {f["file"] for entry in self._manifest["versions"].values()
                   for f in entry.get("serving", {}).get("files", {}).values()}
        return sorted(p.name for p in self.root.iterdir() if _VERSION_FILE.match(p.name) and p.name not in listed)

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
    def register(self, model: nn.Module, metrics: Mapping[str, Any] | None = None, note: str = "",
                 example_input: torch.Tensor | None = None, class_names: Sequence[str] | None = None,
                 normalization: Mapping[str, float] | None = None, temperature: float | None = None,
                 reference_inputs: torch.Tensor | None = None) -> str:
        """Save ``model`` as a new version; return its name ("v1", "v2", ...).

        Args:
            model: the ``nn.Module`` (or LightningModule) to register; its ``state_dict`` is saved.
            metrics: metric name to a finite number or a 0-d tensor (``trainer.callback_metrics`` works).
            note: free text shown by :meth:`table`.
            example_input: a float batch ``(N, ...)`` of model inputs. Given, the version also gets what
                serving needs: ``vK.onnx`` and ``vK.pt2`` (batch dimension dynamic, checked against eager),
                the input shape and dtype, and the fields below.
            class_names: one name per output class (default "0", "1", ...); needs ``example_input``.
            normalization: ``{"mean": m, "std": s}`` that the server applies to raw inputs,
                ``(x - m) / s`` (e.g. a DataModule's ``mean``/``std``); default none (inputs as the model takes them).
            temperature: a fitted temperature (``> 0``) to export with the model (``logits / T``); leave
                it None when the model's forward already applies one (it is then detected and recorded).
            reference_inputs: model inputs ``(M, ...)`` (normalized, e.g. the validation split) that the
                server's live drift detectors compare served inputs with; saved with the model's
                probabilities on them as ``vK.reference.npz``.
        """
        import torch
        from torch import nn

        from toolkit.deploy.export import PARITY_ATOL, with_temperature

        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        metrics = {key: _scalar(value) for key, value in dict(metrics or {}).items()}  # 0-d tensors too
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"metrics[{key!r}] must be a finite number, got {value!r}")
        metrics = {str(key): float(value) for key, value in metrics.items()}
        if example_input is None and (class_names is not None or normalization is not None
                                      or temperature is not None or reference_inputs is not None):
            raise ValueError("class_names, normalization, temperature and reference_inputs describe the served "
                             "model: pass "
                             "example_input= too, so the version is exported for serving")
        if temperature is not None:
            with_temperature(model, temperature)  # validates the temperature
        orphans = self._orphans()
        if orphans:
            raise ValueError(f"{self.root} holds version files that {MANIFEST} does not list: {orphans}; "
                             f"registering would overwrite them. Restore {MANIFEST} or move those files away")
        version = f"v{len(self._manifest['versions']) + 1}"
        path = self.root / f"{version}.pt"
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        entry: dict[str, Any] = {
            "file": path.name, "model": type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "metrics": metrics, "note": str(note)}
        serving = None
        if example_input is not None:
            served = model if temperature is None else with_temperature(model, temperature)
            serving = self._serving_entry(served, version, example_input, class_names, normalization, PARITY_ATOL,
                                          reference_inputs)
        _atomic_write(path, lambda tmp: torch.save(state, tmp))
        entry["sha256"] = _sha256_file(path)
        if serving is not None:
            entry["serving"] = serving
        manifest = copy.deepcopy(self._manifest)
        manifest["versions"][version] = entry
        self._save(manifest)
        return version

    def _serving_entry(self, model: nn.Module, version: str, example_input: Any, class_names: Any,
                       normalization: Any, atol: float, reference_inputs: Any = None) -> dict[str, Any]:
        """Export ``model`` (ONNX and torch.export, atomically) and describe how to serve it."""
        import numpy as np
        import torch

        from toolkit.deploy.export import (OnnxRunner, _check_example, check_parity, export_onnx, export_program,
                                           temperature_of)

        example = _check_example(example_input)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(example)
        model.train(was_training)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise ValueError("the model must map a batch (N, ...) to logits (N, C) to be served, got "
                             f"{type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}")
        num_classes = logits.shape[1]
        if class_names is None:
            class_names = [str(c) for c in range(num_classes)]
        if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence) \
                or len(class_names) != num_classes:
            raise ValueError(f"class_names must be a sequence of {num_classes} names (one per output), got "
                             f"{class_names!r}")
        if normalization is not None:
            if not isinstance(normalization, Mapping) or set(normalization) != {"mean", "std"}:
                raise ValueError(f"normalization must be {{'mean': m, 'std': s}}, got {normalization!r}")
            mean, std = (float(_scalar(normalization[k])) for k in ("mean", "std"))
            if not math.isfinite(mean) or not math.isfinite(std) or std <= 0:
                raise ValueError(f"normalization needs a finite mean and a finite std > 0, got {normalization!r}")
            normalization = {"mean": mean, "std": std}
        reference = None
        if reference_inputs is not None:
            reference = _check_example(reference_inputs)
            if reference.shape[1:] != example.shape[1:]:
                raise ValueError(f"reference_inputs must have the input shape {list(example.shape[1:])}, got "
                                 f"{list(reference.shape[1:])}")
        files = {}
        if reference is not None:
            model.eval()
            with torch.no_grad():
                probs = model(reference).softmax(1)
            model.train(was_training)
            target = self.root / f"{version}.reference.npz"

            def write_reference(tmp: Path) -> None:
                with tmp.open("wb") as handle:
                    np.savez(handle, inputs=reference.numpy(), probs=probs.double().numpy())

            _atomic_write(target, write_reference)
            files["reference"] = {"file": target.name, "sha256": _sha256_file(target)}
        for kind, suffix, export in (("onnx", "onnx", export_onnx), ("program", "pt2", export_program)):
            target = self.root / f"{version}.{suffix}"
            _atomic_write(target, lambda tmp, export=export: export(model, example, tmp))
            files[kind] = {"file": target.name, "sha256": _sha256_file(target)}
        parity = check_parity(model, OnnxRunner(self.root / files["onnx"]["file"]), [example], atol=atol)
        if not parity.passed:
            for f in files.values():
                (self.root / f["file"]).unlink(missing_ok=True)
            raise ValueError(f"the ONNX export of the model differs from eager by {parity.max_abs_diff:.3g} "
                             f"> {parity.allowed:.3g} ({atol:g} x max(1, largest |logit| {parity.max_abs_logit:.3g})): "
                             "not registered")
        temperature = temperature_of(model)
        return {"files": files, "input_shape": list(example.shape[1:]), "dtype": str(example.dtype).replace("torch.", ""),
                "num_classes": num_classes, "class_names": [str(c) for c in class_names],
                "normalization": normalization,
                "calibrator": None if temperature is None else {"method": "temperature", "temperature": temperature,
                                                                "in_graph": True},
                "parity_max_abs_diff": parity.max_abs_diff}

    def serving(self, version: str | None = None) -> dict[str, Any]:
        """What serving ``version`` (default: production) needs, with absolute paths, after verifying its files."""
        version = self.production if version is None else version
        if version is None:
            raise ValueError("no version in production yet: pass version= or promote one first")
        self.verify(version)
        entry = self._manifest["versions"][version]
        if "serving" not in entry:
            raise ValueError(f"{version} was registered without example_input, so it has no exported model to "
                             "serve: register it again with example_input=x")
        info = copy.deepcopy(entry["serving"])
        info["version"] = version
        for f in info["files"].values():
            f["path"] = str(self.root / f["file"])
        return info

    def promote(self, version: str) -> None:
        """Put ``version`` in production (after it passed the gate)."""
        self.verify(self._check_version(version))
        if self.production != version:
            manifest = copy.deepcopy(self._manifest)
            manifest["history"].append(version)
            self._save(manifest)

    def rollback(self, version: str | None = None) -> str:
        """Return production to the version promoted before the current one (or to ``version``, an
        earlier production); return its name. A refused rollback changes nothing."""
        history = list(self._manifest["history"])
        if len(history) < 2:
            raise ValueError(f"nothing to roll back to: promotion history is {history}")
        if version is None:
            history.pop()
        else:
            if version not in history[:-1]:
                raise ValueError(f"version must be an earlier production version, one of {history[:-1]}, "
                                 f"got {version!r}")
            while history[-1] != version:
                history.pop()
        self.verify(history[-1])  # raises before anything changed
        manifest = copy.deepcopy(self._manifest)
        manifest["history"] = history
        self._save(manifest)
        return history[-1]

    def verify(self, version: str) -> None:
        """Raise ``ValueError`` if a file of ``version`` is missing or no longer matches its SHA-256."""
        entry = self._manifest["versions"][self._check_version(version)]
        files = [("checkpoint", entry["file"], entry["sha256"])]
        files += [(kind, f["file"], f["sha256"]) for kind, f in entry.get("serving", {}).get("files", {}).items()]
        for kind, name, expected in files:
            path = self.root / name
            if not path.is_file():
                raise ValueError(f"{kind} of {version} is missing: {path}")
            actual = _sha256_file(path)
            if actual != expected:
                raise ValueError(f"{kind} of {version} does not match the manifest: sha256 {actual[:12]}... "
                                 f"!= {expected[:12]}... (the file changed after registration)")

    def load(self, model: nn.Module, version: str | None = None) -> nn.Module:
        """Load the weights of ``version`` (default: production) into ``model``, after verifying them."""
        import torch
        from torch import nn

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
        import pandas as pd

        rows = []
        for version, entry in self._manifest["versions"].items():
            rows.append({"version": version, "model": entry["model"], "parameters": entry["parameters"],
                         "created": entry["created"], "sha256": entry["sha256"][:12], **entry["metrics"],
                         "production": version == self.production, "note": entry["note"]})
        return pd.DataFrame(rows).set_index("version") if rows else pd.DataFrame()
