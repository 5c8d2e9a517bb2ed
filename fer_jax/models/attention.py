"""Visual attention modules for 3D CNNs (Ayral's thesis, chapter 4).

Every module maps a channels-last volume to one of the same shape and dtype and is **exactly
the identity at initialisation**: the last layer producing its gate, residual or transformation
offset is zero-initialised, so inserting a module into a pretrained network leaves the
network's output unchanged until training moves that layer.

* ``MaskAttention`` (Sec. 4.2, Eq. 4.10): a gate ``o = 1 + tanh(W2(W1 f + b1) + b2)`` in
  (0, 2) multiplies the features, one weight per frame (``'temporal'``), per spatial position
  (``'spatial'``) or per spatiotemporal position (``'3d'``), optionally conditioned on a
  context vector of the whole clip (Table 4.1: the multiplicative context 3D mask is best,
  46.22 % vs a 45.73 % baseline on AFEW).
* ``SelfAttention`` (Sec. 4.4, Eq. 4.7): residual multi-head scaled dot-product attention
  between frames, spatial positions or all spatiotemporal positions, without positional
  encoding (``num_heads=4``, ``head_dim=64`` recommended).
* ``TransformerNetwork`` (Sec. 4.3, Jaderberg et al. 2015): a localisation network regresses
  an affine transformation and the volume is resampled with (tri)linear interpolation; spatial
  per frame, temporal (scale and translation of the time axis) or 3D per clip. STNs did not
  help in the thesis (Table 4.2).

Inputs are feature maps ``f [B, T, H, W, D]``; the temporal mask and temporal self-attention
also take per-frame features ``[B, T, D]``. ``dtype`` is the computation dtype of the module's
layers; the output keeps the input's dtype (gates, residuals and samples are applied in it),
and the values sown into the ``'intermediates'`` collection are float32.

``level`` says where a module goes in a network: ``'input'`` (the STN, applied to the video),
``'frames'`` (temporal mask and temporal self-attention: after the per-frame features when the
network has them, else on the last feature maps) or ``'maps'`` (on the last feature maps).

>>> from fer_jax.models import attention
>>> make = attention.build('mask', kind='3d', context='multiplicative')
>>> module = make()
"""
from __future__ import annotations

import functools
import itertools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import models
from fer_jax.errors import UserError
from fer_jax.models.cnn3d import adaptive_avg_pool_matrix

KINDS = ("temporal", "spatial", "3d")
CONTEXTS = ("", "concat", "additive", "multiplicative")


def _check_choice(module: nn.Module, field: str, choices: tuple[str, ...]) -> None:
    value = getattr(module, field)
    if value not in choices:
        raise ValueError(f"unknown {type(module).__name__} {field} {value!r}; use one of "
                         f"{', '.join(repr(c) for c in choices)}")


class _ByKind:
    """Mixin of the modules with a ``kind`` ('temporal', 'spatial', '3d'): checks it when the
    module is constructed, and tells where the module goes."""

    def __post_init__(self):
        _check_choice(self, "kind", KINDS)
        super().__post_init__()

    @property
    def level(self) -> str:
        """``'frames'`` for the temporal kind, else ``'maps'``."""
        return "frames" if self.kind == "temporal" else "maps"


def _check_input(module: nn.Module, f: jnp.ndarray) -> None:
    """Maps ``[B, T, H, W, D]`` for every kind; per-frame ``[B, T, D]`` for 'temporal' only."""
    if f.ndim == 5 or (f.ndim == 3 and module.kind == "temporal"):
        return
    frames = " or per-frame features [B, T, D]" if module.kind == "temporal" else ""
    raise ValueError(f"{type(module).__name__}(kind={module.kind!r}) takes feature maps "
                     f"[B, T, H, W, D]{frames}, got shape {f.shape}")


