"""3D CNNs of Ayral's thesis: inflated VGG-16, C3D, I3D Inception-v1, 3D ResNet-18, ResNeXt-101.

Every model maps channels-last video ``x [B, T, H, W, C]`` to float32 logits
``[B, num_classes]``; with ``dense=True`` it keeps the time axis (no temporal stride anywhere)
and returns one score vector per input frame, ``[B, T, num_classes]``. ``dtype`` is the
computation dtype (parameters stay float32, logits are returned in float32).

``remat='block'`` (``models.remat_block``, policy ``remat_policy``) recomputes every block in
the backward pass instead of keeping its activations: each stage of VGG-16 and C3D (its
convolutions and pool), the stem and each Inception block of I3D, the first convolution and
each residual block of the ResNets. Parameter paths, values and gradients are unchanged.

BatchNorm statistics live in the ``batch_stats`` collection (``use_running_average=not train``;
train with ``mutable=['batch_stats']``), with momentum 0.9, i.e. PyTorch's momentum 0.1, since the
reference weights come from PyTorch. Dropout draws from the ``'dropout'`` rng.

Parameter names follow the reference implementations so checkpoints map one to one:
torchvision VGG-16 (``conv{stage}_{i}``, ``fc6``, ``fc7``), the common PyTorch port of C3D
(``conv3a``, ``fc8``), hassony2/kinetics_i3d_pytorch for I3D (``conv3d_1a_7x7``,
``mixed_3b/branch_1_0``) and kenshohara/3D-ResNets-PyTorch for the ResNets (``conv1``,
``layer2_0/conv1``, ``fc``). Conv units hold their layers as ``conv`` and ``bn``.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import models

Padding = str | Sequence[tuple[int, int]]

# He initialisation (fan_out, as torchvision and kenshohara initialise their convolutions).
kaiming = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pad(kernel: int) -> tuple[tuple[int, int], ...]:
    """PyTorch's symmetric ``padding=kernel // 2`` on the three axes."""
    return ((kernel // 2, kernel // 2),) * 3


def flatten_channel_major(x: jnp.ndarray, batch_dims: int) -> jnp.ndarray:
    """``[*lead, *rest, C] → [*lead, C·prod(rest)]`` in PyTorch's channel-first flatten order.

    ``lead`` are the first ``batch_dims`` axes. Flattening this way lets PyTorch fully connected
    weights load without permuting their input dimension.
    """
    x = jnp.moveaxis(x, -1, batch_dims)
    return x.reshape(*x.shape[:batch_dims], -1)


def adaptive_avg_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``[out_size, in_size]`` averaging weights of PyTorch's ``AdaptiveAvgPool`` along one axis.

    Output cell ``i`` averages inputs ``floor(i·n/m) .. ceil((i+1)·n/m) − 1``; cells overlap or
    repeat inputs when ``in_size`` is not a multiple of ``out_size``.
    """
    weights = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -(-((i + 1) * in_size) // out_size)
        weights[i, start:end] = 1.0 / (end - start)
    return weights


class ConvUnit(nn.Module):
    """3D convolution → BatchNorm (optional) → ReLU (optional).

    ``x [B, T, H, W, C] → [B, T', H', W', features]``. With ``batch_norm`` the convolution has
    no bias (BatchNorm's shift replaces it); without, it has one. ``padding`` is 'SAME'
    (TensorFlow semantics, asymmetric for even strides), 'VALID' or explicit pairs per axis.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3, 3)
    strides: Sequence[int] = (1, 1, 1)
    padding: Padding = "SAME"
    groups: int = 1
    batch_norm: bool = True
    relu: bool = True
    bn_epsilon: float = 1e-5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = nn.Conv(self.features, tuple(self.kernel_size), tuple(self.strides), self.padding,
                    feature_group_count=self.groups, use_bias=not self.batch_norm,
                    kernel_init=kaiming, dtype=self.dtype, name="conv")(x)
        if self.batch_norm:
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             epsilon=self.bn_epsilon, dtype=self.dtype, name="bn")(x)
        return nn.relu(x) if self.relu else x


class FrameHead(nn.Module):
    """Two-layer classifier applied at every position: ``[..., D] → [..., num_classes]``.

    Dense(hidden_dim) → ReLU → dropout → Dense(num_classes); on per-frame features this is the
    pair of 1×1×1 convolutions of the thesis.
    """

    hidden_dim: int
    num_classes: int
    dropout: float = 0.5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = nn.relu(nn.Dense(self.hidden_dim, dtype=self.dtype, name="hidden")(x))
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x)


def scale_width(channels: int, width: float) -> int:
    """``channels`` scaled by the width multiplier ``width`` (at least 1)."""
    return max(1, round(channels * width))


def attention_module(constructor, freeze: bool) -> nn.Module | None:
    """The optional attention module of a 3D CNN (``models/attention.py``, thesis chapter 4),
    named ``attention``; call inside ``nn.compact``. ``freeze`` (the thesis' two-step
    training) needs a module after the features."""
    module = constructor(name="attention") if constructor else None
    if freeze and (module is None or module.level == "input"):
        raise ValueError("freeze_features needs an attention module on the features "
                         "(model.attention: a mask or self-attention)")
    return module


def attend(module: nn.Module | None, level: str, x: jnp.ndarray, train: bool,
           freeze: bool = False) -> jnp.ndarray:
    """``module(x)`` when the module sits at ``level`` ('input', 'maps' or 'frames'), else
    ``x``; with ``freeze`` no gradient flows back into what computed ``x``."""
    if module is None or module.level != level:
        return x
    return module(jax.lax.stop_gradient(x) if freeze else x, train)


VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _vgg_stage(model: nn.Module, x: jnp.ndarray, train: bool,
               units: tuple[tuple[str, int], ...]) -> jnp.ndarray:
    """One VGG-16 stage of ``model``: a ``time_kernel×3×3`` conv + ReLU per ``(name,
    features)`` of ``units``, then the 1×2×2 max-pool (a function of the model, so
    ``nn.remat`` can wrap it without changing parameter paths)."""
    kernel = (model.time_kernel, 3, 3)
    for name, features in units:
        x = ConvUnit(features, kernel, batch_norm=False, dtype=model.dtype, name=name)(x, train)
    return nn.max_pool(x, (1, 2, 2), strides=(1, 2, 2))


@models.register("vgg16_3d")
class VGG16_3D(nn.Module):
    """Inflated VGG-16 (Carreira & Zisserman 2017 inflation of Simonyan & Zisserman 2015).

    ``x [B, T, H, W, C] → logits [B, num_classes]``, or ``[B, T, num_classes]`` with ``dense``.

    Features: 13 convolutions ``time_kernel×3×3`` ('SAME', stride 1) + ReLU named
    ``conv{stage}_{i}``, a 1×2×2 max-pool after each of the 5 stages. Time is never strided,
    so every frame keeps its features; the temporal receptive field is
    ``1 + 13·(time_kernel − 1)`` = 27 frames. ``time_kernel=1`` gives the frame-wise 2D VGG-16.

    Per frame: average-pool to 7×7 exactly as torchvision's ``AdaptiveAvgPool2d((7, 7))``,
    flatten channel-major (so the 25088×4096 torchvision ``fc6`` loads unchanged), then
    fc6 → ReLU → dropout → fc7 → ReLU → dropout, and the head ``FrameHead`` (128 → ReLU →
    dropout → num_classes), i.e. the thesis' two 1×1×1 convolutions with dropout before and
    in between. Without ``dense`` the per-frame scores are averaged over time.

    ``attention``: an attention module constructor (``models.attention.build``) placed by its
    ``level``: the input video (STN), the last feature maps, or the per-frame fc7 features ``[B, T, fc_dim]`` (temporal mask and
    self-attention, as in the thesis). ``freeze_features``:
    the layers before the module run in inference mode and pass it no gradient (two-step
    training: set ``optimizer.trainable`` to the module and the layers after it).
    """

    num_classes: int
    dense: bool = False
    width: float = 1.0
    time_kernel: int = 3
    fc_dim: int = 4096
    head_dim: int = 128
    fc_dropout: float = 0.5
    head_dropout: float = 0.5
    attention: Any = None
    freeze_features: bool = False
    dtype: jnp.dtype = jnp.float32
    remat: str = ""
    remat_policy: str = "nothing_saveable"

    attribution_layer = "conv5_3"  # default CAM layer: last convolution, after ReLU
    # Default LRP composite (attribution/lrp_composites.py): z⁺ convolutions, ε dense layers,
    # flat first layer.
    lrp_composite = "epsilon_plus_flat"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        module = attention_module(self.attention, self.freeze_features)
        frozen = self.freeze_features and module.level
        x = attend(module, "input", x.astype(self.dtype), train)
        stage_fn = models.remat_block(_vgg_stage, self.remat, self.remat_policy,
                                      static_argnums=(2, 3))
        for stage, stage_features in enumerate(VGG16_STAGES, start=1):
            units = tuple((f"conv{stage}_{i}", scale_width(features, self.width))
                          for i, features in enumerate(stage_features, start=1))
            x = stage_fn(self, x, train, units)
        x = attend(module, "maps", x, train, self.freeze_features)

        _, _, height, width, _ = x.shape
        x = jnp.einsum("bthwc,ih,jw->btijc", x,
                       adaptive_avg_pool_matrix(height, 7).astype(self.dtype),
                       adaptive_avg_pool_matrix(width, 7).astype(self.dtype))
        x = flatten_channel_major(x, batch_dims=2)  # [B, T, C·7·7]
        for name in ("fc6", "fc7"):
            x = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype, name=name)(x))
            x = nn.Dropout(self.fc_dropout)(x, deterministic=not train or frozen == "frames")
        x = attend(module, "frames", x, train, self.freeze_features)
        scores = FrameHead(self.head_dim, self.num_classes, self.head_dropout, self.dtype,
                           name="head")(x, train).astype(jnp.float32)
        return scores if self.dense else scores.mean(axis=1)


