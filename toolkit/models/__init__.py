"""Plain ``nn.Module`` models of the course; normalization and dropout are constructor arguments."""

from toolkit.models._layers import NORMS, DropoutSpec, make_dropout, make_norm
from toolkit.models.cnn import SmallCNN
from toolkit.models.mlp import MLP
from toolkit.models.resnet import PreActBlock, ResNet

__all__ = ["MLP", "NORMS", "DropoutSpec", "PreActBlock", "ResNet", "SmallCNN", "make_dropout", "make_norm"]
