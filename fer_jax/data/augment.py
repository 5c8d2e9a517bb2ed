"""Frame-consistent video augmentation.

Parameters are drawn once per video (Ayral's thesis: "drawn once per video and applied to all
frames") and applied identically to every frame, so the motion between frames is untouched.
Geometry (horizontal flip, rotation, random crop, resize) is composed into a single affine
matrix and applied with one ``cv2.warpAffine`` per frame; the same matrix moves landmarks and
resamples per-frame maps (AU masks) so that ground truth follows the pixels. Colour jitter
(brightness, contrast, saturation, hue) is vectorised over the whole clip.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

# iBUG-68 index permutation that maps a horizontally flipped face's landmarks back to
# anatomical order (left and right swap).
_FLIP_68 = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 RGB → luma weights


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """One video's augmentation: a 2×3 affine ``matrix`` (input → output pixels) and colour
    factors. ``flipped`` tells whether landmarks must be re-ordered left↔right."""

    matrix: np.ndarray
    flipped: bool
    brightness: float
    contrast: float
    saturation: float
    hue: float


def draw_params(rng: np.random.Generator, config, height: int, width: int,
                out_size: int) -> AugmentParams:
    """Draws one video's augmentation from ``config`` (``input.augment`` fields: ``hflip``
    probability, ``rotation`` max degrees, ``crop_scale`` (min, max) side fraction,
    ``brightness``/``contrast``/``saturation``/``hue`` jitter strengths)."""
    flipped = bool(rng.random() < config.hflip)
    angle = float(rng.uniform(-config.rotation, config.rotation))
    scale = float(rng.uniform(*config.crop_scale))
    crop = scale * min(height, width)
    cx = rng.uniform(crop / 2, width - crop / 2) if width > crop else width / 2
    cy = rng.uniform(crop / 2, height - crop / 2) if height > crop else height / 2
    # Rotate about the crop centre and scale the crop onto the output square.
    matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, out_size / crop)
    matrix[:, 2] += np.array([out_size / 2 - cx, out_size / 2 - cy])
    if flipped:
        matrix = np.array([[-1.0, 0.0, out_size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack(
            [matrix, [0.0, 0.0, 1.0]])
    jitter = lambda s: float(rng.uniform(max(0.0, 1 - s), 1 + s))  # noqa: E731
    return AugmentParams(
        matrix=matrix.astype(np.float64), flipped=flipped, brightness=jitter(config.brightness),
        contrast=jitter(config.contrast), saturation=jitter(config.saturation),
        hue=float(rng.uniform(-config.hue, config.hue)))


def identity_params(height: int, width: int, out_size: int) -> AugmentParams:
    """The no-op augmentation: only resizes ``height × width`` frames to ``out_size``."""
    matrix = np.array([[out_size / width, 0.0, 0.0], [0.0, out_size / height, 0.0]])
    return AugmentParams(matrix, False, 1.0, 1.0, 1.0, 0.0)


def warp_frames(frames: np.ndarray, matrix: np.ndarray, out_size: int,
                interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Applies one affine ``matrix`` to every frame: ``[T, H, W, ...] → [T, S, S, ...]``.

    Frames already ``S × S`` under the identity come back as they are (``frames`` itself, not
    a copy), and under the horizontal flip ``x → S − 1 − x`` they are mirrored by
    ``cv2.flip``: both maps send pixel centres to pixel centres, where the warp's
    interpolation reproduces the source pixels exactly, so the result is the warp's (the
    augmentation of a TimeSformer clip, flips only, is one of the two). Otherwise each
    frame is warped into its slot of the output array."""
    count, height, width = frames.shape[:3]
    if (height, width) == (out_size, out_size):
        if np.array_equal(matrix, [[1, 0, 0], [0, 1, 0]]):
            return frames
        flip = np.array_equal(matrix, [[-1, 0, out_size - 1], [0, 1, 0]])
    else:
        flip = False
    out = np.empty((count, out_size, out_size, *frames.shape[3:]), frames.dtype)
    for f, o in zip(frames, out):
        if flip:
            cv2.flip(f, 1, dst=o)
        else:
            cv2.warpAffine(f, matrix, (out_size, out_size), dst=o, flags=interpolation,
                           borderMode=cv2.BORDER_REFLECT_101)
    return out


