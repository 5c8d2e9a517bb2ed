"""Feature groups for the perturbation methods: which input positions are perturbed together.

A *grouping* is an int array of group ids ``0 … G−1`` over the position axes of the input
(``[T, H, W]`` for a video ``x [B, T, H, W, C]``, the same for every example) or over
``[B, *positions]`` (one grouping per example). A group covers every channel of its
positions. ``feature_ablation`` and ``kernel_shap`` perturb one group (or coalition of groups)
at a time and write each group's value onto its positions (``group_maps``).

* ``box_groups(shape, box)``: boxes of ``box`` positions tiling ``shape`` (the last box along
  an axis is cut off where ``box`` does not divide the axis), numbered in row-major order of
  the boxes; ``tube_groups`` (space-time tubes of ``frames`` × ``patch``) and ``frame_groups``
  (one group per frame) are boxes.
* ``default_groups``: a quarter of each position axis per box (4 × 4 × 4 = 64 tubes of a
  video), spatial extents rounded up to a multiple of ``patch`` (a transformer's patch size,
  so that no patch is split); it needs nothing but the input's shape, so the methods run in
  ``--mode=report`` on any model.
* facial regions: ``evaluation.face_parts.region_groups`` builds group ids of the eyes, nose and
  mouth bands from each frame's 68 landmarks (it lives with the face geometry, above this
  package). Landmarks do not reach a method through ``attribution.METHODS`` (``--mode=report``
  passes the clip alone), so facial regions are a library call:
  ``feature_ablation(model, variables, x, groups=face_parts.region_groups(landmarks, H, W))``.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.errors import UserError

def box_groups(shape: Sequence[int], box: Sequence[int]) -> np.ndarray:
    """Int32 ``shape``: the id of the box of size ``box`` each position falls in."""
    shape, box = tuple(int(n) for n in shape), tuple(int(b) for b in box)
    if len(box) != len(shape) or any(b < 1 for b in box):
        raise UserError(f"box {box} must give a positive size per axis of {shape}")
    cells = [np.arange(n) // b for n, b in zip(shape, box)]  # box index along each axis
    counts = [-(-n // b) for n, b in zip(shape, box)]
    ids = np.zeros(shape, np.int64)
    for axis, (cell, count) in enumerate(zip(cells, counts)):
        ids = ids * count + cell.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return ids.astype(np.int32)


def tube_groups(shape: Sequence[int], patch: int | Sequence[int],
                frames: int = 1) -> np.ndarray:
    """Int32 ``[T, H, W]``: space-time tubes of ``frames`` frames × ``patch`` (an int or
    ``(height, width)``) pixels; shape is ``(T, H, W)``."""
    patch = (patch, patch) if isinstance(patch, int) else tuple(patch)
    if len(shape) != 3 or len(patch) != 2:
        raise UserError(f"tube_groups needs shape (T, H, W) and patch (height, width), got "
                        f"{tuple(shape)} and {patch}")
    return box_groups(shape, (frames, *patch))


def frame_groups(shape: Sequence[int]) -> np.ndarray:
    """Int32 ``shape``: the frame index (the first axis) of every position."""
    return box_groups(shape, (1, *shape[1:]))


def default_groups(shape: Sequence[int], patch: int | None = None) -> np.ndarray:
    """Int32 ``shape``: boxes of a quarter of each axis (rounded up), the last two axes'
    extents rounded up to a multiple of ``patch`` when given (for 3 position axes)."""
    return box_groups(shape, default_box(shape, patch))


def default_box(shape: Sequence[int], patch: int | None = None) -> tuple[int, ...]:
    """A quarter of each axis of ``shape`` (rounded up); with ``patch`` and 3 axes the
    spatial extents are rounded up to a multiple of it (at most the axis)."""
    box = [-(-int(n) // 4) for n in shape]
    if patch and len(shape) == 3:
        for axis in (1, 2):
            box[axis] = min(int(shape[axis]), -(-box[axis] // patch) * patch)
    return tuple(box)


def as_batch_groups(groups, x: jnp.ndarray, num_groups: int | None) -> tuple[jnp.ndarray, int]:
    """``(groups [B, *positions] int32, G)`` for ``x [B, *positions, C]``.

    groups: ids over ``[*positions]`` or ``[B, *positions]`` (``[1, *positions]``
    broadcasts). ``G`` is ``num_groups`` if given, else the largest id + 1, which needs
    concrete groups (not a value traced under ``jax.jit``).
    """
    positions = x.shape[1:-1]
    groups = groups if isinstance(groups, jax.Array) else np.asarray(groups)
    if not np.issubdtype(groups.dtype, np.integer):
        raise UserError(f"groups must be an integer array of group ids, got {groups.dtype}")
    if groups.shape == positions:
        groups = groups[None]
    if groups.shape[1:] != positions or groups.shape[0] not in (1, len(x)):
        raise UserError(f"groups of shape {groups.shape} must cover the positions {positions} "
                        f"of input {x.shape}, or [batch, *positions]")
    concrete = not isinstance(groups, jax.core.Tracer)
    if num_groups is None:
        if not concrete:
            raise UserError("groups computed under jax.jit need num_groups= (the number of "
                            "group ids, static)")
        num_groups = int(np.max(groups)) + 1
    num_groups = int(num_groups)
    if concrete and groups.size and (int(np.min(groups)) < 0
                                     or int(np.max(groups)) >= num_groups):
        raise UserError(f"group ids must lie in 0 … {num_groups - 1}, got "
                        f"{int(np.min(groups))} … {int(np.max(groups))}")
    groups = jnp.broadcast_to(jnp.asarray(groups, jnp.int32), (len(x), *positions))
    return groups, num_groups


def group_maps(values: jnp.ndarray, groups: jnp.ndarray) -> jnp.ndarray:
    """Each position's group value: ``values [B, G]``, ``groups [B, *positions]`` →
    ``[B, *positions]``."""
    flat = groups.reshape(len(groups), -1)
    return jnp.take_along_axis(values, flat, axis=1).reshape(groups.shape)

