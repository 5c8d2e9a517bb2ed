"""Decoding the videos of a raw dataset: a ``RawVideo`` record → uint8 RGB frames.

A dataset layout (``fer_jax.data.datasets``) lists each video of a manual-download folder as a
``RawVideo`` (frame or video paths, label, subject, ...) without decoding anything;
``read_frames`` decodes one to uint8 RGB frames ``[T, H, W, 3]`` and reports unreadable or
truncated media. (``media`` reads any file a user points at; this module reads the files of a
dataset layout, with the errors and warnings the preprocessing summary records.)
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fer_jax.errors import UserError

VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".flv", ".mp4")
"""A single path with one of these suffixes is decoded as a video; anything else as images."""


@dataclasses.dataclass(frozen=True)
class RawVideo:
    """One video of a raw dataset, as found on disk (nothing decoded).

    name: unique, sortable key: path relative to the root without extension.
    paths: absolute paths: one video file, or the frame images in temporal order.
    label: index into the layout's ``class_names``.
    subject: actor / subject id (see each layout for datasets without subject ids).
    partition: official partition of the distribution, '' if none.
    frame_labels: one label per entry of ``paths`` (UNBC PSPI), None if the dataset has none.
    info: small integer facts, one ``(key, value)`` per key of the layout's ``info_keys``.
    box: the face box ``(x0, y0, x1, y1)`` in source pixels that the dataset gives for every
      frame (AffectNet's label files), in the form ``faces.FaceProcessor(frames, boxes=...)``
      takes; None if the dataset gives none.
    """

    name: str
    paths: tuple[str, ...]
    label: int
    subject: str
    partition: str = ""
    frame_labels: tuple[float, ...] | None = None
    info: tuple[tuple[str, int], ...] = ()
    box: tuple[float, float, float, float] | None = None


class UnreadableVideo(UserError):
    """A video or frame image that cannot be decoded: ``reason`` and the ``path`` concerned."""

    def __init__(self, reason: str, path: str = ""):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


def read_frames(video: RawVideo) -> tuple[np.ndarray, list[str]]:
    """Decode ``video``: (frames uint8 [T, H, W, 3] RGB, warnings: one line each).

    A single path with a ``VIDEO_EXTENSIONS`` suffix is decoded with OpenCV; otherwise ``paths``
    are frame images (each file decoded once even when repeated). Grayscale inputs come back
    with three equal channels. A video that decodes fewer frames than its container's frame
    count (CAP_PROP_FRAME_COUNT) is truncated: the frames that decoded are returned with a
    warning. Raises ``UnreadableVideo`` for a file that cannot be opened or decoded, a video with
    no frames, and frames of differing sizes.
    """
    if not video.paths:
        raise UnreadableVideo("no frames: the video lists no paths", video.name)
    if len(video.paths) == 1 and Path(video.paths[0]).suffix.lower() in VIDEO_EXTENSIONS:
        return _read_video(video.paths[0])
    return _read_images(video.paths), []


def _read_video(path: str) -> tuple[np.ndarray, list[str]]:
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise UnreadableVideo("unreadable: cannot be opened as a video (corrupt, empty or "
                                  "not a video file)", path)
        expected = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise UnreadableVideo("no frames decoded", path)
    warnings = []
    if len(frames) < expected:
        warnings.append(f"{path}: truncated: decoded {len(frames)} of the {expected} frames its "
                        "header announces; using those")
    return _stack(frames, [f"{path} frame {t}" for t in range(len(frames))]), warnings


def _read_images(paths: Sequence[str]) -> np.ndarray:
    decoded = {}
    for path in dict.fromkeys(paths):
        try:
            data = np.fromfile(path, np.uint8)
        except OSError as e:
            raise UnreadableVideo(f"unreadable: {e.strerror}", path) from None
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise UnreadableVideo("unreadable: cannot be decoded as an image", path)
        decoded[path] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return _stack([decoded[path] for path in paths], list(paths))


def _stack(frames: list[np.ndarray], sources: list[str]) -> np.ndarray:
    """uint8 [T, H, W, 3] from equally sized frames; UnreadableVideo naming the first odd one."""
    height, width = frames[0].shape[:2]
    for frame, source in zip(frames, sources):
        if frame.shape[:2] != (height, width):
            raise UnreadableVideo(f"frames of differing sizes: {frame.shape[1]}x{frame.shape[0]} "
                                  f"here, {width}x{height} in the first frame", source)
    return np.stack(frames)