def warp_landmarks(landmarks: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Moves landmarks ``[T, 68, 2]`` (x, y pixels) with the frames and keeps iBUG order."""
    out = landmarks @ params.matrix[:, :2].T + params.matrix[:, 2]
    return out[:, _FLIP_68] if params.flipped else out


def jitter_colour(frames: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter on uint8 RGB ``[T, H, W, 3]``.

    In turn: ``x·brightness``; contrast about the clip's mean luma ``m``,
    ``(x − m)·contrast + m``; saturation about each pixel's luma ``g``, ``g + (x − g)·saturation``;
    hue, a rotation of the colour about the grey axis (``hue_rotation``); clipped to [0, 255]
    and truncated. Every step is affine in the pixel's colour, so the chain is one 3×4 colour
    matrix per clip (``colour_matrix``), applied by ``cv2.transform`` on the uint8 frames. Its
    fixed-point arithmetic matches the float64 chain to ±1 grey level (``tests/test_augment.py``)
    at a twentieth of the cost of evaluating the chain step by step in float32 NumPy.
    """
    if (params.brightness, params.contrast, params.saturation, params.hue) == (1, 1, 1, 0):
        return frames
    frames = np.ascontiguousarray(frames)
    count, height, width, _ = frames.shape
    mean_rgb = np.mean([cv2.mean(f)[:3] for f in frames], axis=0)  # equal-sized frames
    matrix = colour_matrix(params, mean_rgb)
    matrix[:, 3] -= 0.5  # cv2.transform rounds: round(v − ½) truncates like astype(uint8)
    out = cv2.transform(frames.reshape(count * height, width, 3), matrix)
    return out.reshape(frames.shape)


def colour_matrix(params: AugmentParams, mean_rgb: np.ndarray) -> np.ndarray:
    """The colour jitter of ``params`` as float64 ``[3, 4]``: ``out = M[:, :3] @ rgb + M[:, 3]``
    for a pixel's colour ``rgb`` (before clipping); ``mean_rgb`` [3]: the clip's mean colour."""
    luma = LUMA.astype(np.float64)
    saturate = params.saturation * np.eye(3) + (1 - params.saturation) * luma[None, :]
    rotate = hue_rotation(params.hue)
    linear = params.contrast * params.brightness * (rotate @ saturate)
    mean = params.brightness * float(np.dot(mean_rgb, luma))
    offset = mean * (1 - params.contrast) * (rotate @ saturate @ np.ones(3))
    return np.concatenate([linear, offset[:, None]], axis=1)


def hue_rotation(hue: float) -> np.ndarray:
    """float64 ``[3, 3]`` rotating RGB colours (columns) about the grey axis by ``hue`` turns
    (in [-0.5, 0.5])."""
    theta = 2 * np.pi * hue
    cos, sin = np.cos(theta), np.sin(theta)
    k = 1 / 3
    s3 = np.sqrt(k)
    return np.array([
        [cos + (1 - cos) * k, k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin],
        [k * (1 - cos) + s3 * sin, cos + k * (1 - cos), k * (1 - cos) - s3 * sin],
        [k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin, cos + k * (1 - cos)],
    ])


def apply(example: dict, params: AugmentParams, out_size: int) -> dict:
    """Augments one clip dict in place of a copy.

    ``frames`` uint8 ``[T, H, W, 3]`` → ``[T, S, S, 3]``; ``landmarks`` ``[T, 68, 2]`` and
    ``au_masks`` ``[T, H, W]`` are transformed with the same geometry when present.
    """
    out = dict(example)
    out["frames"] = jitter_colour(warp_frames(example["frames"], params.matrix, out_size), params)
    if "landmarks" in example:
        out["landmarks"] = warp_landmarks(example["landmarks"], params).astype(np.float32)
    if "au_masks" in example:
        out["au_masks"] = warp_frames(example["au_masks"], params.matrix, out_size)
    return out
