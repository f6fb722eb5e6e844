"""A mixture-of-experts layer with top-k routing and the Switch Transformer load-balancing loss.

Shazeer et al., 2017, "Outrageously Large Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer",
arXiv:1701.06538; Fedus, Zoph & Shazeer, 2021, "Switch Transformers: Scaling to Trillion Parameter
Models with Simple and Efficient Sparsity", arXiv:2101.03961 (top-1 routing, the auxiliary loss).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from toolkit.models._layers import check_positive_int

__all__ = ["MoE", "MoEMLP", "expert_fractions", "load_balancing_loss"]


def _check_expert_index(expert_index: Tensor, num_experts: int) -> None:
    if not isinstance(expert_index, Tensor) or expert_index.is_floating_point() or expert_index.dtype == torch.bool:
        raise TypeError(f"expert_index must be an integer tensor of expert indices, got "
                        f"{getattr(expert_index, 'dtype', type(expert_index).__name__)}")
    if expert_index.numel() and (int(expert_index.min()) < 0 or int(expert_index.max()) >= num_experts):
        raise ValueError(f"expert_index must be in [0, num_experts={num_experts}), got range "
                         f"[{int(expert_index.min())}, {int(expert_index.max())}]")


def expert_fractions(expert_index: Tensor, num_experts: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Share of the routing assignments that go to each expert: ``f_i``, a ``(num_experts,)`` tensor
    summing to 1. ``expert_index`` is ``(tokens,)`` for top-1 or ``(tokens, k)`` for top-k routing."""
    check_positive_int("num_experts", num_experts)
    _check_expert_index(expert_index, num_experts)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return _fractions(expert_index, num_experts, dtype)


def _fractions(expert_index: Tensor, num_experts: int, dtype: torch.dtype) -> Tensor:
    """:func:`expert_fractions` without the checks (for the layer's own, valid, routing indices)."""
    counts = torch.bincount(expert_index.reshape(-1), minlength=num_experts).to(dtype)
    return counts / counts.sum().clamp_min(1.0)


def load_balancing_loss(router_probs: Tensor, expert_index: Tensor) -> Tensor:
    """Switch Transformer auxiliary loss ``num_experts * sum_i f_i * P_i`` (Fedus et al., 2021, eq. 4).

    ``f_i`` is the share of tokens dispatched to expert ``i`` (not differentiable), ``P_i`` the mean
    router probability of expert ``i`` over the tokens (differentiable). It is 1 when routing is
    uniform and ``num_experts`` when every token goes to one expert with probability 1; its gradient
    pushes probability away from the experts that receive the most tokens.

    Args:
        router_probs: ``(tokens, num_experts)`` softmax outputs of the router.
        expert_index: ``(tokens,)`` or ``(tokens, k)`` indices of the chosen experts.
    """
    if not isinstance(router_probs, Tensor) or not router_probs.is_floating_point():
        raise TypeError(f"router_probs must be a floating-point tensor, got {type(router_probs).__name__}")
    if router_probs.dim() != 2:
        raise ValueError(f"router_probs must have shape (tokens, num_experts), got {tuple(router_probs.shape)}")
    if expert_index.shape[0] != router_probs.shape[0]:
        raise ValueError(f"expert_index must have one row per token ({router_probs.shape[0]}), "
                         f"got shape {tuple(expert_index.shape)}")
    num_experts = router_probs.shape[1]
    _check_expert_index(expert_index, num_experts)
    return _balancing_loss(router_probs, expert_index)


def _balancing_loss(router_probs: Tensor, expert_index: Tensor) -> Tensor:
    """:func:`load_balancing_loss` without the checks (the layer calls it on every forward)."""
    num_experts = router_probs.shape[1]
    fractions = _fractions(expert_index, num_experts, router_probs.dtype)
    return num_experts * (fractions * router_probs.mean(dim=0)).sum()


