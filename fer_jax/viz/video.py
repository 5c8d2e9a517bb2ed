"""Writing face videos (uint8 RGB [T, H, W, 3]) as MP4 (OpenCV) or animated GIF (Pillow).

Faces are tiny (32×32), so both writers can upscale the frames by nearest neighbour first.
"""
from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fer_jax.errors import UserError
from fer_jax.viz.overlays import check_frames


def _prepare(frames, fps: float, upscale: int) -> np.ndarray:
    """Checked ``frames`` [T, H, W, 3], upscaled ``upscale`` times by nearest neighbour."""
    frames = check_frames(frames, "video")
    if fps <= 0 or upscale < 1 or int(upscale) != upscale:
        raise UserError(f"video: fps must be positive and upscale a positive integer, got "
                        f"fps={fps}, upscale={upscale}")
    return frames.repeat(int(upscale), axis=1).repeat(int(upscale), axis=2)


def _save_gif(target, frames: np.ndarray, fps: float) -> None:
    """Writes ``frames`` as a GIF that loops forever to a path or binary file ``target``."""
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(target, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=1000 / fps)


class Mp4Writer:
    """Writes uint8 RGB frames [H, W, 3] one at a time to an MPEG-4 Part 2 ("mp4v") file.

    >>> with Mp4Writer(path, fps=30, width=640, height=360) as writer:
    ...     writer.write(frame)
    """

    def __init__(self, path, fps: float, width: int, height: int):
        self.path, self.size = Path(path), (int(width), int(height))
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                       self.size)
        if not self._writer.isOpened():
            raise UserError(f"video: OpenCV cannot write {path} with the mp4v codec; check the "
                            f"path is writable or write a .gif instead")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise UserError(f"video: frame of {frame.shape[1]}x{frame.shape[0]} written to a "
                            f"{self.size[0]}x{self.size[1]} video {self.path}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self._writer.release()


def _save_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """Writes ``frames`` as an MPEG-4 Part 2 ("mp4v") video."""
    height, width = frames.shape[1:3]
    with Mp4Writer(path, fps, width, height) as writer:
        for frame in frames:
            writer.write(frame)


_WRITERS = {".mp4": _save_mp4, ".gif": _save_gif}


def write_video(path, frames, fps: float = 8.0, upscale: int = 1) -> Path:
    """Writes uint8 RGB ``frames`` [T, H, W, 3] to ``path`` (.mp4 or .gif); returns the path.

    Frames are upscaled ``upscale`` times by nearest neighbour; parent folders are created.
    GIFs hold at most 256 colours per frame, and Pillow merges identical consecutive frames
    into one longer frame.
    """
    path = Path(path)
    if path.suffix.lower() not in _WRITERS:
        raise UserError(f"video: cannot write {path.name!r}; use a file name ending in "
                        f"{' or '.join(_WRITERS)}")
    frames = _prepare(frames, fps, upscale)
    path.parent.mkdir(parents=True, exist_ok=True)
    _WRITERS[path.suffix.lower()](path, frames, fps)
    return path


def gif_bytes(frames, fps: float = 8.0, upscale: int = 1) -> bytes:
    """The animated GIF of :func:`write_video` in memory (e.g. for an HTML data URI)."""
    buffer = io.BytesIO()
    _save_gif(buffer, _prepare(frames, fps, upscale), fps)
    return buffer.getvalue()
