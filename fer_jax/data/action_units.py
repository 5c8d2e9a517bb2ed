"""Action-unit (AU) codebook and AU heatmaps from 68 facial landmarks (Belharbi et al.).

Expressions and their AUs follow the codebook of Belharbi et al. (Fig. 2). For an image with
expression ``e`` and 68 iBUG landmarks, ``au_map`` builds one heatmap ``A`` that marks where the
AUs of ``e`` are: each AU is a set of filled ellipses placed from the landmarks, the per-AU maps
are combined by a pixel-wise max and min-max normalised to [0, 1]. Neutral faces have no AUs:
their map is all zeros and they are "invalid" for the AU alignment loss and the CAM-COS /
ATT-COS metrics (``is_valid``).

Landmarks are ``(x, y)`` pixel coordinates (pixel centres at integers), 0-based iBUG-68 indices:
jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67.

Reading of the paper and of the authors' public code (``docs/papers.md``) implemented here
  * Each AU map starts as an ``[H, W]`` array filled with 1e-4; its ellipses are drawn filled
    with value 255 (axes are cv2 semi-axes, angle 0); the map is resized to 28x28 (bilinear),
    box-blurred 3x3 and resized back to ``[H, W]`` (bilinear).
  * Constant sizes of the authors' code assume ~224-pixel faces: the radius 20 circles, the (25, 10)
    axes of AU25, the +20 of AU7 and the minimum axes 10 (AU4) and 5 (AU5, AU7) are multiplied
    by ``face_size / 224``, ``face_size`` defaulting to mean(height, width) (aligned face crops).
  * Axes written ``w/8``, ``h/10``, ``h/6``, ``w/10`` (AU1, AU2, AU6) use the image width and
    height, as in the authors' code, without that scaling.
  * Axes computed from landmark differences use absolute differences. A semi-axis shorter than
    one pixel (which an integer pipeline truncates to 0) is replaced by the minimum axis of its
    AU: 10 for AU4, 5 for AU5 and AU7 (scaled as above). AU17 and AU23/24/26/27 get the same
    guard with minimum 5, so that a closed mouth still yields a visible region instead of a
    degenerate ellipse.
  * AU20 (lip stretcher) is drawn at mid(lm48, lm6) and mid(lm50, lm10), as in the authors'
    code, which produced the paper's numbers (a symmetric reading would take lm54 on the right).
  * Centres and axes are drawn with 1/16-pixel precision (cv2 ``shift=4``) instead of being
    truncated to integers, which matters for small (e.g. 64x64) images.
  * An AU whose ellipses fall entirely outside the image contributes a constant map; if every AU
    of the class does, the normalised map is all zeros.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import cv2
import numpy as np

EXPRESSIONS: tuple[str, ...] = (
    "neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
"""Project-wide class order: the index of a name is its integer label."""

AU_CODEBOOK: dict[str, tuple[int, ...]] = {
    "neutral": (),
    "anger": (4, 5, 7, 10, 17, 23, 24, 25, 26),
    "disgust": (9, 10, 16, 17, 25, 26),
    "fear": (1, 2, 4, 5, 20, 25, 26, 27),
    "happiness": (6, 12, 25),
    "sadness": (1, 4, 6, 15, 17),
    "surprise": (1, 2, 5, 26, 27),
}
"""Expression → AUs, as in the figure of Belharbi et al. (the default)."""

AU_CODEBOOK_CODE_VARIANT: dict[str, tuple[int, ...]] = {
    **AU_CODEBOOK, "disgust": (5, 9, 16, 17, 25, 26)}
"""As ``AU_CODEBOOK`` but Disgust has AU5 in place of AU10, as in the authors' code."""

CODEBOOKS: dict[str, dict[str, tuple[int, ...]]] = {
    "figure": AU_CODEBOOK, "code": AU_CODEBOOK_CODE_VARIANT}
"""Codebooks by name, for configs: ``au_map(..., codebook='code')``."""

ACTION_UNITS: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 15, 16, 17, 20, 23, 24, 25, 26, 27)
"""Every AU that ``au_region_map`` can draw."""