C3D_CONVS = (("conv1",), ("conv2",), ("conv3a", "conv3b"), ("conv4a", "conv4b"),
             ("conv5a", "conv5b"))
C3D_FEATURES = {"conv1": 64, "conv2": 128, "conv3a": 256, "conv3b": 256}  # the rest: 512


def _c3d_stage(model: nn.Module, x: jnp.ndarray, train: bool, stage: int) -> jnp.ndarray:
    """Stage ``stage`` (0–4) of C3D ``model``: its convolutions, then its max-pool."""
    for name in C3D_CONVS[stage]:
        x = ConvUnit(scale_width(C3D_FEATURES.get(name, 512), model.width), batch_norm=False,
                     dtype=model.dtype, name=name)(x, train)
    time = 1 if stage == 0 or model.dense else 2
    padding = ((0, 0), (1, 1), (1, 1)) if stage == 4 else "VALID"
    return nn.max_pool(x, (time, 2, 2), strides=(time, 2, 2), padding=padding)


@models.register("c3d")
class C3D(nn.Module):
    """C3D (Tran et al. 2015), Sports-1M layout of the common PyTorch port.

    ``x [B, T, H, W, C] → logits [B, num_classes]``, or ``[B, T, num_classes]`` with ``dense``.

    8 convolutions 3×3×3 (pad 1, bias, ReLU): conv1 64, pool1 1×2×2; conv2 128, pool2 2×2×2;
    conv3a/b 256, pool3; conv4a/b 512, pool4; conv5a/b 512, pool5 2×2×2 with spatial padding 1.
    Then fc6, fc7 (``fc_dim``, ReLU, dropout) and fc8. On the reference 16×112×112 input the
    clip is 512×1×4×4 = 8192 features before fc6, flattened channel-major as in PyTorch.

    ``dense``: every pool is spatial only (1×2×2) and fc6–fc8 run per frame on that frame's
    channel-major 512×4×4 features, so Sports-1M fc weights load unchanged.
    """

    num_classes: int
    dense: bool = False
    width: float = 1.0
    fc_dim: int = 4096
    dropout: float = 0.5
    dtype: jnp.dtype = jnp.float32
    remat: str = ""
    remat_policy: str = "nothing_saveable"

    attribution_layer = "conv5b"  # default CAM layer: last convolution, after ReLU
    # Default LRP composite (attribution/lrp_composites.py): z⁺ convolutions, ε dense layers,
    # flat first layer.
    lrp_composite = "epsilon_plus_flat"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = x.astype(self.dtype)
        stage_fn = models.remat_block(_c3d_stage, self.remat, self.remat_policy,
                                      static_argnums=(2, 3))
        for stage in range(len(C3D_CONVS)):
            x = stage_fn(self, x, train, stage)

        # dense: per frame [B, T, C·h·w]; clip: [B, C·t·h·w].
        x = flatten_channel_major(x, batch_dims=2 if self.dense else 1)
        for name in ("fc6", "fc7"):
            x = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype, name=name)(x))
            x = nn.Dropout(self.dropout)(x, deterministic=not train)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc8")(x).astype(jnp.float32)