class MoE(nn.Module):
    """Route each token to ``top_k`` of ``num_experts`` MLPs ``Linear -> GELU -> Linear`` and sum
    their outputs weighted by the gates.

    A linear router gives each token a softmax over the experts. With ``top_k=1`` (Switch routing) the
    token goes to its most probable expert and the output is scaled by that probability, which is how
    the router gets a gradient. With ``top_k > 1`` the chosen probabilities are renormalized to sum to 1.
    No capacity limit: no token is dropped (the layer is for small experiments, not for sharding).

    After every forward the layer keeps ``aux_loss`` (:func:`load_balancing_loss`, with its graph) and
    the dispatch fractions for :meth:`expert_load`. :meth:`penalty` returns
    ``aux_loss_coef * aux_loss``, so that :class:`toolkit.regularization.RegularizedClassifierModule`
    adds it to the training loss; that module divides penalties by ``num_train``, so build it with
    ``num_train=1, penalty_weight=1.0`` to add exactly ``aux_loss_coef * aux_loss`` per batch
    (Fedus et al. use ``aux_loss_coef=0.01``).

    Args:
        in_features: token width.
        num_experts: experts, ``>= 2``.
        hidden_features: hidden width of each expert.
        out_features: output width (default ``in_features``).
        top_k: experts per token, in ``[1, num_experts]``.
        aux_loss_coef: multiplies ``aux_loss`` in :meth:`penalty`, ``>= 0`` (0: no balancing).

    Example:
        >>> moe = MoE(16, num_experts=4, hidden_features=32)
        >>> moe(torch.randn(8, 16)).shape, moe.expert_load().sum().item()
        (torch.Size([8, 16]), 1.0)
    """

    def __init__(self, in_features: int, num_experts: int = 4, hidden_features: int = 64,
                 out_features: int | None = None, top_k: int = 1, aux_loss_coef: float = 0.01) -> None:
        super().__init__()
        out_features = in_features if out_features is None else out_features
        for name, value in (("in_features", in_features), ("hidden_features", hidden_features),
                            ("out_features", out_features), ("top_k", top_k)):
            check_positive_int(name, value)
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 2:
            raise ValueError(f"num_experts must be an integer >= 2, got {num_experts!r}")
        if top_k > num_experts:
            raise ValueError(f"top_k must be in [1, num_experts={num_experts}], got {top_k!r}")
        if isinstance(aux_loss_coef, bool) or not isinstance(aux_loss_coef, (int, float)) \
                or not 0 <= aux_loss_coef < float("inf"):
            raise ValueError(f"aux_loss_coef must be a finite number >= 0, got {aux_loss_coef!r}")
        self.in_features, self.out_features = in_features, out_features
        self.num_experts, self.top_k, self.aux_loss_coef = num_experts, top_k, float(aux_loss_coef)
        self.router = nn.Linear(in_features, num_experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(in_features, hidden_features), nn.GELU(), nn.Linear(hidden_features, out_features))
            for _ in range(num_experts))
        self.aux_loss: Tensor | None = None
        self._load: Tensor | None = None

    def route(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Router probabilities ``(T, E)``, chosen experts ``(T, k)`` and their gates ``(T, k)``."""
        probs = self.router(tokens).softmax(dim=-1)
        gates, index = probs.topk(self.top_k, dim=-1)
        if self.top_k > 1:
            gates = gates / gates.sum(dim=-1, keepdim=True)
        return probs, index, gates

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have shape (..., in_features={self.in_features}), got {tuple(x.shape)}")
        tokens = x.reshape(-1, self.in_features)
        probs, index, gates = self.route(tokens)
        out = tokens.new_zeros(len(tokens), self.out_features)
        for e, expert in enumerate(self.experts):
            rows, slot = (index == e).nonzero(as_tuple=True)
            if len(rows):
                out.index_add_(0, rows, gates[rows, slot, None] * expert(tokens[rows]))
        self.aux_loss = _balancing_loss(probs, index)  # the router's own indices: no per-step checks
        self._load = _fractions(index.detach(), self.num_experts, torch.float32)
        return out.reshape(*x.shape[:-1], self.out_features)

    def expert_load(self) -> Tensor:
        """Share of the routing assignments per expert in the last forward, ``(num_experts,)``, sums to 1."""
        if self._load is None:
            raise RuntimeError("expert_load() needs a forward pass first")
        return self._load

    def penalty(self) -> Tensor:
        """``aux_loss_coef * aux_loss`` of the last forward (0 before any forward)."""
        if self.aux_loss is None:
            return torch.zeros(())
        return self.aux_loss_coef * self.aux_loss

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, num_experts={self.num_experts}, "
                f"top_k={self.top_k}, aux_loss_coef={self.aux_loss_coef}")


class MoEMLP(nn.Module):
    """Classifier ``flatten -> Linear -> ReLU -> (h + MoE(h)) -> ReLU -> Linear`` for flat inputs.

    The MoE block is residual, like the Switch layer that replaces a transformer's MLP. Its
    :meth:`MoE.penalty` is found by ``RegularizedClassifierModule``; ``self.moe.expert_load()`` shows
    the routing.

    Args:
        in_features: input features after flattening (64 for 8x8 digits).
        num_classes: output logits.
        hidden_features: width of the stem and of the MoE tokens.
        num_experts, expert_hidden, top_k, aux_loss_coef: as for :class:`MoE`.

    Example:
        >>> MoEMLP(64, 10, num_experts=4)(torch.randn(5, 64)).shape
        torch.Size([5, 10])
    """

    def __init__(self, in_features: int, num_classes: int, hidden_features: int = 64, num_experts: int = 4,
                 expert_hidden: int = 64, top_k: int = 1, aux_loss_coef: float = 0.01) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("num_classes", num_classes)
        check_positive_int("hidden_features", hidden_features)
        self.in_features, self.num_classes = in_features, num_classes
        self.stem = nn.Linear(in_features, hidden_features)
        self.moe = MoE(hidden_features, num_experts, expert_hidden, top_k=top_k, aux_loss_coef=aux_loss_coef)
        self.head = nn.Linear(hidden_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"MoEMLP expects {self.in_features} input features, got input of shape "
                             f"{tuple(x.shape)} after flattening")
        h = torch.relu(self.stem(x))
        return self.head(torch.relu(h + self.moe(h)))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}"
