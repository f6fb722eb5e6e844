"""Plain ``nn.Module`` models of the course; normalization and dropout are constructor arguments."""

from toolkit.models._layers import NORMS, DropoutSpec, make_dropout, make_norm
from toolkit.models.cnn import SmallCNN
from toolkit.models.cnn1d import CNN1D, GRUClassifier
from toolkit.models.mlp import MLP
from toolkit.models.moe import MoE, MoEMLP, expert_fractions, load_balancing_loss
from toolkit.models.resnet import PreActBlock, ResNet
from toolkit.models.transformer import SelfAttention, SequenceTransformer, TransformerBlock
from toolkit.models.vit import TinyViT

__all__ = [
    "CNN1D",
    "GRUClassifier",
    "MLP",
    "NORMS",
    "DropoutSpec",
    "MoE",
    "MoEMLP",
    "PreActBlock",
    "ResNet",
    "SelfAttention",
    "SequenceTransformer",
    "SmallCNN",
    "TinyViT",
    "TransformerBlock",
    "expert_fractions",
    "load_balancing_loss",
    "make_dropout",
    "make_norm",
]
