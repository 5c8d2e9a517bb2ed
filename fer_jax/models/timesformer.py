"""TimeSformer (Bertasius et al. 2021; Du Toit) with divided, joint or space-only attention.

Tokens are kept structured instead of flattened: a cls token ``[B, D]`` and patch tokens
``[B, N, T, D]`` (N = h·w patches in row-major order, T frames). Flattening the patch tokens
gives exactly the order of HF ``TimesformerModel`` and the official implementation
(cls, then patch-major / frame-minor: token ``1 + n·T + t``), so their checkpoints map onto
these parameters without permutation (``models.convert``).

``attention_type`` (the names of HF ``TimesformerConfig``):

* ``divided_space_time`` (default; HF ``TimesformerLayer``): temporal attention over the T
  tokens of each patch position, then ``temporal_dense``, residual; spatial attention within
  each frame over [cls, N patches], the cls token replicated per frame and its T outputs
  averaged back, residual; MLP, residual.
* ``joint_space_time``: one attention over all ``1 + N·T`` tokens per block.
* ``space_only``: no time embedding; every frame is an independent ViT sequence with its own
  copy of the cls token; after the last block all tokens are averaged over frames (as the
  official implementation does) before the final LayerNorm.

LayerNorm eps 1e-6, exact GELU (``gelu_approximate=True`` gives HF's ``gelu_new``), fused qkv
projection with bias, as in the references.

Attention probabilities are sown into the ``intermediates`` collection under
``blocks_{i}/attention/attention_probs`` (spatial or joint attention) and, for divided
attention, ``blocks_{i}/temporal_attention/attention_probs``:

================  ============================================  ==========================
attention_type    ``attention``                                 ``temporal_attention``
================  ============================================  ==========================
divided           ``[B, T, heads, 1+N, 1+N]``                   ``[B, N, heads, T, T]``
joint             ``[B, heads, 1+N·T, 1+N·T]``                  —
space_only        ``[B, T, heads, 1+N, 1+N]``                   —
================  ============================================  ==========================

The same probabilities pass through ``self.perturb('attention_probs', ...)`` (skipped while
initialising, so ``init`` returns no ``perturbations`` collection and a plain ``apply`` is
unchanged): applying with a zero ``perturbations`` collection of the same structure (shapes from
``jax.eval_shape(model.apply, ..., mutable=['perturbations'])``) and differentiating with
respect to it gives d score / d attention probabilities, which the gradient-weighted attention
explanations of ``attribution.attention`` use. The perturbation is added before attention
dropout.

``attribution_layer`` (``blocks_{L-1}``) and ``attribution_grid`` (its output as patch tokens
``[B, T, h, w, D]``) are the defaults of the CAM methods of ``attribution``.

Accelerator options (``config.model.precision``, ``attention_implementation``, ``remat``):

* ``dtype``: computation dtype of every layer (e.g. ``jnp.bfloat16``); parameters stay float32
  (flax's ``param_dtype``), attention probabilities are formed in float32 and the logits are
  returned in float32.
* ``attention_implementation``: ``'explicit'`` (default) forms the probabilities as above;
  ``'auto'``, ``'xla'``, ``'cudnn'`` call ``jax.nn.dot_product_attention``, which never forms
  them on the cuDNN path. Whenever the probabilities are needed (the ``intermediates`` or
  ``perturbations`` collection is mutable, perturbations are given, or attention dropout is
  active in training) a block computes them explicitly whatever this says, so the attention
  explanations work on any model (``models.explicit_attention``).
* ``remat='block'`` wraps every block in ``nn.remat`` with
  ``jax.checkpoint_policies.<remat_policy>`` (``models.remat_block``): the backward pass
  recomputes a block's activations from its input. Parameter paths, values and gradients are
  unchanged; layer taps (``attribution.LayerTaps``) cannot see inside a rematerialised block,
  which is why explanations build the model without it.

Stochastic depth drops a whole residual branch per example (the references drop per reshaped
row, i.e. per patch in temporal attention and per frame in spatial attention; per example is
the textbook definition and keeps the branches of one video consistent).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from fer_jax import models

LayerNorm = functools.partial(nn.LayerNorm, epsilon=1e-6)
trunc_normal = nn.initializers.truncated_normal(stddev=0.02)
Dense = functools.partial(nn.Dense, kernel_init=trunc_normal)


class PatchEmbedding(nn.Conv):
    """``nn.Conv`` with ``strides == kernel_size`` and ``'VALID'`` padding (non-overlapping
    patches) computed as one matrix product of the flattened patches with the kernel
    ``[p·p·C, D]``: ``[..., H, W, C] → [..., H/p, W/p, D]``, the same parameters (``kernel
    [p, p, C, D]``, ``bias [D]``, same initialisation) and values as the convolution up to
    rounding. XLA's CPU backend computes the convolution's kernel gradient (a dilated
    convolution) about twice as slow as this product's."""

    @nn.compact
    def __call__(self, inputs: jnp.ndarray) -> jnp.ndarray:
        p, q = self.kernel_size
        *lead, height, width, channels = inputs.shape
        if (tuple(self.strides) != (p, q) or self.padding != "VALID"
                or self.feature_group_count != 1 or height % p or width % q):
            raise ValueError("PatchEmbedding needs strides == kernel_size, 'VALID' padding, "
                             "one feature group and a size divisible by the kernel")
        kernel = self.param("kernel", self.kernel_init, (p, q, channels, self.features),
                            self.param_dtype)
        bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
                if self.use_bias else None)
        inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
        patches = inputs.reshape(*lead, height // p, p, width // q, q, channels)
        patches = jnp.swapaxes(patches, -4, -3).reshape(*lead, height // p, width // q,
                                                        p * q * channels)
        y = jnp.matmul(patches, kernel.reshape(p * q * channels, self.features),
                       precision=self.precision)
        return y if bias is None else y + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def qkv_attention(qkv: jnp.ndarray, scale: float) -> jnp.ndarray:
    """``softmax(Q Kᵀ · scale) V`` of a fused projection ``qkv [..., S, 3, heads, d]`` →
    ``[..., S, heads, d]``, the probabilities formed in float32 exactly as ``Attention``'s
    explicit computation forms them (the same values), with a hand-written backward pass:
    the standard softmax backward from the saved probabilities, and the gradients of Q, K and V
    written into one ``[..., S, 3, heads, d]`` array (no zero-padded slices summed, no
    broadcast statistics materialised). For the training path, where nothing reads the
    probabilities."""
    return _qkv_attention_forward(qkv, scale)[0]


def _qkv_attention_forward(qkv, scale):
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k) * scale
    probs = nn.softmax(logits.astype(jnp.float32), axis=-1)
    out = jnp.einsum("...hqk,...khd->...qhd", probs.astype(qkv.dtype), v)
    return out, (qkv, probs)


