"""Swap layers of any model in place: every ``nn.Dropout`` for another regularizer, or any layer type."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

__all__ = ["replace_modules", "swap_dropout"]

_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


def replace_modules(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...],
                    build: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every submodule of ``model`` that is an instance of ``kind`` by ``build(old)``, in place.

    New modules are not visited again, so ``build`` may return a subclass of ``kind``.

    Returns:
        the number of modules replaced.

    Example:
        >>> from toolkit.regularization import VariationalLinear
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> replace_modules(model, nn.Linear, VariationalLinear.from_linear)
        2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not kinds or not all(isinstance(k, type) and issubclass(k, nn.Module) for k in kinds):
        raise TypeError(f"kind must be an nn.Module subclass or a tuple of them, got {kind!r}")
    if isinstance(build, nn.Module) or not callable(build):
        what = " (a layer, not a function)" if isinstance(build, nn.Module) else ""
        raise TypeError(f"build must be a callable taking the old module and returning the new one, got "
                        f"{type(build).__name__}{what}")
    count = 0
    for name, child in list(model.named_children()):
        if isinstance(child, kinds):
            new = build(child)
            if not isinstance(new, nn.Module):
                raise TypeError(f"build must return an nn.Module, got {type(new).__name__} for {name!r}")
            new.train(child.training)
            setattr(model, name, new)
            count += 1
        else:
            count += replace_modules(child, kinds, build)
    return count


def swap_dropout(model: nn.Module, factory: Callable[..., nn.Module]) -> int:
    """Replace every dropout layer (``nn.Dropout`` and its 1d/2d/3d/alpha variants) of ``model`` by
    ``factory()``, in place; the number of layers replaced. A ``factory`` that takes one argument is
    given the layer it replaces, so each can keep its own rate: ``lambda old: GaussianDropout(old.p)``.

    Example:
        >>> from toolkit.regularization import GaussianDropout
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
        >>> swap_dropout(model, lambda: GaussianDropout(0.5)), type(model[1]).__name__
        (1, 'GaussianDropout')
    """
    if isinstance(factory, nn.Module) or not callable(factory):
        what = ": a layer itself, but every place needs its own" if isinstance(factory, nn.Module) else ""
        raise TypeError(f"factory must be a callable returning an nn.Module (no argument, or the replaced "
                        f"layer; e.g. lambda: nn.Dropout(0.3)), got {type(factory).__name__}{what}")
    try:
        takes_layer = len(inspect.signature(factory).parameters) >= 1
    except (TypeError, ValueError):  # a builtin or C callable: call it without arguments, as before
        takes_layer = False

    def build(old: nn.Module) -> nn.Module:
        layer = factory(old) if takes_layer else factory()
        if not isinstance(layer, nn.Module):
            raise TypeError(f"factory must return an nn.Module, got {type(layer).__name__}")
        return layer

    return replace_modules(model, _DROPOUTS, build)