REFERENCE_FACE_SIZE = 224.0
"""Face size (pixels) for which the authors' code writes its constant radii."""

MAP_WORK_SIZE = 28
"""Intermediate resolution of the authors' resize → blur → resize smoothing."""

_BACKGROUND = 1e-4
_FOREGROUND = 255.0
_SHIFT = 4
_ONE = 1 << _SHIFT

Codebook = Union[Mapping[str, tuple[int, ...]], str]
Ellipse = tuple[float, float, float, float]  # centre x, centre y, semi-axis x, semi-axis y


# --------------------------------------------------------------------------- expressions
def expression_index(expression: Union[str, int]) -> int:
    """Integer label of ``expression`` (a name of ``EXPRESSIONS`` or an integer label)."""
    if isinstance(expression, str):
        if expression not in EXPRESSIONS:
            raise ValueError(f"unknown expression {expression!r}; choose one of {EXPRESSIONS}")
        return EXPRESSIONS.index(expression)
    if isinstance(expression, (int, np.integer)) and not isinstance(expression, bool):
        if not 0 <= int(expression) < len(EXPRESSIONS):
            raise ValueError(f"expression label {int(expression)} is outside "
                             f"0..{len(EXPRESSIONS) - 1}")
        return int(expression)
    raise ValueError(f"expression must be a name or an integer label, got {expression!r}")


def expression_name(expression: Union[str, int]) -> str:
    """Name of ``expression`` (a name of ``EXPRESSIONS`` or an integer label)."""
    return EXPRESSIONS[expression_index(expression)]


def is_valid(expression: Union[str, int]) -> bool:
    """False for neutral (no AUs: excluded from the AU alignment loss and metrics), else True."""
    return expression_index(expression) != 0


def resolve_codebook(codebook: Codebook) -> Mapping[str, tuple[int, ...]]:
    """A codebook mapping, given either the mapping itself or a name of ``CODEBOOKS``."""
    if isinstance(codebook, str):
        if codebook not in CODEBOOKS:
            raise ValueError(f"unknown codebook {codebook!r}; choose one of {tuple(CODEBOOKS)}")
        return CODEBOOKS[codebook]
    return codebook


def expression_aus(expression: Union[str, int],
                   codebook: Codebook = AU_CODEBOOK) -> tuple[int, ...]:
    """The AUs of ``expression`` in ``codebook`` (empty for neutral)."""
    name = expression_name(expression)
    book = resolve_codebook(codebook)
    if name not in book:
        raise ValueError(f"codebook has no entry for expression {name!r}")
    aus = tuple(int(au) for au in book[name])
    for au in aus:
        _check_au(au)
    return aus


# --------------------------------------------------------------------------- validation
def _check_au(au: int) -> None:
    if au not in ACTION_UNITS:
        raise ValueError(f"unsupported action unit {au!r}; supported: {ACTION_UNITS}")


def _check_size(height: int, width: int, face_size: float | None) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if face_size is not None and not face_size > 0:
        raise ValueError(f"face_size must be positive, got {face_size}")