class MaskAttention(_ByKind, nn.Module):
    """Gating mask attention (Eq. 4.10): ``f → y = o ⊙ f`` with ``o = 1 + tanh(logit) ∈ (0, 2)``.

    ``f [B, T, H, W, D] → y`` of the same shape (``[B, T, D]`` per-frame features are accepted
    with ``kind='temporal'``). The gate is broadcast over the channels:

    * ``'temporal'``: one weight per frame, from the spatially averaged features ``[B, T, D]``;
      gate ``[B, T, 1, 1, 1]`` (``[B, T, 1]`` for per-frame input).
    * ``'spatial'``: one weight per spatial position shared by all frames, from the
      time-averaged features ``[B, 1, H, W, D]``; gate ``[B, 1, H, W, 1]``.
    * ``'3d'``: one weight per (t, h, w); gate ``[B, T, H, W, 1]``.

    W1 (``w1``, ``hidden`` units) and W2 (``w2``, one unit, zero-initialised) are 1×1×1
    convolutions, i.e. Dense layers on the channel axis, applied without a non-linearity in
    between as in Eq. 4.10: ``logit_n = W2(W1 g_n + b1) + b2`` for the averaged features
    ``g_n`` of position n.

    ``context`` conditions every position on the whole clip through a context vector
    ``c = mean_n ReLU(Wc f_n + bc)`` ``[B, context_dim]`` (``context`` layer; the mean runs
    over all positions of ``f``):

    * ``'concat'``: ``logit_n = W2(W1 [g_n ; c] + b1) + b2``.
    * ``'additive'`` (Bahdanau): ``logit_n = W2 tanh(W1 g_n + Wq c + b1) + b2``.
    * ``'multiplicative'`` (best in Table 4.1): a dot product in the channel dimension,
      ``s_n = <W1 g_n + b1, Wq c> / sqrt(hidden)``, ``logit_n = w2 s_n + b2`` with scalar
      ``w2``, ``b2`` (a one-unit ``w2`` layer, zero-initialised).

    ``Wq`` (``query``, ``hidden`` units, no bias) maps the context to W1's space. Sows
    ``'mask'``: the gate ``o`` broadcast to ``[B, T, H, W]`` (``[B, T]`` for per-frame input),
    float32.
    """

    kind: str = "3d"
    hidden: int = 64
    context: str = ""
    context_dim: int = 64
    dtype: jnp.dtype = jnp.float32

    def __post_init__(self):
        _check_choice(self, "context", CONTEXTS)
        super().__post_init__()

    @nn.compact
    def __call__(self, f: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        _check_input(self, f)
        x = f.astype(self.dtype)
        if self.kind == "temporal" and x.ndim == 5:
            g = x.mean(axis=(2, 3), keepdims=True)  # [B, T, 1, 1, D]
        elif self.kind == "spatial":
            g = x.mean(axis=1, keepdims=True)  # [B, 1, H, W, D]
        else:
            g = x
        w1 = nn.Dense(self.hidden, dtype=self.dtype, name="w1")
        w2 = nn.Dense(1, kernel_init=nn.initializers.zeros, dtype=self.dtype, name="w2")

        if not self.context:
            logit = w2(w1(g))
        else:
            c = nn.relu(nn.Dense(self.context_dim, dtype=self.dtype, name="context")(x))
            c = c.mean(axis=tuple(range(1, x.ndim - 1)))  # [B, context_dim]
            c = c.reshape(c.shape[0], *(1,) * (g.ndim - 2), c.shape[-1])  # broadcasts with g
            query = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype, name="query")
            if self.context == "concat":
                c = jnp.broadcast_to(c, (*g.shape[:-1], c.shape[-1]))
                logit = w2(w1(jnp.concatenate([g, c], axis=-1)))
            elif self.context == "additive":
                logit = w2(jnp.tanh(w1(g) + query(c)))
            else:
                s = (w1(g) * query(c)).sum(axis=-1, keepdims=True) / math.sqrt(self.hidden)
                logit = w2(s)

        gate = 1.0 + jnp.tanh(logit.astype(jnp.float32))  # broadcasts over f's channels
        self.sow("intermediates", "mask", jnp.broadcast_to(gate[..., 0], f.shape[:-1]))
        return f * gate.astype(f.dtype)


