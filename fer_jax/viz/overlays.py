"""Heatmap overlays, occlusion previews and labelled frame grids of face videos.

Videos are uint8 RGB arrays ``[T, H, W, 3]``; explanation maps are float arrays
``[T', h, w]`` on a coarser grid of cells (e.g. one value per patch and per frame group),
stretched to the video with :func:`resize_maps`. Colours come from OpenCV colour maps
(converted to RGB); grids are drawn with matplotlib's Agg canvas, without pyplot.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties

from fer_jax.errors import UserError

COLOURMAPS = {"jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO,
              "viridis": cv2.COLORMAP_VIRIDIS, "turbo": cv2.COLORMAP_TURBO}
_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
_DPI = 100
_FONT_SIZE = 10
_PAD = 6  # pixels around labels and the grid
_GAP = 2  # white pixels between grid cells


def check_frames(frames, what: str) -> np.ndarray:
    """Returns ``frames`` as a uint8 array [T, H, W, 3], or raises a UserError for ``what``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 \
            or 0 in frames.shape:
        raise UserError(f"{what}: frames must be a non-empty uint8 RGB video [T, H, W, 3], "
                        f"got {frames.dtype} of shape {frames.shape}")
    return frames


def colourise(maps, cmap: str = "jet") -> np.ndarray:
    """Colours of float ``maps`` [...] in [0, 1] (clipped) as uint8 RGB [..., 3].

    ``cmap`` is one of :data:`COLOURMAPS`; values are quantised to 256 levels.
    """
    if cmap not in COLOURMAPS:
        raise UserError(f"unknown colour map {cmap!r}; use one of {', '.join(COLOURMAPS)}")
    levels = np.arange(256, dtype=np.uint8)[:, None]
    table = cv2.cvtColor(cv2.applyColorMap(levels, COLOURMAPS[cmap]), cv2.COLOR_BGR2RGB)[:, 0]
    return table[np.round(np.clip(np.asarray(maps, np.float32), 0, 1) * 255).astype(np.uint8)]


