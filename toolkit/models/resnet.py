"""A small pre-activation ResNet (He et al., 2016, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027) with configurable depth, width, normalization, dropout and stochastic depth."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from toolkit.models._layers import (DropoutSpec, check_dropout, check_norm, check_positive_int,
                                    check_positive_ints, make_dropout, make_norm)
from toolkit.regularization.drop import DropPath, drop_path_rates

__all__ = ["PreActBlock", "ResNet"]


class PreActBlock(nn.Module):
    """``x + drop_path(conv(relu(norm(conv(relu(norm(x)))))))``, with a 1x1 projection when the shape
    changes; ``drop_path_rate`` > 0 skips the residual branch for that share of the samples in training."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("stride", stride)):
            check_positive_int(name, value)
        check_norm(norm)
        self.norm1 = make_norm(norm, in_channels, spatial=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels, spatial=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.drop_path: nn.Module = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def residual(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu(self.norm2(self.conv1(self.relu(self.norm1(x))))))

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.drop_path(self.residual(x))


class ResNet(nn.Module):
    """Stem conv, stages of pre-activation blocks (width doubling, stride 2 from the second stage),
    final norm and ReLU, global average pooling, dropout and a linear classifier.

    Args:
        in_channels: input channels (1 for the digits).
        num_classes: output logits.
        blocks_per_stage: residual blocks in each stage; depth = 2 * sum + 2 layers.
        width: channels of the first stage.
        norm: "batch", "layer", "group" or "none".
        dropout: probability for ``nn.Dropout`` before the classifier, in ``[0, 1)``, or a factory.
        drop_path_rate: stochastic depth (Huang et al., 2016, arXiv:1603.09382) of the last block, in
            ``[0, 1)``; block ``l`` of ``L`` drops its residual branch with ``l / L * drop_path_rate``
            (the linear decay rule, :func:`toolkit.regularization.drop_path_rates`). 0 turns it off.

    Example:
        >>> ResNet(num_classes=10, blocks_per_stage=(1, 1))(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, blocks_per_stage: Sequence[int] = (2, 2),
                 width: int = 16, norm: str = "batch", dropout: DropoutSpec = 0.0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        check_positive_ints("blocks_per_stage", blocks_per_stage, allow_empty=False)
        blocks_per_stage = tuple(blocks_per_stage)
        check_positive_ints("blocks_per_stage", blocks_per_stage)
        check_norm(norm)
        check_dropout(dropout)
        rates = drop_path_rates(sum(blocks_per_stage), drop_path_rate)
        self.in_channels, self.num_classes, self.norm = in_channels, num_classes, norm
        self.blocks_per_stage = blocks_per_stage
        self.drop_path_rate = float(drop_path_rate)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        channels = width
        for stage, n_blocks in enumerate(blocks_per_stage):
            out = width * 2**stage
            for block in range(n_blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(PreActBlock(channels, out, stride, norm, drop_path_rate=rates[len(blocks)]))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(make_norm(norm, channels, spatial=True), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = make_dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet expects images (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        return self.classifier(self.dropout(self.head(self.blocks(self.stem(x)))))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, num_classes={self.num_classes}, "
                f"blocks_per_stage={self.blocks_per_stage}, norm={self.norm!r}"
                + (f", drop_path_rate={self.drop_path_rate}" if self.drop_path_rate else ""))
