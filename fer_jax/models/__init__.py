"""Model registry: config names → flax.linen Modules.

>>> from fer_jax import models
>>> model = models.build('timesformer', num_classes=7, hidden_size=64, num_layers=2)

Every model takes channels-last float32 video ``[B, T, H, W, C]`` and returns logits ``[B, C]``
(``model.apply(variables, x, train=False)``).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax

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


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; available models: {', '.join(names())}")


def fields(name: str) -> tuple[str, ...]:
    """The constructor fields of the registered model ``name`` (its config.model.kwargs);
    one-line UserError for an unknown name."""
    _check_name(name)
    constructor = _REGISTRY[name]
    return tuple(getattr(constructor, "__dataclass_fields__", {}))


def build(name: str, **kwargs) -> nn.Module:
    """Instantiates the registered model ``name`` with keyword arguments ``kwargs``."""
    _check_name(name)
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as e:  # unknown or missing constructor argument
        raise UserError(f"cannot build model {name!r} from config.model: {e}") from None


# Constructor fields of the zoo's modules that set how a model computes, not its variables
# (``config.model`` settings, ``dtype`` being ``config.model.precision``): neither checkpoints
# nor converted weight files depend on them.
COMPUTATION_KWARGS = ("dtype", "attention_implementation", "remat", "remat_policy")

# Rematerialisation (``remat`` / ``remat_policy`` fields of the models that have them):
# '' keeps every activation the backward pass needs; 'block' wraps every block (TimeSformer
# block, residual or Inception block, VGG / C3D stage) in ``nn.remat``, so the backward pass
# recomputes the block's activations from its input instead of keeping them. The policy
# (``jax.checkpoint_policies``) says what a wrapped block may still keep: 'nothing_saveable'
# (least memory), 'dots_saveable' (matrix products and convolutions kept: less recomputation),
# 'dots_with_no_batch_dims_saveable', 'everything_saveable' (as without remat).
REMAT_MODES = ("", "block")
REMAT_POLICIES = ("nothing_saveable", "dots_saveable", "dots_with_no_batch_dims_saveable",
                  "everything_saveable")


def check_remat(remat: str, policy: str) -> None:
    """ValueError for a ``remat`` mode or ``remat_policy`` name that does not exist."""
    if remat not in REMAT_MODES:
        raise ValueError(f"unknown remat {remat!r}; use one of "
                         f"{', '.join(repr(m) for m in REMAT_MODES)}")
    if policy not in REMAT_POLICIES:
        raise ValueError(f"unknown remat_policy {policy!r}; use one of "
                         f"{', '.join(REMAT_POLICIES)}")


def remat_block(target, remat: str, policy: str, static_argnums: tuple[int, ...]):
    """``target`` (a Module class, or a function whose first argument is a Module) wrapped in
    ``nn.remat`` with ``jax.checkpoint_policies.<policy>`` when ``remat == 'block'``, else
    ``target`` unchanged. ``static_argnums`` count ``self`` (or the function's Module) as 0:
    the Python arguments such as ``train``. Parameter paths are the same either way."""
    check_remat(remat, policy)
    if not remat:
        return target
    return nn.remat(target, policy=getattr(jax.checkpoint_policies, policy),
                    static_argnums=static_argnums)


# How attention modules with ``attention_implementation`` (TimeSformer) or ``implementation``
# (the chapter-4 self-attention) compute softmax(Q Kᵀ / √d) V: 'explicit' forms the
# probabilities (sown and perturbed for the attention explanations); 'auto', 'xla' and 'cudnn'
# call ``jax.nn.dot_product_attention`` with ``implementation=None`` (JAX's choice; XLA in
# JAX 0.10), 'xla' or 'cudnn' (cuDNN's fused kernel: NVIDIA GPUs, bfloat16 / float16 only).
# The fused ones never form the probabilities unless something needs them (see
# ``explicit_attention``).
ATTENTION_IMPLEMENTATIONS = ("explicit", "auto", "xla", "cudnn")


def check_attention_implementation(value: str) -> None:
    """ValueError for an attention implementation that does not exist."""
    if value not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {value!r}; use one of "
                         f"{', '.join(repr(v) for v in ATTENTION_IMPLEMENTATIONS)}")


def explicit_attention(module: nn.Module, implementation: str, name: str,
                       dropout: bool) -> bool:
    """Whether the attention ``module`` forms its probabilities (sown and perturbed under
    ``name``): always with ``'explicit'``; with a fused implementation whenever they are
    needed or can be read: attention ``dropout`` active, or the ``intermediates`` or
    ``perturbations`` collection mutable, or perturbations given (how the attention
    explanations apply a model). So rollout, gradient rollout and Chefer's relevance work on a
    model built with any implementation, and plain training and inference use the fused
    one."""
    check_attention_implementation(implementation)
    return implementation == "explicit" or probabilities_read(module, name, dropout)


def probabilities_read(module: nn.Module, name: str, dropout: bool) -> bool:
    """Whether something needs the attention probabilities of ``module`` (sown and perturbed
    under ``name``) as values of their own: attention ``dropout`` active, the
    ``intermediates`` or ``perturbations`` collection mutable, or perturbations given."""
    return (dropout or module.is_mutable_collection("intermediates")
            or module.is_mutable_collection("perturbations")
            or module.has_variable("perturbations", name))


def fused_attention(q, k, v, implementation: str):
    """``softmax(Q Kᵀ / √d) V`` by ``jax.nn.dot_product_attention``: ``q [..., S, heads, d]``,
    ``k, v [..., S', heads, d]`` (any leading axes) → ``[..., S, heads, d]``."""
    flat = lambda a: a.reshape(-1, *a.shape[-3:])  # noqa: E731 — [batch, S, heads, d]
    out = jax.nn.dot_product_attention(
        flat(q), flat(k), flat(v), implementation=None if implementation == "auto"
        else implementation)
    return out.reshape(*q.shape[:-1], v.shape[-1])


# Importing the family modules registers their models.
from fer_jax.models import cnn3d, landmark, mini_xception, resnet2d, timesformer  # noqa: E402,F401
from fer_jax.models import convert, inflate, pooling  # noqa: E402,F401  (models.convert.…)