class InceptionBlock(nn.Module):
    """Inception-v1 module of I3D: ``[B, T, H, W, C] → [B, T, H, W, f0+f2+f4+f5]``.

    Branches (``features = (f0, f1, f2, f3, f4, f5)``): ``branch_0`` 1×1×1 (f0);
    ``branch_1_0`` 1×1×1 (f1) → ``branch_1_1`` 3×3×3 (f2); ``branch_2_0`` 1×1×1 (f3) →
    ``branch_2_1`` 3×3×3 (f4); 3×3×3 max-pool (stride 1, 'SAME') → ``branch_3_1`` 1×1×1 (f5).
    """

    features: Sequence[int]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        f0, f1, f2, f3, f4, f5 = self.features
        unit = functools.partial(ConvUnit, bn_epsilon=1e-3, dtype=self.dtype)
        b0 = unit(f0, (1, 1, 1), name="branch_0")(x, train)
        b1 = unit(f1, (1, 1, 1), name="branch_1_0")(x, train)
        b1 = unit(f2, (3, 3, 3), name="branch_1_1")(b1, train)
        b2 = unit(f3, (1, 1, 1), name="branch_2_0")(x, train)
        b2 = unit(f4, (3, 3, 3), name="branch_2_1")(b2, train)
        b3 = nn.max_pool(x, (3, 3, 3), strides=(1, 1, 1), padding="SAME")
        b3 = unit(f5, (1, 1, 1), name="branch_3_1")(b3, train)
        return jnp.concatenate([b0, b1, b2, b3], axis=-1)


