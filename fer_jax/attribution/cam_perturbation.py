"""Gradient-free class activation maps: Score-CAM and Ablation-CAM.

Like the CAM family of ``cam``, both weight the channels of a layer's activation grid
``A [B, *positions, D]`` and return ``ReLU(Σ_k w_k A_k)`` ``[B, *positions]``, but the weights
come from forward passes of perturbed copies of each example instead of a gradient: ``D`` per
example, ``B · D`` in all. These run in compiled chunks of ``batch_size`` perturbed copies per
forward pass (``jax.lax.map`` over the chunks, so compilation does not grow with ``D``; the
last chunk is padded with repeated copies whose scores are dropped). Chunking changes the
memory, not the result. The target score is the target's logit, as pytorch-grad-cam's
``ClassifierOutputTarget``.

* Score-CAM (Wang et al. 2020), as pytorch-grad-cam's ``ScoreCAM``: each channel ``A_k`` is
  upsampled to the input (multilinear, corners aligned, pytorch-grad-cam's
  ``UpsamplingBilinear2d``, here over every axis of the grid: space and time for 3D CNNs),
  min-max normalised ``(u − min) / (max − min + 10⁻⁸)``, multiplied with the input, and the
  masked input's target score ``s_k`` is computed; ``w = softmax_k(s)`` over the channels.
  ``score='probability'`` takes the target's softmax probability instead of its logit (the
  paper's confidence; pytorch-grad-cam's ``ClassifierOutputSoftmaxTarget``). The paper's
  weights are the increase in confidence over a baseline without a softmax over channels;
  pytorch-grad-cam's softmax is kept here. The grid's position axes must run along axes of
  the input (``input_axes``, see ``core.input_axes``).
* Ablation-CAM (Desai & Ramaswamy 2020): ``w_k = (y − y_k) / y`` with ``y`` the target score and
  ``y_k`` the score with channel ``k`` of the layer's output set to 0 (the paper's ablation;
  no ReLU on the weights, the division by ``y`` as in pytorch-grad-cam). The layer's output is
  replaced by the recorded activation with the channel zeroed, so within the compiled chunk
  only the layers after it run. Where the layer's output has no zero (its minimum is not 0),
  pytorch-grad-cam's ``AblationLayer`` writes ``min − 10⁷`` instead of 0 (and, within one of its
  batches, lowers that value by 10⁷ for every channel already ablated); this module keeps the
  paper's zero, so the two agree on layers with a zero in their output, such as a ReLU's.
  The channel ablated is the last axis of the layer's raw output (of every array in it, for
  outputs such as a transformer's ``(cls, tokens)``), which must be the grid's channel axis.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax.attribution import core, postprocess
from fer_jax.attribution.core import (Reshape, Target, Variables, activation_grid,
                                      default_layer, inference_variables, layer_activations,
                                      on_input_axes, target_index)
from fer_jax.errors import UserError

SCORES = ("logit", "probability")


def _grid(model, act, x, reshape: Reshape | None) -> jnp.ndarray:
    return reshape(act, x) if reshape is not None else activation_grid(model, act, x)


def _weighted_map(weights: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    """``ReLU(Σ_k w_k A_k)``: weights ``[B, D]``, ``a [B, *positions, D]``."""
    weights = weights.reshape(weights.shape[:1] + (1,) * (a.ndim - 2) + weights.shape[1:])
    return jax.nn.relu((weights * a).sum(axis=-1))


def chunked(fn: Callable[[jnp.ndarray], jnp.ndarray], count: int,
            batch_size: int) -> jnp.ndarray:
    """``fn(indices [batch_size]) → [batch_size, …]`` over ``range(count)`` in compiled chunks
    (``jax.lax.map``): ``[count, …]``. The last chunk is padded with repeated indices, whose
    results are dropped."""
    if int(batch_size) < 1:
        raise UserError(f"batch_size must be a positive number of copies, got {batch_size}")
    batch_size = min(int(batch_size), count)
    chunks = -(-count // batch_size)
    indices = jnp.arange(chunks * batch_size, dtype=jnp.int32) % count
    out = jax.lax.map(fn, indices.reshape(chunks, batch_size))
    return out.reshape((chunks * batch_size,) + out.shape[2:])[:count]


def _setup(model, variables, x, target, layer, reshape):
    layer = default_layer(model) if layer is None else layer
    variables = inference_variables(variables)
    act, logits = layer_activations(model, variables, x, layer)
    a = _grid(model, act, x, reshape)
    return layer, variables, act, a, logits, target_index(logits, target)


def _score(logits: jnp.ndarray, index: jnp.ndarray, score: str) -> jnp.ndarray:
    if score == "probability":
        logits = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logits, index[:, None], axis=-1)[:, 0].astype(jnp.float32)


def score_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
              layer: str | None = None, reshape: Reshape | None = None,
              batch_size: int = 16, score: str = "logit",
              input_axes: Sequence[int] | None = None) -> jnp.ndarray:
    """Score-CAM ``[B, *positions]``: ``B · D`` forward passes of masked inputs,
    ``batch_size`` per pass (pytorch-grad-cam's default 16)."""
    if score not in SCORES:
        raise UserError(f"unknown Score-CAM score {score!r}; use one of {', '.join(SCORES)}")
    _, variables, _, a, _, index = _setup(model, variables, x, target, layer, reshape)
    a = a.astype(jnp.float32)
    channels = a.shape[-1]
    axes = core.input_axes(model, x, a.ndim - 2, input_axes)
    size = tuple(x.shape[i] for i in axes)
    by_channel = jnp.moveaxis(a, -1, 1)  # [B, D, *positions]

    def scores(pairs):
        example, channel = pairs // channels, pairs % channels
        masks = postprocess.upsample(by_channel[example, channel], size, align_corners=True)
        flat = masks.reshape(len(masks), -1)
        low = flat.min(axis=1).reshape((-1,) + (1,) * len(size))
        high = flat.max(axis=1).reshape((-1,) + (1,) * len(size))
        masks = (masks - low) / (high - low + 1e-8)
        masked = x[example] * on_input_axes(masks, axes, x.ndim).astype(x.dtype)
        return _score(model.apply(variables, masked, train=False), index[example], score)

    channel_scores = chunked(scores, len(x) * channels, batch_size).reshape(len(x), channels)
    return _weighted_map(jax.nn.softmax(channel_scores, axis=-1), a)


def ablation_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                 layer: str | None = None, reshape: Reshape | None = None,
                 batch_size: int = 32) -> jnp.ndarray:
    """Ablation-CAM ``[B, *positions]``: ``B · D`` forward passes of the layers after ``layer``
    with one channel zeroed, ``batch_size`` per pass (pytorch-grad-cam's default 32)."""
    layer, variables, act, a, logits, index = _setup(model, variables, x, target, layer,
                                                     reshape)
    channels = a.shape[-1]
    for leaf in jax.tree.leaves(act):
        if leaf.shape[-1] != channels:
            raise UserError(f"Ablation-CAM zeroes channels on the last axis of layer "
                            f"{layer!r}'s output, but an output of shape {leaf.shape} does not "
                            f"end with the grid's {channels} channels")
    y = _score(logits, index, "logit")

    def scores(pairs):
        example, channel = pairs // channels, pairs % channels
        keep = 1 - jax.nn.one_hot(channel, channels)  # [n, D]

        def ablate(next_fun, args, kwargs, context):
            if context.method_name != "__call__" or "/".join(context.module.path) != layer:
                return next_fun(*args, **kwargs)
            # the recorded output with one channel zeroed; the layer itself is not run
            return jax.tree.map(lambda t: t[example] * keep.reshape(
                (len(keep),) + (1,) * (t.ndim - 2) + (channels,)).astype(t.dtype), act)

        with nn.intercept_methods(ablate):
            logits = model.apply(variables, x[example], train=False)
        return _score(logits, index[example], "logit")

    ablated = chunked(scores, len(x) * channels, batch_size).reshape(len(x), channels)
    weights = (y[:, None] - ablated) / y[:, None]
    return _weighted_map(weights, a.astype(jnp.float32))
