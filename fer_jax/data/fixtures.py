"""Tiny dataset trees that mimic each raw layout of ``layouts``, rendered when called.

The per-dataset writers live in each dataset's module of ``fer_jax.data.datasets`` (its
``Fixture``); this module drives them, and ``datasets.fixture_kit`` holds what they share.

Nothing binary is stored: frames come from ``synthetic.SyntheticFaces`` (nuisance 0) and are
written with OpenCV, videos at 25 fps as .flv (FLV1), .avi (MJPG) or .mp4 (mp4v), frames as PNG
(CK+, UNBC) or JPEG (SAMM, RAF-DB, AffectNet).

``make_tree(name, root)`` writes a small valid tree and returns the names of the ``RawVideo``s
that ``layouts.get(name).scan(root)`` should find (for CK+ including the neutral videos its
default options make). Every subject gets ``per_class`` videos of each class in ``classes``
(default: all the layout's classes, except CK+: all but neutral, which the CK+ layout derives
from first frames; HMDB-51: ``DEFAULT_CLASSES``). Fixture subject ``s`` is synthetic identity
``s``; a class that is one of ``EXPRESSIONS`` shows that expression, any other class (SAMM
contempt/other, pain levels, actions) shows expression ``class index % 7``. Datasets with
official partitions put subject ``s`` in partition ``s % 2`` (AFEW Train/Val, RAF-DB
train/test, AffectNet training.csv/validation.csv). HMDB-51 split files give the clips of subject
``s`` code ``(s + k) % 3`` in split ``k`` (1-3). Label files carry what the real ones would: CK+
landmarks are the renderer's ground truth, UNBC PSPI is ``round(16 * intensity * opi / 5)`` per
frame, SAMM onset/apex/offset are the frame numbers of the first, first apex and last frame,
AffectNet rows hold the ground-truth landmarks of the image and the face box around them
(``affectnet_box``); training.csv starts with a header row, validation.csv has none (as
distributed). RAF-DB and AffectNet images are the first apex frame of the rendered video.

AffectNet trees also get, per subject, rows of the codes ``AFFECTNET_EXCLUDED_ROWS[s % 2]``
(contempt, none, uncertain, no face; a no-face image is flat grey) with their images: ``scan``
finds no video for them and reports one Problem per label file and code (see
``layouts.AffectNet``), so a clean AffectNet tree has exactly those Problems.

``add_bad_files(name, root)`` adds, under subject ``BAD_SUBJECT``, the bad inputs that apply to
the dataset and returns ``{key: keyword}``. ``BAD_INPUT_STAGES[keyword]`` says what is expected:
  'skipped'      ``scan`` reports a Problem whose path is ``key`` and whose reason contains the
                 keyword; no RawVideo comes from it.
  'kept'         the same Problem, but the video is still returned (name: ``key`` without its
                 extension).
  'read_frames'  ``key`` is a RawVideo name; ``read_frames`` raises ``UnreadableVideo`` whose
                 message contains the keyword.
  'warning'      ``read_frames`` returns frames and a warning containing the keyword.
  'accepted'     ``read_frames`` returns frames without warnings (one frame, grayscale, odd size).
  'faces'        as 'accepted'; face detection, later, must reject it (no face, several faces).
A truncated .mp4 loses its index (written at the end) and cannot be opened, as a truncated image
cannot be decoded: both are 'unreadable'; a video written with no frames cannot be opened either,
except an .avi, which opens and yields 'no frames'.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from fer_jax.data import layouts, synthetic
from fer_jax.data.action_units import EXPRESSIONS
from fer_jax.data.datasets import DATASETS
from fer_jax.data.datasets.affectnet import AFFECTNET_EXCLUDED_ROWS, affectnet_box
from fer_jax.data.datasets.fixture_kit import (
    BAD_SUBJECT,
    FOURCC,
    FPS,
    FRAME_DEFECTS,
    ODD_SIZE,
    VIDEO_DEFECTS,
    Fixture,
    write_image,
    write_video,
)
from fer_jax.data.datasets.samm import SAMM_HEADER

__all__ = ["AFFECTNET_EXCLUDED_ROWS", "BAD_INPUT_STAGES", "BAD_SUBJECT", "DEFAULT_CLASSES",
           "FOURCC", "FPS", "FRAME_DEFECTS", "ODD_SIZE", "SAMM_HEADER", "VIDEO_DEFECTS", "Tree",
           "add_bad_files", "affectnet_box", "make_tree", "write_image", "write_video"]

DEFAULT_CLASSES: dict[str, tuple[str, ...]] = {
    name: dataset.fixture.classes for name, dataset in DATASETS.items()
    if dataset.fixture.classes is not None}
"""Dataset → the classes ``make_tree`` writes by default, where not all the layout's classes."""

