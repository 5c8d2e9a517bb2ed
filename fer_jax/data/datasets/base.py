"""What every dataset module builds on: the ``Layout`` base class, scanning helpers, ``Dataset``.

A layout knows one dataset's folder layout and label files, as its authors distribute them.
``scan(root)`` walks the folder without decoding any video and returns ``RawVideo`` records
(frame or video paths, integer label, subject, official partition, per-frame labels, small
integer facts), sorted by name, and a ``Problem`` for every file or folder it could not use,
saying what was done with it. ``decoding.read_frames`` decodes one ``RawVideo`` to uint8 RGB
frames ``[T, H, W, 3]``.

Conventions shared by all layouts
  * ``RawVideo.name`` is the path relative to the root without extension, '/'-separated (for
    image sequences, the sequence folder); ``RawVideo.paths`` are absolute. ``Problem.path`` is
    relative to the root; it names the file or folder concerned, which may be one that is missing.
  * Hidden entries (names starting with '.') are ignored everywhere. Entries directly under the
    root that are not the dataset's folders (e.g. the downloaded archives) are ignored; unexpected
    entries inside the dataset's folders become Problems ("unexpected ...; ignored").
  * Frame images are ordered by natural sort of their names (digit runs compared as numbers).
  * ``scan`` never raises for an individual bad file or label. A missing or empty root, a missing
    top-level folder or label sheet, or a dataset folder holding nothing at all (no videos and no
    problems) raises ``UserError`` naming the expected layout. AffectNet's two label files are
    each a Problem when missing (the images of the other one stay usable).
  * ``scan`` does not decode: unreadable or truncated media are found by ``read_frames``.

Per-dataset decisions are documented on each layout class. A ``Dataset`` bundles a layout with
the dataset's evaluation protocols and its test-fixture writer; each module of
``fer_jax.data.datasets`` defines ``DATASETS``, a tuple of them.
"""
from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fer_jax.data.decoding import RawVideo
from fer_jax.errors import UserError
from fer_jax.naturalsort import natural_key

if TYPE_CHECKING:
    from fer_jax.data.datasets.fixture_kit import Fixture
    from fer_jax.data.datasets.schemes import Spec


@dataclasses.dataclass(frozen=True)
class Problem:
    """A file or folder ``scan`` could not use: ``path`` relative to the root, one-line ``reason``
    saying what is wrong and what was done."""

    path: str
    reason: str


# --------------------------------------------------------------------------- filesystem helpers
def entries(folder: Path) -> list[Path]:
    """Visible entries of ``folder`` in natural order (names starting with '.' skipped)."""
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


class Scan:
    """The videos and problems found by one scan of ``root`` (an absolute path)."""

    def __init__(self, root: Path):
        self.root = root
        self.videos: list[RawVideo] = []
        self.problems: list[Problem] = []

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def problem(self, path: Path, reason: str) -> None:
        self.problems.append(Problem(self.rel(path), reason))

    def add(self, named: Path, paths: Sequence[Path], label: int, subject: str,
            **fields) -> RawVideo:
        """Record a video named after ``named`` (a folder, or a file path without suffix)."""
        video = RawVideo(self.rel(named), tuple(str(p) for p in paths), label, subject, **fields)
        self.videos.append(video)
        return video

    def folders(self, folder: Path, what: str) -> list[Path]:
        """Sub-folders of ``folder`` (natural order); files there become Problems."""
        keep = []
        for entry in entries(folder):
            if entry.is_dir():
                keep.append(entry)
            else:
                self.problem(entry, f"unexpected file (expected {what} folders here); ignored")
        return keep

    def files(self, folder: Path, suffix: str, what: str) -> list[Path]:
        """The ``suffix`` files of ``folder`` (natural order); other entries become Problems."""
        keep = []
        for entry in entries(folder):
            if entry.is_file() and entry.suffix.lower() == suffix:
                keep.append(entry)
            else:
                kind = "folder" if entry.is_dir() else "file"
                self.problem(entry, f"unexpected {kind} (expected {what} *{suffix} files here); "
                                    "ignored")
        return keep

    def number(self, path: Path, what: str, expected: str) -> float | None:
        """The single number in a small label file, or None after recording a Problem."""
        try:
            text = path.read_text(errors="replace")
        except OSError as e:
            self.problem(path, f"unreadable {what} ({e.strerror}); sequence skipped")
            return None
        tokens = text.split()
        try:
            if len(tokens) != 1:
                raise ValueError
            return float(tokens[0])
        except ValueError:
            self.problem(path, f"malformed {what} (expected {expected}, got "
                               f"{text.strip()[:40]!r}); sequence skipped")
            return None


