"""Forest plot of ``compare``'s paired differences: one interval per method, and the zero line."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["metric_label", "plot_comparison"]

_PREFIXES = {"test_": "test ", "val_": "validation ", "train_": "training "}
_NAMES = {"acc": "accuracy", "accuracy": "accuracy", "ece": "ECE", "nll": "NLL", "brier": "Brier score",
          "auroc": "AUROC", "aurc": "AURC", "loss": "loss", "f1": "F1", "coverage": "coverage"}
_VERDICT_COLOURS = {"better": 2, "worse": 3, "no detectable difference": 7}  # colorblind palette indices


def metric_label(name: str) -> str:
    """A readable axis label for a metric column: ``"test_acc"`` -> ``"test accuracy"``."""
    for prefix, words in _PREFIXES.items():
        if name.startswith(prefix):
            return words + _NAMES.get(name[len(prefix):], name[len(prefix):].replace("_", " "))
    return _NAMES.get(name, name.replace("_", " "))


def plot_comparison(comparison: pd.DataFrame, ax: Any = None, title: str | None = None,
                    xlabel: str | None = None) -> Any:
    """Paired differences to the baseline as points with their CI bars, a line at 0, coloured by verdict.

    A bar that crosses the dashed zero line is "no detectable difference" (grey); green and red mark
    "better" and "worse" (``compare``'s verdict, which already knows ``higher_is_better``).

    Args:
        comparison: the output of ``compare`` (columns ``difference, low, high, verdict``; its ``attrs``
            give the axis label).
        ax: matplotlib axes to draw on; None makes a new figure.
        title, xlabel: override the default title and axis label.

    Returns:
        The axes.

    Example:
        >>> ax = plot_comparison(compare(runs, baseline="none", metric="test_acc"))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not isinstance(comparison, pd.DataFrame):
        raise TypeError(f"comparison must be the DataFrame that compare() returns, got {type(comparison).__name__}")
    missing = [c for c in ("difference", "low", "high", "verdict") if c not in comparison.columns]
    if missing:
        raise ValueError(f"comparison lacks columns {missing} (pass the output of compare()); "
                         f"columns are {list(comparison.columns)}")
    if comparison.empty:
        raise ValueError("comparison has no rows; pass the output of compare()")
    attrs = comparison.attrs
    metric, baseline = attrs.get("metric", "metric"), attrs.get("baseline", "baseline")
    confidence = attrs.get("confidence", 0.95)
    if ax is None:
        ax = plt.subplots(figsize=(7.0, 1.2 + 0.45 * len(comparison)))[1]
    palette = sns.color_palette("colorblind")
    positions = list(range(len(comparison)))[::-1]  # first method on top
    for y, (_, row) in zip(positions, comparison.iterrows()):
        colour = palette[_VERDICT_COLOURS.get(row["verdict"], 0)]
        ax.errorbar(row["difference"], y, xerr=[[row["difference"] - row["low"]], [row["high"] - row["difference"]]],
                    fmt="o", color=colour, capsize=4, markersize=6, label=row["verdict"])
    ax.axvline(0, color="0.3", linestyle="--", linewidth=1)
    ax.set_yticks(positions, [str(name) for name in comparison.index])
    ax.set_ylim(-0.6, len(comparison) - 0.4)
    seeds = comparison["n"].unique() if "n" in comparison.columns else []
    over = f"{seeds[0]} paired seeds" if len(seeds) == 1 else "paired seeds"
    ax.set_xlabel(xlabel if xlabel is not None else
                  f"{metric_label(metric)} minus {baseline!s}\n({confidence:.0%} CI over {over})")
    ax.set_ylabel(str(comparison.index.name or ""))
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
              frameon=False)
    ax.set_title(title if title is not None else f"{metric_label(metric)}: difference to {baseline!s}")
    return ax
