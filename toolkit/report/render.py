"""The report card as a seaborn dashboard, as markdown and as HTML."""

from __future__ import annotations

import html
import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from toolkit.report.card import METRICS, missing_axes, summarize_card

__all__ = ["card_html", "card_markdown", "plot_dashboard"]

_PANEL_COLUMNS = 4
_ARROWS = {True: "↑", False: "↓", None: ""}
_DASHBOARD_METRICS = ("accuracy", "ece", "ece_ts", "shift_accuracy", "shift_ece", "ood_auroc", "robust_accuracy",
                      "latency_ms")


def _check_frame(frame: object) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a report_card DataFrame (with a 'model' column), "
                        f"got {type(frame).__name__}")
    if "model" not in frame.columns:
        raise ValueError("frame must be a report_card DataFrame (with a 'model' column)")


def plot_dashboard(frame: pd.DataFrame, metrics: tuple[str, ...] = _DASHBOARD_METRICS) -> plt.Figure:
    """One panel per metric: a point per seed and the mean with its standard deviation, per model."""
    _check_frame(frame)
    metrics = [m for m in metrics if m in frame.columns]
    if not metrics:
        raise ValueError(f"frame has none of the metrics {list(metrics)}")
    rows = math.ceil(len(metrics) / _PANEL_COLUMNS)
    fig, axes = plt.subplots(rows, _PANEL_COLUMNS, figsize=(3.2 * _PANEL_COLUMNS, 2.8 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        label, higher, _ = METRICS[metric]
        sns.stripplot(data=frame, x="model", y=metric, hue="model", legend=False, size=5, jitter=0.1, alpha=0.6, ax=ax)
        sns.pointplot(data=frame, x="model", y=metric, errorbar="sd", color="0.2", markers="D", linestyle="none",
                      capsize=0.2, ax=ax)
        ax.set(title=f"{label} {_ARROWS[higher]}".strip(), xlabel="", ylabel="")
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.suptitle("model report card", fontweight="bold")
    return fig


def _best(means: pd.Series, higher: bool | None, quartiles: pd.DataFrame | None = None) -> str | None:
    """The model strictly better than every other at the shown precision; None on a tie or one model.

    With ``quartiles`` (latency: the mean ``latency_p25_ms`` and ``latency_p75_ms`` per model), the best
    must also be better than the others beyond timing noise: its upper quartile below their lower ones.
    """
    if higher is None or len(means) < 2:
        return None
    ordered = means.sort_values(ascending=not higher)
    if ordered.iloc[0] == ordered.iloc[1]:
        return None
    best = str(ordered.index[0])
    if quartiles is not None:
        others = quartiles.drop(index=best)
        if not (quartiles.loc[best, "latency_p75_ms"] < others["latency_p25_ms"]).all():
            return None
    return best


def _cells(frame: pd.DataFrame) -> tuple[list[str], list[str], list[list[str]]]:
    summary = summarize_card(frame)
    models = list(summary.index)
    metrics = [m for m in METRICS if (m, "mean") in summary.columns]
    seeds = frame.groupby("model", sort=False).size()
    rows = []
    for metric in metrics:
        label, higher, notebook = METRICS[metric]
        means = summary[(metric, "mean")]
        digits = 0 if metric == "parameters" else (2 if metric in ("latency_ms", "size_kb", "temperature") else 3)
        quartiles = None
        if metric == "latency_ms" and {"latency_p25_ms", "latency_p75_ms"} <= set(frame.columns):
            quartiles = frame.groupby("model", sort=False)[["latency_p25_ms", "latency_p75_ms"]].mean()
        best = _best(means.round(digits), higher, quartiles)
        cells = []
        for model in models:
            mean, std = means[model], summary.loc[model, (metric, "std")]
            text = f"{mean:,.{digits}f}" + (f" ± {std:.{digits}f}" if seeds[model] > 1 and not math.isnan(std) else "")
            cells.append(text + (" ★" if model == best else ""))
        rows.append([f"{label} {_ARROWS[higher]}".strip(), notebook] + cells)
    return models, [f"{m} ({seeds[m]} seed{'s' if seeds[m] > 1 else ''})" for m in models], rows


def _notes() -> list[str]:
    return [f"`{module}` is not available here: columns {', '.join(metrics)} are left out."
            for module, metrics in missing_axes().items()]


def card_markdown(frame: pd.DataFrame, title: str = "Model report card") -> str:
    """The card as a markdown table: metric, the notebook that teaches it, mean ± std per model (★: strictly
    best at the shown precision, and for latency beyond the timing spread; no ★ on a tie)."""
    _check_frame(frame)
    _, headers, rows = _cells(frame)
    lines = [f"## {title}", "", "| metric | notebook | " + " | ".join(headers) + " |",
             "|---|---|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    notes = _notes()
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def card_html(frame: pd.DataFrame, title: str = "Model report card") -> str:
    """The card as a standalone HTML table (escaped; no scripts), for a browser or an email."""
    _check_frame(frame)
    _, headers, rows = _cells(frame)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["metric", "notebook", *headers])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes())
    return (f"<h2>{html.escape(title)}</h2><table border='1' style='border-collapse:collapse'>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            + (f"<ul>{notes}</ul>" if notes else ""))
