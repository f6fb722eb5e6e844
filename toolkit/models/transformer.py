"""A small transformer over 1-D signals (MNIST-1D), with pre-LN or post-LN blocks and optional qk-layernorm.

Vaswani et al., 2017, "Attention Is All You Need", arXiv:1706.03762 (the block); Xiong et al., 2020,
"On Layer Normalization in the Transformer Architecture", arXiv:2002.04745 (pre-LN vs post-LN);
Dehghani et al., 2023, "Scaling Vision Transformers to 22 Billion Parameters", arXiv:2302.05442, and
Wortsman et al., 2023, "Small-scale proxies for large-scale Transformer training instabilities",
arXiv:2309.14322 (qk-layernorm against attention-logit growth).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from toolkit.models._layers import check_positive_int
from toolkit.models.vit import NORM_POSITIONS, POOLS, POS_EMBED_STD

__all__ = ["SelfAttention", "SequenceTransformer", "TransformerBlock"]


def check_dropout(dropout: float) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")


def short_row_softmax(logits: Tensor) -> Tensor:
    r"""Softmax over the last dimension, the same numbers as ``Tensor.softmax(-1)``, faster for short rows.

    On the CPU, PyTorch's softmax kernel and its backward are vectorized along the row, and rows
    shorter than 16 (attention over the course's 11 tokens) take a slow path: forward and backward
    cost about twice the composite :math:`e^{z - \max z} / \sum e^{z - \max z}`
    (``benchmarks/bench_attention.py``). The composite is used there; every other case calls
    ``softmax``. The maximum is detached: subtracting it changes no output, so it has no gradient.
    """
    if logits.shape[-1] >= 16 or logits.device.type != "cpu":
        return logits.softmax(dim=-1)
    exp = (logits - logits.detach().amax(dim=-1, keepdim=True)).exp()
    return exp / exp.sum(dim=-1, keepdim=True)


class SelfAttention(nn.Module):
    r"""Multi-head self-attention that keeps its largest attention logit, with optional qk-layernorm.

    Logits :math:`z_{ij} = q_i^\top k_j / \sqrt{d_h}` per head; with ``qk_norm`` the queries and keys
    are layer-normalized over the head dimension first, :math:`q \leftarrow \mathrm{LN}(q)`,
    :math:`k \leftarrow \mathrm{LN}(k)` (Dehghani et al. 2023), which bounds :math:`|z_{ij}|` by the
    norm scales instead of by the weights, which can grow. After each forward pass :attr:`max_logit`
    holds :math:`\max_{ij} z_{ij}` over the batch and heads (a detached 0-d tensor, no device sync),
    which :class:`toolkit.stability.AttentionLogitMonitor` logs, and :attr:`max_abs_logit` holds
    :math:`\max_{ij} |z_{ij}|`: the largest logit can be negative (a learned layer-norm gain that has
    changed sign), its magnitude cannot, so the magnitude is what a log scale can show.

    Args:
        dim: token width, divisible by ``heads``.
        heads: attention heads, ``>= 1``.
        qk_norm: layer-normalize queries and keys (per head).
        dropout: dropout on the attention weights in training, in ``[0, 1)`` (as ``nn.MultiheadAttention``).

    Example:
        >>> attn = SelfAttention(16, heads=2, qk_norm=True); attn(torch.randn(3, 10, 16)).shape
        torch.Size([3, 10, 16])
    """

    def __init__(self, dim: int, heads: int, qk_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        check_dropout(dropout)
        check_positive_int("dim", dim)
        check_positive_int("heads", heads)
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim} and heads={heads}")
        if not isinstance(qk_norm, bool):
            raise TypeError(f"qk_norm must be True or False, got {qk_norm!r}")
        self.dim, self.heads, self.head_dim, self.qk_norm = dim, heads, dim // heads, qk_norm
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.q_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.attn_drop: nn.Module = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.max_logit: Tensor | None = None
        self.max_abs_logit: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        logits = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # explicit, so the logits can be read
        self.max_logit = logits.detach().amax()
        self.max_abs_logit = logits.detach().abs().amax()
        out = self.attn_drop(short_row_softmax(logits)) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, self.dim))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, qk_norm={self.qk_norm}"


class TransformerBlock(nn.Module):
    """Self-attention and a GELU MLP, each in a residual branch, with the layer norm placed by ``norm_position``.

    ``"post"``: ``x = LN(x + attn(x)); x = LN(x + mlp(x))``; ``"pre"``: ``x = x + attn(LN(x));
    x = x + mlp(LN(x))``: ``nn.TransformerEncoderLayer(norm_first=...)`` with GELU, dropout in the same
    places (attention weights, each branch's output, the MLP's hidden layer).

    Args:
        dim, heads, qk_norm: see :class:`SelfAttention`.
        mlp_ratio: hidden width of the MLP over ``dim``, ``> 0``.
        norm_position: "pre" or "post".
        dropout: dropout probability in ``[0, 1)``.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, norm_position: str = "pre",
                 qk_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be one of {NORM_POSITIONS}, got {norm_position!r}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not 0 < mlp_ratio < math.inf:
            raise ValueError(f"mlp_ratio must be a number > 0, got {mlp_ratio!r}")
        self.norm_position = norm_position
        self.attn = SelfAttention(dim, heads, qk_norm, dropout)
        hidden = max(1, round(dim * mlp_ratio))
        drop = (lambda: nn.Dropout(dropout)) if dropout > 0 else nn.Identity
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), drop(), nn.Linear(hidden, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = drop(), drop()

    def forward(self, x: Tensor) -> Tensor:
        if self.norm_position == "pre":
            x = x + self.drop1(self.attn(self.norm1(x)))
            return x + self.drop2(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop1(self.attn(x)))
        return self.norm2(x + self.drop2(self.mlp(x)))


class SequenceTransformer(nn.Module):
    """A small transformer classifier over a 1-D signal cut into ``patch_size`` patches (tokens).

    MNIST-1D's 40-sample signal with ``patch_size=4`` gives 10 tokens (plus a class token with
    ``pool="cls"``). Each patch is embedded by a ``Conv1d`` with ``stride=patch_size``, a learned
    position embedding is added, then ``depth`` :class:`TransformerBlock` s and a linear head (a final
    layer norm for pre-LN).

    Args:
        seq_length: samples of the signal, divisible by ``patch_size``.
        patch_size: samples per token, ``>= 1``.
        in_channels: signal channels (1 for MNIST-1D; inputs ``(N, L)`` or ``(N, C, L)``).
        num_classes: output logits.
        dim: token width, divisible by ``heads``.
        depth: blocks, ``>= 1``.
        heads: attention heads, ``>= 1``.
        mlp_ratio: MLP width over ``dim``, ``> 0``.
        norm_position: "pre" or "post".
        qk_norm: layer-normalize queries and keys in every block.
        pool: "cls" or "mean".

    Example:
        >>> model = SequenceTransformer(seq_length=40, patch_size=4, qk_norm=True)
        >>> model(torch.randn(5, 40)).shape, model.num_tokens
        (torch.Size([5, 10]), 11)
    """

    def __init__(self, seq_length: int = 40, patch_size: int = 4, in_channels: int = 1, num_classes: int = 10,
                 dim: int = 32, depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0, norm_position: str = "pre",
                 qk_norm: bool = False, pool: str = "cls") -> None:
        super().__init__()
        for name, value in (("seq_length", seq_length), ("patch_size", patch_size), ("in_channels", in_channels),
                            ("num_classes", num_classes), ("dim", dim), ("depth", depth), ("heads", heads)):
            check_positive_int(name, value)
        if seq_length % patch_size:
            raise ValueError(f"seq_length must be divisible by patch_size, got seq_length={seq_length} "
                             f"and patch_size={patch_size}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.seq_length, self.patch_size, self.in_channels = seq_length, patch_size, in_channels
        self.num_classes, self.dim, self.depth, self.heads = num_classes, dim, depth, heads
        self.norm_position, self.qk_norm, self.pool = norm_position, qk_norm, pool
        self.num_tokens = seq_length // patch_size + (pool == "cls")
        self.patch_embed = nn.Conv1d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(nn.init.trunc_normal_(
            torch.empty(1, 1, dim), std=POS_EMBED_STD)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, self.num_tokens, dim), std=POS_EMBED_STD))
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, norm_position, qk_norm)
                                    for _ in range(depth))
        self.norm: nn.Module = nn.LayerNorm(dim) if norm_position == "pre" else nn.Identity()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() != 3 or tuple(x.shape[1:]) != (self.in_channels, self.seq_length):
            raise ValueError(f"x must have shape (batch, {self.in_channels}, {self.seq_length})"
                             f"{' or (batch, ' + str(self.seq_length) + ')' if self.in_channels == 1 else ''}, "
                             f"got {tuple(x.shape)}")
        tokens = self.patch_embed(x).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        return self.head(tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1))

    def extra_repr(self) -> str:
        return (f"seq_length={self.seq_length}, patch_size={self.patch_size}, num_tokens={self.num_tokens}, "
                f"dim={self.dim}, depth={self.depth}, heads={self.heads}, norm_position={self.norm_position!r}, "
                f"qk_norm={self.qk_norm}, pool={self.pool!r}")
