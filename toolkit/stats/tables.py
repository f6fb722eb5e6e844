"""Tables over seeds: each metric's mean with its t-interval half-width, and every method against a baseline.

``summarize`` reports ``mean ± half-width`` with the half-width ``t_{n-1, 1-α/2} · s/√n`` of the mean's
t-interval (a confidence interval, not the standard deviation). ``compare`` pairs every method with the
baseline by seed and applies ``paired_difference``: the course's rule is that a comparative claim holds
when that interval excludes 0, and is otherwise reported as "no detectable difference".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _scipy_stats

from toolkit.stats._checks import check_columns, check_confidence, check_int
from toolkit.stats.paired import paired_difference

__all__ = ["CORRECTIONS", "VERDICTS", "compare", "summarize"]

VERDICTS = ("better", "worse", "no detectable difference")
CORRECTIONS = ("none", "bonferroni")


def _half_width(values: pd.Series, confidence: float) -> dict[str, Any]:
    x = values.dropna().to_numpy(dtype=np.float64)
    n = len(x)
    mean = float(x.mean()) if n else np.nan
    sd = float(x.std(ddof=1)) if n >= 2 else np.nan
    half = float(_scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n)) if n >= 2 else np.nan
    return {"mean": mean, "sd": sd, "n": n, "half_width": half, "low": mean - half, "high": mean + half}


def _text(mean: float, half: float, n: int, digits: int) -> str:
    if n == 0:
        return "n/a"
    if n < 2:
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def summarize(frame: pd.DataFrame, metrics: str | Sequence[str], by: str | Sequence[str] | None = None,
              confidence: float = 0.95, digits: int = 3, as_text: bool = False) -> pd.DataFrame:
    """Mean, t-interval half-width and count of each metric over seeds, per group.

    For the ``n`` non-missing values of a metric in a group, with mean ``x̄`` and standard deviation
    ``s``: ``half_width = t_{n-1, 1-α/2} · s/√n`` (``α = 1 - confidence``; scipy's t quantile), so the
    mean's interval is ``[low, high] = x̄ ± half_width``. A group with one value has NaN half-width.

    Args:
        frame: one row per run (``run_seeds`` output), with the metric columns.
        metrics: a column name or a list of them.
        by: column(s) to group by (e.g. "method"); None summarizes all rows.
        confidence: confidence level in (0, 1).
        digits: decimals in the ``text`` column, ``>= 0``.
        as_text: return only the readable table: one row per group, one column per metric, cells
            ``"0.912 ± 0.013"``.

    Returns:
        A tidy DataFrame indexed by the ``by`` columns and "metric" with columns ``mean, sd, n,
        half_width, low, high, text`` (``.unstack("metric")`` makes it wide), or the text table.

    Example:
        >>> runs = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "acc": [0.90, 0.92, 0.91, 0.80, 0.82, 0.84]})
        >>> summarize(runs, "acc", by="method", as_text=True)["acc"].tolist()
        ['0.910 ± 0.025', '0.820 ± 0.050']
    """
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    groups = [] if by is None else ([by] if isinstance(by, str) else list(by))
    if not metrics:
        raise ValueError("metrics must name at least one column")
    check_columns(frame, {**{f"metrics[{i}]": m for i, m in enumerate(metrics)},
                          **{f"by[{i}]": g for i, g in enumerate(groups)}})
    check_confidence(confidence)
    check_int("digits", digits, 0)
    for metric in metrics:
        if not pd.api.types.is_numeric_dtype(frame[metric]) or pd.api.types.is_bool_dtype(frame[metric]):
            raise TypeError(f"metric column {metric!r} must be numeric, got dtype {frame[metric].dtype}")
    records = []
    keyed = [((), frame)] if not groups else frame.groupby(groups, sort=False, dropna=False)
    for key, part in keyed:
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            stats = _half_width(part[metric], confidence)
            stats["text"] = _text(stats["mean"], stats["half_width"], stats["n"], digits)
            records.append({**dict(zip(groups, key)), "metric": metric, **stats})
    table = pd.DataFrame.from_records(records).set_index([*groups, "metric"])
    table.attrs.update(confidence=float(confidence))
    if as_text:
        if not groups:
            return table["text"].to_frame().T.rename(index={"text": "all"})[metrics]
        wide = table["text"].unstack("metric")
        order = table.index.droplevel("metric").unique()  # groups in order of first appearance
        return wide.reindex(order)[metrics]
    return table


def compare(frame: pd.DataFrame, by: str = "method", baseline: Any = None, metric: str = "test_acc",
            seed: str = "seed", confidence: float = 0.95, higher_is_better: bool = True,
            correction: str = "none") -> pd.DataFrame:
    """Every method's paired difference to the baseline (method minus baseline), paired by seed.

    For each method ``m`` and the seeds ``i`` it shares with the baseline, ``d_i = metric(m, i) -
    metric(baseline, i)``; ``paired_difference`` gives the mean difference and its t-interval
    ``d̄ ± t_{n-1,1-α/2} s/√n``. The verdict is "better" or "worse" when the interval excludes 0 (the
    sign read with ``higher_is_better``) and "no detectable difference" otherwise.

    Many methods: at 95% each comparison has a 5% false-alarm rate, so among 10 useless methods one
    will usually look "better". ``correction="bonferroni"`` widens every interval to confidence
    ``1 - α/m`` for ``m`` comparisons, so that all of them hold together at ``confidence``.

    Args:
        frame: one row per (method, seed) run.
        by: the column naming the method.
        baseline: the value of ``by`` to compare against (required).
        metric: the column to compare.
        seed: the column naming the seed; every method must have exactly the baseline's seeds (a
            ValueError lists the missing and extra ones), at most one row per (method, seed), >= 2 seeds.
        confidence: confidence level in (0, 1).
        higher_is_better: False for losses and errors (NLL, ECE, Brier): a negative difference is "better".
        correction: one of ``CORRECTIONS``.

    Returns:
        A DataFrame indexed by method (order of first appearance, baseline left out) with columns
        ``mean, baseline_mean, difference, low, high, p_value, n, excludes_zero, verdict``; its
        ``attrs`` hold ``metric, baseline, by, confidence, higher_is_better`` for ``plot_comparison``.

    Example:
        >>> runs = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 5, "seed": list(range(5)) * 2,
        ...                      "test_acc": [0.90, 0.91, 0.92, 0.90, 0.93, 0.92, 0.93, 0.93, 0.92, 0.95]})
        >>> compare(runs, baseline="a").loc["b", "verdict"]
        'better'
    """
    check_columns(frame, {"by": by, "metric": metric, "seed": seed})
    check_confidence(confidence)
    if not isinstance(higher_is_better, bool):
        raise TypeError(f"higher_is_better must be True or False, got {higher_is_better!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    methods = list(pd.unique(frame[by]))
    if baseline is None or baseline not in methods:
        raise ValueError(f"baseline must be one of the {by!r} values {methods}, got {baseline!r}")
    if not pd.api.types.is_numeric_dtype(frame[metric]) or pd.api.types.is_bool_dtype(frame[metric]):
        raise TypeError(f"metric column {metric!r} must be numeric, got dtype {frame[metric].dtype}")
    duplicated = frame[frame.duplicated([by, seed], keep=False)]
    if len(duplicated):
        pairs = sorted(set(zip(duplicated[by], duplicated[seed])), key=str)
        raise ValueError(f"each ({by}, {seed}) must appear once; repeated: {pairs}")
    missing_values = frame[frame[metric].isna()]
    if len(missing_values):
        raise ValueError(f"{metric!r} is NaN for ({by}, {seed}) {list(zip(missing_values[by], missing_values[seed]))}")
    others = [m for m in methods if m != baseline]
    if not others:
        raise ValueError(f"frame has no method other than the baseline {baseline!r} in column {by!r}")
    level = 1 - (1 - confidence) / len(others) if correction == "bonferroni" else confidence
    reference = frame[frame[by] == baseline].set_index(seed)[metric]
    rows = []
    for method in others:
        values = frame[frame[by] == method].set_index(seed)[metric]
        lacking = sorted(set(reference.index) - set(values.index), key=str)
        extra = sorted(set(values.index) - set(reference.index), key=str)
        if lacking or extra:
            raise ValueError(f"{by} {method!r} must be run on the baseline {baseline!r}'s seeds: it lacks seeds "
                             f"{lacking} and has seeds {extra} that the baseline lacks")
        values = values.loc[reference.index]  # pair by seed, whatever the row order
        result = paired_difference(values.to_numpy(), reference.to_numpy(), confidence=level)
        better = (result.difference > 0) == higher_is_better
        verdict = VERDICTS[0 if better else 1] if result.excludes_zero else VERDICTS[2]
        rows.append({by: method, "mean": float(values.mean()), "baseline_mean": float(reference.mean()),
                     "difference": result.difference, "low": result.low, "high": result.high,
                     "p_value": result.p_value, "n": result.n, "excludes_zero": result.excludes_zero,
                     "verdict": verdict})
    table = pd.DataFrame(rows).set_index(by)
    table.attrs.update(metric=metric, baseline=baseline, by=by, confidence=float(confidence),
                       higher_is_better=higher_is_better, correction=correction)
    return table
