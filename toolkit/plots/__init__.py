"""Seaborn figures of the course: theme, images, learning curves, seed spread, confusion matrix."""

from toolkit.plots.core import (plot_class_balance, plot_confusion_matrix, plot_image_grid,
                                plot_learning_curves, plot_seed_distribution, set_theme)

__all__ = ["plot_class_balance", "plot_confusion_matrix", "plot_image_grid", "plot_learning_curves",
           "plot_seed_distribution", "set_theme"]
