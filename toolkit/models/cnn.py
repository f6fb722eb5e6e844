"""A small convolutional network for the digits, with swappable normalization and dropout."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from toolkit.models._layers import (DropoutSpec, check_dropout, check_norm, check_positive_int,
                                    check_positive_ints, make_dropout, make_norm)

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """``[Conv3x3 -> norm -> ReLU -> MaxPool2] * len(channels) -> global average -> dropout -> Linear``.

    Global average pooling makes it work at any image size (8, 16 or 32 for the digits).

    Args:
        in_channels: input channels (1 for the digits).
        num_classes: output logits.
        channels: output channels of each stage.
        norm: "batch", "layer", "group" or "none".
        dropout: probability for ``nn.Dropout`` before the classifier, in ``[0, 1)``, or a factory.

    Example:
        >>> SmallCNN(num_classes=10)(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (32, 64),
                 norm: str = "batch", dropout: DropoutSpec = 0.0) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        check_positive_ints("channels", channels, allow_empty=False)
        channels = tuple(channels)
        check_positive_ints("channels", channels)
        check_norm(norm)
        check_dropout(dropout)
        self.in_channels, self.num_classes, self.norm = in_channels, num_classes, norm
        layers: list[nn.Module] = []
        width = in_channels
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, padding=1, bias=norm == "none"),
                       make_norm(norm, out, spatial=True), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2, ceil_mode=True)]
            width = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = make_dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)
        self.num_features = width

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SmallCNN expects images (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        return self.classifier(self.dropout(self.pool(self.features(x))))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, num_classes={self.num_classes}, norm={self.norm!r}"