BAD_INPUT_STAGES: dict[str, str] = {
    "malformed": "skipped", "unknown": "skipped", "missing": "skipped", "no label": "skipped",
    "no emotion label": "skipped", "contempt": "skipped", "no frame images": "skipped",
    "unexpected": "skipped", "folder": "skipped",
    "not listed": "kept", "unknown split code": "kept",
    "unreadable": "read_frames", "no frames": "read_frames", "differing sizes": "read_frames",
    "truncated": "warning",
    "one frame": "accepted", "grayscale": "accepted", "odd size": "accepted",
    "no face": "faces", "several faces": "faces",
}
"""Keyword of ``add_bad_files`` → where it shows (see the module docstring)."""


class Tree:
    """A fixture being written: its root, layout, and the synthetic videos it draws from (the
    interface the per-dataset writers use is described in ``datasets.fixture_kit``)."""

    def __init__(self, name: str, root: str | Path, subjects: int, frames: int, image_size: int,
                 seed: int):
        self.layout = layouts.get(name)
        self.fixture: Fixture = DATASETS[name].fixture
        self.root = Path(root)
        self.rng = np.random.default_rng(seed)
        num_subjects = 3
        while synthetic.subject_ranges(num_subjects)["train"][1] < max(subjects, 2):
            num_subjects += 1
        self._config = synthetic.SyntheticConfig(
            image_size=image_size, num_frames=frames, nuisance=0.0, num_subjects=num_subjects,
            seed=seed)
        self._source = synthetic.SyntheticFaces("train", 7 * num_subjects * 8, self._config)
        self._taken: dict[tuple[int, int], int] = {}

    def render(self, class_name: str, subject: int) -> dict:
        """The next unused synthetic video of identity ``subject`` showing ``class_name``:
        ``SyntheticFaces.load`` output ('frames' uint8 [T, S, S, 3] RGB, 'landmarks', ...)."""
        names = self.layout.class_names
        expression = (EXPRESSIONS.index(class_name) if class_name in EXPRESSIONS
                      else names.index(class_name) % len(EXPRESSIONS))
        nth = self._taken.get((expression, subject), 0)
        self._taken[(expression, subject)] = nth + 1
        while True:
            hits = np.flatnonzero((self._source.labels == expression)
                                  & (self._source.subjects == subject))
            if len(hits) > nth:
                return self._source.load(int(hits[nth]))
            self._source = synthetic.SyntheticFaces("train", 2 * len(self._source), self._config)

    def path(self, rel: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def name(self, path: Path) -> str:
        """RawVideo name of a written video file or frame folder."""
        return (path.with_suffix("") if path.is_file() else path).relative_to(self.root).as_posix()

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def video(self, rel: str, frames: np.ndarray) -> Path:
        path = self.path(rel)
        write_video(path, frames)
        return path

    def frames(self, folder: str, stems: list[str], suffix: str, frames: np.ndarray) -> Path:
        path = self.root / folder
        path.mkdir(parents=True, exist_ok=True)
        for stem, frame in zip(stems, frames):
            write_image(path / f"{stem}{suffix}", frame)
        return path

    def text(self, rel: str, text: str) -> Path:
        path = self.path(rel)
        path.write_text(text)
        return path

    def append(self, rel: str, line: str) -> None:
        with open(self.path(rel), "a") as f:
            f.write(line + "\n")


# --------------------------------------------------------------------------- make_tree
def make_tree(name: str, root: str | Path, *, subjects: int = 2, per_class: int = 1,
              classes: tuple[str, ...] | None = None, frames: int = 12, image_size: int = 96,
              seed: int = 0) -> list[str]:
    """Write a small valid ``name`` tree under a new or empty ``root``; the sorted names scan
    should find. ``frames`` (>= 10) frames of ``image_size`` pixels per video; label lists are
    appended to, so a second call on the same root duplicates them. See the module docstring.
    """
    layout = layouts.get(name)
    fixture = DATASETS[name].fixture
    classes = tuple(DEFAULT_CLASSES.get(name, layout.class_names) if classes is None else classes)
    unknown = [c for c in classes if c not in layout.class_names]
    if unknown or not classes:
        raise ValueError(f"classes must be a non-empty subset of {layout.class_names}, got "
                         f"{classes!r}")
    if not 1 <= subjects <= BAD_SUBJECT:
        raise ValueError(f"subjects must be in 1..{BAD_SUBJECT}, got {subjects}")
    limit = fixture.max_per_class
    if not 1 <= per_class <= (per_class if limit is None else limit):
        raise ValueError(f"per_class must be in 1..{'any' if limit is None else limit} for "
                         f"{name}, got {per_class}")
    tree = Tree(name, root, subjects, frames, image_size, seed)
    names = []
    for s in range(subjects):
        for c, class_name in enumerate(classes):
            for k in range(per_class):
                path = fixture.write(tree, class_name, s, c * per_class + k,
                                     tree.render(class_name, s))
                names.append(tree.name(path))
    if fixture.finish is not None:
        names += fixture.finish(tree, names, subjects)
    return sorted(names)


# --------------------------------------------------------------------------- add_bad_files
_KEYWORDS = {  # (defect, medium) → keyword where it differs from the defect's name
    ("truncated", ".mp4"): "unreadable", ("zero frames", ".mp4"): "unreadable",
    ("zero frames", ".flv"): "unreadable", ("zero frames", ".avi"): "no frames",
    ("truncated", ".jpg"): "unreadable", ("truncated", "folder"): "unreadable",
    ("zero frames", "folder"): "no frame images"}
_ALTER: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "zero frames": lambda v, other: v[:0],
    "one frame": lambda v, other: v[:1],
    "no face": lambda v, other: np.full_like(v, 128),
    "several faces": lambda v, other: np.concatenate([v, other], axis=2),
    "grayscale": lambda v, other: np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in v]),
    "odd size": lambda v, other: np.stack([cv2.resize(f, ODD_SIZE) for f in v]),
}
"""How a defect changes the frames [T, H, W, 3] before writing (other: a second face video)."""


