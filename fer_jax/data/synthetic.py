"""The built-in procedural benchmark: synthetic face videos with full ground truth.

Real datasets need a manual download; this benchmark needs none. It is the default dataset, the
test fixture of every module, and the ground truth (labels, subjects, per-frame intensity,
landmarks and AU masks) against which the explanations and the sampler's draws are measured.

Every video is a deterministic function of ``(config.seed, split, index)``: it can be rendered
alone, in any order, in any process, and rendering a subset of its frames gives exactly the pixels
of the same frames of a full render. Nothing is stored; frames are drawn with OpenCV on demand.

Geometry
  A canonical iBUG-68 mean shape is built procedurally in *face units* (the canonical inter-ocular
  distance, i.e. between eye centres, is 1; origin at the eye midpoint; x right, y down): a jaw
  arc (0-16), arched brows (17-26), nose bridge (27-30) and base (31-35), 6-point eye contours
  (36-47), outer (48-59) and closed inner (60-67) lips. Extra, non-landmark points outline the
  forehead, hair, ears and neck. Landmarks use the image's left/right: points 0, 17, 36 and 48 are
  on the image's left. A face unit maps to ``0.30 * image_size`` pixels (±4 % per identity) and the
  eye midpoint to ``(0.5, 0.36) * image_size``, so the face fills most of the frame like an
  aligned face crop; landmarks stay inside the frame at every expression and nuisance level.

Identities (subjects)
  Subject ``s`` is drawn from ``np.random.default_rng([seed, 3, s])``: face width, face height,
  jaw taper, eye spacing and size, brow height and thickness, nose length and width, mouth width,
  height and lip thickness, hair shape, and colours of skin, hair, brows, lips, iris and
  background. ``num_subjects`` identities are split 70/15/15 (at least one each) into disjoint
  train / validation / test ranges of subject ids (subject-independent protocol).

Expressions
  Each action unit (AU) of Belharbi et al.'s codebook (``action_units.AU_CODEBOOK``, or its code
  variant with ``codebook='code'``) is a fixed, left/right-symmetric displacement field over the
  68 landmarks in units of the subject's inter-ocular distance (e.g. AU1 lifts the inner brows by
  0.17, AU26 drops the chin by 0.15 and opens the lips). An expression moves the neutral shape by
  ``sum over its AUs of intensity(t) * strength * gain_au * field_au``; ``strength`` ~ U(0.6, 1.0)
  per video and ``gain_au`` ~ U(0.85, 1.15) per video and AU. Lids and lips are then kept from
  crossing (the lower lid stays below the upper one, the inner lower lip below the inner upper
  lip). At 64x64 brows move 2-4 px and the mouth opens up to ~7 px at the apex. Classes share
  AUs exactly as in the codebook. ``num_classes = C`` uses the first C names of
  ``action_units.EXPRESSIONS`` (neutral first). The ground-truth landmarks are exactly the points
  the faces are drawn from.

Timeline
  A video of ``L`` frames (``num_frames``; a ``(min, max)`` tuple draws ``L`` per video) has one
  event neutral → onset → apex → offset → neutral. Phase lengths are drawn from the configured
  inclusive ranges (apex first, then onset, then offset, each capped so that the event fits) and
  the event starts at a random frame such that the first and the last frame are neutral.
  Intensity rises linearly (``k / (onset + 1)``), is 1 over the apex and falls linearly.
  Neutral-class videos have intensity 0 throughout (phase 0).

Nuisances (all scaled by ``nuisance`` in [0, 1]; 0 disables every one of them)
  * head jitter: per-frame translation (sd 0.05 face units), rotation (sd 3°) and scale (sd 2 %)
    about the nose, times ``nuisance``, as a smooth AR(1) sequence (correlation 0.7, clipped
    at 2 sd); the landmarks follow it.
  * occluder (probability 0.6 ``nuisance``): a filled rectangle or ellipse of random colour over
    the eyes, one eye, brows, nose, mouth or chin for a run of 2..L/3 frames (``occluded``,
    ``occluder_box`` = x0, y0, x1, y1 pixels).
  * brightness drop (probability 0.4 ``nuisance``): frames multiplied by 0.35-0.6 for a run of
    2..L/4 frames (``dark``).
  * distractor (probability 0.6 ``nuisance``): a 2-4 frame expression of another non-neutral
    class at peak intensity 0.2-0.35, outside the main event with a gap of one frame
    (``distractor``, ``distractor_intensity``, ``distractor_label``; -1 when absent). In a
    neutral video it may be anywhere.
  * pixel noise: Gaussian, sd 6 ``nuisance`` grey levels, from a bank of 64 fixed noise frames
    (one per frame, drawn per video).

Labels are balanced: consecutive blocks of ``num_classes`` videos hold each class once in a random
order, so class counts differ by at most one and a video's label does not depend on
``num_videos``; subjects are assigned the same way within the split's subject range.
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Sequence, Union

import cv2
import numpy as np

from fer_jax.data import action_units
from fer_jax.hashing import splitmix64

SPLITS: tuple[str, ...] = ("train", "validation", "test")
HELD_OUT_SUBJECTS = 0.15  # fraction of the subjects in each of validation and test

_IDENTITY_STREAM = 3  # default_rng([seed, 3, subject]); videos use [seed, split_id, index]
_NOISE_STREAM = 4     # default_rng([seed, 4, image_size])
_LABEL_KEY, _SUBJECT_KEY, _LENGTH_KEY = 0, 1, 2  # hash streams for per-index assignments

# --------------------------------------------------------------------------- point layout
NUM_LANDMARKS = 68
_FOREHEAD = np.arange(68, 79)   # arc over the forehead, from the image's right to its left
_HAIR = np.arange(79, 94)       # outline of the hair, ear to ear over the head
_EARS = np.arange(94, 96)       # ear centres (left, right)
_NECK = np.arange(96, 100)

_MIRROR = np.array(
    [16 - i for i in range(17)]                   # jaw
    + [26 - i for i in range(5)] + [21 - i for i in range(5)]  # brows
    + [27, 28, 29, 30] + [35, 34, 33, 32, 31]     # nose
    + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]      # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]         # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65])                        # inner lips
"""iBUG index of each landmark's left/right mirror image."""

