"""Dataset cards generated from a DataModule, and split manifests checked against ``datasets/``.

After Gebru et al., 2021, "Datasheets for Datasets" (CACM 64(12), arXiv:1803.09010), whose seven
sections the card follows (motivation, composition, collection process, preprocessing and labeling,
uses, distribution, maintenance), and the dataset cards of the Hugging Face Hub: where the data
comes from, under which license, how large it is, how the classes are balanced per split, and the
checksums that pin exactly which samples a reported number was measured on.

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

__all__ = ["DATASET_INFO", "FIELDS", "MANIFEST_DIR", "SECTIONS", "dataset_card", "verify_splits"]

def _manifest_dir() -> Path:
    """The committed split manifests: ``toolkit/manifests`` as package data, found with
    ``importlib.resources`` (in a checkout a symlink to ``datasets/manifests``; a wheel holds the
    files themselves), else ``datasets/manifests`` of a source checkout."""
    installed = Path(str(importlib.resources.files("toolkit"))) / "manifests"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[2] / "datasets" / "manifests"


MANIFEST_DIR = _manifest_dir()
_SHORT_HASH = 12  # characters of a SHA-256 shown in tables

# What the code cannot read from the arrays, in the seven sections of Gebru et al.'s datasheets.
# tests/test_governance.py checks the facts stated here against each source's own description
# (scikit-learn's DESCR, the mnist1d generator's default arguments and package license).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("motivation", "Motivation"), ("composition", "Composition"), ("collection", "Collection process"),
    ("preprocessing", "Preprocessing and labeling"), ("uses", "Uses"), ("distribution", "Distribution"),
    ("maintenance", "Maintenance"))
FIELDS: tuple[str, ...] = ("source", "license") + tuple(key for key, _ in SECTIONS)

DATASET_INFO: dict[str, dict[str, str]] = {
    "digits": {
        "source": "UCI ML *Optical Recognition of Handwritten Digits* (E. Alpaydin and C. Kaynak, 1998), its "
                  "test part, as shipped with scikit-learn (`sklearn.datasets.load_digits`).",
        "license": "CC BY 4.0 (UCI Machine Learning Repository); bundled with scikit-learn (BSD-3-Clause)",
        "motivation": "Collected at Bogazici University to study combining classifiers for handwritten digit "
                      "recognition (Kaynak, 1995; Alpaydin & Kaynak, 1998).",
        "composition": "1,797 images of the digits 0-9, 8x8 pixels with integer values 0..16, written by "
                       "13 writers (about 138 images each). The writer of an image is not recorded, so a "
                       "random split puts images of the same writer in train and test: **writer-level "
                       "leakage**, which makes test accuracy overstate accuracy on new writers. No "
                       "information about the writers (age, handedness, script) is available.",
        "collection": "Digits written on preprinted forms by 43 people in the 1990s: 30 wrote the UCI "
                      "training part, 13 others the test part, which is the part scikit-learn ships. The "
                      "forms were scanned and NIST's programs (Garris et al., 1994, NISTIR 5469) extracted "
                      "normalized 32x32 bitmaps.",
        "preprocessing": "Each 32x32 bitmap was divided into non-overlapping 4x4 blocks and the lit pixels of "
                         "each block counted, giving the 8x8 grid of counts 0..16 (less dimension, some "
                         "invariance to small distortions). Labels are the digit the form asked for. The "
                         "course divides by 16, may upsample to 16x16 or 32x32, and standardizes with the "
                         "training split's pixel mean and standard deviation.",
        "uses": "Teaching and benchmarking small image classifiers. Not a model of handwriting in the wild "
                "(13 writers, one scanner, 8x8 pixels); accuracy here says little about other writers, "
                "scripts or devices. Report accuracy on new writers only with a writer-disjoint test set, "
                "which this data cannot provide.",
        "distribution": "UCI Machine Learning Repository (DOI 10.24432/C50P49), and inside scikit-learn; "
                        "nothing is downloaded.",
        "maintenance": "Static since 1998; UCI hosts the original. The split used here is pinned by the "
                       "manifest and checksums below; a change to it fails the course's tests.",
    },
    "breast_cancer": {
        "source": "UCI *Breast Cancer Wisconsin (Diagnostic)* (W. N. Street, W. H. Wolberg and "
                  "O. L. Mangasarian, 1993), via `sklearn.datasets.load_breast_cancer`.",
        "license": "CC BY 4.0 (UCI Machine Learning Repository); bundled with scikit-learn (BSD-3-Clause)",
        "motivation": "Built to diagnose breast masses as malignant or benign from a fine-needle aspirate "
                      "without surgical biopsy (Street, Wolberg & Mangasarian, 1993).",
        "composition": "569 samples, one per patient, with 30 real-valued features: the mean, standard "
                       "error and worst value of 10 measurements of cell nuclei (radius, texture, perimeter, "
                       "area, smoothness, compactness, concavity, concave points, symmetry, fractal "
                       "dimension); 212 malignant (class 0) and 357 benign (class 1). No patient "
                       "attributes, so fairness across groups cannot be checked.",
        "collection": "Digitized images of fine-needle aspirates from patients of the University of "
                      "Wisconsin Hospitals, Madison, collected by Dr. W. H. Wolberg in the early 1990s.",
        "preprocessing": "The nuclei boundaries were traced interactively on each image and the features "
                         "computed from them; diagnoses come from the hospital. The course standardizes each "
                         "feature with the training split's mean and standard deviation.",
        "uses": "Teaching binary classification and calibration. Not for clinical decisions: one hospital, "
                "one period, 569 patients.",
        "distribution": "UCI Machine Learning Repository (DOI 10.24432/C5DW2B), and inside scikit-learn.",
        "maintenance": "Static since 1995; the split used here is pinned by the manifest and checksums below.",
    },
    "moons": {
        "source": "synthetic: `sklearn.datasets.make_moons(n_samples, noise, random_state=seed)`.",
        "license": "none needed (generated data; scikit-learn is BSD-3-Clause)",
        "motivation": "A 2-D problem whose non-linear decision boundary can be drawn.",
        "composition": "`n_samples` points (default 1,000) on two interleaving half circles with gaussian "
                       "noise (default 0.2), balanced between the two classes.",
        "collection": "Generated on your machine from the module's seed; no people are involved.",
        "preprocessing": "Features standardized with the training split's mean and standard deviation.",
        "uses": "Drawing decision boundaries and confident regions far from the data; a toy whose "
                "conclusions do not transfer to real data.",
        "distribution": "Generated by scikit-learn's code; nothing is stored or downloaded.",
        "maintenance": "A pure function of the seed and scikit-learn's version; the manifest pins it.",
    },
    "mnist1d": {
        "source": "synthetic: MNIST-1D (S. Greydanus, 2020, *Scaling down deep learning*, arXiv:2011.14439), "
                  "generated by the `mnist1d` package's `make_dataset`.",
        "license": "none needed for the generated signals; the generator code is Apache-2.0",
        "motivation": "A benchmark small enough to train in seconds on a CPU on which linear models, MLPs, "
                      "CNNs and GRUs still differ by tens of points (the paper: about 32%, 68%, 94%, 91%).",
        "composition": "`num_samples` signals (default 5,000, `num_samples / 10` per digit) of 40 points, "
                       "each made from one of ten hand-made 1-D templates of 12 points, one per digit. "
                       "Every signal is a fresh random transformation of its class's single template, so "
                       "all samples of a class share that template: the variety comes from the knobs, not "
                       "from writers.",
        "collection": "Generated on your machine: each template is padded with 36-60 zeros, scaled by "
                      "`1 + scale_coeff * (u - 0.5)` (scale_coeff 0.4), shifted circularly by up to 48 "
                      "points (max_translation), given correlated noise (corr_noise_scale 0.25), i.i.d. "
                      "noise (iid_noise_scale 0.02) and a linear shear (shear_scale 0.75), then resampled "
                      "to 40 points; the values on this card are the generator's defaults, the table "
                      "below gives this module's arguments.",
        "preprocessing": "The generator standardizes the whole set; the course then standardizes with the "
                         "training split's mean and standard deviation (one affine map, so nothing from "
                         "validation or test reaches the inputs). Labels are the template's digit, exact "
                         "by construction; `label_noise=` flips a known share on purpose.",
        "uses": "Teaching and comparing architectures and regularizers, label noise and shift "
                "(MNIST-1D-C). A designed benchmark: rankings are evidence about inductive biases, not "
                "about real data.",
        "distribution": "The course calls the generator and never downloads the package's pickle; arrays "
                        "are cached as `.npz` with a SHA-256 sidecar.",
        "maintenance": "A pure function of the generator's arguments and the package version (the "
                       "cache key); the manifest pins the split. Another SciPy or CPU may change the "
                       "last bit of the data hash, not the split.",
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
    """A markdown datasheet: Gebru et al.'s seven sections, with the statistics read from the data.

    Motivation, composition (with size, class balance per split), collection process,
    preprocessing and labeling, uses, distribution (with the license) and maintenance (with the
    checksums and whether the split matches its committed manifest).

    Args:
        datamodule: an :class:`~toolkit.data.ArrayDataModule` (digits, breast cancer, moons, MNIST-1D
            or yours).
        info: any of ``FIELDS`` (``source``, ``license`` and the seven sections), overriding or
            completing ``DATASET_INFO[datamodule.name]``.
        manifest_dir: where the committed manifests live (default ``datasets/manifests``); the card
            says whether the current split matches, and what differs if not.
    """
    _check_datamodule(datamodule)
    if info is not None and not isinstance(info, dict):
        raise TypeError(f"info must be a dict of card fields, got {type(info).__name__}")
    unknown = sorted(set(info or {}) - set(FIELDS))
    if unknown:
        raise ValueError(f"info has unknown fields {unknown}; allowed: {list(FIELDS)}")
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
    text = {key: fields.get(key, _UNKNOWN) for key in FIELDS}
    lines = [f"# Dataset card: {datamodule.name}", "", f"**Source**: {text['source']}", "",
             f"**License**: {text['license']}", ""]
    for key, title in SECTIONS:
        lines += [f"## {title}", text[key], ""]
        if key == "composition":
            lines += [f"- {len(y):,} samples of shape {tuple(x.shape[1:])} ({x.dtype}), {len(counts)} label values",
                      f"- classes used by the module: {', '.join(class_names)}",
                      f"- imbalance: largest / smallest class = {counts.max() / max(counts[counts > 0].min(), 1):.2f}",
                      "", "### Splits", f"Settings: {manifest['settings']}", "",
                      _markdown_table(["split", "samples", "share", "sha256"], split_rows), "",
                      "### Class balance (raw labels)",
                      _markdown_table(["class"] + list(manifest["splits"]), balance_rows), ""]
        if key == "collection" and isinstance(getattr(datamodule, "generator_args", None), dict):
            lines += ["Generator arguments of this module:", "",
                      _markdown_table(["argument", "value"], [[k, v] for k, v in datamodule.generator_args.items()]), ""]
        if key == "maintenance":
            lines += [f"- data (all samples and labels): `{manifest['data_sha256']}`",
                      f"- split manifest: {check}"]
    return "\n".join(lines) + "\n"
