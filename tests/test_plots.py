"""Plots draw what they are given: values read back from the axes against references."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import confusion_matrix

from toolkit.plots import (plot_class_balance, plot_confusion_matrix, plot_image_grid, plot_learning_curves,
                           plot_seed_distribution, set_theme)


@pytest.fixture(autouse=True)
def _close():
    set_theme()
    yield
    plt.close("all")


def test_learning_curves_draw_train_and_val_per_epoch():
    history = pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.3, 1.2]})
    ax = plot_learning_curves(history, "loss")
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
    assert sorted(tuple(line.get_ydata()) for line in lines) == [(2.0, 1.0, 0.5), (2.1, 1.3, 1.2)]


def test_learning_curves_have_human_labels():
    history = pd.DataFrame({"epoch": [0, 1], "train_acc": [0.5, 0.7], "val_acc": [0.4, 0.6]})
    ax = plot_learning_curves(history, "acc")
    assert ax.get_ylabel() == "accuracy" and ax.get_title() == "accuracy per epoch"
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["training", "validation"]


def test_learning_curves_reject_missing_metric():
    with pytest.raises(ValueError, match="train_acc"):
        plot_learning_curves(pd.DataFrame({"epoch": [0], "train_loss": [1.0]}), "acc")


def test_confusion_matrix_heatmap_equals_sklearn():
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (200,), generator=g)
    logits = torch.randn(200, 4, generator=g) + 2 * torch.nn.functional.one_hot(targets, 4)
    ax = plot_confusion_matrix(logits, targets, num_classes=4)
    drawn = np.asarray(ax.collections[0].get_array()).reshape(4, 4)
    expected = confusion_matrix(targets, logits.argmax(1), normalize="true")
    np.testing.assert_allclose(drawn, expected, atol=1e-6)


def test_seed_distribution_marks_the_mean():
    frame = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "acc": [0.9, 0.92, 0.94, 0.8, 0.82, 0.84],
                          "model": ["a"] * 3 + ["b"] * 3})
    ax = plot_seed_distribution(frame, "acc", by="model")
    means = sorted(y for line in ax.get_lines() for y in line.get_ydata() if len(line.get_ydata()) == 2)
    assert means == pytest.approx([0.82, 0.92])
    with pytest.raises(ValueError, match="columns"):
        plot_seed_distribution(frame, "loss")


def test_image_grid_shows_every_image_with_its_label():
    images = torch.rand(12, 1, 8, 8)
    fig = plot_image_grid(images, labels=torch.arange(12), ncols=5)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 12 and [ax.get_title() for ax in shown] == [str(i) for i in range(12)]
    np.testing.assert_allclose(shown[3].images[0].get_array(), images[3, 0].numpy())
    with pytest.raises(ValueError, match="one channel"):
        plot_image_grid(torch.rand(2, 3, 8, 8))


def test_class_balance_bars_are_shares():
    ax = plot_class_balance({"train": torch.tensor([0, 0, 0, 1]), "test": torch.tensor([0, 1])})
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0)
    assert heights == [0.25, 0.5, 0.5, 0.75]
