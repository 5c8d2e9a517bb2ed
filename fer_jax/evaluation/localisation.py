"""Explanations against ground truth: action-unit alignment (Belharbi et al.) and localisation.

Per video (all functions map a batch to per-video values ``[B]``, jit/vmap-compatible):

* ``au_cosine`` — CAM-COS / ATT-COS of Belharbi et al.: cosine between the map upsampled to the AU
  heatmap's size, normalised to [0, 1] (``normalise_maps``), and the heatmap ``A``, over the
  whole clip (``T × H × W``). With ``resolution='map'`` and ``normalise='raw'`` it is instead
  the alignment term of AU-guided training (``fer_jax/au_guidance.py``): ``A`` resized to the
  map and the raw, signed map.
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
import numpy as np

from fer_jax.attribution import postprocess
from fer_jax.attribution.postprocess import upsample

EPS = 1e-8


def _flat(x: jnp.ndarray) -> jnp.ndarray:
    return x.reshape(x.shape[0], -1)


def to_pixels(maps: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """Maps ``[B, T, h, w]`` bilinearly resized to ``like``'s ``[B, T, H, W]``."""
    return upsample(maps, like.shape[1:])


NORMALISATIONS = ("minmax", "shift", "raw")


def normalise_maps(maps: jnp.ndarray, how: str) -> jnp.ndarray:
    """``maps [B, ...]`` normalised per video over all its values (the whole clip):

    * ``'minmax'``: ``(m − min) / (max − min)``, in [0, 1]; a constant map becomes all zeros
      (it says nothing about where; the denominator is guarded). How Belharbi et al.'s code
      normalises a CAM before CAM-COS (the CAM extractor's ``normalized=True``);
    * ``'shift'``: ``m − min`` where the map has negative values, else ``m`` unchanged (as the
      cosine ignores the scale, the same as dividing by the maximum after the shift): how their
      code treats a layer attention before ATT-COS ("shift to yield always positive vals");
    * ``'raw'``: ``m`` as it is, signed (the training loss, Eq. 2).
    """
    if how == "raw":
        return maps
    if how == "minmax":
        return postprocess.normalise(maps, "minmax")
    if how == "shift":
        low = _flat(maps).min(axis=1).reshape((maps.shape[0],) + (1,) * (maps.ndim - 1))
        return maps - jnp.minimum(low, 0.0)
    raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {how!r}")


def au_cosine(maps: jnp.ndarray, au_maps: jnp.ndarray, resolution: str = "au",
              normalise: str = "minmax") -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(cosine [B], valid [B])`` between ``maps [B, t, h, w]`` and ``au_maps [B, T, H, W]``
    over the whole clip; valid where ``A`` is not empty (not neutral, landmarks found).

    ``resolution``: 'au' upsamples the maps to ``A`` (the metrics, Belharbi et al.'s footnote 2),
    'map' resizes ``A`` to the maps (linear with antialiasing: the training loss, whose maps
    are the layer's size). ``normalise`` (``normalise_maps``), applied to the map after the
    resizing, per video over ``T × H × W``: 'minmax' (default) for CAM-COS, 'shift' for
    ATT-COS, 'raw' for the training loss. ``A`` is used as it is (already in [0, 1]; its scale
    does not change the cosine).

    Why normalised: Belharbi et al. evaluate maps that "are both normalized between [0, 1]"
    (Sec. 4.1, Evaluation Metrics) and use the cosine because the values still differ from
    ``A``'s; the raw cosine of a signed map is a different number (a map with a baseline or
    negative values scores low however well its peaks fall on ``A``), and only the min-max
    form is unchanged by ``a · m + b`` (a > 0). The paper does not say how the maps are brought
    to [0, 1]; this follows the authors' public code (``dlib/learning/inference_wsol.py``):
    the CAM is min-max normalised, the layer attention only shifted by ``−min`` when it has
    negative values (a non-negative attention, e.g. after a ReLU, keeps its raw cosine). Their
    code normalises each image at the map's resolution, then upsamples (bilinearly, clamped
    to the same range); here the normalisation is per video over the whole clip after the
    upsampling, which for bilinear interpolation differs only by where the extremes fall
    between pixels. The training loss (Eq. 2) stays on the raw map: "the dynamic range of the
    attention map is unknown beforehand" (Sec. 3.4), as in their ``AlignToHeatMap`` loss."""
    if resolution == "au":
        m, a = to_pixels(maps, au_maps), au_maps
    elif resolution == "map":
        m, a = maps, upsample(au_maps, maps.shape[1:])
    else:
        raise ValueError(f"resolution must be 'au' or 'map', got {resolution!r}")
    m, a = _flat(normalise_maps(m, normalise)), _flat(a)
    cosine = (m * a).sum(1) / (jnp.linalg.norm(m, axis=1) * jnp.linalg.norm(a, axis=1) + EPS)
    return cosine, _flat(au_maps).max(axis=1) > 0


def per_class_sums(values: jnp.ndarray, valid: jnp.ndarray, onehot: jnp.ndarray
                   ) -> jnp.ndarray:
    """Per-class totals and counts of ``values [B]`` where ``valid [B]``: ``[2, C]``
    (``onehot [B, C]``: the classes of the examples)."""
    weights = onehot * valid[:, None]
    return jnp.stack([jnp.where(valid, values, 0.0) @ weights, weights.sum(0)])


def class_means(sums, class_names, valid_classes) -> dict:
    """``sums [2, C]`` (totals, counts; host arrays) → per-class means, the macro mean over the
    classes of ``valid_classes`` that have videos (Belharbi et al.: the six expressions, neutral
    left out), the mean over all videos and their number."""
    sums = np.asarray(sums, np.float64)
    mean = lambda total, count: float(total / count) if count else None  # noqa: E731
    per_class = {n: mean(sums[0, c], sums[1, c]) for c, n in enumerate(class_names)}
    macro = [per_class[n] for n in valid_classes if per_class[n] is not None]
    return {"per_class": per_class,
            "macro": float(np.mean(macro)) if macro else None,
            "mean": mean(sums[0].sum(), sums[1].sum()),
            "videos": int(sums[1].sum())}


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