def _attention_probs(q: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
    """``softmax(Q Kᵀ / sqrt(d))``: ``q, k [..., N, heads, d] → [..., heads, N, N]``, float32."""
    logits = jnp.einsum("...nhd,...mhd->...hnm", q, k) / math.sqrt(q.shape[-1])
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


class SelfAttention(_ByKind, nn.Module):
    """Residual multi-head scaled dot-product self-attention (Eq. 4.7), no positional encoding.

    ``f → y = f + W_o · concat_h(softmax(Q_h K_hᵀ / sqrt(head_dim)) V_h)`` with the same shape
    as ``f``. Q, K, V (``query``, ``key``, ``value``) project the D channels to
    ``num_heads × head_dim`` (with biases); ``out`` (W_o, zero-initialised) projects back to D.

    * ``'temporal'``: the entities are frames. Per-frame features ``[B, T, D]`` attend
      directly. For maps ``[B, T, H, W, D]`` queries and keys come from the spatially averaged
      frame vectors ``[B, T, D]`` and values from every position; the same T×T weights mix the
      frames at every (h, w): ``out[b, t, h, w] = Σ_s A[b, t, s] V[b, s, h, w]`` (with
      H = W = 1 this is the per-frame version). Sows ``'attention'`` ``[B, heads, T, T]``.
    * ``'spatial'``: per frame, the entities are the H·W positions. Sows ``'attention'``
      ``[B, T, heads, H·W, H·W]`` (one map per frame, positions in row-major (h, w) order).
    * ``'3d'``: the entities are all T·H·W positions (row-major (t, h, w) order). Sows
      ``'attention'`` ``[B, heads, T·H·W, T·H·W]``.

    Attention probabilities are computed and sown in float32; each row sums to 1.

    ``implementation`` (``models.ATTENTION_IMPLEMENTATIONS``; ``config.model.
    attention_implementation``): ``'explicit'`` forms the probabilities; ``'auto'``, ``'xla'``,
    ``'cudnn'`` call ``jax.nn.dot_product_attention`` for the spatial and 3D kinds and for
    per-frame temporal input, unless the ``intermediates`` collection is mutable (the
    probabilities are then formed and sown: ``models.explicit_attention``). The temporal kind
    on maps always forms its T×T weights (they mix values at every position; small).
    """

    kind: str = "temporal"
    num_heads: int = 4
    head_dim: int = 64
    dtype: jnp.dtype = jnp.float32
    implementation: str = "explicit"

    def __post_init__(self):
        models.check_attention_implementation(self.implementation)
        super().__post_init__()

    @nn.compact
    def __call__(self, f: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        _check_input(self, f)
        x = f.astype(self.dtype)
        project = functools.partial(nn.DenseGeneral, (self.num_heads, self.head_dim),
                                    dtype=self.dtype)
        on_maps = self.kind == "temporal" and x.ndim == 5
        fused = not (on_maps or models.explicit_attention(self, self.implementation,
                                                          "attention", dropout=False))
        if self.kind == "temporal":
            frames = x if x.ndim == 3 else x.mean(axis=(2, 3))  # [B, T, D]
            q, k = project(name="query")(frames), project(name="key")(frames)
            values = project(name="value")(x)  # [B, T, (H, W,) heads, d]
            if fused:
                mixed = models.fused_attention(q, k, values, self.implementation)
            else:
                probs = _attention_probs(q, k)  # [B, heads, T, T]
                mixed = jnp.einsum("bhts,bs...hd->bt...hd", probs.astype(self.dtype), values)
        else:
            b, t, h, w, d = x.shape
            tokens = x.reshape(b, t, h * w, d) if self.kind == "spatial" else \
                x.reshape(b, t * h * w, d)
            q, k = project(name="query")(tokens), project(name="key")(tokens)
            values = project(name="value")(tokens)
            if fused:
                mixed = models.fused_attention(q, k, values, self.implementation)
            else:
                probs = _attention_probs(q, k)
                mixed = jnp.einsum("...hnm,...mhd->...nhd", probs.astype(self.dtype), values)
            mixed = mixed.reshape(b, t, h, w, self.num_heads, self.head_dim)
        if not fused:
            self.sow("intermediates", "attention", probs)
        delta = nn.DenseGeneral(x.shape[-1], axis=(-2, -1), kernel_init=nn.initializers.zeros,
                                dtype=self.dtype, name="out")(mixed)
        return f + delta.astype(f.dtype)


def _normalised_grid(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Output grid of a volume with ``sizes`` (d axes).

    Returns ``(homogeneous [*sizes, d + 1], positions [*sizes, d])``: normalised coordinates
    in [-1, 1] (align-corners style: the first and last pixel centres are at -1 and 1; a
    single pixel sits at 0) followed by a 1, and the integer pixel indices.
    """
    axes = [np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1) for n in sizes]
    normalised = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    homogeneous = np.concatenate([normalised, np.ones((*sizes, 1))], axis=-1)
    positions = np.stack(np.meshgrid(*[np.arange(n) for n in sizes], indexing="ij"), axis=-1)
    return homogeneous.astype(np.float32), positions.astype(np.float32)


def _interpolate(volume: jnp.ndarray, coords: jnp.ndarray) -> jnp.ndarray:
    """Linear interpolation of ``volume [N, *S, C]`` at pixel coordinates ``coords [N, *O, d]``
    (d = len(S), in the order of S) → ``[N, *O, C]``.

    Coordinates outside the volume are clamped to its border (``map_coordinates``'s
    ``mode='nearest'``). Differentiable with respect to ``coords`` (the interpolation weights
    are linear in the fractional parts).
    """
    n, *sizes, channels = volume.shape
    out_shape = (*coords.shape[:-1], channels)
    flat = volume.reshape(n, -1, channels)
    coords = coords.reshape(n, -1, len(sizes)).astype(jnp.float32)
    lower, upper, fraction = [], [], []
    for axis, size in enumerate(sizes):
        p = jnp.clip(coords[..., axis], 0.0, size - 1)
        floor = jnp.floor(p)
        lower.append(floor.astype(jnp.int32))
        upper.append(jnp.minimum(floor.astype(jnp.int32) + 1, size - 1))
        fraction.append(p - floor)

    gather = jax.vmap(lambda values, index: values[index])
    out = 0
    for corner in itertools.product((0, 1), repeat=len(sizes)):
        index, weight = 0, 1.0
        for axis, (size, high) in enumerate(zip(sizes, corner)):
            index = index * size + (upper[axis] if high else lower[axis])
            weight = weight * (fraction[axis] if high else 1.0 - fraction[axis])
        out = out + weight[..., None].astype(volume.dtype) * gather(flat, index)
    return out.reshape(out_shape)


def _affine_sample(volume: jnp.ndarray, theta: jnp.ndarray) -> jnp.ndarray:
    """Resamples ``volume [N, *S, C]`` (d = len(S) sampled axes) on the grid transformed by
    ``theta [N, d, d + 1]`` (normalised coordinates, axes in the order of S) → same shape.

    Output pixel i at normalised position v samples the input at ``u = θ [v; 1]``. The pixel
    coordinate is computed as ``i + (size − 1)/2 · (θ − I)[v; 1]``, which equals
    ``(u + 1)(size − 1)/2`` and is exactly i for the identity θ, so the identity transformation
    returns the input exactly.
    """
    sizes = volume.shape[1:-1]
    homogeneous, positions = _normalised_grid(sizes)
    identity = np.eye(len(sizes), len(sizes) + 1, dtype=np.float32)
    offset = jnp.einsum("nij,...j->n...i", theta.astype(jnp.float32) - identity, homogeneous)
    half = (np.asarray(sizes, np.float32) - 1.0) / 2.0
    return _interpolate(volume, positions + half * offset)


def affine_warp(x: jnp.ndarray, theta: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Applies the transformation ``theta`` of ``kind`` to ``x [B, T, H, W, C]`` → same shape.

    Normalised coordinates run over [-1, 1] along each axis (align-corners style), sampling is
    (tri)linear with border clamping, and the output grid has the input's size.

    * ``'spatial'``: ``theta [B, T, 2, 3]``, an affine map of (y, x) per frame.
    * ``'temporal'``: ``theta [B, 2]`` = (scale, translation) of the time axis per clip: the
      frame at normalised time t samples the input at ``scale · t + translation``.
    * ``'3d'``: ``theta [B, 3, 4]``, an affine map of (t, y, x) per clip.

    Differentiable with respect to ``theta``.
    """
    b, t, h, w, c = x.shape
    if kind == "spatial":
        out = _affine_sample(x.reshape(b * t, h, w, c), theta.reshape(b * t, 2, 3))
    elif kind == "temporal":
        out = _affine_sample(x.reshape(b, t, h * w * c), theta.reshape(b, 1, 2))
    elif kind == "3d":
        out = _affine_sample(x, theta)
    else:
        raise ValueError(f"unknown transformation kind {kind!r}; use one of "
                         f"{', '.join(repr(k) for k in KINDS)}")
    return out.reshape(x.shape)


IDENTITY_THETA = {
    "spatial": np.eye(2, 3, dtype=np.float32).ravel(),
    "temporal": np.array([1.0, 0.0], np.float32),
    "3d": np.eye(3, 4, dtype=np.float32).ravel(),
}


class TransformerNetwork(nn.Module):
    """Spatial / temporal / spatiotemporal transformer network (Sec. 4.3, Jaderberg et al. 2015).

    ``x [B, T, H, W, C] → y`` of the same shape: ``y = affine_warp(x, θ, kind)``, sampling with
    (tri)linear interpolation in normalised coordinates [-1, 1] (see ``affine_warp``).

    The localisation network reads ``x`` average-pooled to the fixed size ``pooled``
    (T', H', W') with PyTorch's adaptive pooling, so any T, H, W work, flattened: three Dense
    layers ``loc1``, ``loc2`` (``hidden`` units, ReLU) and ``loc3`` (zero-initialised) give
    ``raw``, and ``θ = identity + tanh(raw)`` (exactly the identity at initialisation).

    * ``'spatial'``: per frame, from that frame pooled to (H', W'): a 2×3 affine map of
      (y, x); time is untouched. ``θ [B, T, 2, 3]``.
    * ``'temporal'``: per clip, 2 parameters (scale, translation) of the time axis; space is
      untouched. ``θ [B, 2]``.
    * ``'3d'``: per clip, a 3×4 affine map of (t, y, x). ``θ [B, 3, 4]``.

    Sows ``'theta'`` (float32, shapes above).
    """

    kind: str = "spatial"
    hidden: int = 32
    pooled: tuple[int, int, int] = (4, 4, 4)
    dtype: jnp.dtype = jnp.float32

    def __post_init__(self):
        _check_choice(self, "kind", KINDS)
        object.__setattr__(self, "pooled", tuple(self.pooled))
        if len(self.pooled) != 3:
            raise ValueError(f"TransformerNetwork pooled must be (T', H', W'), got "
                             f"{self.pooled}")
        super().__post_init__()

    @property
    def level(self) -> str:
        """``'input'``: the STN transforms the network's input video."""
        return "input"

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if x.ndim != 5:
            raise ValueError(f"TransformerNetwork takes video [B, T, H, W, C], got shape "
                             f"{x.shape}")
        b, t, h, w, _ = x.shape
        pool_t, pool_h, pool_w = (adaptive_avg_pool_matrix(n, m).astype(self.dtype)
                                  for n, m in zip((t, h, w), self.pooled))
        v = x.astype(self.dtype)
        if self.kind == "spatial":
            summary = jnp.einsum("bthwc,ih,jw->btijc", v, pool_h, pool_w).reshape(b, t, -1)
        else:
            summary = jnp.einsum("bthwc,kt,ih,jw->bkijc", v, pool_t, pool_h, pool_w)
            summary = summary.reshape(b, -1)
        identity = IDENTITY_THETA[self.kind]
        for name in ("loc1", "loc2"):
            summary = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name=name)(summary))
        raw = nn.Dense(identity.size, kernel_init=nn.initializers.zeros, dtype=self.dtype,
                       name="loc3")(summary)
        theta = identity + jnp.tanh(raw.astype(jnp.float32))
        theta = theta.reshape({"spatial": (b, t, 2, 3), "temporal": (b, 2),
                               "3d": (b, 3, 4)}[self.kind])
        self.sow("intermediates", "theta", theta)
        return affine_warp(x, theta, self.kind)


MODULES = {"mask": MaskAttention, "self_attention": SelfAttention, "stn": TransformerNetwork}


def build(name: str, **kwargs) -> functools.partial:
    """Constructor of the attention module ``name`` (one of ``MODULES``) with ``kwargs``.

    The module is built once here, so unknown names, unknown or ill-typed keyword arguments
    and unknown kinds raise ``UserError`` now rather than inside a model.
    """
    if name not in MODULES:
        raise UserError(f"unknown attention module {name!r}; available: "
                        f"{', '.join(MODULES)}")
    try:
        MODULES[name](**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"cannot build attention module {name!r}: {e}") from None
    return functools.partial(MODULES[name], **kwargs)