def resize_maps(maps, num_frames: int, height: int, width: int,
                interpolation: str = "linear") -> np.ndarray:
    """Stretches the maps of one video, float [T', h, w], to float32 [T, H, W].

    Frame ``t`` uses map ``floor(t * T' / T)`` (nearest in time); each map is resized with
    ``cv2.resize`` (``"linear"`` or ``"nearest"``, where pixel ``x`` takes cell
    ``floor(x * w / W)``).
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3 or 0 in maps.shape:
        raise UserError(f"maps must be a non-empty float array [T, h, w] for one video, got "
                        f"shape {maps.shape}")
    if min(num_frames, height, width) < 1:
        raise UserError(f"cannot resize maps to {num_frames} frames of {height}x{width} "
                        f"pixels; give positive sizes")
    if interpolation not in _INTERPOLATIONS:
        raise UserError(f"unknown interpolation {interpolation!r}; use one of "
                        f"{', '.join(_INTERPOLATIONS)}")
    resized = np.stack([cv2.resize(m, (width, height),
                                   interpolation=_INTERPOLATIONS[interpolation])
                        for m in maps])
    return resized[np.arange(num_frames) * len(maps) // num_frames]


def overlay(frames, maps, alpha: float = 0.5, cmap: str = "jet",
            normalise: bool = True) -> np.ndarray:
    """Blends coloured ``maps`` [T', h, w] onto ``frames`` uint8 [T, H, W, 3]; uint8 result.

    Maps are stretched with :func:`resize_maps`; with ``normalise`` they are scaled to
    [0, 1] by the minimum and maximum of the whole video (so frames stay comparable; a
    constant map becomes 0). Each pixel is ``(1 - alpha) * frame + alpha * colour``.
    """
    frames = check_frames(frames, "overlay")
    if not 0 <= alpha <= 1:
        raise UserError(f"overlay: alpha must be in [0, 1], got {alpha}")
    maps = resize_maps(maps, *frames.shape[:3])
    if normalise:
        low, high = maps.min(), maps.max()
        maps = (maps - low) / (high - low) if high > low else np.zeros_like(maps)
    blend = (1 - alpha) * frames.astype(np.float32) + alpha * colourise(maps, cmap)
    return np.round(blend).astype(np.uint8)


def occlude_preview(frames, keep, fill: int = 0) -> np.ndarray:
    """``frames`` uint8 [T, H, W, 3] with the cells where ``keep`` is False set to the grey
    level ``fill`` (0–255, rounded).

    ``keep`` bool [T', h, w] (True = visible) is stretched to the video by nearest
    neighbour in time and space (see :func:`resize_maps`).
    """
    frames = check_frames(frames, "occlusion preview")
    keep = np.asarray(keep, bool)
    if keep.ndim != 3:
        raise UserError(f"occlusion preview: keep must be a bool cell mask [T, h, w], got "
                        f"shape {keep.shape}")
    if not 0 <= fill <= 255:
        raise UserError(f"occlusion preview: fill must be a grey level in 0..255, got {fill}")
    visible = resize_maps(keep, *frames.shape[:3], interpolation="nearest") > 0.5
    return np.where(visible[..., None], frames, np.uint8(round(fill)))


def _mosaic(rows: list[np.ndarray], scale: int) -> np.ndarray:
    """Rows of videos [T, H, W, 3] as one uint8 image, cells upscaled and on white."""
    num_frames = max(len(row) for row in rows)
    padded = np.full((len(rows), num_frames, *rows[0].shape[1:]), 255, np.uint8)
    for index, row in enumerate(rows):
        padded[index, :len(row)] = row
    cells = padded.repeat(scale, axis=2).repeat(scale, axis=3)
    cells = np.pad(cells, ((0, 0), (0, 0), (0, _GAP), (0, _GAP), (0, 0)),
                   constant_values=255)
    r, t, h, w, _ = cells.shape
    return cells.transpose(0, 2, 1, 3, 4).reshape(r * h, t * w, 3)[:-_GAP, :-_GAP]


def _text_width(labels: Sequence[str]) -> int:
    """Width in pixels of the widest of ``labels`` (0 for none)."""
    renderer, font = RendererAgg(1, 1, _DPI), FontProperties(size=_FONT_SIZE)
    return int(np.ceil(max([renderer.get_text_width_height_descent(str(label), font, False)[0]
                            for label in labels], default=0)))


def frame_grid(rows: Sequence, row_labels: Sequence[str] = (),
               column_labels: Sequence[str] = (), scale: int = 4,
               title: str = "") -> np.ndarray:
    """Draws videos as a labelled grid (one row per video, one column per frame).

    ``rows``: uint8 videos [T, H, W, 3] of the same H and W; shorter ones are padded with
    white cells. Cells are upscaled ``scale`` times by nearest neighbour and drawn at their
    pixel size, with ``row_labels`` (one per row) on the left and ``column_labels`` (one
    per column) on top. Returns the uint8 RGB image [H', W', 3].
    """
    rows = [check_frames(row, "frame grid") for row in rows]
    if not rows or len({row.shape[1:] for row in rows}) != 1:
        raise UserError(f"frame grid: give at least one video, all of the same frame size; "
                        f"got shapes {[row.shape for row in rows]}")
    num_frames = max(len(row) for row in rows)
    if len(row_labels) not in (0, len(rows)) or len(column_labels) not in (0, num_frames):
        raise UserError(f"frame grid: {len(row_labels)} row and {len(column_labels)} column "
                        f"labels for {len(rows)} rows of {num_frames} frames; give one each "
                        f"or none")
    if scale < 1:
        raise UserError(f"frame grid: scale must be a positive integer, got {scale}")
    mosaic = _mosaic(rows, scale)
    line = int(np.ceil(1.6 * _FONT_SIZE * _DPI / 72))
    left = _PAD + (_text_width(row_labels) + _PAD if row_labels else 0)
    top = _PAD + line * (bool(title) + bool(column_labels))
    height, width = top + mosaic.shape[0] + _PAD, left + mosaic.shape[1] + _PAD
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    fig.figimage(mosaic, xo=left, yo=_PAD, origin="upper")
    cell_h, cell_w = rows[0].shape[1] * scale, rows[0].shape[2] * scale
    for index, label in enumerate(row_labels):
        y = height - top - index * (cell_h + _GAP) - cell_h / 2
        fig.text((left - _PAD) / width, y / height, label, ha="right", va="center",
                 fontsize=_FONT_SIZE)
    for index, label in enumerate(column_labels):
        x = left + index * (cell_w + _GAP) + cell_w / 2
        fig.text(x / width, (height - top + 2) / height, label, ha="center", va="bottom",
                 fontsize=_FONT_SIZE)
    if title:
        fig.text(0.5, 1 - _PAD / height, title, ha="center", va="top", fontsize=_FONT_SIZE)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _encode(image, suffix: str, what: str, params: Sequence[int] = ()) -> bytes:
    """OpenCV's ``suffix`` encoding of a uint8 RGB image [H, W, 3]."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise UserError(f"{what}: image must be uint8 RGB [H, W, 3], got {image.dtype} of "
                        f"shape {image.shape}")
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(params))
    if not ok:
        raise UserError(f"{what}: OpenCV could not encode an image of shape {image.shape}")
    return encoded.tobytes()


