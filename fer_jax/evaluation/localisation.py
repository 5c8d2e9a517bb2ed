"""Explanations against ground truth: action-unit alignment (seed 003) and localisation.

Per video (all functions map a batch to per-video values ``[B]``, jit/vmap-compatible):

* ``au_cosine`` — CAM-COS / ATT-COS of seed 003: cosine between the map upsampled to the AU
  heatmap's size and the heatmap ``A``, over the whole clip.
* ``energy_inside`` — share of the positive attribution that falls inside the AU regions
  (``A ≥ threshold``) on the expressive frames; ``region_share`` is what a uniform map scores.
* ``pointing_game`` — fraction of expressive frames whose map maximum lies inside the AU
  regions (Zhang et al. 2018, without tolerance margin).
* ``temporal_correlation`` — Pearson correlation between the per-frame attribution mass and
  the ground-truth expression intensity (synthetic benchmark).

Expressive frames: ground-truth intensity ≥ ``min_intensity`` (the AU displacement is then at
least half its apex); videos without any (or neutral videos, whose ``A`` is empty) are
invalid: ``valid`` says which values count.
"""
from __future__ import annotations

import jax.numpy as jnp

from fer_jax.attribution.postprocess import upsample

EPS = 1e-8


def _flat(x: jnp.ndarray) -> jnp.ndarray:
    return x.reshape(x.shape[0], -1)


def to_pixels(maps: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """Maps ``[B, T, h, w]`` bilinearly resized to ``like``'s ``[B, T, H, W]``."""
    return upsample(maps, like.shape[1:])


def au_cosine(maps: jnp.ndarray, au_maps: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(cosine [B], valid [B])`` between ``maps [B, T, h, w]`` and ``au_maps [B, T, H, W]``;
    valid where ``A`` is not empty (not neutral)."""
    m, a = _flat(to_pixels(maps, au_maps)), _flat(au_maps)
    cosine = (m * a).sum(1) / (jnp.linalg.norm(m, axis=1) * jnp.linalg.norm(a, axis=1) + EPS)
    return cosine, a.max(axis=1) > 0


def _expressive(intensity: jnp.ndarray, au_maps: jnp.ndarray, min_intensity: float,
                threshold: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Frames counted ``[B, T]`` (expressive and with an AU region) and regions [B,T,H,W]."""
    regions = au_maps >= threshold
    frames = (intensity >= min_intensity) & regions.any(axis=(2, 3))
    return frames, regions


def energy_inside(maps, au_maps, intensity, min_intensity: float = 0.5,
                  threshold: float = 0.5) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``(share [B], region_share [B], valid [B])``: positive attribution inside the AU
    regions over all of it, on the expressive frames; ``region_share`` = region area over
    frame area on those frames (the score of a uniform map)."""
    frames, regions = _expressive(intensity, au_maps, min_intensity, threshold)
    positive = jnp.maximum(to_pixels(maps, au_maps), 0) * frames[..., None, None]
    inside = (positive * regions).sum(axis=(1, 2, 3))
    total = positive.sum(axis=(1, 2, 3))
    area = (regions * frames[..., None, None]).sum(axis=(1, 2, 3))
    pixels = frames.sum(axis=1) * au_maps.shape[2] * au_maps.shape[3]
    valid = frames.any(axis=1)
    return (inside / jnp.maximum(total, EPS), area / jnp.maximum(pixels, 1),
            valid & (total > 0))


def pointing_game(maps, au_maps, intensity, min_intensity: float = 0.5,
                  threshold: float = 0.5) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(hit rate [B], valid [B])``: share of expressive frames whose arg-max pixel of the
    upsampled map lies in the AU regions."""
    frames, regions = _expressive(intensity, au_maps, min_intensity, threshold)
    pixels = to_pixels(maps, au_maps)
    b, t, h, w = pixels.shape
    best = jnp.argmax(pixels.reshape(b, t, h * w), axis=-1)
    hits = jnp.take_along_axis(regions.reshape(b, t, h * w), best[..., None], axis=-1)[..., 0]
    count = frames.sum(axis=1)
    return (hits & frames).sum(axis=1) / jnp.maximum(count, 1), count > 0


def temporal_correlation(maps: jnp.ndarray, intensity: jnp.ndarray
                         ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(Pearson r [B], valid [B])`` between the per-frame positive map mass of ``maps
    [B, T, h, w]`` and ``intensity [B, T]``; invalid where either is constant."""
    mass = jnp.maximum(maps, 0).sum(axis=(2, 3))
    a = mass - mass.mean(axis=1, keepdims=True)
    b = intensity - intensity.mean(axis=1, keepdims=True)
    norm = jnp.sqrt((a * a).sum(1) * (b * b).sum(1))
    valid = norm > EPS
    return (a * b).sum(1) / jnp.where(valid, norm, 1.0), valid
