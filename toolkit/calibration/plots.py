"""Seaborn figures of notebook 03: reliability diagram, ECE under shift, OOD scores, risk-coverage.

Every function draws on the given axes (or new ones) and returns them.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from torch import Tensor

from toolkit.calibration.metrics import reliability_bins
from toolkit.calibration.selective import aurc, risk_coverage_curve

__all__ = ["plot_ece_vs_severity", "plot_ood_scores", "plot_reliability_diagram", "plot_risk_coverage"]


def plot_reliability_diagram(probs: Tensor, targets: Tensor, n_bins: int = 15,
                             axes: tuple[Axes, Axes] | None = None, title: str = "",
                             show_counts: bool = True) -> tuple[Axes, Axes]:
    """Accuracy vs. confidence per bin (gap to the diagonal shaded) above a histogram of confidences.

    Guo et al., 2017, "On Calibration of Modern Neural Networks", figure 1. The title shows the ECE
    of the same bins.

    Args:
        probs: ``(N, C)`` probabilities; targets: ``(N,)`` class indices.
        n_bins: equal-width bins.
        axes: ``(top, bottom)`` axes to draw on; default a new 4x5 figure.
        show_counts: write each non-empty bin's number of samples above its histogram bar (a bin
            of 3 samples has an accuracy that says little).
    """
    if not isinstance(show_counts, bool):
        raise TypeError(f"show_counts must be True or False, got {show_counts!r}")
    bins = reliability_bins(probs, targets, n_bins)
    if axes is None:
        _, axes = plt.subplots(2, 1, figsize=(4.2, 5), sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    top, bottom = axes
    centres = ((bins.lower + bins.upper) / 2).numpy()
    width = 1.0 / n_bins
    filled = bins.count.numpy() > 0
    accuracy, confidence = bins.accuracy.numpy(), bins.confidence.numpy()
    top.bar(centres[filled], accuracy[filled], width=width, edgecolor="0.2", color="C0", label="accuracy")
    top.bar(centres[filled], (confidence - accuracy)[filled], bottom=accuracy[filled], width=width,
            color="C3", alpha=0.35, edgecolor="C3", label="gap to confidence")
    top.plot([0, 1], [0, 1], "--", color="0.4", lw=1)
    top.set(ylim=(0, 1), xlim=(0, 1), ylabel="accuracy",
            title=f"{title + ': ' if title else ''}ECE {bins.ece.item():.3f}")
    top.legend(loc="upper left", fontsize="small")
    share = bins.count.numpy() / bins.count.sum().item()
    bottom.bar(centres, share, width=width, color="0.55", edgecolor="0.2")
    bottom.set(xlim=(0, 1), ylim=(0, 1.25), xlabel="confidence (max probability)", ylabel="share")
    if show_counts:
        for centre, fraction, count in zip(centres[filled], share[filled], bins.count.numpy()[filled]):
            bottom.text(centre, fraction + 0.03, f"{int(count)}", ha="center", va="bottom", fontsize=6, rotation=90)
    return top, bottom


def plot_ece_vs_severity(frame: pd.DataFrame, y: str = "ece", hue: str = "method", x: str = "severity",
                         style: str | None = None, ax: Axes | None = None) -> Axes:
    """A metric (ECE by default) against shift severity, one line per ``hue`` (e.g. method).

    Args:
        frame: long table with columns ``x``, ``y``, ``hue`` (and ``style``); severity 0 = clean.
    """
    missing = [c for c in (x, y, hue, style) if c is not None and c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; columns are {list(frame.columns)}")
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.5))[1]
    sns.lineplot(data=frame, x=x, y=y, hue=hue, style=style, marker="o", errorbar=None, ax=ax)
    ax.set_title(f"{y} vs. {x}")
    return ax


def plot_ood_scores(scores_in: Tensor, scores_out: Tensor, score_name: str = "score",
                    ax: Axes | None = None, bins: int = 30) -> Axes:
    """Histograms (densities) of a score on in-distribution and OOD inputs."""
    frame = pd.DataFrame({score_name: np.concatenate([scores_in.double().numpy(), scores_out.double().numpy()]),
                          "data": ["in-distribution"] * len(scores_in) + ["OOD"] * len(scores_out)})
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.2))[1]
    sns.histplot(data=frame, x=score_name, hue="data", stat="density", common_norm=False, bins=bins,
                 element="step", ax=ax)
    ax.set_title(f"{score_name}: in-distribution vs. OOD")
    return ax


def plot_risk_coverage(curves: Mapping[str, tuple[Tensor, Tensor]], ax: Axes | None = None) -> Axes:
    """Risk-coverage curves, one per entry ``name -> (confidences, correct)``; the legend gives the AURC."""
    rows = []
    for name, (confidences, correct) in curves.items():
        coverage, risk = risk_coverage_curve(confidences, correct)
        label = f"{name} (AURC {aurc(confidences, correct):.3f})"
        rows.append(pd.DataFrame({"coverage": coverage.numpy(), "risk": risk.numpy(), "confidence": label}))
    ax = ax if ax is not None else plt.subplots(figsize=(5, 3.5))[1]
    sns.lineplot(data=pd.concat(rows), x="coverage", y="risk", hue="confidence", errorbar=None, ax=ax)
    ax.set_title("risk-coverage (abstain on the least confident)")
    return ax
