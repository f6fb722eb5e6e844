"""Models for 1-D signals (MNIST-1D): a strided 1-D CNN and a small bidirectional GRU.

After the baselines of Greydanus, 2020, "Scaling down deep learning" (arXiv:2011.14439): with
4,000 MNIST-1D training samples the CNN (``ConvBase``: three strided convolutions of 25 channels,
then one linear layer) reaches about 94% test accuracy and the GRU about 91%, against about 68% for
an MLP and 32% for logistic regression.

Example:
    >>> CNN1D()(torch.randn(8, 40)).shape, GRUClassifier()(torch.randn(8, 1, 40)).shape
    (torch.Size([8, 10]), torch.Size([8, 10]))
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from toolkit.models._layers import (DropoutSpec, check_dropout, check_norm, check_positive_int,
                                    check_positive_ints, make_dropout, make_norm)

__all__ = ["CNN1D", "GRUClassifier"]

_STRIDE, _PADDING = 2, 1


def _as_sequences(x: Tensor, channels: int, seq_length: int, model: str) -> Tensor:
    """``(N, L)`` (one channel) or ``(N, C, L)`` to ``(N, C, L)``; anything else is refused."""
    if x.dim() == 2 and channels == 1:
        x = x.unsqueeze(1)
    if x.dim() != 3 or x.shape[1] != channels or x.shape[2] != seq_length:
        expected = f"(N, {seq_length}) or (N, 1, {seq_length})" if channels == 1 else f"(N, {channels}, {seq_length})"
        raise ValueError(f"{model} expects signals of shape {expected}, got shape {tuple(x.shape)}")
    return x


def _norm_1d(norm: str, channels: int) -> nn.Module:
    """Normalization over ``(N, C, L)`` feature maps: BatchNorm1d, or group/layer norm over (C, L)."""
    return nn.BatchNorm1d(channels) if norm == "batch" else make_norm(norm, channels, spatial=True)


class CNN1D(nn.Module):
    """``[Conv1d(stride 2, padding 1) -> norm -> ReLU] * len(channels) -> flatten -> dropout -> Linear``.

    The defaults are Greydanus's ``ConvBase`` for MNIST-1D (arXiv:2011.14439): 25 channels, kernels
    5, 3, 3, stride 2, padding 1, no normalization, a linear classifier on the flattened
    ``25 x 5`` features (the positions are kept: it is not translation invariant).

    Args:
        seq_length: positions per input signal, ``>= 1`` (40 for MNIST-1D).
        num_classes: output logits.
        in_channels: input channels; with 1, inputs may also be ``(N, seq_length)``.
        channels: output channels of each convolution.
        kernel_sizes: kernel of each convolution (as many as ``channels``).
        norm: "batch", "layer", "group" or "none" (the paper: none).
        dropout: probability for ``nn.Dropout`` before the classifier, in ``[0, 1)``, or a factory.

    Example:
        >>> CNN1D(seq_length=40, num_classes=10)(torch.randn(2, 1, 40)).shape
        torch.Size([2, 10])
    """

    def __init__(self, seq_length: int = 40, num_classes: int = 10, in_channels: int = 1,
                 channels: Sequence[int] = (25, 25, 25), kernel_sizes: Sequence[int] = (5, 3, 3),
                 norm: str = "none", dropout: DropoutSpec = 0.0) -> None:
        super().__init__()
        check_positive_int("seq_length", seq_length)
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        channels, kernel_sizes = tuple(channels), tuple(kernel_sizes)
        check_positive_ints("channels", channels)
        check_positive_ints("kernel_sizes", kernel_sizes)
        if len(kernel_sizes) != len(channels):
            raise ValueError(f"kernel_sizes must give one kernel per layer of channels ({len(channels)}), "
                             f"got {kernel_sizes!r}")
        check_norm(norm)
        check_dropout(dropout)
        length = seq_length
        for kernel in kernel_sizes:
            length = (length + 2 * _PADDING - kernel) // _STRIDE + 1
            if length < 1:
                raise ValueError(f"seq_length={seq_length} is too short for kernel_sizes={kernel_sizes} "
                                 f"at stride {_STRIDE}: a layer would have no output position")
        self.seq_length, self.num_classes, self.in_channels, self.norm = seq_length, num_classes, in_channels, norm
        layers: list[nn.Module] = []
        width = in_channels
        for out, kernel in zip(channels, kernel_sizes):
            layers += [nn.Conv1d(width, out, kernel, stride=_STRIDE, padding=_PADDING, bias=norm == "none"),
                       _norm_1d(norm, out), nn.ReLU(inplace=True)]
            width = out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.num_features = width * length
        self.dropout = make_dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = _as_sequences(x, self.in_channels, self.seq_length, "CNN1D")
        return self.classifier(self.dropout(self.features(x)))

    def extra_repr(self) -> str:
        return (f"seq_length={self.seq_length}, num_classes={self.num_classes}, in_channels={self.in_channels}, "
                f"norm={self.norm!r}")


class GRUClassifier(nn.Module):
    """A (bidirectional) GRU over the positions, then a linear layer on every step's hidden state.

    The defaults are Greydanus's ``GRUBase`` for MNIST-1D (arXiv:2011.14439): one bidirectional
    layer of 6 hidden units reading one value per step, and a linear classifier on the
    concatenated outputs of all 40 steps. Recurrent layers take no ``norm``; ``dropout`` acts
    before the classifier (and between stacked layers when ``num_layers > 1``, as ``nn.GRU`` does).

    Args:
        seq_length: steps per input signal, ``>= 1`` (40 for MNIST-1D).
        num_classes: output logits.
        in_channels: values per step; with 1, inputs may also be ``(N, seq_length)``.
        hidden_size: GRU units per direction, ``>= 1``.
        num_layers: stacked GRU layers, ``>= 1``.
        bidirectional: read the signal in both directions.
        dropout: probability in ``[0, 1)`` (or a factory of a layer, used before the classifier only).

    Example:
        >>> GRUClassifier(hidden_size=8)(torch.randn(3, 40)).shape
        torch.Size([3, 10])
    """

    def __init__(self, seq_length: int = 40, num_classes: int = 10, in_channels: int = 1, hidden_size: int = 6,
                 num_layers: int = 1, bidirectional: bool = True, dropout: DropoutSpec = 0.0) -> None:
        super().__init__()
        for name, value in (("seq_length", seq_length), ("num_classes", num_classes), ("in_channels", in_channels),
                            ("hidden_size", hidden_size), ("num_layers", num_layers)):
            check_positive_int(name, value)
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional must be a bool, got {bidirectional!r}")
        check_dropout(dropout)
        self.seq_length, self.num_classes, self.in_channels = seq_length, num_classes, in_channels
        self.hidden_size, self.bidirectional = hidden_size, bidirectional
        between = dropout if not callable(dropout) and num_layers > 1 else 0.0
        self.gru = nn.GRU(in_channels, hidden_size, num_layers=num_layers, batch_first=True,
                          bidirectional=bidirectional, dropout=between)
        self.num_features = seq_length * hidden_size * (2 if bidirectional else 1)
        self.dropout = make_dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = _as_sequences(x, self.in_channels, self.seq_length, "GRUClassifier")
        outputs, _ = self.gru(x.transpose(1, 2))          # (N, L, directions * hidden), zero initial state
        return self.classifier(self.dropout(outputs.flatten(1)))

    def extra_repr(self) -> str:
        return (f"seq_length={self.seq_length}, num_classes={self.num_classes}, hidden_size={self.hidden_size}, "
                f"bidirectional={self.bidirectional}")
