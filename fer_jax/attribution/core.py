"""The small core every attribution method shares: target selection, input gradients and
taps on intermediate layers.

A *layer* is the path of any submodule of a ``flax.linen`` model, written with slashes
(``'layer4_1'``, ``'blocks_11'``, ``'head/hidden'``; the keys of its parameters without the
last level). Its output is captured and differentiated by method interception
(``flax.linen.intercept_methods``): the model needs no change, no ``sow`` and no ``perturb``.
A layer must be called exactly once per forward pass.

Every function here is pure, jit- and vmap-compatible, and explains the whole batch with one
forward and one backward pass: the score differentiated is the sum over the batch of each
example's target logit, and the examples of a batch do not interact in inference mode
(``train=False``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax.errors import UserError

Variables = Any
Target = int | jnp.ndarray | None
# Maps a layer's raw output (an array or a pytree such as TimeSformer's (cls, tokens)) and the
# input batch to the activation grid ``[B, *positions, D]`` the CAM family works on.
Reshape = Callable[[Any, jnp.ndarray], jnp.ndarray]


def inference_variables(variables: Variables) -> dict:
    """``variables`` without the ``intermediates`` and ``perturbations`` collections."""
    return {k: v for k, v in variables.items() if k not in ("intermediates", "perturbations")}


def check_logits(logits: jnp.ndarray) -> None:
    """Attribution needs one score vector per example, ``[B, num_classes]``."""
    if logits.ndim != 2:
        raise UserError(f"attribution needs logits [batch, classes], got shape {logits.shape}; "
                        "wrap a dense (per-frame) model in models.pooling.TemporalPooling")


def target_index(logits: jnp.ndarray, target: Target) -> jnp.ndarray:
    """The class explained for each example, int32 ``[B]``.

    ``target``: ``None`` (the predicted class), an int (the same class for every example) or an
    int array ``[B]``.
    """
    check_logits(logits)
    if target is None:
        return jnp.argmax(jax.lax.stop_gradient(logits), axis=-1).astype(jnp.int32)
    target = jnp.asarray(target, jnp.int32)
    if target.ndim not in (0, 1):
        raise UserError(f"target must be None, an int or an int array [batch], got shape "
                        f"{target.shape}")
    return jnp.broadcast_to(target, logits.shape[:1])


def target_logits(logits: jnp.ndarray, target: Target) -> jnp.ndarray:
    """Each example's target logit ``[B]``."""
    index = target_index(logits, target)
    return jnp.take_along_axis(logits, index[:, None], axis=-1)[:, 0]


