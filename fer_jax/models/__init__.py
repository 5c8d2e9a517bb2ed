"""Model registry: config names → flax.linen Modules.

>>> from fer_jax import models
>>> model = models.build('timesformer', num_classes=7, hidden_size=64, num_layers=2)

Every model takes channels-last float32 video ``[B, T, H, W, C]`` and returns logits ``[B, C]``
(``model.apply(variables, x, train=False)``).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from fer_jax.errors import UserError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable:
    """Class decorator adding a model constructor to the registry under ``name``."""

    def decorator(constructor):
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = constructor
        return constructor

    return decorator


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def fields(name: str) -> tuple[str, ...]:
    """The constructor fields of the registered model ``name`` (its config.model.kwargs)."""
    constructor = _REGISTRY[name]
    return tuple(getattr(constructor, "__dataclass_fields__", {}))


def build(name: str, **kwargs) -> nn.Module:
    """Instantiates the registered model ``name`` with keyword arguments ``kwargs``."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; available models: {', '.join(names())}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:  # unknown or missing constructor argument
        raise UserError(f"cannot build model {name!r} from config.model: {e}") from None


# Importing the family modules registers their models.
from fer_jax.models import cnn3d, landmark, mini_xception, resnet2d, timesformer  # noqa: E402,F401
from fer_jax.models import convert, inflate, pooling  # noqa: E402,F401  (models.convert.…)