def unknown_code(kind: str, code: str, expected: str) -> str:
    """The Problem reason for a label code outside the dataset's code list."""
    return f"unknown {kind} code {code!r} (expected {expected}); skipped"


def parse_integer(text: str) -> int:
    """An integer written as '12', '12.0' or '1.2e1'; ValueError otherwise."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


# --------------------------------------------------------------------------- layouts
class Layout(abc.ABC):
    """One dataset's distribution layout (see the module docstring for shared conventions).

    name: registry key. title: human-readable dataset name. class_names: label order.
    faces: 'detect' (run face detection), 'aligned' (inputs are aligned face crops) or 'none'
    (no faces; keep whole frames). info_keys: the keys of every ``RawVideo.info``, in order.
    frame_labels: whether ``RawVideo.frame_labels`` are given. still_images: every record is one
    image (one-frame videos are expected). varied_sizes: frame sizes differ by nature (no
    summary note for an unusual one). required: entries (relative to the
    root) that must exist. expected: one-line example of the layout for error messages.
    instructions: where to get the data and what to put under the manual directory.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    faces: str = "detect"
    info_keys: tuple[str, ...] = ()
    frame_labels: bool = False
    still_images: bool = False
    varied_sizes: bool = False
    required: tuple[str, ...] = ()
    expected: str
    instructions: str

    def scan(self, root: str) -> tuple[list[RawVideo], list[Problem]]:
        """Videos (sorted by name) and problems (sorted by path) of the dataset under ``root``."""
        path = Path(os.path.abspath(root))
        if not path.is_dir() or not any(not p.name.startswith(".") for p in path.iterdir()):
            raise self.layout_error(f"{root} is missing or empty")
        for entry in self.required:  # entries with a suffix are files, the others folders
            if not ((path / entry).is_file() if Path(entry).suffix else (path / entry).is_dir()):
                raise self.layout_error(f"{root} has no {entry}")
        scan = Scan(path)
        self._scan(scan)
        if not scan.videos and not scan.problems:
            raise self.layout_error(f"no videos found under {root}")
        return (sorted(scan.videos, key=lambda v: v.name),
                sorted(scan.problems, key=lambda p: (p.path, p.reason)))

    def layout_error(self, what: str) -> UserError:
        """The one-line error for a dataset folder that does not have the expected layout."""
        return UserError(f"{self.title}: {what}; expected {self.expected}")

    @abc.abstractmethod
    def _scan(self, scan: Scan) -> None:
        """Add the videos and problems under ``scan.root`` (required entries exist)."""


# --------------------------------------------------------------------------- datasets
@dataclasses.dataclass(frozen=True)
class Dataset:
    """One dataset as the library knows it, registered under ``layout.name``.

    layout: reads the raw distribution (a ``Layout``). protocols: protocol name → ``Spec``, in
    listing order (the first is the default; ``protocols.split`` runs them). fixture: how the
    tests write a small tree of the dataset (``fixture_kit.Fixture``; used by
    ``fer_jax.data.fixtures``).
    """

    layout: Layout
    protocols: dict[str, Spec]
    fixture: Fixture

    @property
    def name(self) -> str:
        return self.layout.name
