"""Figures of attention modules for 3D CNNs (Ayral's thesis, chapter 4 and section 2.3.2).

* :func:`mask_overlay` — mask attention (Figs. 4.7–4.10): the gates ``1 + tanh(...)`` of a
  spatial, spatiotemporal or temporal mask drawn over the faces, frame by frame.
* :func:`self_attention_matrix` — temporal self-attention (Figs. 4.11–4.22): the query × key
  attention matrix with, below it on the same frame axis, the temporal attention profile
  (:func:`temporal_profile`, the mean over queries).
* :func:`pooling_betas` — the learned per-class temperatures β_c of adaptive softmax pooling
  (Eq. 2.1), sorted by :func:`beta_order`.

Inputs are NumPy arrays; every figure is returned as PNG bytes (100 dpi) and also written to
``path`` when given. Bad inputs raise a one-line ValueError naming the argument and its shape.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from fer_jax.viz.overlays import frame_grid, overlay, png_bytes
from fer_jax.viz.plots import figure, finish

_MIN_CELL = 64  # pixels: small frames are upscaled in the mask grid to at least this size
_MAX_THUMBNAILS = 12
_MAX_TICKS = 11


def _write(data: bytes, path) -> bytes:
    """Writes PNG ``data`` to ``path`` when given (creating folders) and returns it."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def _video(frames, what: str, num_frames: int | None = None) -> np.ndarray:
    """``frames`` as uint8 [T, H, W, 3] (T = ``num_frames`` when given), else a ValueError."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 \
            or 0 in frames.shape or num_frames not in (None, len(frames)):
        expected = "T" if num_frames is None else str(num_frames)
        raise ValueError(f"{what}: frames must be a uint8 RGB video [{expected}, H, W, 3], got "
                         f"{frames.dtype} of shape {frames.shape}")
    return frames


def _finite(values, what: str) -> np.ndarray:
    """``values`` as float64, or a ValueError for ``what`` when some are NaN or infinite."""
    values = np.asarray(values, np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{what} of shape {values.shape} has NaN or infinite values")
    return values


def _mask_label(low: float, high: float) -> str:
    """Row label giving the mask values that the colours blue and red stand for."""
    if high > low:
        return f"mask: blue {low:.3g} … red {high:.3g}"
    return f"mask: constant {low:.3g}"


def mask_overlay(frames, masks, *, labels: Sequence[str] = (), alpha: float = 0.5,
                 title: str = "", path=None) -> bytes:
    """Attention masks over the faces as a two-row frame grid (Figs. 4.7–4.10); PNG bytes.

    ``frames`` uint8 [T, H, W, 3]: the face video. ``masks`` float: spatiotemporal gates
    [T', h, w] on the coarse feature grid (e.g. 4×4; values of ``1 + tanh(...)`` lie in
    (0, 2)), or a temporal mask [T'] with one weight per frame, with 1 ≤ T' ≤ T; frame ``t``
    uses mask ``floor(t * T' / T)``. Spatial masks are upsampled bilinearly to the frames; a
    temporal mask tints each whole frame uniformly with the colour of its weight.

    Row 1 shows the faces, row 2 the faces with the mask blended in (``alpha`` = weight of
    the colour, jet colour map). Colours are normalised to [0, 1] by the minimum (blue) and
    maximum (red) of all the video's mask values, so frames stay comparable (a constant mask
    is all blue); the row label prints that range, so a nearly uniform mask reads as such.
    ``labels``: one column label per frame (e.g. frame numbers) or none. Frames smaller than
    64 pixels are upscaled by an integer factor to at least that size.
    """
    frames = _video(frames, "mask overlay")
    num_frames, height, width = frames.shape[:3]
    masks = _finite(masks, "mask overlay: masks")
    if masks.ndim not in (1, 3) or not 1 <= len(masks) <= num_frames or 0 in masks.shape:
        raise ValueError(f"mask overlay: masks must be float [T', h, w] (spatial) or [T'] "
                         f"(temporal) with 1 ≤ T' ≤ {num_frames} frames, got shape "
                         f"{masks.shape}")
    if len(labels) not in (0, num_frames):
        raise ValueError(f"mask overlay: labels must give one label per frame ({num_frames}) "
                         f"or none, got {len(labels)}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"mask overlay: alpha must be in [0, 1], got {alpha}")
    low, high = masks.min(), masks.max()
    unit = (masks - low) / (high - low) if high > low else np.zeros_like(masks)
    cells = unit[:, None, None] if masks.ndim == 1 else unit
    blended = overlay(frames, cells, alpha=alpha, normalise=False)
    scale = max(1, math.ceil(_MIN_CELL / min(height, width)))
    grid = frame_grid([frames, blended], row_labels=["faces", _mask_label(low, high)],
                      column_labels=[str(label) for label in labels], scale=scale,
                      title=title)
    return _write(png_bytes(grid), path)


def _heads_mean(attention, what: str) -> tuple[np.ndarray, int]:
    """Attention [T, T] or [heads, T, T] as its mean over heads [T, T] and the head count
    (0 when no head axis was given), or a ValueError naming ``what``."""
    attention = _finite(attention, what)
    if attention.ndim not in (2, 3) or attention.shape[-1] != attention.shape[-2] \
            or 0 in attention.shape:
        raise ValueError(f"{what} must be a query × key matrix [T, T] or [heads, T, T], got "
                         f"shape {attention.shape}")
    if attention.ndim == 3:
        return attention.mean(axis=0), len(attention)
    return attention, 0


def temporal_profile(attention) -> np.ndarray:
    """Temporal attention profile: the mean over query rows, float [T].

    ``attention`` float [T, T] (rows = queries, columns = keys) or [heads, T, T] (averaged
    over heads first). Entry ``t`` is the mean attention that frame ``t`` receives; when the
    rows are softmax distributions the profile sums to 1.
    """
    matrix, _ = _heads_mean(attention, "temporal profile: attention")
    return matrix.mean(axis=0)


def _ticks(num_frames: int) -> np.ndarray:
    """At most :data:`_MAX_TICKS` frame indices at round steps (1, 2, 5, 10, …)."""
    locator = MaxNLocator(_MAX_TICKS - 1, steps=[1, 2, 5, 10], integer=True)
    ticks = locator.tick_values(0, num_frames - 1)
    return ticks[(ticks >= 0) & (ticks <= num_frames - 1)].astype(int)


def _thumbnails(ax, frames: np.ndarray) -> None:
    """Draws up to :data:`_MAX_THUMBNAILS` evenly spaced frames on ``ax``, each centred at
    its frame index on the x axis."""
    picks = np.unique(np.linspace(0, len(frames) - 1,
                                  min(len(frames), _MAX_THUMBNAILS)).round()).astype(int)
    half = 0.45 * (np.diff(picks).min() if len(picks) > 1 else 1)
    for index in picks:
        ax.imshow(frames[index], extent=(index - half, index + half, 0, 1), aspect="auto")
    ax.set(ylim=(0, 1), yticks=[], ylabel="frames")


def self_attention_matrix(attention, *, frame_labels: Sequence[str] | None = None,
                          frames=None, title: str = "", path=None) -> bytes:
    """Query × key self-attention matrix and its temporal profile (Figs. 4.11–4.22); PNG bytes.

    ``attention`` float [T, T] (row = query frame, column = key frame; softmax rows sum to
    1) or [heads, T, T], averaged over heads (the colour bar says so). Top: the matrix as an
    image with a colour bar; bottom, on the same key-frame axis: :func:`temporal_profile`
    with a dashed line at the uniform attention 1/T. ``frames`` uint8 [T, H, W, 3] adds a
    strip of up to 12 evenly spaced thumbnails between the two, each at its frame index.
    ``frame_labels``: T tick labels (e.g. the frame numbers in the source video), shown at
    up to 11 frames at round steps; by default the indices 0 … T − 1.
    """
    matrix, heads = _heads_mean(attention, "self-attention matrix: attention")
    num_frames = len(matrix)
    if frame_labels is not None and len(frame_labels) != num_frames:
        raise ValueError(f"self-attention matrix: frame_labels must give one label per frame "
                         f"({num_frames}, from attention of shape {np.shape(attention)}), got "
                         f"{len(frame_labels)}")
    thumbnails = None if frames is None else _video(frames, "self-attention matrix",
                                                    num_frames)
    ratios = [4.2] + ([0.8] if thumbnails is not None else []) + [1.6]
    fig = figure(6.4, sum(ratios) + 1.4)
    axes = fig.subplots(len(ratios), 1, sharex=True, height_ratios=ratios)
    image = axes[0].imshow(matrix, cmap="viridis", aspect="auto", interpolation="nearest")
    label = "attention weight" + (f" (mean of {heads} heads)" if heads else "")
    fig.colorbar(image, ax=axes[0], location="top", label=label, shrink=0.8)
    axes[0].set_ylabel("query frame")
    if thumbnails is not None:
        _thumbnails(axes[1], thumbnails)
    profile = matrix.mean(axis=0)
    keys = np.arange(num_frames)
    axes[-1].plot(keys, profile, color="C0", marker="." if num_frames <= 50 else None,
                  label="mean over queries")
    axes[-1].fill_between(keys, profile, color="C0", alpha=0.2)
    axes[-1].axhline(1 / num_frames, color="0.4", ls="--", lw=0.8, label="uniform 1/T")
    axes[-1].set(xlabel="key frame", ylabel="temporal profile",
                 ylim=(min(0.0, profile.min() * 1.1), max(profile.max(), 1 / num_frames) * 1.15))
    axes[-1].grid(alpha=0.3)
    axes[-1].legend(fontsize="small", loc="upper right")
    ticks = _ticks(num_frames)
    names = [str(frame_labels[t]) if frame_labels is not None else str(t) for t in ticks]
    axes[-1].set_xticks(ticks, names)
    axes[0].set_yticks(ticks, names)
    axes[-1].set_xlim(-0.5, num_frames - 0.5)
    return finish(fig, title, path)


def _betas(betas, class_names: Sequence[str]) -> np.ndarray:
    """``betas`` [C] or [S, C] as float [S, C], or a ValueError."""
    values = _finite(betas, "pooling betas: betas")
    if values.ndim not in (1, 2) or values.shape[-1] != len(class_names) or 0 in values.shape:
        raise ValueError(f"pooling betas: betas must be float [C] or [seeds, C] with C = "
                         f"{len(class_names)} classes (one per class name), got shape "
                         f"{values.shape}")
    return values.reshape(-1, values.shape[-1])


def beta_order(betas) -> np.ndarray:
    """Class indices int [C] sorted by decreasing β (mean over seeds for ``betas`` [S, C];
    ``betas`` [C] for one model); ties keep the class order."""
    values = _finite(betas, "beta order: betas")
    if values.ndim not in (1, 2) or 0 in values.shape:
        raise ValueError(f"beta order: betas must be float [C] or [seeds, C], got shape "
                         f"{values.shape}")
    means = values.reshape(-1, values.shape[-1]).mean(axis=0)
    return np.argsort(-means, kind="stable")


def pooling_betas(betas, class_names: Sequence[str], *, title: str = "", path=None) -> bytes:
    """Learned temperatures β_c of adaptive softmax pooling (Eq. 2.1) as horizontal bars,
    largest on top (:func:`beta_order`); PNG bytes.

    ``betas`` float [C] (one model) or [S, C] (S seeds: bar = mean, error bar = sample
    standard deviation, the axis label says how many seeds), ``class_names`` [C]. Each bar
    is annotated with its value; a dashed vertical line marks the initial value β = 1 and a
    solid one β = 0 (average pooling; β → ∞ approaches max pooling).
    """
    values = _betas(betas, class_names)
    seeds = len(values)
    means = values.mean(axis=0)
    spread = values.std(axis=0, ddof=1) if seeds > 1 else np.zeros_like(means)
    order = beta_order(values)
    means, spread = means[order], spread[order]
    rows = np.arange(len(order))
    fig = figure(6.4, 1.4 + 0.38 * len(order))
    ax = fig.subplots()
    ax.barh(rows, means, xerr=spread if seeds > 1 else None, color="C0", capsize=3,
            height=0.7)
    ax.axvline(1, color="C3", ls="--", lw=1, label="initial β = 1")
    ax.axvline(0, color="0.3", lw=0.8)
    ends = means + np.sign(means) * spread
    reach = max(np.abs(ends).max(), 1.0)
    for row, mean, sd, end in zip(rows, means, spread, ends):
        text = f"{mean:.3g} ± {sd:.2g}" if seeds > 1 else f"{mean:.3g}"
        ax.text(end + 0.03 * reach * (1 if end >= 0 else -1), row, text, va="center",
                ha="left" if end >= 0 else "right", fontsize="small")
    ax.set_yticks(rows, [class_names[index] for index in order])
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, ends.min()) - (0.35 * reach if ends.min() < 0 else 0.05 * reach),
                max(1.0, ends.max()) + 0.35 * reach)
    ax.set_xlabel("β (0 = average pooling, → ∞ = max pooling)"
                  + (f"; mean ± sd over {seeds} seeds" if seeds > 1 else ""))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    return finish(fig, title, path)
