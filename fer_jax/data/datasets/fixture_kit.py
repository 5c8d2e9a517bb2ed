"""Shared pieces of the per-dataset fixture writers (tests and benchmarks only).

Each dataset module gives a ``Fixture``: the functions ``fixtures.make_tree`` and
``fixtures.add_bad_files`` call to write a tiny tree of that dataset. Nothing binary is stored:
frames come from ``synthetic.SyntheticFaces`` (nuisance 0) and are written with OpenCV, videos at
``FPS`` with ``FOURCC`` of their suffix, frames as PNG or JPEG.

A writer gets ``tree``, the fixture being written (``fixtures.Tree``):
  * ``tree.root`` (Path), ``tree.layout`` (the dataset's ``Layout``), ``tree.rng``;
  * ``tree.render(class_name, subject)`` → the next unused synthetic video of that identity
    showing that class (a ``SyntheticFaces.load`` dict: 'frames' uint8 [T, S, S, 3] RGB,
    'landmarks' [T, 68, 2], 'phase' [T] (2 = apex), 'intensity' [T], ...);
  * ``tree.video(rel, frames)`` and ``tree.frames(folder, stems, suffix, frames)`` write a video
    file or a folder of frame images and return its path; ``tree.text(rel, text)`` writes and
    ``tree.append(rel, line)`` appends a label file line; ``tree.path(rel)`` is the path of
    ``rel`` with its folder made; ``tree.rel(path)`` its path relative to the root.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

FPS = 25.0
FOURCC = {".flv": "FLV1", ".avi": "MJPG", ".mp4": "mp4v"}
ODD_SIZE = (97, 131)  # (width, height) of the 'odd size' and 'differing sizes' bad inputs
BAD_SUBJECT = 90      # fixture subject of the bad inputs; make_tree allows 1..BAD_SUBJECT subjects
VIDEO_DEFECTS = ("truncated", "unreadable", "zero frames", "one frame", "no face",
                 "several faces", "grayscale", "odd size")
FRAME_DEFECTS = VIDEO_DEFECTS + ("differing sizes",)
"""The media defects ``add_bad_files`` can write: of video files, and of frame-image folders."""


@dataclasses.dataclass(frozen=True)
class Fixture:
    """How the tests write a small tree of one dataset (see ``fer_jax.data.fixtures``).

    write: ``write(tree, class_name, subject, j, sample, label=None) -> Path`` writes one video
      of fixture subject ``subject`` (0-based; the identity of the synthetic faces) showing
      ``class_name`` and returns its video file or frame folder. ``j`` is unique among the
      subject's videos; ``sample`` is a ``tree.render`` dict whose 'frames' may have been
      altered. ``label`` is the text of the dataset's label slot: None writes the right label,
      "" writes none; datasets labelled by their paths ignore it.
    bad_labels: ``bad_labels(tree, class_name, sample) -> {key: keyword}`` writes the dataset's
      label-level bad inputs (videos of subject ``BAD_SUBJECT`` with ``j`` from 50 on, bad
      label lines, unexpected files) and returns them as ``fixtures.add_bad_files`` does.
    classes: the classes ``make_tree`` writes by default; None: all the layout's classes.
    max_per_class: the largest ``per_class`` that gives distinct videos; None: no limit.
    media_defects: the media defects of ``add_bad_files`` that apply (``VIDEO_DEFECTS``,
      ``FRAME_DEFECTS`` for frame folders, or fewer).
    finish: ``finish(tree, names, subjects) -> list[str]`` runs once ``make_tree`` has written
      every video (``names``: their RawVideo names); it may write more (AffectNet's excluded
      rows) and returns the names of the extra videos ``scan`` derives (CK+'s neutral videos).
      None: nothing to do.
    """

    write: Callable[..., Path]
    bad_labels: Callable[..., dict[str, str]]
    classes: tuple[str, ...] | None = None
    max_per_class: int | None = None
    media_defects: tuple[str, ...] = VIDEO_DEFECTS
    finish: Callable[..., list[str]] | None = None


def write_video(path: str | Path, frames: np.ndarray) -> None:
    """Write uint8 [T, H, W, 3] RGB or [T, H, W] gray frames (T may be 0) with ``FOURCC``."""
    path = Path(path)
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), FPS,
                             (width, height), frames.ndim == 4)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1] if frame.ndim == 3 else frame))
    writer.release()


def write_image(path: str | Path, frame: np.ndarray) -> None:
    """Write one uint8 [H, W, 3] RGB or [H, W] gray frame (format from the suffix)."""
    bgr = frame[..., ::-1] if frame.ndim == 3 else frame
    if not cv2.imwrite(str(path), np.ascontiguousarray(bgr)):
        raise RuntimeError(f"OpenCV cannot write {path}")


def label_number(value: float) -> str:
    """A number as CK+ / UNBC label files write it ('   3.0000000e+00')."""
    return f"   {value:.7e}"
