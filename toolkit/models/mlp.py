"""A multilayer perceptron with swappable normalization and dropout."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from toolkit.models._layers import (DropoutSpec, check_dropout, check_norm, check_positive_int,
                                    check_positive_ints, make_dropout, make_norm)

__all__ = ["MLP"]


class MLP(nn.Module):
    """Fully connected classifier: ``[Linear -> norm -> ReLU -> dropout] * len(hidden_sizes) -> Linear``.

    Inputs of any shape ``(N, ...)`` are flattened to ``(N, in_features)``.

    Args:
        in_features: input features after flattening (64 for 8x8 digits).
        num_classes: output logits.
        hidden_sizes: width of each hidden layer; empty for logistic regression.
        norm: "batch", "layer", "group" or "none".
        dropout: probability for ``nn.Dropout`` in ``[0, 1)``, or a factory of any layer.

    Example:
        >>> MLP(64, 10, hidden_sizes=(32,))(torch.randn(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """

    def __init__(self, in_features: int, num_classes: int, hidden_sizes: Sequence[int] = (256, 128),
                 norm: str = "none", dropout: DropoutSpec = 0.0) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("num_classes", num_classes)
        check_positive_ints("hidden_sizes", hidden_sizes, allow_empty=True)
        hidden_sizes = tuple(hidden_sizes)
        check_positive_ints("hidden_sizes", hidden_sizes, allow_empty=True)
        check_norm(norm)
        check_dropout(dropout)
        self.in_features, self.num_classes, self.norm = in_features, num_classes, norm
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden, bias=norm == "none"), make_norm(norm, hidden, spatial=False),
                       nn.ReLU(inplace=True), make_dropout(dropout)]
            width = hidden
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)
        self.num_features = width

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"MLP expects {self.in_features} input features, got input of shape "
                             f"{tuple(x.shape)} after flattening")
        return self.classifier(self.features(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, norm={self.norm!r}"
