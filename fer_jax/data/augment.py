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
    """Applies one affine ``matrix`` to every frame: ``[T, H, W, ...] → [T, S, S, ...]``."""
    return np.stack([
        cv2.warpAffine(f, matrix, (out_size, out_size), flags=interpolation,
                       borderMode=cv2.BORDER_REFLECT_101)
        for f in frames
    ])


def warp_landmarks(landmarks: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Moves landmarks ``[T, 68, 2]`` (x, y pixels) with the frames and keeps iBUG order."""
    out = landmarks @ params.matrix[:, :2].T + params.matrix[:, 2]
    return out[:, _FLIP_68] if params.flipped else out


def jitter_colour(frames: np.ndarray, params: AugmentParams) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter on uint8 RGB ``[T, H, W, 3]``."""
    if (params.brightness, params.contrast, params.saturation, params.hue) == (1, 1, 1, 0):
        return frames
    x = frames.astype(np.float32) * params.brightness
    grey = x @ LUMA
    x = (x - grey.mean()) * params.contrast + grey.mean()
    grey = (x @ LUMA)[..., None]
    x = grey + (x - grey) * params.saturation
    if params.hue:
        x = _rotate_hue(x, params.hue)
    return np.clip(x, 0, 255).astype(np.uint8)


def _rotate_hue(x: np.ndarray, hue: float) -> np.ndarray:
    """Rotates RGB colours ``[..., 3]`` about the grey axis by ``hue`` turns (in [-0.5, 0.5])."""
    theta = 2 * np.pi * hue
    cos, sin = np.cos(theta), np.sin(theta)
    k = 1 / 3
    s3 = np.sqrt(k)
    rotation = np.array([
        [cos + (1 - cos) * k, k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin],
        [k * (1 - cos) + s3 * sin, cos + k * (1 - cos), k * (1 - cos) - s3 * sin],
        [k * (1 - cos) - s3 * sin, k * (1 - cos) + s3 * sin, cos + k * (1 - cos)],
    ], np.float32)
    return x @ rotation.T


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