_FACE_POLYGON = np.concatenate([np.arange(17), _FOREHEAD])
_BROWS = (np.arange(17, 22), np.arange(22, 27))
_EYES = (np.arange(36, 42), np.arange(42, 48))
_UPPER_LIDS = (np.arange(36, 40), np.arange(42, 46))
_NOSE_BRIDGE = np.arange(28, 31)
_NOSE_BASE = np.arange(31, 36)
_NOSTRILS = np.array([32, 34])
_OUTER_LIPS = np.arange(48, 60)
_INNER_LIPS = np.arange(60, 68)
_UPPER_INNER_LIP = np.arange(60, 65)
_LID_PAIRS = np.array([[37, 41], [38, 40], [43, 47], [44, 46]])    # (upper, lower)
_MIN_LID_GAP = 0.015  # face units: eyes never close completely
_LIP_PAIRS = np.array([[61, 67], [62, 66], [63, 65]])              # (inner upper, inner lower)
_OCCLUDER_TARGETS = (np.arange(36, 48), np.arange(36, 42), np.arange(42, 48),
                     np.arange(17, 27), np.arange(27, 36), np.arange(48, 68), np.arange(5, 12))


def _symmetric(half: dict[int, tuple[float, float]]) -> np.ndarray:
    """float64 [68, 2]: the given points plus their mirror images (x negated)."""
    out = np.zeros((NUM_LANDMARKS, 2))
    for i, (x, y) in half.items():
        out[i] = (x, y)
        out[_MIRROR[i]] = (-x, y)
    return out


# --------------------------------------------------------------------------- canonical face
_JAW_TOP = 0.05
_CHIN = 1.47


def _jaw(half_width: float, height: float, taper: float) -> np.ndarray:
    """Jaw points 0-16 [17, 2]: a tapered half-ellipse from ear level down to the chin."""
    theta = np.linspace(0.0, np.pi, 17)
    x = -half_width * np.cos(theta) * (1.0 - taper * np.sin(theta) ** 2)
    y = _JAW_TOP + height * np.sin(theta)
    return np.stack([x, y], axis=1)


def _canonical_features() -> np.ndarray:
    """Brows, nose, eyes and lips of the mean face [68, 2] in face units (jaw rows zero)."""
    return _symmetric({
        17: (-0.86, -0.28), 18: (-0.70, -0.36), 19: (-0.52, -0.39), 20: (-0.34, -0.38),
        21: (-0.15, -0.34),
        27: (0.0, -0.02), 28: (0.0, 0.17), 29: (0.0, 0.35), 30: (0.0, 0.53),
        31: (-0.19, 0.62), 32: (-0.10, 0.66), 33: (0.0, 0.68),
        36: (-0.71, 0.0), 37: (-0.57, -0.075), 38: (-0.43, -0.075), 39: (-0.29, 0.0),
        40: (-0.43, 0.06), 41: (-0.57, 0.06),
        48: (-0.40, 0.98), 49: (-0.26, 0.90), 50: (-0.10, 0.86), 51: (0.0, 0.88),
        57: (0.0, 1.13), 58: (-0.13, 1.12), 59: (-0.28, 1.07),
        60: (-0.34, 0.98), 61: (-0.14, 0.97), 62: (0.0, 0.975), 66: (0.0, 0.975),
        67: (-0.14, 0.97),
    })


_CANONICAL = _canonical_features()

