"""Dataset cards generated from a DataModule, and split manifests checked against ``datasets/``.

After Gebru et al., 2021, "Datasheets for Datasets" (CACM 64(12), arXiv:1803.09010) and the
dataset cards of the Hugging Face Hub: where the data comes from, under which license, how large
it is, how the classes are balanced per split, and the checksums that pin exactly which samples a
reported number was measured on.

Example:
    >>> from toolkit.data import DigitsDataModule
    >>> card = dataset_card(DigitsDataModule())
    >>> card.splitlines()[0]
    '# Dataset card: digits'
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.data.splits import check_manifest

__all__ = ["DATASET_INFO", "MANIFEST_DIR", "dataset_card", "verify_splits"]

def _manifest_dir() -> Path:
    """The committed split manifests: ``toolkit/manifests`` as package data, found with
    ``importlib.resources`` (in a checkout a symlink to ``datasets/manifests``; a wheel holds the
    files themselves), else ``datasets/manifests`` of a source checkout."""
    installed = Path(str(importlib.resources.files("toolkit"))) / "manifests"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "datasets" / "manifests"


MANIFEST_DIR = _manifest_dir()
_SHORT_HASH = 12  # characters of a SHA-256 shown in tables

# What the code cannot read from the arrays: provenance, license, intended use, known limitations.
DATASET_INFO: dict[str, dict[str, str]] = {
    "digits": {
        "source": "UCI ML *Optical Recognition of Handwritten Digits* (Alpaydin & Kaynak, 1998), test part, "
                  "as shipped with scikit-learn (`sklearn.datasets.load_digits`): 8x8 images, pixels 0-16.",
        "license": "CC BY 4.0 (UCI Machine Learning Repository)",
        "intended_use": "teaching and benchmarking small image classifiers; not a model of real handwriting "
                        "in the wild (43 writers, 1990s scanner, 8x8 pixels).",
        "limitations": "tiny images and few writers: accuracy here says little about other scripts or devices; "
                       "no demographic information about the writers is available.",
    },
    "breast_cancer": {
        "source": "UCI *Breast Cancer Wisconsin (Diagnostic)* (Street, Wolberg & Mangasarian, 1993), via "
                  "`sklearn.datasets.load_breast_cancer`: 30 features of cell nuclei from fine-needle aspirates.",
        "license": "CC BY 4.0 (UCI Machine Learning Repository)",
        "intended_use": "teaching binary classification and calibration; not for clinical decisions.",
        "limitations": "one hospital, 569 patients; no patient attributes, so fairness across groups cannot be checked.",
    },
    "moons": {
        "source": "synthetic: `sklearn.datasets.make_moons`, generated from the module's seed.",
        "license": "none needed (generated data)",
        "intended_use": "drawing decision boundaries in 2-D.",
        "limitations": "a toy problem; conclusions do not transfer to real data.",
    },
}
_UNKNOWN = "not documented: fill it in with `info=`"


def _check_datamodule(datamodule: Any) -> None:
    for attribute in ("load_arrays", "split_indices", "manifest", "name"):
        if not hasattr(datamodule, attribute):
            raise TypeError(f"datamodule must be an ArrayDataModule (with {attribute}), got {type(datamodule).__name__}")


def verify_splits(datamodule: Any, manifest_dir: str | Path | None = None) -> Path:
    """Check the datamodule's split against its committed manifest ``<manifest_dir>/<name>.json``.

    Returns the manifest's path when every split matches; raises ``ValueError`` naming what differs
    (the data, the settings, or which split), or naming the missing file.
    """
    _check_datamodule(datamodule)
    path = Path(manifest_dir if manifest_dir is not None else MANIFEST_DIR) / f"{datamodule.name}.json"
    if not path.is_file():
        raise ValueError(f"no split manifest for dataset {datamodule.name!r}: {path} does not exist "
                         f"(write one with toolkit.data.build_manifest)")
    check_manifest(datamodule.manifest(), path)
    return path


def _markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(datamodule: Any, info: dict[str, str] | None = None,
                 manifest_dir: str | Path | None = None) -> str:
    """A markdown dataset card: provenance, license, size, class balance per split, checksums, manifest check.

    Args:
        datamodule: an :class:`~toolkit.data.ArrayDataModule` (digits, breast cancer, moons or yours).
        info: fields ``source``, ``license``, ``intended_use``, ``limitations`` that override or
            complete ``DATASET_INFO[datamodule.name]``.
        manifest_dir: where the committed manifests live (default ``datasets/manifests``); the card
            says whether the current split matches, and what differs if not.
    """
    _check_datamodule(datamodule)
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info must be a dict of card fields, got {type(info).__name__}")
    fields = {**DATASET_INFO.get(datamodule.name, {}), **(info or {})}
    manifest = datamodule.manifest()
    x, y = datamodule.load_arrays()
    class_names = list(getattr(datamodule, "class_names", ()) or [str(c) for c in np.unique(y)])
    classes = sorted({int(c) for split in manifest["splits"].values() for c in split["class_counts"]})
    try:
        check = f"matches `{verify_splits(datamodule, manifest_dir).name}` (every split's SHA-256 agrees)"
    except ValueError as error:  # a missing manifest is not a mismatch: say which it is
        missing = str(error).startswith("no split manifest")
        check = f"**{'not checked' if missing else 'does not match'}**: {error}"

    split_rows = [[name, s["size"], f"{s['size'] / max(len(y), 1):.1%}", f"`{s['sha256'][:_SHORT_HASH]}`"]
                  for name, s in manifest["splits"].items()]
    balance_rows = [[c] + [f"{s['class_counts'].get(c, 0)} ({s['class_counts'].get(c, 0) / max(s['size'], 1):.1%})"
                           for s in manifest["splits"].values()] for c in classes]
    counts = np.bincount(y)
    lines = [
        f"# Dataset card: {datamodule.name}", "",
        f"**Source**: {fields.get('source', _UNKNOWN)}", "",
        f"**License**: {fields.get('license', _UNKNOWN)}", "",
        f"**Intended use**: {fields.get('intended_use', _UNKNOWN)}", "",
        f"**Known limitations**: {fields.get('limitations', _UNKNOWN)}", "",
        "## Size",
        f"- {len(y):,} samples of shape {tuple(x.shape[1:])} ({x.dtype}), {len(counts)} label values",
        f"- classes used by the module: {', '.join(class_names)}",
        f"- imbalance: largest / smallest class = {counts.max() / max(counts[counts > 0].min(), 1):.2f}", "",
        "## Splits",
        f"Settings: {manifest['settings']}", "",
        _markdown_table(["split", "samples", "share", "sha256"], split_rows), "",
        "## Class balance (raw labels)",
        _markdown_table(["class"] + list(manifest["splits"]), balance_rows), "",
        "## Checksums",
        f"- data (all samples and labels): `{manifest['data_sha256']}`",
        f"- split manifest: {check}",
    ]
    return "\n".join(lines) + "\n"
