"""``AttentionLogitMonitor``: the largest attention logit of every attention layer, every step."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from torch import nn

from toolkit.stability._checks import log_metrics

__all__ = ["AttentionLogitMonitor"]


def _attention_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Submodules that expose ``max_logit`` (e.g. :class:`toolkit.models.SelfAttention`), in model order."""
    return [(name, layer) for name, layer in module.named_modules() if hasattr(layer, "max_logit")]


class AttentionLogitMonitor(pl.Callback):
    r"""Log the largest attention logit :math:`\max_{ij} q_i^\top k_j/\sqrt{d_h}` of each attention layer.

    Wortsman et al., 2023, *Small-scale proxies for large-scale Transformer training instabilities*,
    arXiv:2309.14322: at high learning rates the attention logits grow without bound, the softmax
    saturates to one-hot and the loss diverges ("attention-logit growth"); qk-layernorm prevents it.
    Nothing in Lightning logs this.

    Before every optimizer step (after the training forward pass), reads ``max_logit`` (a 0-d tensor the layer stores in its forward
    pass) of every submodule that has one (:class:`toolkit.models.SelfAttention`, or any module of
    your own that sets the attribute), keeps it per step in :attr:`history` and logs it as
    ``attn_logit_max/layer{i}`` (``i``: the layer's order in the model) and the largest over layers
    as ``attn_logit_max``, through ``LightningModule.log``, so ``trainer.callback_metrics`` sees it
    (at the loggers' interval and each epoch's last step, as the other stability monitors).

    Example:
        >>> monitor = AttentionLogitMonitor()
        >>> # fit(ClassifierModule(SequenceTransformer(), 10), data, callbacks=[monitor]); monitor.frame()
    """

    def __init__(self) -> None:
        self.history: list[tuple[int, dict[str, float]]] = []
        self._layers: list[tuple[str, nn.Module]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._layers = _attention_layers(pl_module)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._layers:
            raise ValueError(f"AttentionLogitMonitor found no attention layer in {type(pl_module).__name__}: "
                             "no submodule has a max_logit attribute (use toolkit.models.SelfAttention, or set "
                             "module.max_logit in your attention's forward)")

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        values = [layer.max_logit for _, layer in self._layers if isinstance(layer.max_logit, torch.Tensor)]
        if not values:
            return
        stacked = torch.stack([v.float() for v in values]).cpu()  # one transfer for all layers
        names = [name for name, layer in self._layers if isinstance(layer.max_logit, torch.Tensor)]
        self.history.append((trainer.global_step, dict(zip(names, stacked.tolist()))))
        metrics = {f"attn_logit_max/layer{i}": value for i, value in enumerate(stacked)}
        metrics["attn_logit_max"] = stacked.max()
        log_metrics(pl_module, metrics)

    def frame(self) -> pd.DataFrame:
        """Long table: ``step``, ``layer`` (the module's name), ``depth`` (its order), ``max_logit``."""
        rows = [{"step": step, "layer": name, "depth": depth, "max_logit": value}
                for step, values in self.history for depth, (name, value) in enumerate(values.items())]
        return pd.DataFrame(rows, columns=["step", "layer", "depth", "max_logit"])

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(step), dict(values)) for step, values in state_dict["history"]]
