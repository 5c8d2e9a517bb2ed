"""FullGrad (Srinivas & Fleuret 2019) for convolutional networks, as pytorch-grad-cam's
``FullGrad``.

FullGrad decomposes a ReLU network's output into input-gradient × input and one bias-gradient
term per bias of the network; the saliency map puts together the spatial ones:

* ``|x · ∂y_t/∂x|``, min-max normalised per example and input channel over the positions,
  summed over the channels;
* for every ``nn.Conv``, ``nn.Dense`` and ``nn.BatchNorm`` whose output is a map over the
  input's positions ``[B, *positions, D]``: ``|b · ∂y_t/∂z|`` with ``z`` the layer's output and
  ``b`` its bias (BatchNorm's effective bias ``β − μ γ / √(σ² + ε)`` from its running
  statistics), min-max normalised per example and channel, summed over the channels and
  upsampled to the input (multilinear, half-pixel centres, as OpenCV's ``resize``; per
  channel in pytorch-grad-cam, the same by linearity);

the sum is min-max normalised per example (``(m − min) / (max − min + 10⁻⁷)``, pytorch-grad-cam's
``scale_cam_image``), ``[B, *positions of x]`` in [0, 1]. Dense layers on flattened or pooled
vectors have no map and are left out, as in the authors' code and pytorch-grad-cam (which
takes only ``Conv2d`` and ``BatchNorm2d``); a dense layer applied at every position counts.
pytorch-grad-cam normalises each channel of a bias-gradient map separately, the authors'
code each layer as a whole; pytorch-grad-cam's choice is kept. Cost: one forward and one
backward pass to the input.

Models: the video CNNs of the zoo, whose layers are maps ``[B, T', H', W', D]`` along the
input's ``(T, H, W)`` (``c3d``, ``vgg16_3d``, ``i3d``, ``resnet3d_18``, ``resnext3d_101``, and
the per-frame ``resnet2d_50`` and ``mini_xception``); the 2D CNNs ``scn`` and
``early_fusion_cnn`` (maps along ``(H, W)``, broadcast over the frames) and ``tcn`` (landmarks ×
frames) through their ``attribution_input_axes``, or any model with ``input_axes=``. FullGrad's
completeness needs every bias of the network to be one of these and its nonlinearities to be
piecewise linear; models with attention or LayerNorm / GroupNorm (TimeSformer, the attention
modules of chapter 4) are refused.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax.attribution import core
from fer_jax.attribution.core import (Target, Variables, inference_variables, on_input_axes,
                                      target_logits)
from fer_jax.errors import UserError

BIAS_MODULES = (nn.Conv, nn.ConvTranspose, nn.Dense, nn.BatchNorm)
REFUSED_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.MultiHeadDotProductAttention)


def _bias(module: nn.Module) -> jnp.ndarray | None:
    """The bias a module adds to its output (``[D]``), or None."""
    variables = module.variables
    params = variables.get("params", {})
    if isinstance(module, nn.BatchNorm):
        stats = variables.get("batch_stats", {})
        scale = params["scale"] if module.use_scale else 1.0
        shift = params["bias"] if module.use_bias else 0.0
        return shift - stats["mean"] * scale * jax.lax.rsqrt(stats["var"] + module.epsilon)
    return params.get("bias")


def _refused(module: nn.Module) -> bool:
    return isinstance(module, REFUSED_MODULES) or "Attention" in type(module).__name__


def _apply(model, variables, x, deltas: dict | None, record: dict):
    """Logits; records ``{path: (bias, output shape and dtype)}`` of the bias layers in ``record``
    (adding ``deltas[path]`` to their outputs) and the refused modules in ``record['refused']``."""
    def intercept(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__":
            return out
        path = "/".join(module.path)
        if _refused(module):
            record["refused"].setdefault(path, type(module).__name__)
        if not isinstance(module, BIAS_MODULES) or not hasattr(out, "ndim"):
            return out
        bias = _bias(module)
        if bias is None:
            return out
        record["calls"][path] = record["calls"].get(path, 0) + 1
        record["layers"][path] = (bias, jax.ShapeDtypeStruct(out.shape, out.dtype))
        if deltas is not None and path in deltas:
            out = out + deltas[path]
        return out

    with nn.intercept_methods(intercept):
        return model.apply(variables, x, train=False)


def _record() -> dict:
    return {"layers": {}, "calls": {}, "refused": {}}


def _scale(maps: jnp.ndarray, axes: tuple[int, ...]) -> jnp.ndarray:
    """pytorch-grad-cam's ``scale_cam_image`` over ``axes``: ``m − min``, then divided by its
    maximum + 10⁻⁷."""
    maps = maps - maps.min(axis=axes, keepdims=True)
    return maps / (maps.max(axis=axes, keepdims=True) + 1e-7)


def full_grad(model, variables: Variables, x: jnp.ndarray, target: Target = None,
              input_axes: Sequence[int] | None = None) -> jnp.ndarray:
    """FullGrad ``[B, *positions of x]`` in [0, 1] (``[B, T, H, W]`` for video).

    ``input_axes``: the axes of ``x`` the bias layers' position axes run along (default: the
    model's ``attribution_input_axes``, else all position axes of ``x``); layers with another
    number of position axes are left out.
    """
    variables = inference_variables(variables)
    if input_axes is None:
        input_axes = getattr(model, "attribution_input_axes", None)
    if input_axes is None:
        input_axes = tuple(range(1, x.ndim - 1))
    axes = core.input_axes(model, x, len(input_axes), input_axes)

    shapes = _record()
    jax.eval_shape(lambda x: _apply(model, variables, x, None, shapes), x)
    if shapes["refused"]:
        path, kind = next(iter(shapes["refused"].items()))
        raise UserError(f"full_grad needs a CNN whose biases are all in Conv / Dense / "
                        f"BatchNorm layers; {type(model).__name__} has {kind} at {path!r} "
                        "(attention or LayerNorm); use grad_cam, lrp or the rollout family")
    layers = [path for path, (_, out) in shapes["layers"].items()
              if out.ndim - 2 == len(axes) and out.shape[0] == len(x)]
    for path in layers:
        if shapes["calls"][path] > 1:
            raise UserError(f"layer {path!r} is called {shapes['calls'][path]} times in one "
                            "forward pass; full_grad needs each bias layer called once")
    zeros = {path: jnp.zeros(shapes["layers"][path][1].shape, shapes["layers"][path][1].dtype)
             for path in layers}

    def score(x, deltas):
        record = _record()
        logits = _apply(model, variables, x, deltas, record)
        biases = {path: record["layers"][path][0] for path in layers}
        return target_logits(logits, target).sum(), biases

    (input_grad, layer_grads), biases = jax.grad(score, argnums=(0, 1), has_aux=True)(x, zeros)
    positions = tuple(range(1, x.ndim - 1))
    saliency = _scale(jnp.abs(x * input_grad).astype(jnp.float32), positions).sum(axis=-1)
    size = tuple(x.shape[a] for a in axes)
    for path in layers:
        grads = layer_grads[path].astype(jnp.float32)
        bias_map = jnp.abs(biases[path].astype(jnp.float32) * grads)
        bias_map = _scale(bias_map, tuple(range(1, grads.ndim - 1))).sum(axis=-1)
        bias_map = jax.image.resize(bias_map, (len(x), *size), "linear", antialias=False)
        saliency = saliency + on_input_axes(bias_map, axes, x.ndim)[..., 0]
    return _scale(saliency, positions)
