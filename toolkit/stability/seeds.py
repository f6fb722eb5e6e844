"""Seed-variance study: the spread of a final metric over seeds, per set of stabilizers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import pytorch_lightning as pl

__all__ = ["seed_spread", "seed_variance"]


def seed_variance(variants: Mapping[str, Mapping[str, Any]], data: Any, seeds: Iterable[int] = range(8),
                  **fit_kwargs: Any) -> pd.DataFrame:
    """Train every variant once per seed (through ``toolkit.training.run_seeds``); one row per run.

    Each variant is a dict with ``"model"`` (a zero-argument factory of a LightningModule), optional
    ``"callbacks"`` (a zero-argument factory returning a fresh list of callbacks: stateful callbacks
    such as EMA or the guards must not be shared between seeds) and any other ``fit`` keyword
    (``gradient_clip_val``, ``max_epochs``...), which overrides ``fit_kwargs``.

    Args:
        variants: ``{name: spec}``; at least one.
        data: a DataModule (its split stays fixed over seeds) or a factory of one.
        seeds: distinct integers >= 0.
        **fit_kwargs: shared ``fit`` arguments.

    Returns:
        ``run_seeds``'s columns (``seed``, metrics, ``fit_time_s``, ``epochs``) plus ``variant``.

    Example:
        >>> # seed_variance({"plain": {"model": f}, "ema": {"model": f, "callbacks": lambda: [EMAWeightAveraging()]}},
        >>> #               dm, seeds=range(8), max_epochs=5)
    """
    from toolkit.training import run_seeds

    if not isinstance(variants, Mapping) or not variants:
        raise ValueError(f"variants must be a non-empty mapping of name -> spec, got {variants!r}")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty sequence of distinct integers, got {seeds!r}")
    frames = []
    for name, spec in variants.items():
        if not isinstance(spec, Mapping) or "model" not in spec:
            raise ValueError(f"variants[{name!r}] must be a dict with a 'model' factory, got {spec!r}")
        spec = dict(spec)
        model, make_callbacks = spec.pop("model"), spec.pop("callbacks", None)
        if make_callbacks is not None and (isinstance(make_callbacks, (list, tuple, pl.Callback))
                                           or not callable(make_callbacks)):
            raise TypeError(f"variants[{name!r}]['callbacks'] must be a zero-argument factory returning a "
                            f"list of callbacks (fresh ones for every seed), got {type(make_callbacks).__name__}")
        for seed in seeds:
            kwargs = {**fit_kwargs, **spec, "name": fit_kwargs.get("name", f"seed_variance_{name}")}
            if make_callbacks is not None:
                kwargs["callbacks"] = list(make_callbacks())
            frames.append(run_seeds(model, data, seeds=[seed], config={"variant": name}, **kwargs))
    return pd.concat(frames, ignore_index=True)


def seed_spread(frame: pd.DataFrame, metric: str = "test_acc", by: str | Sequence[str] = "variant") -> pd.DataFrame:
    """Per group: mean, standard deviation, worst, best, range and interquartile range of ``metric``."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame (from seed_variance), got {type(frame).__name__}")
    by_cols = [by] if isinstance(by, str) else list(by)
    if metric not in frame.columns:
        raise ValueError(f"metric {metric!r} is not a column of the frame; columns are {list(frame.columns)}")
    missing = [c for c in by_cols if c not in frame.columns]
    if missing:
        raise ValueError(f"by columns {missing} are not in the frame; columns are {list(frame.columns)}")
    grouped = frame.groupby(by_cols)[metric]
    table = grouped.agg(["mean", "std", "min", "max", "count"])
    table["range"] = table["max"] - table["min"]
    table["iqr"] = grouped.quantile(0.75) - grouped.quantile(0.25)
    return table
