"""2D ResNet-50 (He et al. 2016, torchvision's v1.5 layout) for face images and per-frame video.

Belharbi et al. train a ResNet-50 on aligned face images (RAF-DB, AffectNet) and align the
channel mean of its last stage with action-unit heatmaps. Its "large maps" variant sets the
strides of ``layer3`` and ``layer4`` to 1, so the last stage keeps 1/8 of the input resolution
(28×28 at 224 px) instead of 1/32 (7×7).

Inputs follow the zoo's contract, channels-last video ``x [B, T, H, W, C]``: every frame goes
through the same 2D network (images are clips of ``T = 1``), the per-frame logits are averaged
over time → ``[B, num_classes]``, or returned per frame ``[B, T, num_classes]`` with
``dense``. Feature maps keep the time axis, ``[B, T, h, w, D]``, so CAMs and layer attention
come out per frame.

Parameter names follow torchvision's ``resnet50`` (``conv1``, ``layer3_5/conv2``,
``layer1_0/downsample``, ``fc``) with each convolution and its BatchNorm held as
``conv`` and ``bn`` of a ``ConvUnit``, so ImageNet weights convert one to one
(``models.convert.resnet2d_from_torchvision``).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fer_jax import models
from fer_jax.models.cnn3d import ConvUnit, scale_width


class Bottleneck2D(nn.Module):
    """torchvision Bottleneck: 1×1 → 3×3 (strided) → 1×1 to ``4·planes``, BatchNorm after
    each, + shortcut (1×1 strided conv + BN where the shape changes), ReLU.

    ``[B, T, H, W, C] → [B, T, H / stride, W / stride, 4·planes]``.
    """

    planes: int
    stride: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        strides = (self.stride, self.stride)
        y = ConvUnit(self.planes, (1, 1), (1, 1), dtype=self.dtype, name="conv1")(x, train)
        y = ConvUnit(self.planes, (3, 3), strides, ((1, 1), (1, 1)), dtype=self.dtype,
                     name="conv2")(y, train)
        y = ConvUnit(4 * self.planes, (1, 1), (1, 1), relu=False, dtype=self.dtype,
                     name="conv3")(y, train)
        residual = x
        if x.shape[-1] != 4 * self.planes or self.stride != 1:
            residual = ConvUnit(4 * self.planes, (1, 1), strides, "VALID", relu=False,
                                dtype=self.dtype, name="downsample")(x, train)
        return nn.relu(y + residual)


@models.register("resnet2d_50")
class ResNet2D(nn.Module):
    """2D ResNet applied to every frame; defaults: ResNet-50.

    ``x [B, T, H, W, C] → logits [B, num_classes]`` (mean over frames), or
    ``[B, T, num_classes]`` with ``dense``.

    conv1 7×7 stride 2 (64 channels) + BN + ReLU → max-pool 3×3 stride 2 → stages of
    bottleneck blocks with ``64·2^i`` planes (×4 output channels), stride 2 at the first block
    of stages 2–4 (1 for stages 3–4 with ``large_maps``) → global average pool per frame →
    dropout → ``fc``. ``width`` scales every channel count (1.0 = the reference).
    ``remat='block'`` recomputes conv1 and every bottleneck block in the backward pass
    (``models.remat_block``).
    """

    num_classes: int
    stage_sizes: Sequence[int] = (3, 4, 6, 3)
    width: float = 1.0
    large_maps: bool = False
    dense: bool = False
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32
    remat: str = ""
    remat_policy: str = "nothing_saveable"

    def __post_init__(self):
        # Lists (from JSON, e.g. converted-weight files) would make the module unhashable.
        object.__setattr__(self, "stage_sizes", tuple(self.stage_sizes))
        super().__post_init__()

    @property
    def attribution_layer(self) -> str:
        """Default CAM / layer-attention layer: the last residual block (Belharbi et al.'s
        layer 5)."""
        return f"layer{len(self.stage_sizes)}_{self.stage_sizes[-1] - 1}"

    attribution_classifier = "fc"  # global average pool → fc: CAM applies
    # Default LRP composite (attribution/lrp_composites.py): z⁺ convolutions, ε dense layers,
    # flat first layer.
    lrp_composite = "epsilon_plus_flat"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if x.ndim != 5:
            raise ValueError(f"{type(self).__name__} takes video [B, T, H, W, C] (images as "
                             f"T = 1), got shape {x.shape}")
        remat = functools.partial(models.remat_block, remat=self.remat,
                                  policy=self.remat_policy, static_argnums=(2,))
        x = remat(ConvUnit)(scale_width(64, self.width), (7, 7), (2, 2), ((3, 3), (3, 3)),
                            dtype=self.dtype, name="conv1")(x.astype(self.dtype), train)
        bottleneck = remat(Bottleneck2D)
        x = nn.max_pool(x, (1, 3, 3), strides=(1, 2, 2), padding=((0, 0), (1, 1), (1, 1)))
        for stage, num_blocks in enumerate(self.stage_sizes):
            for i in range(num_blocks):
                stride = 2 if i == 0 and stage > 0 and not (self.large_maps and stage >= 2) \
                    else 1
                x = bottleneck(scale_width(64 * 2**stage, self.width), stride, self.dtype,
                               name=f"layer{stage + 1}_{i}")(x, train)
        features = x.mean(axis=(2, 3))  # [B, T, D]
        features = nn.Dropout(self.dropout)(features, deterministic=not train)
        scores = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(features)
        scores = scores.astype(jnp.float32)
        return scores if self.dense else scores.mean(axis=1)