def _qkv_attention_backward(scale, residuals, g):
    qkv, probs = residuals
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    dv = jnp.einsum("...hqk,...qhd->...khd", probs.astype(g.dtype), g)
    dp = jnp.einsum("...qhd,...khd->...hqk", g, v).astype(jnp.float32)
    ds = probs * (dp - jnp.sum(dp * probs, axis=-1, keepdims=True))
    ds = (ds * scale).astype(qkv.dtype)
    dq = jnp.einsum("...hqk,...khd->...qhd", ds, k)
    dk = jnp.einsum("...hqk,...qhd->...khd", ds, q)
    return (jnp.stack([dq, dk, dv], axis=-3),)


qkv_attention.defvjp(_qkv_attention_forward, _qkv_attention_backward)


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis.

    ``x [..., S, D] → [..., S, D]``; any leading axes are independent sequences.
    ``implementation`` (``models.ATTENTION_IMPLEMENTATIONS``): ``'explicit'`` forms, sows and
    perturbs the float32 probabilities; a fused one calls ``jax.nn.dot_product_attention``
    and falls back to the explicit computation whenever the probabilities are needed
    (``models.explicit_attention``: attention dropout in training, the ``intermediates`` or
    ``perturbations`` collection mutable). With ``'explicit'`` and nothing reading the
    probabilities (``models.probabilities_read``) the same values come from ``qkv_attention``,
    whose backward pass is written by hand.
    """

    num_heads: int
    attention_dropout: float = 0.0
    dropout: float = 0.0
    dtype: jnp.dtype = jnp.float32
    implementation: str = "explicit"

    # For relevance propagation (attribution.attn_lrp): the fused projection whose output's
    # thirds are Q, K and V.
    attribution_qkv = "qkv"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        *lead, length, dim = x.shape
        if dim % self.num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by {self.num_heads} heads")
        head_dim = dim // self.num_heads
        qkv = Dense(3 * dim, dtype=self.dtype, name="qkv")(x)
        qkv = qkv.reshape(*lead, length, 3, self.num_heads, head_dim)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        models.check_attention_implementation(self.implementation)
        read = models.probabilities_read(self, "attention_probs",
                                         dropout=train and self.attention_dropout > 0)
        if self.implementation == "explicit" and not read:  # training and plain inference
            out = qkv_attention(qkv, head_dim**-0.5)
        elif read or self.implementation == "explicit":
            logits = jnp.einsum("...qhd,...khd->...hqk", q, k) * head_dim**-0.5
            probs = nn.softmax(logits.astype(jnp.float32), axis=-1)
            self.sow("intermediates", "attention_probs", probs)
            if not self.is_initializing():  # init never creates a `perturbations` collection
                probs = self.perturb("attention_probs", probs)
            probs = nn.Dropout(self.attention_dropout)(probs, deterministic=not train)
            out = jnp.einsum("...hqk,...khd->...qhd", probs.astype(self.dtype), v)
        else:
            out = models.fused_attention(q, k, v, self.implementation)
        out = Dense(dim, dtype=self.dtype, name="proj")(out.reshape(*lead, length, dim))
        return nn.Dropout(self.dropout)(out, deterministic=not train)


class Mlp(nn.Module):
    """Transformer MLP ``[..., D] → [..., D]`` with GELU (exact unless ``approximate``)."""

    hidden_dim: int
    dropout: float = 0.0
    approximate: bool = False
    dtype: jnp.dtype = jnp.float32

    # For relevance propagation (attribution.attn_lrp): the method applying the elementwise
    # nonlinearity, which gets the identity rule.
    attribution_elementwise = "activation"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        dim = x.shape[-1]
        x = Dense(self.hidden_dim, dtype=self.dtype, name="fc1")(x)
        x = self.activation(x)
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = Dense(dim, dtype=self.dtype, name="fc2")(x)
        return nn.Dropout(self.dropout)(x, deterministic=not train)

    def activation(self, x: jnp.ndarray) -> jnp.ndarray:
        """GELU, elementwise (same shape). A method of its own so that relevance propagation
        can intercept it (``attribution.attn_lrp``: the identity rule); no parameters.

        The exact GELU is ``x/2 · (1 + erf(x/√2))``, PyTorch's formula (HF's ``'gelu'``);
        ``jax.nn.gelu``'s ``x/2 · erfc(−x/√2)`` is the same function up to rounding
        (≤ 1e-6 absolute in float32) but XLA's CPU backend computes ``erfc`` about three times
        slower than ``erf``."""
        if self.approximate:
            return nn.gelu(x, approximate=True)
        return x * (0.5 * (1 + jax.lax.erf(x * jnp.asarray(0.5**0.5, x.dtype))))


def drop_path(module: nn.Module, rate: float, train: bool,
              *branches: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """Stochastic depth: keeps or drops each example's residual ``branches`` together.

    Every branch has the batch as its leading axis; kept branches are scaled by 1/keep.
    """
    if not train or rate == 0.0:
        return branches
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(module.make_rng("dropout"), keep_prob, (len(branches[0]),))
    scale = keep.astype(branches[0].dtype) / keep_prob
    return tuple(b * scale.reshape((-1,) + (1,) * (b.ndim - 1)) for b in branches)


class BlockConfig(nn.Module):
    """Fields shared by the block types (a base class, never applied itself)."""

    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0
    gelu_approximate: bool = False
    dtype: jnp.dtype = jnp.float32
    attention_implementation: str = "explicit"

    def attention(self, name: str) -> Attention:
        return Attention(self.num_heads, self.attention_dropout, self.dropout, self.dtype,
                         self.attention_implementation, name=name)

    def mlp(self, dim: int) -> Mlp:
        return Mlp(int(dim * self.mlp_ratio), self.dropout, self.gelu_approximate, self.dtype,
                   name="mlp")


class EncoderBlock(BlockConfig):
    """Pre-norm ViT block on ``x [B, ..., S, D]`` (attention over S, then MLP); joint and
    space-only attention use it."""

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        y = LayerNorm(dtype=self.dtype, name="layernorm_before")(x)
        (y,) = drop_path(self, self.drop_path_rate, train,
                         self.attention("attention")(y, train))
        x = x + y
        y = LayerNorm(dtype=self.dtype, name="layernorm_after")(x)
        (y,) = drop_path(self, self.drop_path_rate, train, self.mlp(x.shape[-1])(y, train))
        return x + y


class DividedSpaceTimeBlock(BlockConfig):
    """One divided space-time block on ``cls [B, D]`` and ``tokens [B, N, T, D]``."""

    @nn.compact
    def __call__(self, cls, tokens, train: bool):
        """``cls [B, D], tokens [B, N, T, D] → (cls, tokens)`` of the same shapes."""
        dim = tokens.shape[-1]
        # 1. Temporal attention: sequences over T for every (example, patch).
        y = LayerNorm(dtype=self.dtype, name="temporal_layernorm")(tokens)
        (y,) = drop_path(self, self.drop_path_rate, train,
                         self.attention("temporal_attention")(y, train))
        # Zero-initialised as in the official implementation: the block starts as a
        # space-only block, which stabilises training from scratch.
        y = nn.Dense(dim, dtype=self.dtype, kernel_init=nn.initializers.zeros,
                     name="temporal_dense")(y)
        tokens = tokens + y

        # 2. Spatial attention: sequences [cls, N patches] for every (example, frame).
        batch, num_patches, num_frames, _ = tokens.shape
        frames = jnp.swapaxes(tokens, 1, 2)  # [B, T, N, D]
        cls_per_frame = jnp.broadcast_to(cls[:, None, None, :], (batch, num_frames, 1, dim))
        s = jnp.concatenate([cls_per_frame, frames], axis=2)  # [B, T, 1+N, D]
        s = LayerNorm(dtype=self.dtype, name="layernorm_before")(s)
        (s,) = drop_path(self, self.drop_path_rate, train, self.attention("attention")(s, train))
        cls = cls + s[:, :, 0].mean(axis=1)
        tokens = tokens + jnp.swapaxes(s[:, :, 1:], 1, 2)

        # 3. MLP on every token.
        mlp = self.mlp(dim)
        norm = LayerNorm(dtype=self.dtype, name="layernorm_after")
        cls_out, tokens_out = drop_path(self, self.drop_path_rate, train,
                                        mlp(norm(cls), train), mlp(norm(tokens), train))
        return cls + cls_out, tokens + tokens_out


ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")


def block_output_grid(attention_type: str, patch_size: int, output, x: jnp.ndarray):
    """A block's output (or its ``layernorm_before`` output) as patch tokens
    ``[B, T, h, w, D]``, ``h, w = H // p, W // p`` of ``x [B, T, H, W, C]``; the cls token(s)
    dropped.

    ``output``: divided ``(cls [B, D], tokens [B, N, T, D])`` (block) or ``[B, T, 1+N, D]``
    (its spatial ``layernorm_before``); joint ``[B, 1+N·T, D]`` (token ``1 + n·T + t``);
    space-only ``[B, T, 1+N, D]``.
    """
    batch, frames, height, width = x.shape[:4]
    h, w = height // patch_size, width // patch_size
    if attention_type == "divided_space_time" and not isinstance(output, tuple):
        tokens = jnp.swapaxes(output[:, :, 1:], 1, 2)
    elif attention_type == "divided_space_time":
        tokens = output[1]  # [B, N, T, D]
    elif attention_type == "joint_space_time":
        tokens = output[:, 1:].reshape(batch, h * w, frames, -1)
    elif attention_type == "space_only":
        tokens = jnp.swapaxes(output[:, :, 1:], 1, 2)
    else:
        raise ValueError(f"unknown attention_type {attention_type!r}; "
                         f"use one of {', '.join(ATTENTION_TYPES)}")
    tokens = tokens.reshape(batch, h, w, frames, tokens.shape[-1])
    return jnp.moveaxis(tokens, 3, 1)


@models.register("timesformer")
class TimeSformer(nn.Module):
    """Video classifier ``x [B, T, H, W, C] → logits [B, num_classes]`` (float32).

    Position (``[1 + N, D]``) and time (``[T, D]``) embeddings are sized from the input at
    init, so the same module serves any frame count and image size divisible by the patch.
    Defaults are ViT-B/16 (768 wide, 12 layers, 12 heads) with divided attention.
    """

    num_classes: int
    patch_size: int = 16
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    attention_type: str = "divided_space_time"
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0
    gelu_approximate: bool = False
    dtype: jnp.dtype = jnp.float32
    attention_implementation: str = "explicit"
    remat: str = ""
    remat_policy: str = "nothing_saveable"

    @property
    def attribution_layer(self) -> str:
        """The layer CAM methods explain by default: the last block's (spatial) attention
        LayerNorm, pytorch-grad-cam's ``blocks[-1].norm1`` for ViTs. (The last block's output
        tokens do not reach the logits — only its cls token does — so their gradient is 0.)"""
        return f"blocks_{self.num_layers - 1}/layernorm_before"

    def attribution_grid(self, output, x: jnp.ndarray) -> jnp.ndarray:
        """A block's (or its ``layernorm_before``'s) output as patch tokens
        ``[B, T, h, w, D]`` (``block_output_grid``).

        Uses only configuration fields, so it also works on an unbound module."""
        return block_output_grid(self.attention_type, self.patch_size, output, x)

    def embed(self, x: jnp.ndarray, train: bool) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Patch, position and time embeddings: ``x [B, T, H, W, C] → (cls [B, D],
        tokens [B, N, T, D])``."""
        batch, num_frames, height, width, _ = x.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"frame size {height}x{width} is not divisible by patch size {p}")
        patches = PatchEmbedding(self.hidden_size, (p, p), strides=(p, p), padding="VALID",
                                 dtype=self.dtype, name="patch_embeddings")(
            x.reshape(batch * num_frames, height, width, -1).astype(self.dtype))
        num_patches = patches.shape[1] * patches.shape[2]
        tokens = patches.reshape(batch, num_frames, num_patches, self.hidden_size)
        tokens = jnp.swapaxes(tokens, 1, 2)  # [B, N, T, D]

        cls_token = self.param("cls_token", trunc_normal, (self.hidden_size,))
        position = self.param("position_embeddings", trunc_normal,
                              (1 + num_patches, self.hidden_size))
        cls = jnp.broadcast_to(cls_token + position[0], (batch, self.hidden_size))
        tokens = tokens + position[1:, None, :]
        if self.attention_type != "space_only":
            time = self.param("time_embeddings", nn.initializers.zeros,
                              (num_frames, self.hidden_size))
            tokens = tokens + time[None, :, :]
        tokens = nn.Dropout(self.dropout)(tokens.astype(self.dtype), deterministic=not train)
        return cls.astype(self.dtype), tokens

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(f"unknown attention_type {self.attention_type!r}; "
                             f"use one of {', '.join(ATTENTION_TYPES)}")
        cls, tokens = self.embed(x, train)
        batch, num_patches, num_frames, dim = tokens.shape
        models.check_attention_implementation(self.attention_implementation)
        block_args = dict(num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                          dropout=self.dropout, attention_dropout=self.attention_dropout,
                          gelu_approximate=self.gelu_approximate, dtype=self.dtype,
                          attention_implementation=self.attention_implementation)
        # remat='block': every block recomputed in the backward pass (static: `train`).
        divided_block, encoder_block = (
            models.remat_block(block, self.remat, self.remat_policy, static_argnums=(argnum,))
            for block, argnum in ((DividedSpaceTimeBlock, 3), (EncoderBlock, 2)))
        rates = [self.drop_path_rate * i / max(self.num_layers - 1, 1)
                 for i in range(self.num_layers)]

        if self.attention_type == "divided_space_time":
            for i, rate in enumerate(rates):
                cls, tokens = divided_block(**block_args, drop_path_rate=rate,
                                            name=f"blocks_{i}")(cls, tokens, train)
        elif self.attention_type == "joint_space_time":
            seq = jnp.concatenate([cls[:, None], tokens.reshape(batch, -1, dim)], axis=1)
            for i, rate in enumerate(rates):
                seq = encoder_block(**block_args, drop_path_rate=rate, name=f"blocks_{i}")(
                    seq, train)  # [B, 1+N·T, D]
            cls = seq[:, 0]
        else:  # space_only: [B, T, 1+N, D], one cls copy per frame
            frames = jnp.swapaxes(tokens, 1, 2)
            cls_per_frame = jnp.broadcast_to(cls[:, None, None], (batch, num_frames, 1, dim))
            seq = jnp.concatenate([cls_per_frame, frames], axis=2)
            for i, rate in enumerate(rates):
                seq = encoder_block(**block_args, drop_path_rate=rate, name=f"blocks_{i}")(
                    seq, train)
            cls = seq[:, :, 0].mean(axis=1)

        cls = LayerNorm(dtype=self.dtype, name="layernorm")(cls)
        logits = Dense(self.num_classes, dtype=self.dtype, name="classifier")(cls)
        return logits.astype(jnp.float32)
