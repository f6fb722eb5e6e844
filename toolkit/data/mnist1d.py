"""MNIST-1D as a LightningDataModule: 40-sample 1-D signals where linear, MLP and CNN models differ.

Greydanus, 2020, "Scaling down deep learning" (arXiv:2011.14439); Greydanus & Kobak, 2024,
"Scaling down deep learning with MNIST-1D" (ICML). Ten 12-point templates (one per digit) are padded,
dilated, scaled, translated (circularly), filled with correlated noise where they are zero, given
i.i.d. noise and a random linear trend (shear), then resampled to 40 points. With 4,000 training
samples the paper reports test accuracies of about 32% (logistic regression), 68% (MLP), 91% (GRU)
and 94% (CNN): a benchmark on which architectures separate by tens of points and that trains in
seconds on a CPU.

The samples come from the ``mnist1d`` package's generator (``mnist1d.data.make_dataset``), never from
its ``get_dataset``, which downloads a pickle (and unpickling a downloaded file runs whatever code it
holds). Generating 5,000 samples takes about 1.5-2 s, so :func:`make_mnist1d` caches the arrays on
disk, keyed by every generator argument and checked against their SHA-256 before use; a missing,
corrupt or mismatched cache file is regenerated, never trusted. The cache lives in
``$TOOLKIT_CACHE_DIR`` if set, else in the platform's user cache folder (``~/.cache/toolkit`` on
Linux). The generator reseeds NumPy's and Python's global random number generators; this module puts
every global RNG (``random``, ``numpy.random``, ``torch``) back as it found it.

"MNIST-1D-C" (:meth:`MNIST1DDataModule.shift_dataloader`): fresh samples (another generator seed)
with one of the generator's own knobs turned up, at severities 1-5 (``MNIST1D_SHIFT_LEVELS``).

Example:
    >>> dm = MNIST1DDataModule(flatten=True)
    >>> dm.setup()
    >>> tuple(dm.tensors("train")[0].shape), dm.num_classes
    ((3500, 40), 10)
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from toolkit.data.base import ArrayDataModule
from toolkit.data.held_out import HeldOutClassesMixin
from toolkit.data.loader import TensorBatchLoader

__all__ = ["MNIST1D_CORRUPTIONS", "MNIST1D_SHIFT_LEVELS", "MNIST1DDataModule", "make_mnist1d",
           "mnist1d_cache_dir"]

SEQ_LENGTH = 40                 # points per signal (the generator's final_seq_length)
NUM_DIGITS = 10
_TEMPLATE_LEN = 12              # the generator's template_len and padding: fixed at the paper's values
_PADDING = (36, 60)
_MAX_SHIFT = _TEMPLATE_LEN + _PADDING[1]   # length of the signal when it is translated
_MAX_SCALE_COEFF = 2.0          # amplitude factor 1 + scale_coeff * (u - 0.5) must stay > 0
MIN_SAMPLES = 100
_CACHE_FORMAT = 1               # bump when the cached file's layout changes
_SEED_BOUND = 2**32             # numpy.random.seed accepts seeds below 2**32

#: the generator's knobs with the paper's defaults (mnist1d.data.get_dataset_args)
PAPER_DEFAULTS = {"iid_noise_scale": 2e-2, "corr_noise_scale": 0.25, "max_translation": 48,
                  "shear_scale": 0.75, "scale_coeff": 0.4}

#: MNIST-1D-C: each corruption turns one generator knob up to these values at severities 1-5
#: (the paper's value is below severity 1). Chosen so that severity 1 costs a CNN trained on the
#: defaults a few points and severity 5 leaves it far below its clean accuracy.
MNIST1D_SHIFT_LEVELS: dict[str, tuple[str, tuple[float, ...]]] = {
    "iid_noise": ("iid_noise_scale", (0.03, 0.04, 0.055, 0.075, 0.1)),
    "corr_noise": ("corr_noise_scale", (0.3, 0.33, 0.37, 0.42, 0.5)),
    "translation": ("max_translation", (56, 60, 64, 68, 72)),
    "shear": ("shear_scale", (1.0, 1.3, 1.6, 2.0, 2.5)),
    "scale": ("scale_coeff", (0.8, 1.1, 1.4, 1.7, 1.95)),
}
MNIST1D_CORRUPTIONS = tuple(MNIST1D_SHIFT_LEVELS)
SEVERITIES = (1, 2, 3, 4, 5)


# ---- validation ------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low \
            or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def _check_number(name: str, value: Any, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (high is not None and value >= high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high})"
        raise ValueError(f"{name} must be a number {allowed}, got {value!r}")


def _generator_args(num_samples: int, seed: int, iid_noise_scale: float, corr_noise_scale: float,
                    max_translation: int, shear_scale: float, scale_coeff: float) -> dict[str, Any]:
    _check_int("num_samples", num_samples, MIN_SAMPLES)
    if num_samples % NUM_DIGITS:
        raise ValueError(f"num_samples must be a multiple of {NUM_DIGITS} (the generator makes num_samples // 10 "
                         f"signals per digit), got {num_samples!r}")
    _check_int("generator_seed", seed, 0, _SEED_BOUND - 1)
    _check_number("iid_noise_scale", iid_noise_scale, 0.0)
    _check_number("corr_noise_scale", corr_noise_scale, 0.0)
    _check_int("max_translation", max_translation, 1, _MAX_SHIFT)
    _check_number("shear_scale", shear_scale, 0.0)
    _check_number("scale_coeff", scale_coeff, 0.0, _MAX_SCALE_COEFF)
    return {"num_samples": int(num_samples), "seed": int(seed), "iid_noise_scale": float(iid_noise_scale),
            "corr_noise_scale": float(corr_noise_scale), "max_translation": int(max_translation),
            "shear_scale": float(shear_scale), "scale_coeff": float(scale_coeff)}


# ---- generation and the on-disk cache --------------------------------------------------------------
def mnist1d_cache_dir() -> Path:
    """Where generated MNIST-1D arrays are cached: ``$TOOLKIT_CACHE_DIR`` or the user cache folder."""
    if os.environ.get("TOOLKIT_CACHE_DIR"):
        return Path(os.environ["TOOLKIT_CACHE_DIR"]) / "mnist1d"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "toolkit" / "mnist1d"


def _mnist1d_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist1d")
    except PackageNotFoundError as error:
        raise ImportError("MNIST-1D needs the mnist1d package (its generator): pip install 'mnist1d>=0.0.2,<0.1'") \
            from error


def _generate(args: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Run the package's generator, leaving Python's, NumPy's and torch's global RNGs as found."""
    from mnist1d.data import get_dataset_args, make_dataset

    generator_args = get_dataset_args()
    for key, value in args.items():
        setattr(generator_args, key, value)
    generator_args.shuffle_seq = False   # we permute ourselves, so shifted sets share the permutation
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        data = make_dataset(generator_args)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y


