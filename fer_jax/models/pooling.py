"""Pooling of per-frame features and scores (Ayral's thesis, Table 2.1, Eqs. 2.1 and 3.3).

Pure functions over the time axis of per-frame scores ``[B, T, C]`` or feature maps
``[B, T, H, W, D]``, plus two modules: ``AdaptiveSoftmaxPool`` (a learned β per class) and
``TemporalPooling``, which turns any dense model (per-frame scores) into a clip classifier.

* 3D pooling: average or max over time and space of a feature map (``spatiotemporal_pool``)
  or over time of scores (``temporal_pool``).
* 2-step pooling (best in Table 2.1): spatial max at the feature level, per-frame scores,
  temporal average of the scores (``two_step_pool``).
* Chapter 3: temporal max-pool with kernel F and stride 1 over per-frame scores gives one score
  per clip (``clip_max_pool``), then softmax pooling over the clips (``softmax_pool``, Eq. 3.3)
  with γ = 0 → average, γ → ∞ → max.
* Adaptive softmax pooling (Eq. 2.1, McFee et al. 2018):
  y_c = Σ_t softmax_t(β_c x_{t,c}) x_{t,c}, β initialised to 1.
"""
from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

POOLING_METHODS = ("mean", "max", "softmax", "adaptive")


def temporal_pool(scores: jnp.ndarray, method: str = "mean") -> jnp.ndarray:
    """``scores [B, T, C] → [B, C]`` by ``'mean'`` or ``'max'`` over T."""
    if method == "mean":
        return scores.mean(axis=1)
    if method == "max":
        return scores.max(axis=1)
    raise ValueError(f"unknown temporal pooling {method!r}; use 'mean' or 'max'")


def spatiotemporal_pool(features: jnp.ndarray, method: str = "mean") -> jnp.ndarray:
    """3D pooling of a feature map ``[B, T, H, W, D] → [B, D]`` (``'mean'`` or ``'max'``)."""
    if method == "mean":
        return features.mean(axis=(1, 2, 3))
    if method == "max":
        return features.max(axis=(1, 2, 3))
    raise ValueError(f"unknown 3D pooling {method!r}; use 'mean' or 'max'")


def two_step_pool(features: jnp.ndarray,
                  head: Callable[[jnp.ndarray], jnp.ndarray]) -> jnp.ndarray:
    """2-step pooling: spatial max of ``features [B, T, H, W, D]`` → ``[B, T, D]``, ``head``
    maps per-frame features to per-frame scores ``[B, T, C]``, temporal mean → ``[B, C]``."""
    return head(features.max(axis=(2, 3))).mean(axis=1)


def clip_max_pool(scores: jnp.ndarray, clip_length: int) -> jnp.ndarray:
    """Temporal max-pool with kernel F = ``clip_length``, stride 1:
    ``[B, L, C] → [B, L − F + 1, C]`` (one score per clip start). Needs L ≥ F (videos
    shorter than F are padded to F frames by the data pipeline)."""
    length = scores.shape[1]
    if length < clip_length:
        raise ValueError(f"{length} frames are fewer than the clip length {clip_length}")
    return jax.lax.reduce_window(scores, -jnp.inf, jax.lax.max, (1, clip_length, 1),
                                 (1, 1, 1), "VALID")


def clip_mean_pool(scores: jnp.ndarray, clip_length: int) -> jnp.ndarray:
    """Temporal average pool with kernel F = ``clip_length``, stride 1:
    ``[B, L, C] → [B, L − F + 1, C]`` (the clip score of a model trained with mean pooling)."""
    length = scores.shape[1]
    if length < clip_length:
        raise ValueError(f"{length} frames are fewer than the clip length {clip_length}")
    return jax.lax.reduce_window(scores, 0.0, jax.lax.add, (1, clip_length, 1), (1, 1, 1),
                                 "VALID") / clip_length