def _i3d_stem(model: nn.Module, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    """The layers of I3D ``model`` before Mixed_3b: conv3d_1a_7x7 (stride t×2×2) → max-pool
    1×3×3 /1×2×2 → conv3d_2b_1x1 → conv3d_2c_3x3 → max-pool 1×3×3 /1×2×2."""
    unit = functools.partial(ConvUnit, bn_epsilon=1e-3, dtype=model.dtype)
    ch = functools.partial(scale_width, width=model.width)
    t = 1 if model.dense else 2
    x = unit(ch(64), (7, 7, 7), (t, 2, 2), name="conv3d_1a_7x7")(x, train)
    x = nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding="SAME")
    x = unit(ch(64), (1, 1, 1), name="conv3d_2b_1x1")(x, train)
    x = unit(ch(192), (3, 3, 3), name="conv3d_2c_3x3")(x, train)
    return nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding="SAME")


# Inception modules per stage; a 'SAME' max-pool (kernel, stride in time) precedes stages 4, 5.
I3D_STAGES = (
    ({"mixed_3b": (64, 96, 128, 16, 32, 32), "mixed_3c": (128, 128, 192, 32, 96, 64)}, None),
    ({"mixed_4b": (192, 96, 208, 16, 48, 64), "mixed_4c": (160, 112, 224, 24, 64, 64),
      "mixed_4d": (128, 128, 256, 24, 64, 64), "mixed_4e": (112, 144, 288, 32, 64, 64),
      "mixed_4f": (256, 160, 320, 32, 128, 128)}, (3, 3, 3)),
    ({"mixed_5b": (256, 160, 320, 32, 128, 128), "mixed_5c": (384, 192, 384, 48, 128, 128)},
     (2, 2, 2)),
)


