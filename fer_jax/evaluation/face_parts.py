"""Facial-part occlusion masks from 68 iBUG landmarks (JAX; jit and vmap compatible).

Following the occlusion study of Du Toit (TimeSformer on CREMA-D), the parts are the
eyes (both together), the nose and the mouth, each occluded "extending all the way out to the
sides almost as if the person is wearing a mask": a part is a horizontal band across the whole
face width, placed per frame from that frame's landmarks.

Landmarks are ``(x, y)`` pixel coordinates with pixel centres at integers (the convention of
``fer_jax.data.action_units`` and of the synthetic benchmark's OpenCV drawing): pixel
``[row i, column j]`` has its centre at ``(j, i)``. 0-based iBUG-68 indices: jaw 0-16, brows
17-26, nose bridge 27-30, lower nose 31-35, eyes 36-47, mouth 48-67.

Bands (``part_bands``); ``y(k)`` is the y of landmark ``k``:
  * x extent of every part: ``[min x, max x]`` of the jaw (0-16), the face width.
  * boundaries, top to bottom:
      b0 = (mean y of the brows 17-26 + min y of the eyes 36-47) / 2   (between brows and lids)
      b1 = (max y of the eyes 36-47 + y(29)) / 2                         (below the lower lids)
      b2 = (max y of the lower nose 31-35 + min y of the upper lip 48-54) / 2
      b3 = (max y of the mouth 48-67 + y(8)) / 2           (between the lower lip and the chin)
    Extremes rather than the midline points 33 / 51 / 57 keep a whole part inside its band when
    the head is rolled or the lip corners move, as long as the parts do not overlap in y.
  * eyes = ``[b0, b1)``, nose = ``[b1, b2)``, mouth = ``[b2, b3)``: contiguous, so together
    they cover the face from between the brows and eyes down to above the chin like a mask.
    The boundaries are made non-decreasing (running maximum), so a degenerate face gives an
    empty band, never overlapping ones.
A pixel belongs to a band when its centre lies in ``[x0, x1] x [y0, y1)`` (half-open in y, so
neighbouring bands share no pixel).
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from fer_jax.errors import UserError

PARTS: tuple[str, ...] = ("eyes", "nose", "mouth")
COMBINATIONS: tuple[tuple[str, ...], ...] = tuple(
    combo for size in range(1, len(PARTS) + 1) for combo in itertools.combinations(PARTS, size))
"""Every non-empty subset of ``PARTS``: singles, pairs, then all three."""

_JAW, _BROWS, _EYES = slice(0, 17), slice(17, 27), slice(36, 48)
_LOWER_NOSE, _UPPER_LIP, _MOUTH = slice(31, 36), slice(48, 55), slice(48, 68)
_NOSE_BRIDGE, _CHIN = 29, 8


def combination_name(parts) -> str:
    """``("eyes", "mouth")`` -> ``"eyes+mouth"``."""
    return "+".join(_check_parts(parts))


def part_bands(landmarks: jnp.ndarray) -> jnp.ndarray:
    """Boxes ``(x0, y0, x1, y1)`` of the eyes, nose and mouth bands (see the module docstring).

    landmarks: float ``[..., 68, 2]`` (x, y) pixels. Returns float ``[..., 3, 4]`` in the order
    of ``PARTS``.
    """
    landmarks = jnp.asarray(landmarks, jnp.float32)
    x, y = landmarks[..., 0], landmarks[..., 1]
    eyes_y = y[..., _EYES]
    boundaries = jnp.stack([
        (y[..., _BROWS].mean(-1) + eyes_y.min(-1)) / 2,
        (eyes_y.max(-1) + y[..., _NOSE_BRIDGE]) / 2,
        (y[..., _LOWER_NOSE].max(-1) + y[..., _UPPER_LIP].min(-1)) / 2,
        (y[..., _MOUTH].max(-1) + y[..., _CHIN]) / 2,
    ], axis=-1)
    boundaries = jax.lax.cummax(boundaries, axis=boundaries.ndim - 1)
    x0 = jnp.broadcast_to(x[..., _JAW].min(-1, keepdims=True), boundaries[..., 1:].shape)
    x1 = jnp.broadcast_to(x[..., _JAW].max(-1, keepdims=True), boundaries[..., 1:].shape)
    return jnp.stack([x0, boundaries[..., :-1], x1, boundaries[..., 1:]], axis=-1)


def part_mask(landmarks: jnp.ndarray, parts, height: int, width: int) -> jnp.ndarray:
    """Bool ``[..., H, W]``: pixels whose centre lies in any band of ``parts``.

    landmarks: float ``[..., 68, 2]`` (x, y) pixels; parts: tuple of names from ``PARTS``
    (static under jit); height, width: the image size (static).
    """
    indices = [PARTS.index(p) for p in _check_parts(parts)]
    boxes = part_bands(landmarks)[..., indices, :, None]  # [..., P, 4, 1]
    x0, y0, x1, y1 = (boxes[..., k, :] for k in range(4))  # [..., P, 1] each
    rows = jnp.arange(height, dtype=jnp.float32)
    columns = jnp.arange(width, dtype=jnp.float32)
    in_rows = (rows >= y0) & (rows < y1)  # [..., P, H]
    in_columns = (columns >= x0) & (columns <= x1)  # [..., P, W]
    return (in_rows[..., :, None] & in_columns[..., None, :]).any(axis=-3)


def occlude_parts(video: jnp.ndarray, landmarks: jnp.ndarray, parts,
                  fill: float = 0.0) -> jnp.ndarray:
    """``video`` with the pixels of ``parts`` set to ``fill``.

    video: float ``[B, T, H, W, C]``; landmarks: ``[B, T, 68, 2]`` (x, y) in the video's pixel
    coordinates; parts: tuple of names from ``PARTS`` (static under jit). Returns the video's
    shape and dtype.
    """
    video = jnp.asarray(video)
    mask = part_mask(landmarks, parts, video.shape[-3], video.shape[-2])
    return jnp.where(mask[..., None], jnp.asarray(fill, video.dtype), video)


def _check_parts(parts) -> tuple[str, ...]:
    """``parts`` as a non-empty tuple of known part names; ``UserError`` otherwise."""
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise UserError(f"unknown facial part(s) {', '.join(map(repr, unknown))}; the parts "
                        f"are {', '.join(PARTS)}")
    if not parts:
        raise UserError(f"no facial part given; choose some of {', '.join(PARTS)}")
    return parts


# --------------------------------------------------------------------------------------------
# Feature groups for the perturbation methods (attribution.feature_ablation, kernel_shap)

REGIONS: tuple[str, ...] = PARTS + ("rest",)
"""Group names of ``region_groups``, in id order (per frame: id = frame · 4 + region)."""


def region_groups(landmarks: jnp.ndarray, height: int, width: int,
                  per_frame: bool = False) -> jnp.ndarray:
    """Int32 ``[B, T, H, W]``: ``REGIONS`` ids (eyes 0, nose 1, mouth 2, rest 3) from
    ``part_mask``; ``per_frame``: ``frame · 4 + region`` (``4 · T`` groups).

    landmarks: ``[B, T, 68, 2]`` (x, y) pixels of the clip's frames, this module's
    convention (pixel centres at integers). The bands do not overlap, so each pixel is in one.
    """
    landmarks = jnp.asarray(landmarks)
    if landmarks.ndim != 4 or landmarks.shape[-2:] != (68, 2):
        raise UserError(f"region_groups needs landmarks [batch, frames, 68, 2], got "
                        f"{landmarks.shape}")
    ids = jnp.full(landmarks.shape[:2] + (height, width), len(PARTS), jnp.int32)
    for region, part in enumerate(PARTS):
        ids = jnp.where(part_mask(landmarks, (part,), height, width), region, ids)
    if per_frame:
        frames = jnp.arange(landmarks.shape[1], dtype=jnp.int32)[:, None, None]
        ids = ids + frames * len(REGIONS)
    return ids


def region_count(frames: int, per_frame: bool = False) -> int:
    """The number of groups of ``region_groups`` (its ``num_groups``)."""
    return len(REGIONS) * (frames if per_frame else 1)
