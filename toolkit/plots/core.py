"""The course's core figures. Every function draws on ``ax`` (or a new figure) and returns the axes."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from torch import Tensor

__all__ = ["plot_class_balance", "plot_confusion_matrix", "plot_image_grid", "plot_learning_curves",
           "plot_seed_distribution", "set_theme"]

PALETTE = "colorblind"


CONTEXTS = ("paper", "notebook", "talk", "poster")  # seaborn's plotting contexts
NORMALIZE = ("true", "pred", "all", None)


def set_theme(context: str = "notebook") -> None:
    """Seaborn's whitegrid style with a colour-blind-safe palette, used by every notebook."""
    if context not in CONTEXTS:
        raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
    sns.set_theme(context=context, style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 90, "axes.titleweight": "bold", "figure.autolayout": True})


def _axes(ax: Axes | None, figsize: tuple[float, float] = (5.0, 3.5)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=figsize)[1]


def plot_learning_curves(history: pd.DataFrame, metric: str = "loss", ax: Axes | None = None) -> Axes:
    """``train_{metric}`` and ``val_{metric}`` per epoch from a run's ``history`` (see ``fit``)."""
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a DataFrame (FitResult.history), got {type(history).__name__}")
    columns = [c for c in (f"train_{metric}", f"val_{metric}") if c in history.columns]
    if not columns or "epoch" not in history.columns:
        raise ValueError(f"history has no epoch column or no train_{metric}/val_{metric} columns for metric "
                         f"{metric!r}; "
                         f"columns are {list(history.columns)}")
    from toolkit.stats import metric_label

    label = metric_label(metric)
    long = history.melt(id_vars="epoch", value_vars=columns, var_name="split", value_name=label)
    long["split"] = long["split"].map({f"train_{metric}": "training", f"val_{metric}": "validation"})
    ax = _axes(ax)
    sns.lineplot(data=long, x="epoch", y=label, hue="split", marker="o", ax=ax)
    ax.set_title(f"{label} per epoch")
    return ax


def plot_seed_distribution(frame: pd.DataFrame, metric: str, by: str | None = None,
                           ax: Axes | None = None) -> Axes:
    """One point per seed and the mean with its standard deviation, optionally per ``by`` group."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a DataFrame (from run_seeds), got {type(frame).__name__}")
    if metric not in frame.columns or (by is not None and by not in frame.columns):
        raise ValueError(f"frame needs columns metric={metric!r}{'' if by is None else f' and {by!r}'}; "
                         f"columns are {list(frame.columns)}")
    ax = _axes(ax)
    x = by if by is not None else None
    sns.stripplot(data=frame, x=x, y=metric, color="0.3", size=6, jitter=0.1, ax=ax)
    sns.pointplot(data=frame, x=x, y=metric, errorbar="sd", color="C3", markers="D", linestyle="none",
                  capsize=0.2, ax=ax)
    ax.set_title(f"{metric} over {frame['seed'].nunique() if 'seed' in frame else len(frame)} seeds")
    return ax


def plot_confusion_matrix(preds: Tensor, targets: Tensor, num_classes: int,
                          class_names: Sequence[str] | None = None, normalize: str | None = "true",
                          ax: Axes | None = None) -> Axes:
    """Confusion matrix (computed by torchmetrics) as a heatmap; rows are true classes.

    Args:
        preds: ``(N,)`` predicted class indices or ``(N, C)`` logits/probabilities.
        targets: ``(N,)`` true class indices.
        normalize: "true" (rows sum to 1), "pred", "all" or None (counts).
    """
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
    preds, targets = torch.as_tensor(preds), torch.as_tensor(targets)
    if targets.dim() != 1 or preds.shape[:1] != targets.shape:
        raise ValueError(f"targets must have shape ({len(preds)},) like preds, got {tuple(targets.shape)}")
    if targets.is_floating_point():
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
        raise ValueError(f"targets must be class indices in [0, {num_classes}), got range "
                         f"[{int(targets.min())}, {int(targets.max())}]")
    matrix = multiclass_confusion_matrix(torch.as_tensor(preds), torch.as_tensor(targets), num_classes,
                                         normalize=normalize).cpu().numpy()
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    ax = _axes(ax, figsize=(5.5, 4.5))
    sns.heatmap(matrix, annot=num_classes <= 12, fmt=".2f" if normalize else "d", cmap="Blues",
                xticklabels=names, yticklabels=names, cbar=False, square=True, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    return ax


def plot_image_grid(images: Tensor, labels: Sequence | Tensor | None = None, ncols: int = 10,
                    titles: Sequence[str] | None = None, cmap: str = "gray_r") -> plt.Figure:
    """Show images ``(N, 1, H, W)`` or ``(N, H, W)`` in a grid, titled by ``titles`` or ``labels``."""
    images = torch.as_tensor(images).detach().cpu()
    if images.dim() == 4:
        if images.shape[1] != 1:
            raise ValueError(f"images must have one channel, got shape {tuple(images.shape)}")
        images = images[:, 0]
    if images.dim() != 3:
        raise ValueError(f"images must have shape (N, H, W) or (N, 1, H, W), got {tuple(images.shape)}")
    # images in [0, 1] are drawn on that fixed scale, so a loss of contrast stays visible
    scale = {"vmin": 0.0, "vmax": 1.0} if images.numel() and images.min() >= 0 and images.max() <= 1 else {}
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be an integer >= 1, got {ncols!r}")
    n = len(images)
    for name, values in (("labels", labels), ("titles", titles)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name} must have one entry per image ({n}), got {len(values)}")
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.9, nrows * 1.05), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].numpy(), cmap=cmap, **scale)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
            elif labels is not None:
                ax.set_title(str(int(labels[i])), fontsize=9)
    return fig


def plot_class_balance(targets: dict[str, Tensor], class_names: Sequence[str] | None = None,
                       ax: Axes | None = None) -> Axes:
    """Share of each class per split, e.g. ``{"train": y_train, "val": y_val, "test": y_test}``."""
    if not isinstance(targets, dict) or not targets:
        raise TypeError(f"targets must be a non-empty dict of split name -> labels, got {type(targets).__name__}")
    rows = []
    for split, y in targets.items():
        values, counts = np.unique(np.asarray(y), return_counts=True)
        for v, c in zip(values, counts):
            rows.append({"split": split, "class": class_names[v] if class_names else str(v),
                         "share": c / counts.sum()})
    ax = _axes(ax, figsize=(7, 3))
    sns.barplot(data=pd.DataFrame(rows), x="class", y="share", hue="split", ax=ax)
    ax.set_title("class balance per split")
    return ax