@models.register("i3d")
class I3D(nn.Module):
    """I3D Inception-v1, RGB stream (Carreira & Zisserman 2017; deepmind/kinetics-i3d layout).

    ``x [B, T, H, W, C] → logits [B, num_classes]``, or ``[B, T, num_classes]`` with ``dense``.

    TensorFlow 'SAME' padding everywhere, conv (no bias) + BatchNorm (eps 1e-3) + ReLU units:
    conv3d_1a_7x7 (stride 2) → max-pool 1×3×3 /1×2×2 → conv3d_2b_1x1 → conv3d_2c_3x3 →
    max-pool 1×3×3 /1×2×2 → Mixed_3b,c → max-pool 3×3×3 /2 → Mixed_4b–f → max-pool 2×2×2 /2 →
    Mixed_5b,c → average pool 2×7×7 (stride 1, 'VALID'; the window is clipped to the feature
    map, so inputs smaller than 224×224 are pooled globally) → dropout → conv3d_0c_1x1 (with
    bias) → mean over the remaining positions. At 224×224 this is the reference computation.

    ``dense``: temporal strides are 1 everywhere and the final average pool is spatial only.
    ``width`` scales every channel count (1.0 = the reference).

    ``attention``: an attention module constructor (``models.attention.build``) placed by its
    ``level``: the input video (STN), the last feature maps, or the maps again for 'frames' modules (Mixed_5c output). ``freeze_features``:
    the layers before the module run in inference mode and pass it no gradient (two-step
    training: set ``optimizer.trainable`` to the module and the layers after it).
    """

    num_classes: int
    dense: bool = False
    width: float = 1.0
    dropout: float = 0.5
    attention: Any = None
    freeze_features: bool = False
    dtype: jnp.dtype = jnp.float32
    remat: str = ""
    remat_policy: str = "nothing_saveable"

    attribution_layer = "mixed_5c"  # default CAM layer: the last Inception block
    attribution_classifier = "conv3d_0c_1x1"  # average pool → this 1×1×1 conv: CAM applies
    # Default LRP composite (attribution/lrp_composites.py): epsilon_plus_flat, with the
    # classifier, a convolution, given the ε rule of dense layers.
    lrp_composite = {"conv3d_0c_1x1": "epsilon", "first": "flat", "batch_norm": "pass",
                     "conv": "zplus", "dense": "epsilon"}

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        t = 1 if self.dense else 2
        ch = functools.partial(scale_width, width=self.width)
        module = attention_module(self.attention, self.freeze_features)
        x = attend(module, "input", x.astype(self.dtype), train)
        features_train = train and not self.freeze_features
        remat = functools.partial(models.remat_block, remat=self.remat,
                                  policy=self.remat_policy, static_argnums=(2,))
        x = remat(_i3d_stem)(self, x, features_train)
        inception = remat(InceptionBlock)
        for blocks, pool in I3D_STAGES:
            if pool is not None:
                x = nn.max_pool(x, pool, strides=(t, 2, 2), padding="SAME")
            for name, features in blocks.items():
                x = inception(tuple(ch(f) for f in features), self.dtype,
                              name=name)(x, features_train)
        for level in ("maps", "frames"):
            x = attend(module, level, x, train, self.freeze_features)

        _, time, height, width, _ = x.shape
        window = (1 if self.dense else min(2, time), min(7, height), min(7, width))
        x = nn.avg_pool(x, window, strides=(1, 1, 1), padding="VALID")
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = nn.Conv(self.num_classes, (1, 1, 1), dtype=self.dtype, name="conv3d_0c_1x1")(x)
        scores = x.astype(jnp.float32).mean(axis=(2, 3))  # [B, T', num_classes]
        return scores if self.dense else scores.mean(axis=1)


class Shortcut(nn.Module):
    """Residual shortcut ``[B, T, H, W, C] → [B, T', H', W', features]``.

    Identity when the shape is unchanged; otherwise type 'A' (parameter-free: strided identity with
    zero-padded channels) or 'B' (``downsample``: 1×1×1 strided conv + BatchNorm).
    """

    features: int
    strides: Sequence[int]
    kind: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        if x.shape[-1] == self.features and tuple(self.strides) == (1, 1, 1):
            return x
        if self.kind == "A":
            st, sh, sw = self.strides
            x = x[:, ::st, ::sh, ::sw]
            return jnp.pad(x, ((0, 0),) * 4 + ((0, self.features - x.shape[-1]),))
        if self.kind == "B":
            return ConvUnit(self.features, (1, 1, 1), self.strides, "VALID", relu=False,
                            dtype=self.dtype, name="downsample")(x, train)
        raise ValueError(f"shortcut type must be 'A' or 'B', got {self.kind!r}")