# --------------------------------------------------------------------------- AU fields
# Displacements (dx, dy) in inter-ocular distances for the image-left half and the midline;
# the right half is mirrored. Positive y is down.
_AU_HALF_FIELDS: dict[int, dict[int, tuple[float, float]]] = {
    1: {21: (0.0, -0.17), 20: (0.0, -0.12), 19: (0.0, -0.06), 18: (0.0, -0.02)},
    2: {17: (-0.01, -0.15), 18: (0.0, -0.16), 19: (0.0, -0.11), 20: (0.0, -0.05)},
    4: {17: (0.0, 0.07), 18: (0.02, 0.10), 19: (0.04, 0.12), 20: (0.06, 0.14), 21: (0.07, 0.14),
        37: (0.0, 0.015), 38: (0.0, 0.02)},
    5: {37: (0.0, -0.07), 38: (0.0, -0.07), 36: (0.0, -0.01)},
    6: {40: (0.0, -0.035), 41: (0.0, -0.04), 36: (0.0, -0.015), 2: (-0.02, -0.03),
        3: (-0.02, -0.03)},
    7: {40: (0.0, -0.04), 41: (0.0, -0.04), 37: (0.0, 0.025), 38: (0.0, 0.025)},
    9: {31: (-0.02, -0.06), 32: (0.0, -0.06), 33: (0.0, -0.05), 30: (0.0, -0.03),
        29: (0.0, -0.02), 21: (0.02, 0.05), 20: (0.01, 0.03), 49: (0.0, -0.03),
        50: (0.0, -0.04), 51: (0.0, -0.04)},
    10: {49: (0.0, -0.08), 50: (0.0, -0.10), 51: (0.0, -0.09), 61: (0.0, -0.09),
         62: (0.0, -0.08), 48: (0.0, -0.03), 60: (0.0, -0.04), 31: (0.0, -0.02)},
    12: {48: (-0.10, -0.14), 60: (-0.09, -0.13), 49: (-0.04, -0.06), 59: (-0.05, -0.08),
         61: (-0.03, -0.04), 67: (-0.03, -0.06), 58: (-0.01, -0.03)},
    15: {48: (-0.01, 0.10), 60: (-0.01, 0.09), 49: (0.0, 0.03), 59: (0.0, 0.05),
         61: (0.0, 0.02), 67: (0.0, 0.03)},
    16: {57: (0.0, 0.11), 58: (0.0, 0.10), 59: (0.0, 0.06), 66: (0.0, 0.10), 67: (0.0, 0.08)},
    17: {7: (0.0, -0.05), 8: (0.0, -0.06), 57: (0.0, -0.04), 58: (0.0, -0.035),
         59: (0.0, -0.02), 66: (0.0, -0.03), 67: (0.0, -0.025), 48: (0.0, 0.02),
         60: (0.0, 0.02)},
    20: {48: (-0.11, 0.02), 60: (-0.10, 0.02), 49: (-0.05, 0.0), 59: (-0.05, 0.01),
         61: (-0.03, 0.0), 67: (-0.03, 0.0), 50: (-0.01, 0.01), 58: (-0.01, -0.01)},
    23: {48: (0.04, 0.0), 60: (0.04, 0.0), 49: (0.02, 0.02), 50: (0.0, 0.03), 51: (0.0, 0.03),
         59: (0.02, -0.02), 58: (0.0, -0.03), 57: (0.0, -0.03)},
    24: {48: (0.03, 0.0), 60: (0.03, 0.0), 49: (0.0, 0.02), 50: (0.0, 0.03), 51: (0.0, 0.035),
         57: (0.0, -0.035), 58: (0.0, -0.03), 59: (0.0, -0.02)},
    25: {61: (0.0, -0.015), 62: (0.0, -0.015), 66: (0.0, 0.06), 67: (0.0, 0.05),
         57: (0.0, 0.05), 58: (0.0, 0.045), 59: (0.0, 0.03), 60: (0.0, 0.005)},
    26: {66: (0.0, 0.12), 67: (0.0, 0.10), 57: (0.0, 0.12), 58: (0.0, 0.11), 59: (0.0, 0.08),
         8: (0.0, 0.15), 7: (0.0, 0.14), 6: (0.0, 0.11), 5: (0.0, 0.07), 4: (0.0, 0.03),
         48: (0.0, 0.03), 60: (0.0, 0.03)},
    27: {66: (0.0, 0.14), 67: (0.0, 0.12), 57: (0.0, 0.14), 58: (0.0, 0.13), 59: (0.0, 0.10),
         61: (0.0, -0.02), 62: (0.0, -0.02), 48: (0.05, 0.05), 60: (0.05, 0.05),
         49: (0.02, 0.0), 8: (0.0, 0.10), 7: (0.0, 0.09), 6: (0.0, 0.07), 5: (0.0, 0.04)},
}
_AUS: tuple[int, ...] = action_units.ACTION_UNITS
_AU_FIELDS = np.stack([_symmetric(_AU_HALF_FIELDS[au]) for au in _AUS])  # [A, 68, 2]


def au_field(au: int) -> np.ndarray:
    """Displacement field of ``au``: float64 [68, 2] in inter-ocular distances (x right, y down)."""
    if au not in _AUS:
        raise ValueError(f"unsupported action unit {au!r}; supported: {_AUS}")
    return _AU_FIELDS[_AUS.index(au)].copy()


@functools.lru_cache(maxsize=None)
def _class_au_mask(codebook: str, label: int) -> np.ndarray:
    """float64 [A]: 1 for the AUs of class ``label`` in the named codebook."""
    aus = action_units.expression_aus(label, codebook)
    return np.array([au in aus for au in _AUS], np.float64)


