"""Reading any image or video a user points at, frame by frame, with OpenCV.

>>> reader = open_media('clip.mov')          # or a .jpg / .png / …
>>> reader.kind, reader.fps, reader.num_frames
('video', 29.97, 72)
>>> for chunk in reader.chunks(256):         # uint8 RGB [n, H, W, 3], n ≤ 256
...     ...

Images (``IMAGE_EXTENSIONS``) are decoded by ``cv2.imdecode`` as one-frame videos; every
other file is opened with ``cv2.VideoCapture`` (any container and codec the installed OpenCV
reads). Grayscale and 16-bit or 10-bit inputs come back as 8-bit RGB (OpenCV's conversion);
an alpha channel is dropped. A file that is neither raises ``UnreadableMedia`` with one line.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from fer_jax.errors import UserError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp",
                                     ".pgm", ".ppm")


TEXT_CODECS: tuple[str, ...] = ("ansi",)  # FFmpeg's tty demuxer renders text files as video


class UnreadableMedia(UserError):
    """A file that OpenCV cannot decode as an image or a video."""


def _decode_image(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of the image file ``path``."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as e:
        raise UnreadableMedia(f"{path}: unreadable ({e.strerror})") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UnreadableMedia(f"{path}: not an image OpenCV can decode (empty or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclasses.dataclass
class MediaReader:
    """One image or video: ``kind`` ('image' | 'video'), ``fps`` (frames per second; 0 when
    the container gives none, and for images), ``num_frames`` (the container's count, which
    can differ from what decodes; 1 for images), ``width``, ``height``."""

    path: Path
    kind: str
    fps: float
    num_frames: int
    width: int
    height: int

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """Consecutive uint8 RGB frames ``[n, H, W, 3]``, ``n ≤ size``, to the last frame that
        decodes. Raises ``UnreadableMedia`` when no frame decodes at all."""
        if self.kind == "image":
            yield _decode_image(self.path)[None]
            return
        capture = cv2.VideoCapture(str(self.path))
        decoded = 0
        try:
            frames = []
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                if frame.ndim == 2:  # some backends hand grayscale video over as [H, W]
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                if len(frames) == size:
                    decoded += len(frames)
                    yield np.stack(frames)
                    frames = []
            if frames:
                decoded += len(frames)
                yield np.stack(frames)
        finally:
            capture.release()
        if decoded == 0:
            raise UnreadableMedia(f"{self.path}: OpenCV opened it as a video but decoded no "
                                  f"frame (empty, truncated or an unsupported codec)")


def open_media(path) -> MediaReader:
    """A ``MediaReader`` for the image or video file ``path`` (see the module docstring)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UnreadableMedia(f"{path}: no such file")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        height, width = _decode_image(path).shape[:2]
        return MediaReader(path, "image", 0.0, 1, width, height)
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise UnreadableMedia(f"{path}: not a video or image OpenCV can read (unknown "
                                  f"format, corrupt or empty file)")
        codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(
            "latin-1").strip("\x00 ")
        if codec in TEXT_CODECS:
            raise UnreadableMedia(f"{path}: a text file, not a video or image (OpenCV's FFmpeg "
                                  f"would draw its characters as frames)")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return MediaReader(path, "video", fps if np.isfinite(fps) and fps > 0 else 0.0,
                           max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0),
                           int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                           int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    finally:
        capture.release()
