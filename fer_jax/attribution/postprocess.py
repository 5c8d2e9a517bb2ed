"""Post-processing of attribution maps: resizing, normalisation, hotspots, per-frame summaries.

Maps are ``[B, *positions]`` with the frame axis first among the positions (``[B, T, H, W]``
for videos, ``[B, T, L]`` for landmarks). Every function is per example, pure and
jit/vmap-compatible.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.errors import UserError

NORMALISATIONS = ("minmax", "maxabs", "percentile")


def upsample(maps: jnp.ndarray, size: Sequence[int], method: str = "linear",
             align_corners: bool = False) -> jnp.ndarray:
    """Resizes ``maps [B, *positions]`` to ``[B, *size]`` (``jax.image.resize``; 'linear' is
    bi-/trilinear with half-pixel centres, as OpenCV and PyTorch's ``align_corners=False``).

    ``align_corners=True`` (method 'linear' only): the first and last samples of every axis
    fall on the first and last input positions, as PyTorch's ``align_corners=True`` and
    ``nn.UpsamplingBilinear2d`` (which pytorch-grad-cam's Score-CAM uses)."""
    if len(size) != maps.ndim - 1:
        raise UserError(f"size {tuple(size)} must give one length per position axis of maps "
                        f"{maps.shape}")
    if not align_corners:
        return jax.image.resize(maps, (maps.shape[0], *size), method)
    if method != "linear":
        raise UserError(f"align_corners needs method='linear', not {method!r}")
    for axis, length in enumerate(size, start=1):
        matrix = jnp.asarray(_align_corners_matrix(maps.shape[axis], length), maps.dtype)
        maps = jnp.moveaxis(jnp.tensordot(matrix, jnp.moveaxis(maps, axis, 0), axes=1), 0, axis)
    return maps


def _align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear interpolation ``[n_out, n_in]`` with aligned end points (PyTorch's rule: a
    single output sample reads the first input)."""
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    position = np.arange(n_out) * scale
    low = np.clip(np.floor(position).astype(int), 0, n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = position - low
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), low), 1 - frac)
    np.add.at(matrix, (np.arange(n_out), high), frac)
    return matrix


def _per_example(fn, maps: jnp.ndarray) -> jnp.ndarray:
    """``fn`` of each example's flattened map, broadcast back: ``[B, 1, …, 1]``."""
    flat = maps.reshape(maps.shape[0], -1)
    return fn(flat).reshape((maps.shape[0],) + (1,) * (maps.ndim - 1))


def normalise(maps: jnp.ndarray, method: str = "minmax", percentile: float = 99.0) -> jnp.ndarray:
    """Per-example normalisation of ``maps [B, …]`` (same shape).

    ``'minmax'`` → [0, 1]; ``'maxabs'`` → [−1, 1] keeping the sign and zero (signed relevance);
    ``'percentile'`` divides by the ``percentile``-th percentile of ``|map|`` and clips to
    [−1, 1] (robust to a few extreme values). Constant maps become 0.
    """
    if method not in NORMALISATIONS:
        raise UserError(f"unknown normalisation {method!r}; use one of {', '.join(NORMALISATIONS)}")
    if method == "minmax":
        low = _per_example(lambda f: f.min(axis=1), maps)
        span = _per_example(lambda f: f.max(axis=1), maps) - low
        return jnp.where(span > 0, (maps - low) / jnp.where(span > 0, span, 1.0), 0.0)
    if method == "maxabs":
        scale = _per_example(lambda f: jnp.abs(f).max(axis=1), maps)
    else:
        scale = _per_example(lambda f: jnp.percentile(jnp.abs(f), percentile, axis=1), maps)
    return jnp.clip(jnp.where(scale > 0, maps / jnp.where(scale > 0, scale, 1.0), 0.0), -1, 1)


def hotspots(maps: jnp.ndarray, threshold: float = 0.3, method: str = "maxabs") -> jnp.ndarray:
    """Boolean mask ``[B, …]`` of positions whose normalised value exceeds ``threshold``.

    Forsman & Singh mark LRP relevance above 0.3 of the maximum (``method='maxabs'``).
    """
    return normalise(maps, method) > threshold


def per_frame_sums(maps: jnp.ndarray) -> jnp.ndarray:
    """Total attribution of each frame: ``[B, T, …] → [B, T]``."""
    return maps.reshape(maps.shape[:2] + (-1,)).sum(axis=-1)


def hotspot_counts(maps: jnp.ndarray, threshold: float = 0.3,
                   method: str = "maxabs") -> jnp.ndarray:
    """Number of hotspots in each frame: ``[B, T, …] → [B, T]`` int32."""
    return per_frame_sums(hotspots(maps, threshold, method).astype(jnp.int32))


def landmark_changes(maps: jnp.ndarray, band: float = 75.0) -> jnp.ndarray:
    """Gund et al.'s post-processing of a landmark map ``[B, T, L] → [B, T − 1, L]``: normalise
    each example to [0, 255], take the difference between successive frames, and set the
    differences inside ``[−band, band]`` to 0."""
    scaled = 255.0 * normalise(maps, "minmax")
    changes = jnp.diff(scaled, axis=1)
    return jnp.where(jnp.abs(changes) <= band, 0.0, changes)