# --------------------------------------------------------------------------- configuration
def _check_range(name: str, value: Sequence[int], minimum: int) -> tuple[int, int]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) for v in value)):
        raise ValueError(f"{name} must be an inclusive (min, max) pair of ints, got {value!r}")
    lo, hi = int(value[0]), int(value[1])
    if not minimum <= lo <= hi:
        raise ValueError(f"{name} must satisfy {minimum} <= min <= max, got {value!r}")
    return lo, hi


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Configuration of the synthetic benchmark (see the module docstring).

    num_frames: frames per video, or an inclusive ``(min, max)`` pair drawn per video.
    onset_frames / apex_frames / offset_frames: inclusive ranges of the phase lengths.
    codebook: 'figure' (Belharbi et al.'s figure, default) or 'code' (disgust with AU5 for
      AU10).
    """

    num_classes: int = 7
    num_frames: Union[int, tuple[int, int]] = 24
    image_size: int = 64
    num_subjects: int = 60
    nuisance: float = 0.5
    onset_frames: tuple[int, int] = (2, 4)
    apex_frames: tuple[int, int] = (4, 8)
    offset_frames: tuple[int, int] = (2, 4)
    seed: int = 0
    codebook: str = "figure"

    def __post_init__(self):
        _check_int("num_classes", self.num_classes, 2, len(action_units.EXPRESSIONS))
        _check_int("image_size", self.image_size, 32)
        _check_int("num_subjects", self.num_subjects, 3)
        _check_int("seed", self.seed, 0)
        if (not isinstance(self.nuisance, numbers.Real) or isinstance(self.nuisance, bool)
                or not 0.0 <= self.nuisance <= 1.0):
            raise ValueError(f"nuisance must be a number in [0, 1], got {self.nuisance!r}")
        onset = _check_range("onset_frames", self.onset_frames, 0)
        apex = _check_range("apex_frames", self.apex_frames, 1)
        offset = _check_range("offset_frames", self.offset_frames, 0)
        if isinstance(self.num_frames, (tuple, list)):
            frames = _check_range("num_frames", self.num_frames, 1)
        else:
            frames = (_check_int("num_frames", self.num_frames, 1),) * 2
        shortest = onset[0] + apex[0] + offset[0] + 2
        if frames[0] < shortest:
            raise ValueError(f"num_frames {self.num_frames} is too short for the shortest event "
                             f"(onset + apex + offset minimums + 2 neutral frames = {shortest})")
        action_units.resolve_codebook(self.codebook)
        for name, value in (("onset_frames", onset), ("apex_frames", apex),
                            ("offset_frames", offset)):
            object.__setattr__(self, name, value)
        if isinstance(self.num_frames, (tuple, list)):
            object.__setattr__(self, "num_frames", frames)

    @property
    def frame_range(self) -> tuple[int, int]:
        """Inclusive (min, max) number of frames per video."""
        if isinstance(self.num_frames, tuple):
            return self.num_frames
        return (self.num_frames, self.num_frames)


def subject_ranges(num_subjects: int) -> dict[str, tuple[int, int]]:
    """Split name → half-open range ``(start, stop)`` of its subject ids (70/15/15, each >= 1)."""
    _check_int("num_subjects", num_subjects, 3)
    held_out = max(1, round(HELD_OUT_SUBJECTS * num_subjects))
    train = num_subjects - 2 * held_out
    return {"train": (0, train), "validation": (train, train + held_out),
            "test": (train + held_out, num_subjects)}


# --------------------------------------------------------------------------- hashing
def _hash(*keys) -> np.ndarray:
    """uint64 hash of broadcast integer keys (vectorised, stable across processes)."""
    arrays = np.broadcast_arrays(*[np.atleast_1d(np.asarray(k, np.uint64)) for k in keys])
    h = np.zeros(arrays[0].shape, np.uint64)
    with np.errstate(over="ignore"):
        for key in arrays:
            h = splitmix64(h ^ key)
    return h


def _block_permutation(keys: tuple[int, ...], indices: np.ndarray, size: int) -> np.ndarray:
    """int64 [N]: element ``indices`` of a sequence made of random permutations of 0..size-1."""
    scores = _hash(*keys, (indices // size)[:, None], np.arange(size)[None, :])
    return np.argsort(scores, axis=1)[np.arange(len(indices)), indices % size]


# --------------------------------------------------------------------------- identities
_SKIN = np.array([(255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66),
                  (141, 85, 36), (255, 205, 170), (234, 192, 134), (172, 112, 72)], np.float64)
_HAIR_COLOURS = np.array([(30, 25, 20), (70, 45, 30), (110, 75, 45), (200, 170, 110),
                          (150, 70, 40), (160, 160, 160), (50, 40, 35)], np.float64)
_IRIS = np.array([(60, 40, 25), (40, 70, 110), (60, 90, 50), (30, 25, 20)], np.float64)
_MOUTH, _TEETH, _SCLERA = (70.0, 25.0, 30.0), (235.0, 232.0, 220.0), (240.0, 240.0, 235.0)
_PIVOT = np.array([0.0, 0.55])  # centre of head rotation and scaling (face units, nose)
_EAR_AXES = (0.11, 0.22)        # face units
_MOUTH_LINE = 0.975             # y of the closed lips (face units)


@dataclasses.dataclass(frozen=True)
class _Identity:
    """One subject: neutral points in face units and appearance. Colours are RGB tuples."""

    points: np.ndarray      # float64 [P, 2] neutral shape (face units) incl. extra points
    iod: float              # inter-ocular distance in face units
    scale: float            # pixels per face unit
    origin: np.ndarray      # [2] pixel position of the face-unit origin
    background: np.ndarray  # uint8 [S, S, 3]
    brow_thickness: float   # face units
    skin: tuple
    shade: tuple
    outline: tuple
    hair: tuple
    brow: tuple
    lips: tuple
    iris: tuple
    lid: tuple


def _colour(rgb: np.ndarray) -> tuple:
    return tuple(float(c) for c in np.clip(rgb, 0, 255))


def _face_shape(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Neutral 68 landmarks of a random identity (face units) and its half jaw width."""
    p = _CANONICAL.copy()
    half_width = rng.uniform(0.92, 1.10)
    p[:17] = _jaw(half_width, (_CHIN - _JAW_TOP) * rng.uniform(0.93, 1.06), rng.uniform(0.05, 0.25))
    eyes = np.r_[36:48]
    centres = np.where(p[eyes, :1] < 0, -0.5, 0.5) * np.array([[1.0, 0.0]])
    p[eyes] = centres * rng.uniform(0.95, 1.05) + (p[eyes] - centres) * rng.uniform(0.85, 1.15)
    brows = np.r_[17:27]
    p[brows, 1] += rng.uniform(-0.05, 0.05)
    nose = np.r_[27:36]
    p[nose, 1] *= rng.uniform(0.92, 1.08)
    p[31:36, 0] *= rng.uniform(0.85, 1.2)
    mouth = np.r_[48:68]
    p[mouth, 0] *= rng.uniform(0.88, 1.12)
    p[mouth, 1] = (_MOUTH_LINE + (p[mouth, 1] - _MOUTH_LINE) * rng.uniform(0.8, 1.2)
                   + rng.uniform(-0.04, 0.03))
    return p, half_width


def _extra_points(half_width: float, chin: float, rng: np.random.Generator) -> np.ndarray:
    """Forehead arc, hair outline, ear centres and neck [32, 2] in face units."""
    phi = np.linspace(0.0, np.pi, 13)[1:-1]
    forehead = np.stack([half_width * np.cos(phi), _JAW_TOP - 1.05 * np.sin(phi)], axis=1)
    reach = rng.uniform(-0.1, 0.45)  # how far down the sides the hair comes
    phi = np.linspace(-reach, np.pi + reach, 15)
    hair_w = half_width + rng.uniform(0.06, 0.2)
    hair = np.stack([hair_w * np.cos(phi), _JAW_TOP - rng.uniform(1.2, 1.38) * np.sin(phi)], axis=1)
    ears = np.array([[-half_width - 0.02, 0.25], [half_width + 0.02, 0.25]])
    neck_w = half_width * rng.uniform(0.45, 0.6)
    neck = np.array([[-neck_w, chin - 0.5], [neck_w, chin - 0.5],
                     [neck_w * 1.1, chin + 1.5], [-neck_w * 1.1, chin + 1.5]])
    return np.concatenate([forehead, hair, ears, neck])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 [S, S, 3]: a muted random colour with a vertical gradient."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(40, 150), rng.uniform(80, 220)]]], np.uint8)
    base = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
    ramp = np.linspace(1.0 + rng.uniform(0.0, 0.2), 1.0 - rng.uniform(0.0, 0.3), size)
    rows = np.clip(base[None, :] * ramp[:, None], 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(rows[:, None, :], (size, size, 3)))