def input_gradients(model: nn.Module, variables: Variables, x: jnp.ndarray,
                    target: Target = None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(d target logit / d x  [shape of x], logits [B, C])`` in one forward+backward."""
    variables = inference_variables(variables)

    def score(x):
        logits = model.apply(variables, x, train=False)
        return target_logits(logits, target).sum(), logits

    grads, logits = jax.grad(score, has_aux=True)(x)
    return grads, logits


def _path(module: nn.Module) -> str:
    return "/".join(module.path)


class LayerTaps:
    """Context manager recording the outputs of the submodules ``layers`` during any
    ``model.apply`` inside it (training applies included), adding ``deltas[layer]`` to an
    output when given (for its gradient). Outputs stay in the traced computation, so a loss
    can use them and differentiate through them.

    >>> with LayerTaps(('layer4_2',)) as taps:
    ...     logits = model.apply(variables, x, train=False)
    >>> features = taps.outputs(model)['layer4_2']
    """

    def __init__(self, layers: Sequence[str], deltas: dict | None = None):
        self.layers, self.deltas = tuple(layers), deltas or {}
        self.record: dict[str, list] = {layer: [] for layer in self.layers}
        self._context = None

    def _intercept(self, next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        path = _path(context.module)
        if context.method_name != "__call__" or path not in self.record:
            return out
        if path in self.deltas:
            out = jax.tree.map(jnp.add, out, self.deltas[path])
        self.record[path].append(out)
        return out

    def __enter__(self) -> "LayerTaps":
        self._context = nn.intercept_methods(self._intercept)
        self._context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)

    def outputs(self, model: nn.Module, variables: Variables | None = None,
                x: jnp.ndarray | None = None) -> dict[str, Any]:
        """``{layer: output}``; raises when a layer was not called exactly once (naming the
        model's module paths when ``variables`` and ``x`` are given)."""
        for layer, outputs in self.record.items():
            if not outputs:
                paths = (f"; module paths: {', '.join(module_paths(model, variables, x))}"
                         if x is not None else " (attribution.module_paths lists them)")
                raise UserError(f"layer {layer!r} is not called by "
                                f"{type(model).__name__}{paths}")
            if len(outputs) > 1:
                raise UserError(f"layer {layer!r} is called {len(outputs)} times in one "
                                "forward pass; name a submodule that is called exactly once")
        return {layer: outputs[0] for layer, outputs in self.record.items()}


def _tapped_apply(model, variables, x, layer, delta=None):
    """``(logits, layer output)``; raises when ``layer`` is not called exactly once."""
    with LayerTaps((layer,), None if delta is None else {layer: delta}) as taps:
        logits = model.apply(variables, x, train=False)
    return logits, taps.outputs(model, variables, x)[layer]


def module_paths(model: nn.Module, variables: Variables, x: jnp.ndarray) -> list[str]:
    """Paths of the submodules called by ``model.apply(variables, x, train=False)``, in call
    order (each once), for choosing a ``layer``."""
    seen: dict[str, None] = {}

    def interceptor(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and context.module.path:
            seen.setdefault(_path(context.module))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        jax.eval_shape(lambda x: model.apply(inference_variables(variables), x, train=False), x)
    return list(seen)


def layer_activations(model: nn.Module, variables: Variables, x: jnp.ndarray,
                      layer: str) -> tuple[Any, jnp.ndarray]:
    """``(output of layer, logits)`` in one forward pass (no gradient)."""
    logits, act = _tapped_apply(model, inference_variables(variables), x, layer)
    return act, logits


def layer_gradients(model: nn.Module, variables: Variables, x: jnp.ndarray, target: Target,
                    layer: str) -> tuple[Any, Any, jnp.ndarray]:
    """``(activation, d target logit / d activation, logits)`` for the output of ``layer``.

    The activation and its gradient have the structure of the layer's output (an array or a
    pytree). One forward and one backward pass for the whole batch.
    """
    variables = inference_variables(variables)
    shapes = jax.eval_shape(lambda x: _tapped_apply(model, variables, x, layer)[1], x)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def score(delta):
        logits, act = _tapped_apply(model, variables, x, layer, delta)
        return target_logits(logits, target).sum(), (act, logits)

    grads, (act, logits) = jax.grad(score, has_aux=True)(zeros)
    return act, grads, logits


def default_layer(model: nn.Module) -> str:
    """The layer CAM methods explain by default: ``model.attribution_layer`` (every model of
    the zoo defines it); other models must name one."""
    layer = getattr(model, "attribution_layer", None)
    if layer is None:
        raise UserError(f"{type(model).__name__} has no default attribution layer; pass "
                        "layer='path/of/submodule' (see attribution.module_paths)")
    return layer


def activation_grid(model: nn.Module, act: Any, x: jnp.ndarray) -> jnp.ndarray:
    """A layer output as ``[B, *positions, D]``: ``model.attribution_grid(act, x)`` where the
    model defines it (transformers: tokens → ``[B, T, h, w, D]``), else the array itself."""
    reshape = getattr(model, "attribution_grid", None)
    if reshape is not None:
        return reshape(act, x)
    if not hasattr(act, "shape"):
        raise UserError(f"layer output of {type(model).__name__} is a {type(act).__name__}, "
                        "not an array; pass reshape=fn(output, x) -> [B, *positions, D]")
    return act


def input_axes(model: nn.Module, x: jnp.ndarray, count: int,
               axes: Sequence[int] | None = None) -> tuple[int, ...]:
    """The axes of ``x`` that the ``count`` position axes of a layer grid run along, in the
    grid's order (Score-CAM masks the input with the grid, FullGrad maps layers onto it).

    ``axes`` if given, else the model's ``attribution_input_axes`` (``tcn``: its grid is
    landmarks × frames, ``x`` frames × landmarks, so ``(2, 1)``), else all position axes of
    ``x [B, *positions, C]`` in order when their number is ``count`` (video CNNs:
    ``[B, T', H', W']`` along ``(1, 2, 3)``).
    """
    if axes is None:
        axes = getattr(model, "attribution_input_axes", None)
    if axes is None:
        if count != x.ndim - 2:
            raise UserError(f"a grid with {count} position axes does not match input "
                            f"{x.shape} ({x.ndim - 2} position axes); pass input_axes=(…), "
                            "the axes of x the grid's position axes run along")
        return tuple(range(1, count + 1))
    axes = tuple(int(a) % x.ndim for a in axes)
    if len(axes) != count or len(set(axes)) != count or not all(0 < a < x.ndim - 1
                                                                for a in axes):
        raise UserError(f"input_axes {axes} must name {count} distinct position axes of input "
                        f"{x.shape} (not the batch or channel axis)")
    return axes


def on_input_axes(maps: jnp.ndarray, axes: Sequence[int], ndim: int) -> jnp.ndarray:
    """``maps [B, *positions]`` whose position axes run along the input axes ``axes`` →
    broadcastable against an ``ndim``-dimensional input (1 on the other axes)."""
    order = sorted(range(len(axes)), key=lambda i: axes[i])
    maps = jnp.transpose(maps, (0, *(1 + i for i in order)))
    shape = [maps.shape[0]] + [1] * (ndim - 1)
    for i in order:
        shape[axes[i]] = maps.shape[1 + order.index(i)]
    return maps.reshape(shape)


def broadcast_baseline(baseline, x: jnp.ndarray, method: str) -> jnp.ndarray:
    """A reference input (a number, a clip or a batch) broadcast to ``x``'s shape and dtype;
    a one-line UserError naming ``method`` when it does not broadcast."""
    baseline = jnp.asarray(baseline, x.dtype)
    try:
        return jnp.broadcast_to(baseline, x.shape)
    except ValueError:
        raise UserError(f"{method} baseline of shape {baseline.shape} does not broadcast "
                        f"against the input {x.shape}") from None
