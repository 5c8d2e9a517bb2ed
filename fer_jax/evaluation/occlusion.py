"""Occlusion by attribution rank: Du Toit's test and deletion / insertion (RISE).

Explanation maps are brought to a grid of cells ``[B, T, g, g]`` (one cell per model patch
for a TimeSformer, Du Toit's "patches"); cells are ranked by their value, ties broken at
random so that a flat map ranks its cells in random order rather than top-left first.

* Du Toit's test: for every fraction p of cells (0, 10, …, 50 %) and number of frames f
  (0 … 4), occlude the p most important cells *of every frame* and the f most important
  frames (highest map sum) — or the least important ones — and measure the accuracy.
  ``difference = accuracy(least occluded) − accuracy(most occluded)``: high when the
  explanation separates the evidence the model uses from what it ignores.
* Deletion / insertion (Petsiuk et al. 2018): occlude the k most important cells of the whole
  clip (spatio-temporal ranking) for k = 0 … all in ``steps`` steps and follow the probability
  of the explained class (deletion), or start from a fully occluded clip and reveal them
  (insertion). Lower deletion AUC and higher insertion AUC are better.

Occluded pixels are set to ``fill`` in [0, 1] pixel units (default 0, black), before the
model's normalisation. All functions are jit/vmap-compatible ``jax.numpy``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.errors import UserError

FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
FRAME_COUNTS = (0, 1, 2, 3, 4)


def match_frames(maps: jnp.ndarray, num_frames: int) -> jnp.ndarray:
    """Maps ``[B, T', h, w]`` → ``[B, T, h, w]`` by nearest frame (e.g. a CNN's temporally
    pooled maps; frame t uses map ⌊t·T'/T⌋)."""
    if maps.ndim != 4:
        raise UserError(f"these measurements need one map per frame and position "
                        f"[B, T, h, w], got shape {maps.shape}; use a method that keeps the "
                        f"frame axis")
    if maps.shape[1] == num_frames:
        return maps
    return maps[:, (jnp.arange(num_frames) * maps.shape[1]) // num_frames]


def _area_weights(size: int, cells: int) -> np.ndarray:
    """float32 ``[cells, size]``: the share of pixel j in cell i (the overlap of ``[j, j+1)``
    with the cell ``[i, i+1) · size / cells``, over the cell's width); rows sum to 1."""
    edges = np.arange(cells + 1) * size / cells
    pixels = np.arange(size)
    overlap = np.clip(np.minimum(edges[1:, None], pixels + 1)
                      - np.maximum(edges[:-1, None], pixels), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def to_cells(maps: jnp.ndarray, num_frames: int, grid: int) -> jnp.ndarray:
    """Explanation maps ``[B, T', h, w]`` → float32 ``[B, T, g, g]``: frames by
    ``match_frames``; space by area averaging (a cell's value is the mean of the map over the
    cell, pixels cut by a cell border counted by their overlap) when the map is at least
    ``grid`` wide, else by linear interpolation (coarse maps, e.g. a CNN's CAM)."""
    maps = match_frames(maps, num_frames).astype(jnp.float32)
    height, width = maps.shape[2:]
    if (height, width) == (grid, grid):
        return maps
    if height >= grid and width >= grid:
        return jnp.einsum("bthw,ih,jw->btij", maps, _area_weights(height, grid),
                          _area_weights(width, grid), precision=jax.lax.Precision.HIGHEST)
    return jax.image.resize(maps, (maps.shape[0], num_frames, grid, grid), "linear",
                            antialias=True)


def ranks(scores: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """Rank of every entry along the last axis, 0 = largest; ties broken at random."""
    tie_break = jax.random.uniform(key, scores.shape)
    order = jnp.lexsort((tie_break, -scores), axis=-1)
    return jnp.argsort(order, axis=-1).astype(jnp.int32)


def _selected(rank: jnp.ndarray, count, size: int, most) -> jnp.ndarray:
    """Entries among the ``count`` most (``most``) or least important of ``size``."""
    return jnp.where(most, rank < count, rank >= size - count)


def occlusion_keep(cell_rank: jnp.ndarray, frame_rank: jnp.ndarray, num_cells, num_frames,
                   most) -> jnp.ndarray:
    """Mask of Du Toit's test: ``cell_rank`` int [B, T, n] (rank within its frame), ``frame_rank``
    int [B, T]; occlude ``num_cells`` cells per frame and ``num_frames`` frames, the most
    (``most`` True) or least important. Returns keep bool [B, T, n] (True = visible)."""
    n, t = cell_rank.shape[-1], frame_rank.shape[-1]
    hidden = (_selected(cell_rank, num_cells, n, most)
              | _selected(frame_rank, num_frames, t, most)[..., None])
    return ~hidden


def deletion_keep(clip_rank: jnp.ndarray, count, insertion) -> jnp.ndarray:
    """Deletion: hide the ``count`` most important cells of the clip (``clip_rank`` int
    [B, T·n], ranks over the whole clip); insertion: show only them. Returns keep [B, T·n]."""
    top = clip_rank < count
    return jnp.where(insertion, top, ~top)


def to_pixels(keep: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
    """Cell mask ``[B, T, g, g]`` → pixel mask ``[B, T, H, W]`` (nearest neighbour)."""
    grid = keep.shape[-1]
    if height % grid == 0 and width % grid == 0:
        return jnp.repeat(jnp.repeat(keep, height // grid, axis=2), width // grid, axis=3)
    rows = (jnp.arange(height) * grid) // height
    cols = (jnp.arange(width) * grid) // width
    return keep[:, :, rows][:, :, :, cols]


def fill_pixels(video: jnp.ndarray, hidden: jnp.ndarray, fill: float = 0.0) -> jnp.ndarray:
    """``video`` [B, T, H, W, C] with the pixels where ``hidden`` [B, T, H, W] is True set to
    ``fill`` ([0, 1] pixel units; uint8 videos get ``fill · 255`` truncated)."""
    value = fill * 255.0 if video.dtype == jnp.uint8 else fill
    return jnp.where(hidden[..., None], jnp.asarray(value).astype(video.dtype), video)


def occlude(video: jnp.ndarray, keep: jnp.ndarray, fill: float = 0.0) -> jnp.ndarray:
    """``video`` [B, T, H, W, C] (uint8 or float pixels) with the cells where ``keep``
    [B, T, g, g] is False set to ``fill`` ([0, 1] pixel units); same dtype."""
    return fill_pixels(video, ~to_pixels(keep, video.shape[2], video.shape[3]), fill)


def cell_counts(fractions, cells_per_frame: int) -> np.ndarray:
    """Number of cells per frame for each fraction (rounded): int [P]."""
    fractions = np.asarray(fractions, np.float64)
    if fractions.ndim != 1 or fractions.min(initial=0) < 0 or fractions.max(initial=0) > 1:
        raise UserError(f"occlusion fractions must be a list of numbers in [0, 1], got "
                        f"{fractions.tolist()}")
    return np.rint(fractions * cells_per_frame).astype(np.int32)


def grid_conditions(fractions, frame_counts, cells_per_frame: int,
                    num_frames: int) -> np.ndarray:
    """The conditions of Du Toit's test as int [2 · P · F, 3] rows ``(cells, frames, most)``, in the
    order of an array ``[2, P, F]`` whose first axis is (most, least) important occluded."""
    frame_counts = np.asarray(frame_counts, np.int32)
    if frame_counts.ndim != 1 or frame_counts.min(initial=0) < 0 or \
            frame_counts.max(initial=0) > num_frames:
        raise UserError(f"occlusion frame counts must lie in 0..{num_frames} (the clip's "
                        f"frames), got {frame_counts.tolist()}")
    cells = cell_counts(fractions, cells_per_frame)
    most, c, f = np.meshgrid([1, 0], cells, frame_counts, indexing="ij")
    return np.stack([c.ravel(), f.ravel(), most.ravel()], axis=1).astype(np.int32)


def deletion_conditions(steps: int, num_cells: int) -> np.ndarray:
    """Deletion and insertion conditions as int [2 · (steps + 1), 2] rows
    ``(count, insertion)``; counts go 0 … ``num_cells`` in ``steps`` equal steps."""
    if steps < 1:
        raise UserError(f"deletion steps must be at least 1, got {steps}")
    counts = np.rint(np.linspace(0, num_cells, steps + 1)).astype(np.int32)
    insertion = np.repeat([0, 1], steps + 1)
    return np.stack([np.tile(counts, 2), insertion], axis=1).astype(np.int32)


def preview_keep(cells: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Keep masks bool ``[2, N, T, g, g]`` of Du Toit's example figures for cell maps
    ``[N, T, g, g]``: the ``fraction`` most (index 0) or least (1) important cells of every
    frame hidden."""
    n, t, g, _ = cells.shape
    rank = ranks(jnp.asarray(cells).reshape(n, t, g * g), jax.random.key(seed))
    count = int(cell_counts([fraction], g * g)[0])
    frames = jnp.zeros((n, t), jnp.int32)
    return np.stack([np.asarray(occlusion_keep(rank, frames, count, 0, most)).reshape(n, t, g, g)
                     for most in (True, False)])