def _check_landmarks(landmarks: np.ndarray, video: bool = False) -> np.ndarray:
    """``landmarks`` as float64 ``[68, 2]`` (``[T, 68, 2]`` if ``video``), checked finite."""
    array = np.asarray(landmarks, dtype=np.float64)
    ndim = 3 if video else 2
    if array.ndim != ndim or array.shape[-2:] != (68, 2):
        shape = "[T, 68, 2]" if video else "[68, 2]"
        raise ValueError(f"landmarks must have shape {shape} (x, y per iBUG point), "
                         f"got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("landmarks contain NaN or infinite values")
    return array


def _scale(height: int, width: int, face_size: float | None) -> float:
    """Factor applied to the authors' constant sizes: face_size / 224."""
    return (face_size if face_size is not None else (height + width) / 2) / REFERENCE_FACE_SIZE


# --------------------------------------------------------------------------- AU regions
def _axis(value: float, minimum: float) -> float:
    """Semi-axis ``|value|``, replaced by ``minimum`` where it would truncate to 0 pixels."""
    value = abs(value)
    return minimum if value < 1.0 else value


Points = list  # 68 [x, y] pairs of Python floats (fast scalar access)


def _eyes(p: Points) -> list[tuple[float, float, float, float]]:
    """Per eye: centre ((x_outer+x_inner)/2, (y_top+y_bottom)/2), width dx, height dy."""
    return [((p[left][0] + p[right][0]) / 2, (p[top][1] + p[bottom][1]) / 2,
             p[right][0] - p[left][0], p[bottom][1] - p[top][1])
            for left, top, right, bottom in ((36, 38, 39, 41), (42, 44, 45, 47))]


def _between(p: Points, a: int, b: int, minimum: float) -> Ellipse:
    """Ellipse centred between landmarks a and b with semi-axes |b - a| / 2 (guarded)."""
    (xa, ya), (xb, yb) = p[a], p[b]
    return ((xa + xb) / 2, (ya + yb) / 2, _axis((xb - xa) / 2, minimum),
            _axis((yb - ya) / 2, minimum))


def _midpoint(p: Points, a: int, b: int) -> tuple[float, float]:
    return ((p[a][0] + p[b][0]) / 2, (p[a][1] + p[b][1]) / 2)


def _circles(centres: list[Sequence[float]], radius: float) -> list[Ellipse]:
    return [(x, y, radius, radius) for x, y in centres]


def _regions(p: Points, au: int, h: float, w: float, s: float) -> list[Ellipse]:
    """Ellipses of ``au`` for checked landmarks ``p``, image h x w, size factor s."""
    r = 20 * s
    if au in (1, 2):
        return [(p[i][0], p[i][1], w / 8, h / 10) for i in ((20, 23) if au == 1 else (18, 25))]
    if au == 4:
        return [_between(p, 19, 24, 10 * s)]
    if au == 5:
        return [(cx, cy, _axis(dx / 2, 5 * s), _axis(dy / 2, 5 * s)) for cx, cy, dx, dy in _eyes(p)]
    if au == 7:
        return [(cx, cy, _axis(dx / 2, 5 * s), _axis((abs(dy) + r) / 2, 5 * s))
                for cx, cy, dx, dy in _eyes(p)]
    if au == 6:
        return [(p[i][0], p[i][1] + h / 6, w / 10, h / 10) for i in (41, 46)]
    if au == 9:
        return _circles([(p[31][0], p[29][1]), (p[35][0], p[29][1])], r)
    if au == 10:
        return _circles([(p[48][0], p[50][1]), (p[52][0], p[54][1])], r)
    if au in (12, 15):
        return _circles([p[48], p[54]], r)
    if au == 16:
        return _circles([p[59], p[55]], r)
    if au == 17:
        return [_between(p, 59, 8, 5 * s)]
    if au == 20:  # right side at mid(lm50, lm10), as in the authors' code
        return _circles([_midpoint(p, 48, 6), _midpoint(p, 50, 10)], r)
    if au == 25:
        return [(p[i][0], p[i][1], 25 * s, 10 * s) for i in (51, 57)]
    # AU23, AU24, AU26, AU27: centre ((x48+x54)/2, (y51+y57)/2), axes ((x54-x48)/2, (y57-y51)/2).
    return [((p[48][0] + p[54][0]) / 2, (p[51][1] + p[57][1]) / 2,
             _axis((p[54][0] - p[48][0]) / 2, 5 * s), _axis((p[57][1] - p[51][1]) / 2, 5 * s))]


def au_ellipses(landmarks_68x2: np.ndarray, au: int, height: int, width: int,
                face_size: float | None = None) -> list[Ellipse]:
    """The filled ellipses ``(cx, cy, ax, ay)`` (pixels; ax, ay semi-axes) that mark ``au``.

    landmarks_68x2: ``[68, 2]`` (x, y) pixels. See the module docstring for the reading.
    """
    _check_au(au)
    _check_size(height, width, face_size)
    p = _check_landmarks(landmarks_68x2).tolist()
    return _regions(p, au, float(height), float(width), _scale(height, width, face_size))


# --------------------------------------------------------------------------- maps
def _fixed(value: float) -> int:
    return int(round(value * _ONE))


def _draw(ellipses: list[Ellipse], height: int, width: int) -> np.ndarray:
    """float32 ``[H, W]``: 1e-4 everywhere, 255 inside the filled ellipses."""
    canvas = np.full((height, width), _BACKGROUND, np.float32)
    for cx, cy, ax, ay in ellipses:
        cv2.ellipse(canvas, (_fixed(cx), _fixed(cy)), (_fixed(ax), _fixed(ay)), 0, 0, 360,
                    _FOREGROUND, cv2.FILLED, cv2.LINE_8, _SHIFT)
    return canvas


def _smooth(canvas: np.ndarray) -> np.ndarray:
    """The authors' smoothing: resize to 28x28, 3x3 box blur, resize back (float32 [H, W])."""
    height, width = canvas.shape
    small = cv2.resize(canvas, (MAP_WORK_SIZE, MAP_WORK_SIZE), interpolation=cv2.INTER_LINEAR)
    small = cv2.blur(small, (3, 3))
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _region_map(p: Points, au: int, height: int, width: int, s: float) -> np.ndarray:
    return _smooth(_draw(_regions(p, au, float(height), float(width), s), height, width))


def au_region_map(landmarks_68x2: np.ndarray, au: int, height: int, width: int,
                  face_size: float | None = None) -> np.ndarray:
    """One AU's map, float32 ``[H, W]``: ~1e-4 background, up to 255 inside its ellipses.

    landmarks_68x2: ``[68, 2]`` (x, y) pixels. ``face_size`` (pixels) scales the authors'
    constant sizes by ``face_size / 224``; default mean(height, width).
    """
    _check_au(au)
    _check_size(height, width, face_size)
    p = _check_landmarks(landmarks_68x2).tolist()
    return _region_map(p, au, int(height), int(width), _scale(height, width, face_size))


def _normalise(combined: np.ndarray) -> np.ndarray:
    """Min-max normalisation to [0, 1] with denominator 1 where the map is constant."""
    low = combined.min()
    span = combined.max() - low
    return ((combined - low) / (span if span > 0 else 1.0)).astype(np.float32)


def _class_map(p: Points, aus: tuple[int, ...], height: int, width: int, s: float) -> np.ndarray:
    """Normalised pixel-wise max of the AU maps of ``aus`` (non-empty), float32 [H, W]."""
    combined = _region_map(p, aus[0], height, width, s)
    for au in aus[1:]:
        np.maximum(combined, _region_map(p, au, height, width, s), out=combined)
    return _normalise(combined)


def au_map(landmarks_68x2: np.ndarray, expression: Union[str, int], height: int, width: int,
           face_size: float | None = None, codebook: Codebook = AU_CODEBOOK) -> np.ndarray:
    """AU heatmap ``A`` of one face, float32 ``[H, W]`` in [0, 1] (Belharbi et al.).

    landmarks_68x2: ``[68, 2]`` (x, y) pixels; expression: name or integer label; codebook: a
    mapping name → AUs or a name of ``CODEBOOKS``. ``A`` = pixel-wise max of the class's AU maps,
    min-max normalised (max 1 unless degenerate); all zeros for neutral.
    """
    return au_maps(_check_landmarks(landmarks_68x2)[None], expression, height, width,
                   face_size, codebook)[0]


def au_maps(landmarks: np.ndarray, expression: Union[str, int], height: int, width: int,
            face_size: float | None = None, codebook: Codebook = AU_CODEBOOK) -> np.ndarray:
    """AU heatmaps of a video, float32 ``[T, H, W]`` in [0, 1]: ``au_map`` of every frame.

    landmarks: ``[T, 68, 2]`` (x, y) pixels; the other arguments as in ``au_map``.
    """
    points = _check_landmarks(landmarks, video=True)
    aus = expression_aus(expression, codebook)
    _check_size(height, width, face_size)
    height, width = int(height), int(width)
    out = np.zeros((points.shape[0], height, width), np.float32)
    if aus:
        s = _scale(height, width, face_size)
        for t, frame_points in enumerate(points.tolist()):
            out[t] = _class_map(frame_points, aus, height, width, s)
    return out