def png_bytes(image) -> bytes:
    """PNG encoding of a uint8 RGB image [H, W, 3] (lossless)."""
    return _encode(image, ".png", "PNG")


def jpeg_bytes(image, quality: int = 90) -> bytes:
    """JPEG encoding of a uint8 RGB image [H, W, 3] at ``quality`` (1–100): for large
    photographic mosaics (heatmaps over faces), a third to a fifth of the PNG's size."""
    if not 1 <= quality <= 100:
        raise UserError(f"JPEG quality must lie in 1..100, got {quality}")
    return _encode(image, ".jpg", "JPEG", (cv2.IMWRITE_JPEG_QUALITY, int(quality)))


def map_on_face(frame: np.ndarray, transform: np.ndarray, face_map: np.ndarray,
                crop_size: int, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Draws an explanation map of an aligned face crop back onto the source frame.

    ``frame`` uint8 [H, W, 3]; ``transform`` float [2, 3] the source → crop affine map of the
    crop (``faces.FaceTrack.transforms``); ``face_map`` float [h, w] in [0, 1] on the crop's
    grid (stretched bilinearly to ``crop_size``). Inside the (rotated) crop each pixel becomes
    ``(1 - alpha) * frame + alpha * colour``; outside it the frame is unchanged.
    """
    height, width = frame.shape[:2]
    stretched = cv2.resize(np.asarray(face_map, np.float32), (crop_size, crop_size),
                           interpolation=cv2.INTER_LINEAR)
    inverse = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    m = np.asarray(transform, np.float64)
    colour = cv2.warpAffine(colourise(stretched, cmap), m, (width, height), flags=inverse)
    inside = cv2.warpAffine(np.ones((crop_size, crop_size), np.float32), m, (width, height),
                            flags=inverse)[..., None] * alpha
    blend = (1 - inside) * frame.astype(np.float32) + inside * colour
    return np.round(blend).astype(np.uint8)


def label_frame(frame: np.ndarray, text: str, box=None, heading: str = "",
                colour: tuple[int, int, int] = (40, 220, 40)) -> np.ndarray:
    """A copy of ``frame`` uint8 [H, W, 3] with ``box`` (x0, y0, x1, y1; None = none) drawn,
    ``text`` above it (or at the top left without a box) and ``heading`` in the bottom-left
    corner, in OpenCV's Hershey font scaled to the frame."""
    out = np.ascontiguousarray(frame).copy()
    scale = max(out.shape[1] / 900, 0.4)
    thick = max(int(round(2 * scale)), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX

    def put(string, x, y, fg):
        cv2.putText(out, string, (x, y), font, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(out, string, (x, y), font, scale, fg, thick, cv2.LINE_AA)

    line = int(30 * scale)
    if box is not None and np.isfinite(box).all():
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, thick)
        put(text, max(x0, 2), max(y0 - line // 3, line), colour)
    else:
        put(text, 6, line, (255, 255, 255))
    if heading:
        put(heading, 6, out.shape[0] - line // 3, (255, 255, 255))
    return out


def tile(panels: Sequence[np.ndarray], columns: int = 2) -> np.ndarray:
    """Equally sized uint8 images [H, W, 3] tiled ``columns`` per row (black where a row is
    short)."""
    panels = [np.asarray(p) for p in panels]
    rows = -(-len(panels) // columns)
    height, width = panels[0].shape[:2]
    out = np.zeros((rows * height, min(columns, len(panels)) * width, 3), np.uint8)
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        out[r * height:(r + 1) * height, c * width:(c + 1) * width] = panel
    return out
