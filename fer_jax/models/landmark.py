"""Small 2D CNNs over landmark matrices and frame stacks (Gund et al.; Forsman & Singh).

Three Keras-era classifiers with the layer order, flatten order and trainable parameters of the
Keras models as the papers describe them (the stated counts are met exactly for ``tcn`` and
``early_fusion_cnn``; for ``scn`` no reading of the text meets it, see below):

* ``tcn`` — temporal convolutional network on facial landmarks (Gund, Bharadwaj &
  Nwogu, "Interpretable Emotion Classification Using Temporal Convolutional Models");
* ``scn`` — the stacked convolutional network of the same paper, on 20 grayscale frames stacked
  as input channels;
* ``early_fusion_cnn`` — the early-fusion video CNN of Forsman & Singh (LRP on
  HMDB-51), 16 grayscale frames stacked as input channels.

Common conventions
------------------
* ``dtype`` is the computation dtype; parameters stay float32 and logits are returned in float32.
* Frames become input channels in frame-major order: ``[B, T, H, W, C] → [B, H, W, T·C]``,
  channel ``t·C + c`` is channel ``c`` of frame ``t`` (with grayscale video, channel ``t`` is
  frame ``t``, as in the Keras inputs ``(224, 224, 20)`` and ``(100, 100, 16)``).
* Flatten is row-major over ``(H, W, C)``, i.e. Keras ``Flatten`` on channels-last maps, so Keras
  ``Dense`` kernels load without permutation. Dense input sizes are inferred from the input at
  init, so the models run on fewer frames, fewer landmarks or smaller images.
* Convolution and dense kernels use Glorot-uniform initialisation and zero biases (Keras
  defaults). BatchNorm follows Keras defaults too (momentum 0.99, epsilon 1e-3); its running
  statistics live in the ``batch_stats`` collection (``use_running_average=not train``; train
  with ``mutable=['batch_stats']``). Only ``scale``/``bias`` are in ``params``, which is what
  Keras reports as *trainable* parameters; the moving mean/variance are non-trainable in Keras
  and are not counted below.
* Softmax is left to the loss: the models return logits (the papers' final softmax and the
  "softmax removed" copy used for LRP are both this output).
* Neither paper mentions dropout (Forsman & Singh's Keras summary lists no Dropout layer), so
  ``dropout`` defaults to 0. When set, it is applied to the output of ``dense1`` (the input of
  ``classifier``) in training mode only, drawing from the ``'dropout'`` rng.
* The final convolutional feature map is sown as ``intermediates/features`` (after its ReLU and
  BatchNorm, before the last max-pool), the map class activation maps are computed from; call
  ``apply(..., mutable=['intermediates'])`` or ``capture_intermediates=True`` to read it.

``tcn`` (Gund et al., section IV-B-2) — exactly 330,119 trainable parameters
----------------------------------------------------------------------------
Input ``[B, T=20, L=68, 2]`` (x, y per landmark per frame) is transposed to the paper's
``68 × 20 × 2`` matrix, ``[B, L, T, 2]``: height = landmarks, width = frames, channels =
coordinates, so convolutions mix neighbouring landmarks and neighbouring frames and a map over
the last feature map reads as landmarks × frames. The text: block 1 is "similar to the first
block of the SCN" with 64 3×3 then 128 2×2 filters, max-pool 3×3 stride 2; block 2 is "one of
the mini-blocks" of the SCN; then dense 64 and dense 7, ReLU everywhere but the output. The
reading that gives the stated count exactly:

==================  ==============================  ==================  ============
layer               operation                       output (full size)  params
==================  ==============================  ==================  ============
``conv1``, ``bn1``  conv 3×3, 64, SAME; ReLU; BN     [B, 68, 20, 64]     1,216 + 128
``conv2``, ``bn2``  conv 2×2, 128, SAME; ReLU; BN    [B, 68, 20, 128]   32,896 + 256
(pool)              max-pool 3×3 stride 2, VALID     [B, 33, 9, 128]
``conv3``, ``bn3``  conv 2×2, 64, SAME; ReLU; BN     [B, 33, 9, 64]     32,832 + 128
(pool)              max-pool 3×3 stride 2, VALID     [B, 16, 4, 64]
(flatten)                                            [B, 4096]
``dense1``          dense 64, ReLU                   [B, 64]                 262,208
``classifier``      dense num_classes                [B, 7]                      455
==================  ==============================  ==================  ============

Choices (together they give the exact count; the stated figure rules out the alternatives
tried — global pooling, 3×3 kernels or 128/256 filters in block 2, no pool after block 2, one
BatchNorm per block): a mini-block is convolution → ReLU → BatchNorm (one BatchNorm per
convolution, as in the SCN's first block, which block 1 is "similar to"); block 2's mini-block
is a 64-filter 2×2 convolution followed, like block 1, by a 3×3/2 max-pool; the head flattens.
Total: 1,216 + 128 + 32,896 + 256 + 32,832 + 128 + 262,208 + 455 = 330,119. (The same figure
also comes out with BatchNorm only after ``conv2`` if its moving statistics were counted as
trainable, which Keras does not do.)
Convolution padding SAME with VALID pools and convolution padding VALID with SAME pools both
give the 16 × 4 map (and the same count); SAME convolutions are used, as in VGG, so the first
block keeps the full 68 × 20 landmark × frame grid. The sown ``features`` map is ``bn3``'s
output, ``[B, 33, 9, 64]`` at full size. Default dropout 0.

``scn`` (Gund et al., section IV-B-1) — stated 5,647,943; no reading reaches it
-------------------------------------------------------------------------------
Input ``[B, 20, 224, 224, 1]`` is stacked to ``[B, 224, 224, 20]``. The text: three blocks,
each "two mini-blocks of convolutional layers followed by a batch normalization layer" and a
2×2 stride-2 max-pool, 3×3 filters, 64, 128 and 256 per block, ReLU; then a fourth block of
dense 256 (ReLU) and dense 7. As in ``tcn``, a mini-block is
convolution (SAME) → ReLU → BatchNorm. Layers: ``conv1``…``conv6`` with ``bn1``…``bn6``
(``conv{2i-1}``, ``conv{2i}`` in block ``i``), ``dense1``, ``classifier``. Convolutions plus
BatchNorm hold 1,155,200 + 1,792 = 1,156,992 parameters, the classifier 1,799.

What feeds ``dense1`` is not stated, and neither choice gives 5,647,943:

* ``head='gap'`` (default): global average pooling of the ``[B, 28, 28, 256]`` map, the
  architecture of the class activation maps (Zhou et al.) the paper computes. ``dense1`` has
  65,792 parameters; total **1,224,583**, 4,423,360 fewer than stated.
* ``head='flatten'``: flattening the 28 × 28 × 256 map (200,704 features), as ``tcn`` does;
  ``dense1`` has 51,380,480; total **52,539,271**, 46,891,328 more than stated.

No variant of the described layers reaches the stated figure. With 20 input channels,
5,647,943 − 1,156,992 − 1,799 − 256 (``dense1``'s bias) = 4,488,896 = 256 × 17,534.75, so
``dense1`` would need a fractional number of inputs whatever the map size. A search over
input sizes 8–256, SAME/VALID convolutions, 2×2/2, 3×3/2 and 3×3/3 pools, BatchNorm per
convolution or per block (with or without moving statistics), convolutions with or without
biases, 1, 3, 20 or 60 input channels and 1–4 convolutions per block found no combination
with a flatten or global-pooling head that gives 5,647,943. The reading nearest by count,
``head='gap'``, is the default; the tests assert both figures. The sown ``features`` map is
``bn6``'s output (before the third pool), ``[B, 56, 56, 256]`` at full size. Default
dropout 0.

``early_fusion_cnn`` (Forsman & Singh, Figure 4.1) — exactly 75,525,224 parameters
----------------------------------------------------------------------------------
Input ``[B, 16, 100, 100, 1]`` stacked to ``[B, 100, 100, 16]``; the Keras summary fixes every
layer (VALID convolutions, biases everywhere, no BatchNorm, no dropout):

==============  ===========================  ==================  ==========
layer           operation                    output              params
==============  ===========================  ==================  ==========
``conv1``       conv 3×3, 32, VALID; ReLU    [B, 98, 98, 32]          4,640
``conv2``       conv 3×3, 64, VALID; ReLU    [B, 96, 96, 64]         18,496
(pool)          max-pool 2×2 stride 2        [B, 48, 48, 64]
(flatten)                                    [B, 147,456]
``dense1``      dense 512, ReLU              [B, 512]            75,497,984
``classifier``  dense 8                      [B, 8]                   4,104
==============  ===========================  ==================  ==========

The activations are not named in the report; ReLU is used (the ε/z-rules of LRP assume ReLU
networks). The sown ``features`` map is ``conv2``'s output, ``[B, 96, 96, 64]``.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from fer_jax import models

glorot = nn.initializers.xavier_uniform()
Conv = functools.partial(nn.Conv, kernel_init=glorot)
Dense = functools.partial(nn.Dense, kernel_init=glorot)


def stack_frames_as_channels(x: jnp.ndarray) -> jnp.ndarray:
    """``[B, T, H, W, C] → [B, H, W, T·C]``, frame-major (channel ``t·C + c``)."""
    if x.ndim != 5:
        raise ValueError(f"expected video [B, T, H, W, C], got shape {x.shape}")
    batch, frames, height, width, channels = x.shape
    x = jnp.transpose(x, (0, 2, 3, 1, 4))
    return x.reshape(batch, height, width, frames * channels)


def max_pool(x: jnp.ndarray, window: int, stride: int) -> jnp.ndarray:
    """Keras ``MaxPooling2D(window, strides=stride)`` with its default VALID padding."""
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding="VALID")


def _mini_block(module: nn.Module, x: jnp.ndarray, index: int, features: int,
                kernel: int, train: bool) -> jnp.ndarray:
    """Convolution (SAME) → ReLU → BatchNorm named ``conv{index}``/``bn{index}`` in ``module``."""
    x = Conv(features, (kernel, kernel), padding="SAME", dtype=module.dtype,
             name=f"conv{index}")(x)
    x = nn.relu(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3,
                        dtype=module.dtype, name=f"bn{index}")(x)


def _dense_head(module: nn.Module, x: jnp.ndarray, hidden: int, train: bool) -> jnp.ndarray:
    """``dense1`` (ReLU) → dropout → ``classifier``; returns float32 logits."""
    x = nn.relu(Dense(hidden, dtype=module.dtype, name="dense1")(x))
    x = nn.Dropout(module.dropout)(x, deterministic=not train)
    logits = Dense(module.num_classes, dtype=module.dtype, name="classifier")(x)
    return logits.astype(jnp.float32)


@models.register("tcn")
class TemporalConvNet(nn.Module):
    """Landmark TCN of Gund et al.: ``x [B, T, L, 2] → logits [B, num_classes]`` (float32).

    ``x`` holds the (x, y) coordinates of ``L`` landmarks (68 in the paper) over ``T`` frames
    (20 in the paper). Convolutions run over the ``[L, T]`` grid with the coordinates as
    channels. Sows ``intermediates/features``, ``bn3``'s output
    ``[B, (L-1)//2, (T-1)//2, features[2]]`` (``[B, 33, 9, 64]`` at full size). Needs
    ``L, T ≥ 7``.
    """

    num_classes: int
    features: Sequence[int] = (64, 128, 64)
    hidden_units: int = 64
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32

    attribution_layer = "bn3"  # default CAM layer: the sown ``features`` map
    # The grid [B, L', T'] runs along the landmark and frame axes of x [B, T, L, 2]
    # (Score-CAM masks, FullGrad maps: attribution.core.input_axes).
    attribution_input_axes = (2, 1)
    # Default LRP composite (attribution/lrp_composites.py): epsilon_plus with the w² rule for
    # the first layer, whose input (coordinates) is unbounded.
    lrp_composite = {"first": "w2", "batch_norm": "pass", "conv": "zplus", "dense": "epsilon"}

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if x.ndim != 4:
            raise ValueError(f"expected landmarks [B, T, L, coordinates], got shape {x.shape}")
        if min(x.shape[1], x.shape[2]) < 7:
            raise ValueError(f"tcn needs at least 7 frames and 7 landmarks, got shape {x.shape}")
        x = jnp.swapaxes(x, 1, 2).astype(self.dtype)  # [B, L, T, 2]
        f1, f2, f3 = self.features
        x = _mini_block(self, x, 1, f1, 3, train)
        x = _mini_block(self, x, 2, f2, 2, train)
        x = max_pool(x, 3, 2)
        x = _mini_block(self, x, 3, f3, 2, train)
        self.sow("intermediates", "features", x)
        x = max_pool(x, 3, 2)
        x = x.reshape(x.shape[0], -1)
        return _dense_head(self, x, self.hidden_units, train)


@models.register("scn")
class StackedConvNet(nn.Module):
    """Stacked-frame CNN of Gund et al.: ``x [B, T, H, W, C] → logits [B, num_classes]``
    (float32).

    The paper's input is ``[B, 20, 224, 224, 1]``. One block per entry of ``features`` (three
    in the paper): two mini-blocks with that many filters and a 2×2/2 max-pool; then ``head``
    ('gap': global average pooling, default; 'flatten'), ``dense1`` and ``classifier``. Sows
    ``intermediates/features``, the last mini-block's output (``bn6`` with three blocks),
    ``[B, H//4, W//4, features[-1]]`` with three blocks. Needs ``H, W ≥ 2**len(features)``.
    """

    num_classes: int
    features: Sequence[int] = (64, 128, 256)
    hidden_units: int = 256
    head: str = "gap"
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32

    # Maps [B, H', W'] over frames stacked as channels run along the H, W axes of x
    # (Score-CAM masks every frame alike: attribution.core.input_axes).
    attribution_input_axes = (2, 3)
    # Default LRP composite (attribution/lrp_composites.py): z⁺ convolutions, ε dense layers,
    # flat first layer.
    lrp_composite = "epsilon_plus_flat"

    @property
    def attribution_layer(self) -> str:
        """Default CAM layer: the last BatchNorm, i.e. the sown ``features`` map."""
        return f"bn{2 * len(self.features)}"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.head not in ("gap", "flatten"):
            raise ValueError(f"scn head must be 'gap' or 'flatten', got {self.head!r}")
        x = stack_frames_as_channels(x).astype(self.dtype)
        smallest = 2 ** len(self.features)
        if min(x.shape[1:3]) < smallest:
            raise ValueError(f"scn with {len(self.features)} blocks needs frames of at least "
                             f"{smallest}x{smallest}, got {x.shape[1:3]}")
        for block, width in enumerate(self.features):
            x = _mini_block(self, x, 2 * block + 1, width, 3, train)
            x = _mini_block(self, x, 2 * block + 2, width, 3, train)
            if block == len(self.features) - 1:
                self.sow("intermediates", "features", x)
            x = max_pool(x, 2, 2)
        if self.head == "gap":
            x = x.astype(jnp.float32).mean(axis=(1, 2)).astype(self.dtype)
        else:
            x = x.reshape(x.shape[0], -1)
        return _dense_head(self, x, self.hidden_units, train)


@models.register("early_fusion_cnn")
class EarlyFusionCNN(nn.Module):
    """Early-fusion CNN of Forsman & Singh: ``x [B, T, H, W, C] → logits [B, num_classes]``
    (float32).

    The paper's input is ``[B, 16, 100, 100, 1]`` and ``num_classes`` 8. Sows
    ``intermediates/features`` ``[B, H-4, W-4, features[1]]`` (``conv2``'s output). Needs
    ``H, W ≥ 6``.
    """

    num_classes: int
    features: Sequence[int] = (32, 64)
    hidden_units: int = 512
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32

    # Default CAM layer: the last convolution (its output before the ReLU; the sown
    # ``features`` map is after it).
    attribution_layer = "conv2"
    attribution_input_axes = (2, 3)  # maps [B, H', W'] along x's H, W (frames as channels)
    # Default LRP composite (attribution/lrp_composites.py): z⁺ convolutions, ε dense layers,
    # flat first layer.
    lrp_composite = "epsilon_plus_flat"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = stack_frames_as_channels(x).astype(self.dtype)
        if min(x.shape[1:3]) < 6:
            raise ValueError(f"early_fusion_cnn needs frames of at least 6x6, got {x.shape[1:3]}")
        f1, f2 = self.features
        x = nn.relu(Conv(f1, (3, 3), padding="VALID", dtype=self.dtype, name="conv1")(x))
        x = nn.relu(Conv(f2, (3, 3), padding="VALID", dtype=self.dtype, name="conv2")(x))
        self.sow("intermediates", "features", x)
        x = max_pool(x, 2, 2)
        x = x.reshape(x.shape[0], -1)
        return _dense_head(self, x, self.hidden_units, train)