def _corrupt(path: Path, defect: str, rng: np.random.Generator) -> None:
    """Damage a written video file, or the middle / last frame of a frame folder."""
    if defect not in ("truncated", "unreadable", "differing sizes"):
        return
    frames = sorted(path.iterdir()) if path.is_dir() else [path]
    target = frames[len(frames) // 2]
    if defect == "truncated":
        target.write_bytes(target.read_bytes()[:target.stat().st_size // 2])
    elif defect == "unreadable":
        target.write_bytes(rng.bytes(4096))
    elif defect == "differing sizes":
        write_image(frames[-1], cv2.resize(cv2.imread(str(frames[-1]))[..., ::-1], ODD_SIZE))


def _media_defects(tree: Tree, class_name: str) -> dict[str, str]:
    """One bad video per defect of the dataset, under BAD_SUBJECT: {name: keyword}."""
    write = tree.fixture.write
    out = {}
    for j, defect in enumerate(tree.fixture.media_defects):
        sample = tree.render(class_name, 0)
        if defect in _ALTER:
            sample["frames"] = _ALTER[defect](sample["frames"],
                                              tree.render(class_name, 1)["frames"])
        path = write(tree, class_name, BAD_SUBJECT, j, sample)
        _corrupt(path, defect, tree.rng)
        medium = "folder" if path.is_dir() else path.suffix
        out[tree.name(path)] = _KEYWORDS.get((defect, medium), defect)
    return out


def add_bad_files(name: str, root: str | Path) -> dict[str, str]:
    """Add the dataset's bad inputs to a ``make_tree`` tree: {key: keyword} (module docstring)."""
    tree = Tree(name, root, subjects=2, frames=12, image_size=96, seed=0)
    class_name = DEFAULT_CLASSES.get(name, tree.layout.class_names)[0]
    bad = _media_defects(tree, class_name)
    bad.update(tree.fixture.bad_labels(tree, class_name, tree.render(class_name, 0)))
    return bad