def softmax_pool(clip_scores: jnp.ndarray, gamma: float | jnp.ndarray, axis: int = -2,
                 mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """Softmax pooling (Eq. 3.3) over ``axis``, independently per class:
    f = Σ_n softmax_n(γ s_n) s_n. ``clip_scores [..., N, C] → [..., C]`` for the default axis.

    ``gamma`` is a scalar or broadcasts against the pooled result (one β per class in Eq. 2.1).
    γ = 0 gives the average, a large γ (e.g. 1e6) the maximum. ``mask`` (bool, broadcasting
    against ``clip_scores``) leaves out clips, e.g. those past the end of a padded video; at
    least one clip per pooled slice must be kept.
    """
    gamma = jnp.asarray(gamma, clip_scores.dtype)
    if gamma.ndim:  # align with the result, whose axes are the non-pooled ones
        gamma = jnp.expand_dims(gamma, axis % clip_scores.ndim - clip_scores.ndim)
    logits = gamma * clip_scores
    if mask is not None:
        logits = jnp.where(mask, logits, -jnp.inf)
        clip_scores = jnp.where(mask, clip_scores, 0.0)
    weights = jax.nn.softmax(logits, axis=axis)
    return (weights * clip_scores).sum(axis=axis)


class AdaptiveSoftmaxPool(nn.Module):
    """Eq. 2.1: ``scores [B, T, C] → [B, C]`` with a learned temperature β_c per class
    (parameter ``beta [C]``, initialised to 1)."""

    @nn.compact
    def __call__(self, scores: jnp.ndarray) -> jnp.ndarray:
        beta = self.param("beta", nn.initializers.ones, (scores.shape[-1],))
        return softmax_pool(scores, beta.astype(scores.dtype), axis=1)


class TemporalPooling(nn.Module):
    """Wraps a dense ``backbone`` (``x → per-frame scores [B, T, C]``) into a clip classifier
    ``x → [B, C]``.

    ``method``: ``'mean'`` / ``'max'`` (the thesis' chapter-3 training clip score is the max
    over the clip's F frames), ``'softmax'`` (Eq. 3.3 with a fixed ``gamma``) or
    ``'adaptive'`` (Eq. 2.1). The backbone's parameters stay at the top level of the tree, so
    checkpoints and converted weights load unchanged; ``'adaptive'`` adds
    ``adaptive_pool/beta``.
    """

    backbone: nn.Module
    method: str = "max"
    gamma: float = 1.0

    def setup(self):
        if self.method not in POOLING_METHODS:
            raise ValueError(f"unknown temporal pooling {self.method!r}; use one of "
                             f"{', '.join(POOLING_METHODS)}")
        nn.share_scope(self, self.backbone)
        if self.method == "adaptive":
            self.adaptive_pool = AdaptiveSoftmaxPool()

    @property
    def attribution_layer(self) -> str | None:
        """The backbone's default attribution layer (its module paths are unchanged)."""
        return getattr(self.backbone, "attribution_layer", None)

    @property
    def lrp_composite(self):
        """The backbone's default LRP composite (its module paths are unchanged)."""
        return getattr(self.backbone, "lrp_composite", None)

    def attribution_grid(self, output, x: jnp.ndarray) -> jnp.ndarray:
        """The backbone's activation grid (see ``attribution.core.activation_grid``)."""
        reshape = getattr(self.backbone, "attribution_grid", None)
        return output if reshape is None else reshape(output, x)

    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        scores = self.backbone(x, train=train)
        if scores.ndim != 3:
            raise ValueError(f"temporal pooling needs per-frame scores [B, T, C] from a dense "
                             f"model; got shape {scores.shape} (set the model's dense=True)")
        if self.method == "adaptive":
            return self.adaptive_pool(scores)
        if self.method == "softmax":
            return softmax_pool(scores, self.gamma, axis=1)
        return temporal_pool(scores, self.method)
