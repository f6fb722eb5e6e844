"""A tiny Vision Transformer over the digits' patches, with pre-LN or post-LN blocks and optional qk-layernorm.

Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words", arXiv:2010.11929 (the ViT); Xiong et al.,
2020, "On Layer Normalization in the Transformer Architecture", arXiv:2002.04745 (pre-LN vs post-LN);
Dehghani et al., 2023, "Scaling Vision Transformers to 22 Billion Parameters", arXiv:2302.05442
(qk-layernorm).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.models._layers import check_positive_int

__all__ = ["NORM_POSITIONS", "POOLS", "TinyViT"]

NORM_POSITIONS = ("pre", "post")
POOLS = ("cls", "mean")
POS_EMBED_STD = 0.02  # ViT's truncated-normal init of the position embedding and class token


class TinyViT(nn.Module):
    """A small ViT: patch embedding, learned position embedding, transformer blocks, linear head.

    The image is cut into non-overlapping ``patch_size x patch_size`` patches by a ``Conv2d`` with
    ``stride=patch_size``; each patch becomes a token of width ``dim``. The blocks are PyTorch's
    ``nn.TransformerEncoderLayer`` (multi-head self-attention and a GELU MLP), with the layer norm
    placed by ``norm_position``:

    - ``"post"`` (the original Transformer): ``x = LN(x + attn(x)); x = LN(x + mlp(x))``. Every block
      output is normalized, so the residual stream cannot carry the input through untouched; Xiong et al.
      show its gradients near the output are large at initialization, so it needs a warmup.
    - ``"pre"``: ``x = x + attn(LN(x)); x = x + mlp(LN(x))``, with a final ``LN`` before the head. The
      residual path is an identity, and the model trains without warmup at larger learning rates.

    With ``qk_norm=True`` the blocks are :class:`toolkit.models.TransformerBlock` s, whose attention
    layer-normalizes queries and keys before their dot product (Dehghani et al. 2023) and keeps its
    largest logit for :class:`toolkit.stability.AttentionLogitMonitor`; otherwise PyTorch's
    ``nn.TransformerEncoderLayer`` (the same computation without the two norms).

    Args:
        image_size: side of the square input image, divisible by ``patch_size`` (8 or 16 for the digits).
        patch_size: side of a patch, ``>= 1``.
        in_channels: image channels (1 for the digits).
        num_classes: output logits.
        dim: token width, divisible by ``heads``.
        depth: number of transformer blocks, ``>= 1``.
        heads: attention heads, ``>= 1``.
        mlp_ratio: hidden width of the block's MLP over ``dim``, ``> 0``.
        norm_position: "pre" or "post".
        dropout: dropout inside the blocks and after the embedding, in ``[0, 1)``.
        pool: "cls" (a learned class token, read out after the blocks) or "mean" (average of the tokens).
        qk_norm: layer-normalize queries and keys in every block's attention.

    Example:
        >>> TinyViT(image_size=8, patch_size=2, dim=32, depth=2, heads=4)(torch.randn(5, 1, 8, 8)).shape
        torch.Size([5, 10])
        >>> TinyViT(qk_norm=True).blocks[0].attn.qk_norm
        True
    """

    def __init__(self, image_size: int = 8, patch_size: int = 2, in_channels: int = 1, num_classes: int = 10,
                 dim: int = 32, depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0,
                 norm_position: str = "pre", dropout: float = 0.0, pool: str = "cls", qk_norm: bool = False) -> None:
        super().__init__()
        for name, value in (("image_size", image_size), ("patch_size", patch_size), ("in_channels", in_channels),
                            ("num_classes", num_classes), ("dim", dim), ("depth", depth), ("heads", heads)):
            check_positive_int(name, value)
        if image_size % patch_size:
            raise ValueError(f"image_size must be divisible by patch_size, got image_size={image_size} "
                             f"and patch_size={patch_size}")
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim} and heads={heads}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) \
                or not 0 < mlp_ratio < float("inf"):
            raise ValueError(f"mlp_ratio must be a number > 0, got {mlp_ratio!r}")
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be one of {NORM_POSITIONS}, got {norm_position!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if not isinstance(qk_norm, bool):
            raise TypeError(f"qk_norm must be True or False, got {qk_norm!r}")
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.num_classes, self.dim, self.depth, self.heads = num_classes, dim, depth, heads
        self.norm_position, self.pool, self.qk_norm = norm_position, pool, qk_norm
        self.num_patches = (image_size // patch_size) ** 2
        num_tokens = self.num_patches + (pool == "cls")

        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(nn.init.trunc_normal_(
            torch.empty(1, 1, dim), std=POS_EMBED_STD)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(
            torch.empty(1, num_tokens, dim), std=POS_EMBED_STD))
        self.embed_drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if qk_norm:
            from toolkit.models.transformer import TransformerBlock  # it imports this module's constants

            self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, norm_position, qk_norm=True,
                                                         dropout=dropout) for _ in range(depth))
        else:
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(dim, heads, dim_feedforward=max(1, round(dim * mlp_ratio)), dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=norm_position == "pre")
                for _ in range(depth))
        self.norm: nn.Module = nn.LayerNorm(dim) if norm_position == "pre" else nn.Identity()
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, x: Tensor) -> Tensor:
        """The embedded tokens ``(N, num_tokens, dim)`` before the blocks (class token first if any)."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"x must have shape (batch, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        return self.embed_drop(tokens + self.pos_embed)

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled, normalized representation ``(N, dim)`` that the head reads."""
        tokens = self.tokens(x)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        return tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    def extra_repr(self) -> str:
        return (f"image_size={self.image_size}, patch_size={self.patch_size}, num_classes={self.num_classes}, "
                f"dim={self.dim}, depth={self.depth}, heads={self.heads}, norm_position={self.norm_position!r}, "
                f"pool={self.pool!r}, qk_norm={self.qk_norm}")
