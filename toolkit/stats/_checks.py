"""Input checks and the one-row rendering shared by the stats package (no torch import here)."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd


def is_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor``, without importing torch (a tensor can only exist if torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def as_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if is_tensor(x) else x)


def check_confidence(confidence: Any) -> None:
    ok = isinstance(confidence, (int, float, np.floating)) and not isinstance(confidence, bool)
    if not ok or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95, got {confidence!r}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_sample(name: str, x: Any) -> np.ndarray:
    """A 1-D array of finite real numbers (list, NumPy array, pandas Series or torch tensor) as float64."""
    if isinstance(x, (str, bytes)) or np.isscalar(x):
        raise TypeError(f"{name} must be a 1-D sequence of numbers (one per seed), got {type(x).__name__} {x!r}")
    array = as_numpy(x)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per seed), got shape {array.shape}")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueError(f"{name} must be finite; positions {np.flatnonzero(bad).tolist()} are NaN or infinite")
    return array


def check_columns(frame: Any, columns: dict[str, Any]) -> None:
    """``frame`` is a DataFrame holding every column in ``columns`` (argument name -> column name)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    for argument, column in columns.items():
        if column not in frame.columns:
            raise ValueError(f"{argument}={column!r} is not a column of the frame; columns are {list(frame.columns)}")


class TableRow:
    """Mixin for frozen result dataclasses: ``to_dict()``, ``to_frame()``, and display as a one-row table."""

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)  # type: ignore[call-overload]
        for name in getattr(self, "_properties", ()):
            row[name] = getattr(self, name)
        return row

    def to_frame(self) -> pd.DataFrame:
        """A one-row DataFrame; ``pd.DataFrame([r.to_dict() for r in results])`` stacks several."""
        return pd.DataFrame([self.to_dict()])

    def __str__(self) -> str:
        return self.to_frame().to_string(index=False, float_format=lambda v: f"{v:.4g}")

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False, float_format=lambda v: f"{v:.4g}")