@functools.lru_cache(maxsize=4096)
def _identity(seed: int, subject: int, image_size: int) -> _Identity:
    """The deterministic identity of ``subject``."""
    rng = np.random.default_rng([seed, _IDENTITY_STREAM, subject])
    shape, half_width = _face_shape(rng)
    extra = _extra_points(half_width, shape[8, 1], rng)
    skin = _SKIN[rng.integers(len(_SKIN))] + rng.uniform(-12, 12, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.uniform(-10, 10, 3)
    iris = _IRIS[rng.integers(len(_IRIS))]
    eye_centres = np.stack([shape[36:42].mean(0), shape[42:48].mean(0)])
    return _Identity(
        points=np.concatenate([shape, extra]),
        iod=float(np.linalg.norm(eye_centres[1] - eye_centres[0])),
        scale=0.30 * image_size * rng.uniform(0.96, 1.04),
        origin=np.array([0.5, 0.36]) * image_size + rng.uniform(-0.01, 0.01, 2) * image_size,
        background=_background(rng, image_size),
        brow_thickness=rng.uniform(0.07, 0.11),
        skin=_colour(skin), shade=_colour(skin * 0.86), outline=_colour(skin * 0.7),
        hair=_colour(hair), brow=_colour(np.minimum(hair, skin * 0.45)),
        lips=_colour(0.55 * skin + 0.45 * np.array([185.0, 70.0, 80.0])),
        iris=_colour(iris), lid=_colour(skin * 0.35),
    )


# --------------------------------------------------------------------------- video plans
@dataclasses.dataclass(frozen=True)
class _Video:
    """Everything about one video, for all its frames (pixels unless noted)."""

    label: int
    subject: int
    length: int
    strength: float
    phase: np.ndarray                 # int8 [L] 0 neutral, 1 onset, 2 apex, 3 offset
    intensity: np.ndarray             # float32 [L]
    points: np.ndarray                # float64 [L, P, 2] all drawn points (first 68: landmarks)
    occluded: np.ndarray              # bool [L]
    occluder_box: np.ndarray          # float32 [L, 4] x0, y0, x1, y1 (zeros where none)
    occluder_ellipse: bool
    occluder_colour: tuple
    dark: np.ndarray                  # bool [L]
    brightness: float                 # factor of dark frames
    distractor: np.ndarray            # bool [L]
    distractor_intensity: np.ndarray  # float32 [L]
    distractor_label: int
    noise_index: np.ndarray           # int64 [L]


def _phase_lengths(rng: np.random.Generator, config: SyntheticConfig,
                   length: int) -> tuple[int, int, int]:
    """(onset, apex, offset) drawn from their ranges, capped so the event fits in L - 2 frames."""
    room = length - 2
    (on_lo, on_hi), (ap_lo, ap_hi), (off_lo, off_hi) = (
        config.onset_frames, config.apex_frames, config.offset_frames)
    apex = int(rng.integers(ap_lo, min(ap_hi, room - on_lo - off_lo) + 1))
    onset = int(rng.integers(on_lo, min(on_hi, room - apex - off_lo) + 1))
    offset = int(rng.integers(off_lo, min(off_hi, room - apex - onset) + 1))
    return onset, apex, offset


def _timeline(rng: np.random.Generator, config: SyntheticConfig, length: int,
              neutral: bool) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Phase int8 [L], intensity float32 [L] and the event's half-open frame span."""
    onset, apex, offset = _phase_lengths(rng, config, length)
    event = onset + apex + offset
    start = int(rng.integers(1, length - event))
    phase = np.zeros(length, np.int8)
    intensity = np.zeros(length, np.float32)
    if neutral:
        return phase, intensity, (start, start + event)
    ramp_up = np.arange(1, onset + 1) / (onset + 1)
    ramp_down = np.arange(offset, 0, -1) / (offset + 1)
    intensity[start:start + event] = np.concatenate([ramp_up, np.ones(apex), ramp_down])
    phase[start:start + event] = np.repeat([1, 2, 3], [onset, apex, offset])
    return phase, intensity, (start, start + event)


def _jitter(rng: np.random.Generator, length: int, amount: float) -> np.ndarray:
    """float64 [L, 4]: translation x, y (face units), rotation (rad), log-scale per frame."""
    eps = rng.standard_normal((length, 4))
    z = np.empty_like(eps)
    z[0] = eps[0]
    rho = 0.7
    for t in range(1, length):
        z[t] = rho * z[t - 1] + np.sqrt(1 - rho ** 2) * eps[t]
    return np.clip(z, -2.0, 2.0) * (amount * np.array([0.05, 0.05, np.deg2rad(3.0), 0.02]))


def _run(rng: np.random.Generator, length: int, longest: int) -> np.ndarray:
    """bool [L]: one run of 2..max(2, longest) frames at a random position."""
    run = int(rng.integers(2, max(2, longest) + 1))
    run = min(run, length)
    start = int(rng.integers(0, length - run + 1))
    flags = np.zeros(length, bool)
    flags[start:start + run] = True
    return flags


def _distractor(rng: np.random.Generator, config: SyntheticConfig, label: int, length: int,
                event: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Distractor intensity float32 [L] and its class (-1: none)."""
    intensity = np.zeros(length, np.float32)
    candidates = [c for c in range(1, config.num_classes) if c != label]
    if not candidates or rng.random() >= 0.6 * config.nuisance:
        return intensity, -1
    other = int(rng.choice(candidates))
    run = int(rng.integers(2, 5))
    peak = rng.uniform(0.2, 0.35)
    starts = np.arange(length - run + 1)
    if label != 0:
        starts = starts[(starts + run < event[0]) | (starts > event[1])]
    if len(starts) == 0:
        return intensity, -1
    start = int(rng.choice(starts))
    intensity[start:start + run] = peak * np.sin(np.pi * np.arange(1, run + 1) / (run + 1))
    return intensity, other


def _deform(identity: _Identity, coefficients: np.ndarray) -> np.ndarray:
    """Expressive points float64 [L, P, 2] (face units) from AU coefficients [L, A]."""
    points = np.repeat(identity.points[None], len(coefficients), axis=0)
    points[:, :NUM_LANDMARKS] += identity.iod * np.tensordot(coefficients, _AU_FIELDS, axes=(1, 0))
    for pairs, gap in ((_LID_PAIRS, _MIN_LID_GAP), (_LIP_PAIRS, 0.0)):
        upper, lower = pairs[:, 0], pairs[:, 1]
        points[:, lower, 1] = np.maximum(points[:, lower, 1], points[:, upper, 1] + gap)
    return points


def _to_pixels(identity: _Identity, points: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Apply per-frame jitter [L, 4] to face-unit points [L, P, 2]; returns pixels."""
    d = points - _PIVOT
    cos, sin = np.cos(jitter[:, 2])[:, None], np.sin(jitter[:, 2])[:, None]
    zoom = np.exp(jitter[:, 3])[:, None]
    x = zoom * (cos * d[..., 0] - sin * d[..., 1]) + jitter[:, :1]
    y = zoom * (sin * d[..., 0] + cos * d[..., 1]) + jitter[:, 1:2]
    moved = np.stack([x, y], axis=-1) + _PIVOT
    return identity.origin + identity.scale * moved


def _occluder(rng: np.random.Generator, config: SyntheticConfig, identity: _Identity,
              length: int) -> tuple[np.ndarray, np.ndarray, bool, tuple]:
    """Occluded flags bool [L], boxes float32 [L, 4], ellipse shape?, colour."""
    flags = np.zeros(length, bool)
    boxes = np.zeros((length, 4), np.float32)
    if rng.random() >= 0.6 * config.nuisance:
        return flags, boxes, False, (0.0, 0.0, 0.0)
    flags = _run(rng, length, length // 3)
    target = _OCCLUDER_TARGETS[int(rng.integers(len(_OCCLUDER_TARGETS)))]
    centre = identity.points[target].mean(0) + rng.normal(0.0, 0.12, 2)
    half = np.array([rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.45)])
    corners = identity.origin + identity.scale * np.stack([centre - half, centre + half])
    boxes[flags] = corners.ravel()
    colour = tuple(float(c) for c in rng.integers(0, 256, 3))
    return flags, boxes, bool(rng.random() < 0.5), colour


def _plan(config: SyntheticConfig, split_id: int, index: int, label: int, subject: int,
          length: int) -> _Video:
    """Draw every random choice of a video from ``default_rng([seed, split_id, index])``."""
    rng = np.random.default_rng([config.seed, split_id, index])
    identity = _identity(config.seed, subject, config.image_size)
    strength = float(rng.uniform(0.6, 1.0))
    gains = rng.uniform(0.85, 1.15, len(_AUS))
    phase, intensity, event = _timeline(rng, config, length, neutral=label == 0)
    jitter = _jitter(rng, length, config.nuisance)
    occluded, boxes, ellipse, colour = _occluder(rng, config, identity, length)
    dark = np.zeros(length, bool)
    brightness = 1.0
    if rng.random() < 0.4 * config.nuisance:
        dark = _run(rng, length, length // 4)
        brightness = float(rng.uniform(0.35, 0.6))
    distractor_intensity, other = _distractor(rng, config, label, length, event)
    noise_index = rng.integers(0, _NOISE_BANK, length)
    main_aus = _class_au_mask(config.codebook, label)
    distractor_aus = _class_au_mask(config.codebook, max(other, 0))
    coefficients = (strength * intensity[:, None] * main_aus
                    + distractor_intensity[:, None] * distractor_aus)
    points = _to_pixels(identity, _deform(identity, coefficients * gains), jitter)
    return _Video(label=label, subject=subject, length=length, strength=strength, phase=phase,
                  intensity=intensity, points=points, occluded=occluded, occluder_box=boxes,
                  occluder_ellipse=ellipse, occluder_colour=colour, dark=dark,
                  brightness=brightness, distractor=distractor_intensity > 0,
                  distractor_intensity=distractor_intensity, distractor_label=other,
                  noise_index=noise_index)


# --------------------------------------------------------------------------- rendering
_SHIFT = 4
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA
_NOISE_BANK = 64


@functools.lru_cache(maxsize=8)
def _noise_bank(seed: int, image_size: int, nuisance: float) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative parts, uint8 [64, S, 3S] each, of Gaussian noise (sd 6 nuisance)."""
    rng = np.random.default_rng([seed, _NOISE_STREAM, image_size])
    noise = np.rint(rng.standard_normal((_NOISE_BANK, image_size, 3 * image_size))
                    * 6.0 * nuisance)
    noise = np.clip(noise, -255, 255)
    return np.maximum(noise, 0).astype(np.uint8), np.maximum(-noise, 0).astype(np.uint8)


_POLYGONS = {"hair": _HAIR, "neck": _NECK, "face": _FACE_POLYGON, "eye0": _EYES[0],
             "eye1": _EYES[1], "lid0": _UPPER_LIDS[0], "lid1": _UPPER_LIDS[1],
             "brow0": _BROWS[0], "brow1": _BROWS[1], "bridge": _NOSE_BRIDGE, "base": _NOSE_BASE,
             "outer": _OUTER_LIPS, "inner": _INNER_LIPS}


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Fixed-point (1/16 px) drawing geometry of F frames, pre-sliced per part."""

    polygons: dict[str, np.ndarray]    # name → int32 [F, k, 2] (contiguous per frame)
    ears: list                         # F × [(x, y), (x, y)]
    nostrils: list                     # F × [(x, y), (x, y)]
    irises: list                       # F × [(cx, cy, ax, ay), (cx, cy, ax, ay)]
    teeth: list                        # F × (int32 [10, 2] or None)


def _geometry(points: np.ndarray, identity: _Identity) -> _Geometry:
    """Drawing geometry from pixel points [F, P, 2]."""
    fixed = np.rint(points * _ONE).astype(np.int32)
    return _Geometry(
        polygons={name: np.ascontiguousarray(fixed[:, index]) for name, index in _POLYGONS.items()},
        ears=fixed[:, _EARS].tolist(), nostrils=fixed[:, _NOSTRILS].tolist(),
        irises=_irises(points).tolist(), teeth=_teeth(points, identity))


def _irises(points: np.ndarray) -> np.ndarray:
    """Iris ellipses int64 [F, 2, 4] (cx, cy, ax, ay; fixed point) from pixel points [F, P, 2].

    The vertical semi-axis is capped by the lid opening, so narrowed eyes squash the iris.
    """
    info = []
    for eye in _EYES:
        contour = points[:, eye]
        centre = contour.mean(1)
        half_width = (contour[:, 3, 0] - contour[:, 0, 0]) / 2
        opening = (contour[:, 4:6, 1].mean(1) - contour[:, 1:3, 1].mean(1)) / 2
        ax = 0.42 * np.abs(half_width)
        ay = np.clip(np.minimum(ax, opening * 0.95), 0.0, None)
        info.append(np.stack([centre[:, 0], centre[:, 1], ax, ay], axis=1))
    return np.rint(np.stack(info, axis=1) * _ONE).astype(np.int64)


def _teeth(points: np.ndarray, identity: _Identity) -> list[np.ndarray | None]:
    """Per frame: fixed-point teeth polygon [10, 2] below the upper inner lip, or None if shut."""
    upper = points[:, _UPPER_INNER_LIP]
    opening = points[:, 66, 1] - points[:, 62, 1]
    depth = np.minimum(0.35 * opening, 0.07 * identity.scale)
    lower = upper[:, ::-1] + np.stack([np.zeros_like(depth), depth], axis=1)[:, None, :]
    polygons = np.rint(np.concatenate([upper, lower], axis=1) * _ONE)
    polygons = np.ascontiguousarray(polygons, np.int32)
    return [poly if gap > 1.0 else None for poly, gap in zip(polygons, opening)]


def _draw_face(img: np.ndarray, g: _Geometry, i: int, identity: _Identity) -> None:
    """Draw frame ``i`` of geometry ``g`` into ``img`` (uint8 [S, S, 3]), back to front."""
    poly = {name: array[i] for name, array in g.polygons.items()}
    scale = identity.scale * _ONE
    cv2.fillPoly(img, [poly["hair"]], identity.hair, _AA, _SHIFT)
    cv2.fillPoly(img, [poly["neck"]], identity.shade, _AA, _SHIFT)
    ear_axes = (int(_EAR_AXES[0] * scale), int(_EAR_AXES[1] * scale))
    for centre in g.ears[i]:
        cv2.ellipse(img, centre, ear_axes, 0, 0, 360, identity.shade, -1, _AA, _SHIFT)
    cv2.fillPoly(img, [poly["face"]], identity.skin, _AA, _SHIFT)
    cv2.polylines(img, [poly["face"]], True, identity.outline, 1, _AA, _SHIFT)
    for side, (cx, cy, ax, ay) in enumerate(g.irises[i]):
        cv2.fillPoly(img, [poly[f"eye{side}"]], _SCLERA, _AA, _SHIFT)
        cv2.ellipse(img, (cx, cy), (ax, ay), 0, 0, 360, identity.iris, -1, _AA, _SHIFT)
        cv2.polylines(img, [poly[f"lid{side}"]], False, identity.lid, 1, _AA, _SHIFT)
    brow_px = max(1, int(round(identity.brow_thickness * identity.scale)))
    cv2.polylines(img, [poly["brow0"], poly["brow1"]], False, identity.brow, brow_px, _AA, _SHIFT)
    cv2.polylines(img, [poly["bridge"]], False, identity.shade, 1, _AA, _SHIFT)
    cv2.polylines(img, [poly["base"]], False, identity.outline, 1, _AA, _SHIFT)
    nostril_axes = (int(0.035 * scale), int(0.02 * scale))
    for centre in g.nostrils[i]:
        cv2.ellipse(img, centre, nostril_axes, 0, 0, 360, identity.outline, -1, _AA, _SHIFT)
    cv2.fillPoly(img, [poly["outer"]], identity.lips, _AA, _SHIFT)
    cv2.fillPoly(img, [poly["inner"]], _MOUTH, _AA, _SHIFT)
    if g.teeth[i] is not None:
        cv2.fillPoly(img, [g.teeth[i]], _TEETH, _AA, _SHIFT)


def _render(video: _Video, identity: _Identity, config: SyntheticConfig,
            frames: np.ndarray) -> np.ndarray:
    """uint8 [F, S, S, 3] RGB frames ``frames`` (int [F]) of ``video``."""
    size = config.image_size
    out = np.empty((len(frames), size, size, 3), np.uint8)
    out[:] = identity.background
    geometry = _geometry(video.points[frames], identity)
    for i, t in enumerate(frames):
        img = out[i]
        _draw_face(img, geometry, i, identity)
        if video.occluded[t]:
            _draw_occluder(img, video, t)
        if video.dark[t]:
            cv2.convertScaleAbs(img, img, video.brightness)
    if config.nuisance > 0 and len(frames):
        positive, negative = _noise_bank(config.seed, size, float(config.nuisance))
        flat = out.reshape(-1, 3 * size)
        index = video.noise_index[frames]
        cv2.add(flat, positive[index].reshape(-1, 3 * size), flat)
        cv2.subtract(flat, negative[index].reshape(-1, 3 * size), flat)
    return out


def _draw_occluder(img: np.ndarray, video: _Video, t: int) -> None:
    """Draw frame ``t``'s occluder (filled rectangle or inscribed ellipse of its box)."""
    x0, y0, x1, y1 = (int(round(v * _ONE)) for v in video.occluder_box[t])
    if video.occluder_ellipse:
        cv2.ellipse(img, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2), 0, 0,
                    360, video.occluder_colour, -1, _AA, _SHIFT)
    else:
        cv2.rectangle(img, (x0, y0), (x1, y1), video.occluder_colour, -1, _AA, _SHIFT)


# --------------------------------------------------------------------------- dataset
def _truth(video: _Video, index: int, frames: np.ndarray) -> dict:
    """The ground-truth entries of ``video`` at frames ``frames`` (int [F])."""
    return {
        "label": np.int32(video.label),
        "subject": np.int32(video.subject),
        "index": np.int32(index),
        "length": np.int32(video.length),
        "strength": np.float32(video.strength),
        "distractor_label": np.int32(video.distractor_label),
        "frame_indices": frames.astype(np.int32),
        "intensity": video.intensity[frames],
        "phase": video.phase[frames],
        "landmarks": video.points[frames, :NUM_LANDMARKS].astype(np.float32),
        "occluded": video.occluded[frames],
        "occluder_box": video.occluder_box[frames],
        "dark": video.dark[frames],
        "distractor": video.distractor[frames],
        "distractor_intensity": video.distractor_intensity[frames],
    }


class SyntheticFaces:
    """Random-access synthetic face videos of one split ('train', 'validation' or 'test').

    Attributes: ``labels``, ``subjects``, ``lengths`` (int32 [N]), ``class_names``,
    ``subject_range`` (half-open range of this split's subject ids), ``config``, ``split``.
    """

    def __init__(self, split: str, num_videos: int,
                 config: SyntheticConfig = SyntheticConfig()):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if not isinstance(config, SyntheticConfig):
            raise ValueError(f"config must be a SyntheticConfig, got {type(config).__name__}")
        _check_int("num_videos", num_videos, 0)
        self.split = split
        self.config = config
        self.class_names: tuple[str, ...] = action_units.EXPRESSIONS[:config.num_classes]
        self.subject_range = subject_ranges(config.num_subjects)[split]
        self._split_id = SPLITS.index(split)
        index = np.arange(num_videos, dtype=np.int64)
        keys = (config.seed, self._split_id)
        self.labels = _block_permutation((*keys, _LABEL_KEY), index, config.num_classes
                                         ).astype(np.int32)
        start, stop = self.subject_range
        self.subjects = (start + _block_permutation((*keys, _SUBJECT_KEY), index, stop - start)
                         ).astype(np.int32)
        lo, hi = config.frame_range
        self.lengths = (lo + _hash(*keys, _LENGTH_KEY, index) % np.uint64(hi - lo + 1)
                        ).astype(np.int32)

    def __len__(self) -> int:
        return len(self.labels)

    def _check_index(self, index) -> int:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise ValueError(f"video index must be an int, got {index!r}")
        if not 0 <= index < len(self):
            raise ValueError(f"video index {index} is out of range 0..{len(self) - 1} "
                             f"({self.split} has {len(self)} videos)")
        return int(index)

    def num_frames(self, index: int) -> int:
        """Number of frames of video ``index``."""
        return int(self.lengths[self._check_index(index)])

    def _video(self, index: int) -> _Video:
        index = self._check_index(index)
        return _plan(self.config, self._split_id, index, int(self.labels[index]),
                     int(self.subjects[index]), int(self.lengths[index]))

    def _frame_indices(self, index: int, frame_indices) -> np.ndarray:
        length = int(self.lengths[index])
        if frame_indices is None:
            return np.arange(length)
        frames = np.asarray(frame_indices)
        if frames.ndim != 1 or (frames.size and not np.issubdtype(frames.dtype, np.integer)):
            raise ValueError(f"frame_indices must be a 1-D sequence of ints, got {frame_indices!r}")
        frames = frames.astype(np.int64)
        if frames.size and (frames.min() < 0 or frames.max() >= length):
            raise ValueError(f"frame_indices must lie in 0..{length - 1} for video {index}, "
                             f"got min {frames.min()} max {frames.max()}")
        return frames

    def ground_truth(self, index: int) -> dict:
        """Per-frame truth for all L frames of video ``index``, without rendering.

        Returns 'label', 'subject', 'index', 'length', 'distractor_label' (int32; -1 if none),
        'strength' (float32), and per frame: 'frame_indices' int32 [L] (0..L-1), 'intensity'
        float32 [L] in [0, 1], 'phase' int8 [L] (0 neutral, 1 onset, 2 apex, 3 offset),
        'landmarks' float32 [L, 68, 2] (x, y pixels), 'occluded', 'dark', 'distractor' bool [L],
        'distractor_intensity' float32 [L], 'occluder_box' float32 [L, 4] (x0, y0, x1, y1
        pixels; zeros where not occluded).
        """
        video = self._video(index)
        return _truth(video, index, np.arange(video.length))

    def load(self, index: int, frame_indices=None, au_masks: bool = False) -> dict:
        """Render frames ``frame_indices`` (all if None) of video ``index``.

        Returns the entries of ``ground_truth`` restricted to those frames (plus
        'frame_indices' int32 [F]), 'frames' uint8 [F, H, W, 3] RGB and, when ``au_masks``,
        'au_masks' float32 [F, H, W] in [0, 1] (``action_units.au_maps`` of the landmarks for
        the video's label; zeros for neutral).
        """
        index = self._check_index(index)
        frames = self._frame_indices(index, frame_indices)
        video = self._video(index)
        identity = _identity(self.config.seed, video.subject, self.config.image_size)
        sample = _truth(video, index, frames)
        sample["frames"] = _render(video, identity, self.config, frames)
        if au_masks:
            size = self.config.image_size
            sample["au_masks"] = action_units.au_maps(
                sample["landmarks"], video.label, size, size, codebook=self.config.codebook)
        return sample

    def __getitem__(self, index: int) -> dict:
        return self.load(index)