class BasicBlock(nn.Module):
    """ResNet basic block: two 3×3×3 conv-BN units (the first strided) + shortcut, ReLU.

    ``[B, T, H, W, C] → [B, T', H', W', planes]``.
    """

    planes: int
    strides: Sequence[int]
    shortcut: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        y = ConvUnit(self.planes, (3, 3, 3), self.strides, _pad(3), dtype=self.dtype,
                     name="conv1")(x, train)
        y = ConvUnit(self.planes, (3, 3, 3), padding=_pad(3), relu=False, dtype=self.dtype,
                     name="conv2")(y, train)
        residual = Shortcut(self.planes, self.strides, self.shortcut, self.dtype,
                            name="shortcut")(x, train)
        return nn.relu(y + residual)


class BottleneckBlock(nn.Module):
    """ResNeXt bottleneck (Hara et al. 2018): ``[B, T, H, W, C] → [B, T', H', W', 2·planes]``.

    1×1×1 to ``cardinality·(planes // 32)`` channels → grouped 3×3×3 (``cardinality`` groups,
    strided) → 1×1×1 to ``2·planes``, each with BatchNorm, + shortcut, ReLU.
    """

    planes: int
    strides: Sequence[int]
    shortcut: str
    cardinality: int = 32
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        mid = self.cardinality * (self.planes // 32)
        if mid == 0:
            raise ValueError(f"ResNeXt planes {self.planes} must be at least 32 (width too small)")
        unit = functools.partial(ConvUnit, dtype=self.dtype)
        y = unit(mid, (1, 1, 1), name="conv1")(x, train)
        y = unit(mid, (3, 3, 3), self.strides, _pad(3), groups=self.cardinality,
                 name="conv2")(y, train)
        y = unit(2 * self.planes, (1, 1, 1), relu=False, name="conv3")(y, train)
        residual = Shortcut(2 * self.planes, self.strides, self.shortcut, self.dtype,
                            name="shortcut")(x, train)
        return nn.relu(y + residual)


RESNET_POOLING = ("avg_features", "max_features", "avg_scores", "max_scores", "two_step")


@models.register("resnet3d_18")
class ResNet3D(nn.Module):
    """3D ResNet (Hara et al. 2018, kenshohara/3D-ResNets-PyTorch); defaults: ResNet-18.

    ``x [B, T, H, W, C] → logits [B, num_classes]``, or ``[B, T, num_classes]`` with ``dense``.

    conv1 7×7×7 (64 channels) stride 1×2×2 pad 3 + BN + ReLU → max-pool 3×3×3 stride 2 pad 1
    → stages of ``block`` ('basic' or 'bottleneck') with ``base_planes·2^i`` planes, stride 2
    (time and space) at the first block of stages 2–4 → global average pool → dropout → ``fc``.
    Convolutions have no bias. ``dense``: every temporal stride is 1 and only space is pooled
    at the end. ``width`` scales every channel count (1.0 = the reference).

    ``pooling`` — the variants of the thesis' Table 2.1 (feature map ``[B, T', H', W', D]``,
    ``fc`` the 1×1×1 classifier): ``avg_features`` (Hara's global average pool, the default),
    ``max_features`` (3D max), ``avg_scores`` / ``max_scores`` (``fc`` at every position,
    then 3D average / max of the scores), ``two_step`` (spatial max of the features, ``fc``
    per frame, temporal average of the scores: the best in the thesis). With ``dense`` only
    the spatial part applies. ``input_dropout`` drops input pixels, ``dropout`` the pooled
    features (the thesis' chapter 2 uses 0.3 and 0.9).

    ``attention``: an attention module constructor (``models.attention.build``) placed by its
    ``level``: the input video (STN), the last feature maps, or the maps again for 'frames' modules (last block output). ``freeze_features``:
    the layers before the module run in inference mode and pass it no gradient (two-step
    training: set ``optimizer.trainable`` to the module and the layers after it).
    """

    num_classes: int
    dense: bool = False
    block: str = "basic"
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    base_planes: int = 64
    width: float = 1.0
    cardinality: int = 32  # bottleneck blocks only
    shortcut: str = "A"
    pooling: str = "avg_features"
    input_dropout: float = 0.0
    dropout: float = 0.0
    attention: Any = None
    freeze_features: bool = False
    dtype: jnp.dtype = jnp.float32
    remat: str = ""
    remat_policy: str = "nothing_saveable"

    # Default LRP composite (attribution/lrp_composites.py): z⁺ convolutions, ε dense layers,
    # flat first layer.
    lrp_composite = "epsilon_plus_flat"

    @property
    def attribution_layer(self) -> str:
        """Default CAM layer: the last residual block."""
        return f"layer{len(self.stage_sizes)}_{self.stage_sizes[-1] - 1}"

    @property
    def attribution_classifier(self) -> str | None:
        """``fc`` when it reads globally averaged features (CAM applies), else None."""
        return "fc" if self.pooling in ("avg_features", "avg_scores") else None

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        remat = functools.partial(models.remat_block, remat=self.remat,
                                  policy=self.remat_policy, static_argnums=(2,))
        if self.block == "basic":
            block = remat(BasicBlock)
        elif self.block == "bottleneck":
            block = functools.partial(remat(BottleneckBlock), cardinality=self.cardinality)
        else:
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
        if self.pooling not in RESNET_POOLING:
            raise ValueError(f"pooling must be one of {', '.join(RESNET_POOLING)}, "
                             f"got {self.pooling!r}")
        t = 1 if self.dense else 2
        module = attention_module(self.attention, self.freeze_features)
        features_train = train and not self.freeze_features
        x = attend(module, "input", x.astype(self.dtype), train)
        x = nn.Dropout(self.input_dropout)(x, deterministic=not features_train)
        x = remat(ConvUnit)(scale_width(64, self.width), (7, 7, 7), (1, 2, 2), _pad(7),
                            dtype=self.dtype, name="conv1")(x, features_train)
        x = nn.max_pool(x, (3, 3, 3), strides=(t, 2, 2), padding=_pad(3))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for i in range(num_blocks):
                strides = (t, 2, 2) if stage > 0 and i == 0 else (1, 1, 1)
                planes = scale_width(self.base_planes * 2**stage, self.width)
                x = block(planes, strides, self.shortcut, dtype=self.dtype,
                          name=f"layer{stage + 1}_{i}")(x, features_train)
        for level in ("maps", "frames"):
            x = attend(module, level, x, train, self.freeze_features)
        return self.classify(x, train).astype(jnp.float32)

    def classify(self, features: jnp.ndarray, train: bool) -> jnp.ndarray:
        """Table 2.1 pooling + ``fc``: ``[B, T', H', W', D] → [B, C]`` (``[B, T', C]`` dense)."""
        fc = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")
        dropout = nn.Dropout(self.dropout, deterministic=not train)
        kind, _, level = self.pooling.partition("_")
        reduce = jnp.max if kind in ("max", "two") else jnp.mean
        if level == "scores":
            frames = reduce(fc(dropout(features)), axis=(2, 3))  # [B, T', C]
            return frames if self.dense else reduce(frames, axis=1)
        frames = reduce(features, axis=(2, 3))  # [B, T', D]
        if self.dense or self.pooling == "two_step":
            scores = fc(dropout(frames))
            return scores if self.dense else scores.mean(axis=1)
        return fc(dropout(reduce(frames, axis=1)))


@models.register("resnext3d_101")
class ResNeXt3D(ResNet3D):
    """3D ResNeXt-101 (Hara et al. 2018): ResNet3D with bottleneck blocks [3, 4, 23, 3],
    planes 128/256/512/1024 (expansion 2, 2048 output maps), cardinality 32, shortcut type B.

    ``x [B, T, H, W, C] → logits [B, num_classes]``, or ``[B, T, num_classes]`` with ``dense``.
    """

    block: str = "bottleneck"
    stage_sizes: Sequence[int] = (3, 4, 23, 3)
    base_planes: int = 128
    shortcut: str = "B"