def _atomic_write(path: Path, payload: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(payload)
        temporary = Path(handle.name)
    os.replace(temporary, path)


def _read_cache(data_path: Path, meta_path: Path, key: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached arrays if the sidecar's key and SHA-256 match the file's bytes; ``None`` if absent."""
    if not data_path.exists() and not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        payload = data_path.read_bytes()
        if meta.get("key") != key or meta.get("sha256") != hashlib.sha256(payload).hexdigest():
            raise ValueError("SHA-256 or generator arguments differ")
        with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
            x, y = arrays["x"], arrays["y"]
        n = key["args"]["num_samples"]
        if x.shape != (n, SEQ_LENGTH) or x.dtype != np.float32 or y.shape != (n,) or y.dtype != np.int64:
            raise ValueError(f"arrays have shapes {x.shape}, {y.shape}")
    except Exception as error:  # any unreadable, edited or truncated file is regenerated
        warnings.warn(f"MNIST-1D cache {data_path} failed its check ({error}); regenerating it", stacklevel=3)
        return None
    return x, y


def make_mnist1d(num_samples: int = 5000, seed: int = 42, iid_noise_scale: float = 2e-2,
                 corr_noise_scale: float = 0.25, max_translation: int = 48, shear_scale: float = 0.75,
                 scale_coeff: float = 0.4, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Generate MNIST-1D signals ``x`` (``(N, 40)`` float32) and digits ``y`` (``(N,)`` int64).

    Calls ``mnist1d.data.make_dataset`` (Greydanus, 2020, arXiv:2011.14439) with the paper's
    template length and padding and the given knobs, and returns its train and test parts joined in
    order (the DataModule makes its own stratified split). The generator standardizes the whole set
    to mean 0 and standard deviation 1. Global RNGs are restored after the call.

    Args:
        num_samples: signals in all, a multiple of 10, ``>= 100`` (the paper: 5,000).
        seed: the generator's seed, in ``[0, 2**32)`` (the paper: 42).
        iid_noise_scale: std of the i.i.d. gaussian noise added everywhere, ``>= 0``.
        corr_noise_scale: std of the (gaussian-smoothed) noise filling the padding, ``>= 0``.
        max_translation: circular shifts are drawn from ``0..max_translation-1``, in ``[1, 72]``.
        shear_scale: the linear trend's slope is ``shear_scale * (u - 0.5)``, ``>= 0``.
        scale_coeff: amplitudes are multiplied by ``1 + scale_coeff * (u - 0.5)``, in ``[0, 2)``.
        cache: read and write the SHA-256-checked cache in :func:`mnist1d_cache_dir`.

    Example:
        >>> x, y = make_mnist1d(num_samples=100)
        >>> x.shape, np.bincount(y).tolist() == [10] * 10
        ((100, 40), True)
    """
    args = _generator_args(num_samples, seed, iid_noise_scale, corr_noise_scale, max_translation,
                           shear_scale, scale_coeff)
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be a bool, got {type(cache).__name__}")
    if not cache:
        return _generate(args)
    key = {"format": _CACHE_FORMAT, "mnist1d": _mnist1d_version(), "template_len": _TEMPLATE_LEN,
           "padding": list(_PADDING), "args": args}
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    folder = mnist1d_cache_dir()
    data_path, meta_path = folder / f"{name}.npz", folder / f"{name}.json"
    cached = _read_cache(data_path, meta_path, key)
    if cached is not None:
        return cached
    x, y = _generate(args)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    payload = buffer.getvalue()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(data_path, payload)
        _atomic_write(meta_path, json.dumps({"key": key, "sha256": hashlib.sha256(payload).hexdigest()},
                                            indent=1).encode())
    except OSError as error:  # a read-only home still gets its data, only slower next time
        warnings.warn(f"could not write the MNIST-1D cache in {folder} ({error}); set TOOLKIT_CACHE_DIR",
                      stacklevel=2)
    return x, y


# ---- the DataModule ----------------------------------------------------------------------------------
class MNIST1DDataModule(HeldOutClassesMixin, ArrayDataModule):
    """MNIST-1D (Greydanus, 2020, "Scaling down deep learning", arXiv:2011.14439) as a DataModule.

    The samples are a pure function of the generator's arguments (``num_samples``,
    ``generator_seed`` and the knobs), so every ``seed`` sees the same signals split differently, as
    with the digits. Inputs are standardized with the mean and standard deviation of the training
    split's values (one scalar each); this also undoes the generator's own whole-set scaling, which
    therefore leaks nothing from validation or test into the inputs.

    Args:
        num_samples: signals in all, a multiple of 10, ``>= 100`` (default 5,000 as in the paper;
            50,000+ works, the first generation then takes tens of seconds).
        generator_seed: seeds the generator, ``[0, 2**32)`` (the paper: 42).
        iid_noise_scale, corr_noise_scale, max_translation, shear_scale, scale_coeff: the generator's
            knobs, default the paper's (see :func:`make_mnist1d` for their meaning and ranges).
        shuffle_seq: permute the 40 positions with one fixed permutation (drawn from
            ``generator_seed``, shared by the shifted sets): destroys locality, so a CNN's prior no
            longer helps (the paper's control experiment).
        flatten: inputs of shape ``(N, 40)`` (for MLPs) instead of ``(N, 1, 40)`` (for 1-D convs).
        normalize: standardize with training-split statistics (``mean``, ``std`` attributes).
        ood_classes: digits held out of train/val/test; all their samples form ``ood_dataloader()``
            and the remaining classes are relabelled ``0..k-1`` in increasing order.
        label_noise, label_noise_kind, label_noise_val: training labels flipped at a known rate, see
            :class:`ArrayDataModule`.
        batch_size, val_fraction, test_fraction, train_fraction, seed, eval_batch_size:
            see :class:`ArrayDataModule`. The paper's 4,000/1,000 split is
            ``val_fraction=0.0, test_fraction=0.2``.

    Example:
        >>> dm = MNIST1DDataModule(val_fraction=0.0, test_fraction=0.2, ood_classes=(9,))
        >>> dm.setup()
        >>> len(dm.tensors("train")[0]), dm.num_classes, dm.input_shape
        (3600, 9, (1, 40))
    """

    name = "mnist1d"

    def __init__(self, num_samples: int = 5000, generator_seed: int = 42, iid_noise_scale: float = 2e-2,
                 corr_noise_scale: float = 0.25, max_translation: int = 48, shear_scale: float = 0.75,
                 scale_coeff: float = 0.4, shuffle_seq: bool = False, flatten: bool = False,
                 normalize: bool = True, ood_classes: Sequence[int] = (), label_noise: float = 0.0,
                 label_noise_kind: str = "symmetric", label_noise_val: bool = False, batch_size: int = 64,
                 val_fraction: float = 0.15, test_fraction: float = 0.15, train_fraction: float = 1.0,
                 seed: int = 0, eval_batch_size: int = 512) -> None:
        super().__init__(batch_size=batch_size, val_fraction=val_fraction, test_fraction=test_fraction,
                         train_fraction=train_fraction, seed=seed, eval_batch_size=eval_batch_size,
                         label_noise=label_noise, label_noise_kind=label_noise_kind,
                         label_noise_val=label_noise_val)
        self.generator_args = _generator_args(num_samples, generator_seed, iid_noise_scale, corr_noise_scale,
                                              max_translation, shear_scale, scale_coeff)
        for name, value in (("shuffle_seq", shuffle_seq), ("flatten", flatten), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        self.num_samples = int(num_samples)
        self.generator_seed = int(generator_seed)
        self.shuffle_seq = shuffle_seq
        self.flatten = flatten
        self.normalize = normalize
        self._hold_out(ood_classes)
        self.mean, self.std = 0.0, 1.0
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (SEQ_LENGTH,) if self.flatten else (1, SEQ_LENGTH)

    @property
    def permutation(self) -> np.ndarray:
        """The fixed order of the 40 positions (identity unless ``shuffle_seq``)."""
        if not self.shuffle_seq:
            return np.arange(SEQ_LENGTH)
        return np.random.RandomState(self.generator_seed).permutation(SEQ_LENGTH)

    def _signals(self, args: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        x, y = make_mnist1d(**args)
        return (x[:, self.permutation] if self.shuffle_seq else x), y

    def load_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._signals(self.generator_args)
        return self._arrays

    def fit_transform(self, x_train: np.ndarray) -> None:
        if self.normalize:
            self.mean, self.std = float(x_train.mean()), float(x_train.std())

    def transform(self, x: np.ndarray) -> Tensor:
        inputs = (torch.as_tensor(x, dtype=torch.float32) - self.mean) / self.std
        return inputs if self.flatten else inputs.unsqueeze(1)

    def manifest_settings(self) -> dict[str, Any]:
        settings = super().manifest_settings()
        generator = dict(self.generator_args, generator_seed=self.generator_args["seed"], shuffle_seq=self.shuffle_seq)
        del generator["seed"]
        return {**settings, "generator": generator, "ood_classes": list(self.ood_classes)}

    # ---- MNIST-1D-C and OOD ----------------------------------------------------------------------
    def shift_seed(self, seed: int = 0) -> int:
        """The generator seed of the shifted sets: a function of ``generator_seed`` and ``seed``,
        never ``generator_seed`` itself, shared by every corruption and severity (so they differ by
        the knob, not by the draw)."""
        _check_int("seed", seed, 0)
        state = int(np.random.SeedSequence([self.generator_seed, seed, 0x5EED]).generate_state(1)[0])
        return state if state != self.generator_seed else (state + 1) % _SEED_BOUND

    def shifted_tensors(self, corruption: str, severity: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """MNIST-1D-C: fresh signals with ``corruption``'s knob at ``severity``, as model inputs.

        As many signals per kept class as the test split holds on average per class (rounded up),
        generated with :meth:`shift_seed` and every other knob at this module's value, normalized
        with the training split's statistics.
        """
        if corruption not in MNIST1D_SHIFT_LEVELS:
            raise ValueError(f"corruption must be one of {MNIST1D_CORRUPTIONS}, got {corruption!r}")
        if isinstance(severity, bool) or severity not in SEVERITIES:
            raise ValueError(f"severity must be an integer in {SEVERITIES}, got {severity!r}")
        self.setup()
        knob, levels = MNIST1D_SHIFT_LEVELS[corruption]
        per_class = max(1, math.ceil(len(self.tensors("test")[1]) / len(self.in_classes)))
        args = dict(self.generator_args, num_samples=max(MIN_SAMPLES, NUM_DIGITS * per_class),
                    seed=self.shift_seed(seed), **{knob: levels[severity - 1]})
        x, y = self._signals(args)
        kept, labels = self.split_labels(y, np.arange(len(y)))
        return self.transform(x[kept]), torch.as_tensor(labels, dtype=torch.long)

    def shift_dataloader(self, corruption: str, severity: int, seed: int = 0) -> TensorBatchLoader:
        """A test loader over "MNIST-1D-C": ``corruption`` in ``MNIST1D_CORRUPTIONS`` at ``severity`` 1-5."""
        return self.loader(*self.shifted_tensors(corruption, severity, seed))
