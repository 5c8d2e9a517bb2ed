"""Datasets as distributed: each ``Layout`` turns a manual-download folder into a list of videos.

A layout knows one dataset's folder layout and label files (SPEC §6). ``scan(root)`` walks the
folder without decoding any video and returns ``RawVideo`` records (frame or video paths, integer
label, subject, official partition, per-frame labels, small integer facts), sorted by name, and a
``Problem`` for every file or folder it could not use, saying what was done with it.
``read_frames`` decodes one ``RawVideo`` to uint8 RGB frames ``[T, H, W, 3]``.

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

Per-dataset decisions are documented on each layout class.
"""
from __future__ import annotations

import abc
import csv
import dataclasses
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from fer_jax.data.action_units import EXPRESSIONS
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


@dataclasses.dataclass(frozen=True)
class Problem:
    """A file or folder ``scan`` could not use: ``path`` relative to the root, one-line ``reason``
    saying what is wrong and what was done."""

    path: str
    reason: str


class UnreadableVideo(UserError):
    """A video or frame image that cannot be decoded: ``reason`` and the ``path`` concerned."""

    def __init__(self, reason: str, path: str = ""):
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


# --------------------------------------------------------------------------- filesystem helpers
def _natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers ('f2' < 'f10')."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _entries(folder: Path) -> list[Path]:
    """Visible entries of ``folder`` in natural order (names starting with '.' skipped)."""
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                  key=lambda p: _natural_key(p.name))


class _Scan:
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


def _folders(scan: _Scan, folder: Path, what: str) -> list[Path]:
    """Sub-folders of ``folder`` (natural order); files there become Problems."""
    keep = []
    for entry in _entries(folder):
        if entry.is_dir():
            keep.append(entry)
        else:
            scan.problem(entry, f"unexpected file (expected {what} folders here); ignored")
    return keep


def _files(scan: _Scan, folder: Path, suffix: str, what: str) -> list[Path]:
    """The ``suffix`` files of ``folder`` (natural order); other entries become Problems."""
    keep = []
    for entry in _entries(folder):
        if entry.is_file() and entry.suffix.lower() == suffix:
            keep.append(entry)
        else:
            kind = "folder" if entry.is_dir() else "file"
            scan.problem(entry, f"unexpected {kind} (expected {what} *{suffix} files here); "
                                "ignored")
    return keep


def _number_file(scan: _Scan, path: Path, what: str, expected: str) -> float | None:
    """The single number in a small label file, or None after recording a Problem."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        scan.problem(path, f"unreadable {what} ({e.strerror}); sequence skipped")
        return None
    tokens = text.split()
    try:
        if len(tokens) != 1:
            raise ValueError
        return float(tokens[0])
    except ValueError:
        scan.problem(path, f"malformed {what} (expected {expected}, got {text.strip()[:40]!r}); "
                           "sequence skipped")
        return None


def _unknown(kind: str, code: str, expected: str) -> str:
    return f"unknown {kind} code {code!r} (expected {expected}); skipped"


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
        scan = _Scan(path)
        self._scan(scan)
        if not scan.videos and not scan.problems:
            raise self.layout_error(f"no videos found under {root}")
        return (sorted(scan.videos, key=lambda v: v.name),
                sorted(scan.problems, key=lambda p: (p.path, p.reason)))

    def layout_error(self, what: str) -> UserError:
        """The one-line error for a dataset folder that does not have the expected layout."""
        return UserError(f"{self.title}: {what}; expected {self.expected}")

    @abc.abstractmethod
    def _scan(self, scan: _Scan) -> None:
        """Add the videos and problems under ``scan.root`` (required entries exist)."""


CREMAD_ACTORS = tuple(str(a) for a in range(1001, 1092))
CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI",
                    "WSI")
CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
                   "NEU": "neutral", "SAD": "sadness"}
CREMAD_LEVELS = ("LO", "MD", "HI", "XX")


class CremaD(Layout):
    """CREMA-D: ``VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv``.

    Labels from the emotion code; subject = actor ('1001'..'1091'); info: level (index in LO,
    MD, HI, XX), sentence (index in ``CREMAD_SENTENCES``). A name that does not split into four
    fields, or a field outside its code list (actors 1001-1091 included), is a Problem.
    """

    name = "cremad"
    title = "CREMA-D"
    class_names = EXPRESSIONS[:6]
    info_keys = ("level", "sentence")
    required = ("VideoFlash",)
    expected = ("VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv, "
                "e.g. VideoFlash/1001_DFA_ANG_XX.flv")
    instructions = (
        "CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset, Cao et al. 2014) is on "
        "GitHub: CheyneyComputerScience/CREMA-D (clone it with git-lfs, or download its "
        "VideoFlash folder). Put the 7,442 clips under the manual directory as "
        "<manual_dir>/VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv, e.g. "
        "<manual_dir>/VideoFlash/1001_DFA_ANG_XX.flv.")
    _NAME = re.compile(r"(\d+)_([A-Z]+)_([A-Z]+)_([A-Z]+)")

    def _scan(self, scan: _Scan) -> None:
        for path in _files(scan, scan.root / "VideoFlash", ".flv", "CREMA-D"):
            match = self._NAME.fullmatch(path.stem)
            if match is None:
                scan.problem(path, "malformed name (expected <actor>_<sentence>_<emotion>_"
                                   "<level>.flv, e.g. 1001_DFA_ANG_XX.flv); skipped")
                continue
            actor, sentence, emotion, level = match.groups()
            fields = (("actor", actor, CREMAD_ACTORS, "1001-1091"),
                      ("sentence", sentence, CREMAD_SENTENCES, ", ".join(CREMAD_SENTENCES)),
                      ("emotion", emotion, tuple(CREMAD_EMOTIONS), ", ".join(CREMAD_EMOTIONS)),
                      ("level", level, CREMAD_LEVELS, ", ".join(CREMAD_LEVELS)))
            bad = [(kind, code, text) for kind, code, allowed, text in fields
                   if code not in allowed]
            if bad:
                scan.problem(path, _unknown(*bad[0]))
                continue
            scan.add(path.with_suffix(""), [path],
                     self.class_names.index(CREMAD_EMOTIONS[emotion]), actor,
                     info=(("level", CREMAD_LEVELS.index(level)),
                           ("sentence", CREMAD_SENTENCES.index(sentence))))


AFEW_PARTITIONS = ("Train", "Val")
AFEW_EMOTIONS = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness",
                 "Neutral": "neutral", "Sad": "sadness", "Surprise": "surprise"}


class Afew(Layout):
    """AFEW: ``Train|Val/<Emotion>/*.avi``; partition 'Train' or 'Val'.

    AFEW has no subject ids: subject = the file stem (each clip its own subject). An emotion
    folder not in ``AFEW_EMOTIONS`` is one Problem (its videos skipped).
    """

    name = "afew"
    title = "AFEW"
    class_names = EXPRESSIONS
    required = AFEW_PARTITIONS
    expected = ("Train/<Emotion>/*.avi and Val/<Emotion>/*.avi, "
                f"Emotion in {', '.join(AFEW_EMOTIONS)}")
    instructions = (
        "AFEW (Acted Facial Expressions in the Wild, Dhall et al.) is distributed by the EmotiW "
        "challenge organisers on request (sign their licence agreement). Unpack the Train and "
        "Val video sets so that <manual_dir>/Train/<Emotion>/*.avi and "
        f"<manual_dir>/Val/<Emotion>/*.avi exist, with Emotion in {', '.join(AFEW_EMOTIONS)} "
        "(rename Train_AFEW to Train and Val_AFEW to Val if the archives use those names).")

    def _scan(self, scan: _Scan) -> None:
        for partition in AFEW_PARTITIONS:
            for folder in _folders(scan, scan.root / partition, "emotion"):
                if folder.name not in AFEW_EMOTIONS:
                    scan.problem(folder, f"unknown emotion folder {folder.name!r} (expected one "
                                         f"of {', '.join(AFEW_EMOTIONS)}); its "
                                         f"{len(_entries(folder))} entries skipped")
                    continue
                label = self.class_names.index(AFEW_EMOTIONS[folder.name])
                for path in _files(scan, folder, ".avi", "AFEW"):
                    scan.add(path.with_suffix(""), [path], label, path.stem, partition=partition)


CKPLUS_CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness",
                "surprise")
"""CK+ emotion code → class name (the code is the index)."""


class CkPlus(Layout):
    """CK+: ``cohn-kanade-images/<S>/<seq>/*.png`` + ``Emotion/<S>/<seq>/*_emotion.txt``.

    Subject = the 'S005' folder; info: sequence (int of the '001' folder). Sequences without an
    emotion file are unlabelled in CK+ (266 of 593): each is a Problem "no emotion label". Contempt
    (code 2) is not one of the 7 classes (seed 002): Problem. A code that is not an integer 0-7 is
    a Problem; a sequence folder with no .png, or whose name is not a number, too.

    Neutral class (seed 002): ``neutral_sequences`` of the labelled sequences (all of them if
    fewer), drawn without replacement with ``np.random.default_rng(seed)`` from the sorted list of
    labelled sequence names, each give a video '<sequence>/neutral' of its first frame repeated
    ``neutral_frames`` times (same subject and info). ``neutral_sequences=0`` disables it.
    Landmarks are read separately by ``ckplus_landmarks``.
    """

    name = "ckplus"
    title = "CK+"
    class_names = EXPRESSIONS
    info_keys = ("sequence",)
    required = ("cohn-kanade-images", "Emotion")
    expected = ("cohn-kanade-images/S005/001/S005_001_00000001.png and "
                "Emotion/S005/001/S005_001_00000011_emotion.txt (Landmarks/ optional)")
    instructions = (
        "CK+ (Extended Cohn-Kanade, Lucey et al. 2010) is distributed on request by the Affect "
        "Analysis Group of Jeffrey Cohn (University of Pittsburgh). Unzip "
        "extended-cohn-kanade-images.zip, Emotion_labels.zip and Landmarks.zip so that "
        "<manual_dir>/cohn-kanade-images/S005/001/S005_001_00000001.png, "
        "<manual_dir>/Emotion/S005/001/S005_001_00000011_emotion.txt and "
        "<manual_dir>/Landmarks/S005/001/S005_001_00000001_landmarks.txt exist (Landmarks is "
        "optional).")

    def __init__(self, neutral_sequences: int = 50, neutral_frames: int = 20, seed: int = 0):
        for what, value, minimum in (("neutral_sequences", neutral_sequences, 0),
                                     ("neutral_frames", neutral_frames, 1), ("seed", seed, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise UserError(f"CK+ {what} must be an int >= {minimum}, got {value!r}")
        self.neutral_sequences = neutral_sequences
        self.neutral_frames = neutral_frames
        self.seed = seed

    def choose_neutral(self, names: Sequence[str]) -> list[str]:
        """The labelled sequence names (any order) that give a neutral video, sorted."""
        ordered = sorted(names)
        count = min(self.neutral_sequences, len(ordered))
        chosen = np.random.default_rng(self.seed).choice(len(ordered), size=count, replace=False)
        return [ordered[i] for i in sorted(chosen)]

    def _scan(self, scan: _Scan) -> None:
        for subject in _folders(scan, scan.root / "cohn-kanade-images", "subject"):
            for sequence in _folders(scan, subject, "sequence"):
                self._sequence(scan, subject.name, sequence)
        labelled = {video.name: video for video in scan.videos}
        for name in self.choose_neutral(list(labelled)):
            video = labelled[name]
            scan.videos.append(dataclasses.replace(
                video, name=f"{name}/neutral", paths=(video.paths[0],) * self.neutral_frames,
                label=self.class_names.index("neutral")))

    def _sequence(self, scan: _Scan, subject: str, folder: Path) -> None:
        frames = _files(scan, folder, ".png", "CK+ frame")
        if not frames:
            scan.problem(folder, "empty sequence folder: no frame images; skipped")
        elif not folder.name.isdigit():
            scan.problem(folder, "malformed sequence folder name (expected digits, e.g. 001); "
                                 "skipped")
        else:
            label = self._emotion(scan, subject, folder)
            if label is not None:
                scan.add(folder, frames, label, subject, info=(("sequence", int(folder.name)),))

    def _emotion(self, scan: _Scan, subject: str, sequence: Path) -> int | None:
        folder = scan.root / "Emotion" / subject / sequence.name
        files = sorted(folder.glob("*_emotion.txt")) if folder.is_dir() else []
        if not files:
            scan.problem(sequence, "no emotion label; skipped")
            return None
        if len(files) > 1:
            scan.problem(folder, f"{len(files)} emotion files for one sequence; skipped")
            return None
        code = _number_file(scan, files[0], "emotion file", "one code 0-7")
        if code is None:
            return None
        if not code.is_integer() or not 0 <= code < len(CKPLUS_CODES):
            scan.problem(files[0], f"unknown emotion code {code:g} (expected 0-7); "
                                   "sequence skipped")
            return None
        if CKPLUS_CODES[int(code)] == "contempt":
            scan.problem(files[0], "contempt is not one of the 7 classes; skipped")
            return None
        return self.class_names.index(CKPLUS_CODES[int(code)])


def ckplus_landmarks(video: RawVideo) -> np.ndarray | None:
    """CK+'s landmarks of each frame of a CK+ ``video``: float32 [T, 68, 2] (x, y as in the files).

    Read from ``Landmarks/<S>/<seq>/<frame stem>_landmarks.txt`` next to ``cohn-kanade-images``;
    None when any frame has no landmarks file. Raises UserError for a file that is not 68 rows of
    two numbers.
    """
    by_path: dict[str, np.ndarray | None] = {}
    for path in video.paths:
        if path not in by_path:
            by_path[path] = _read_landmarks(_landmarks_path(Path(path)))
        if by_path[path] is None:
            return None
    return np.stack([by_path[path] for path in video.paths])


def _landmarks_path(frame: Path) -> Path:
    sequence = frame.parent
    return (sequence.parents[2] / "Landmarks" / sequence.parent.name / sequence.name
            / f"{frame.stem}_landmarks.txt")


def _read_landmarks(path: Path) -> np.ndarray | None:
    """float32 [68, 2] from a CK+ landmarks file, None if it does not exist."""
    if not path.is_file():
        return None
    try:
        points = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError:
        points = None
    if points is None or points.shape != (68, 2):
        raise UserError(f"{path}: malformed CK+ landmarks file (expected 68 lines 'x y'); "
                        "restore it from Landmarks.zip or delete it")
    return points


SAMM_SHEET = "SAMM_Micro_FACS_Codes_v2"
SAMM_COLUMNS = ("Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame",
                "Estimated Emotion")
_SAMM_FRAME_COLUMNS = ("Onset Frame", "Apex Frame", "Offset Frame")
SAMM_ALIASES = {"angry": "anger", "disgusted": "disgust", "fearful": "fear", "happy": "happiness",
                "others": "other", "sad": "sadness", "surprised": "surprise"}


class Samm(Layout):
    """SAMM: frames ``SAMM/<subject>/<clip>/<subject>_<frame>.jpg`` + the FACS coding sheet.

    The sheet is ``SAMM_Micro_FACS_Codes_v2.csv`` (an export of the .xlsx, preferred when both
    exist) or ``.xlsx`` (read with openpyxl). Its header row is the first row holding all of
    ``SAMM_COLUMNS`` (title rows above it are skipped); blank rows are skipped. A row names the
    clip folder ``SAMM/<Subject>/<Filename>`` (numeric subjects zero-padded to 3 digits).
    Emotions match ``class_names`` case-insensitively, with ``SAMM_ALIASES``. paths = every frame
    of the clip folder; info: onset, apex, offset as the sheet's frame numbers (the numbers in
    the frame file names). Problems: rows with non-integer frame numbers or unknown emotions,
    rows whose folder is missing, folders without a row, a clip listed twice (first row used),
    empty clip folders.
    """

    name = "samm"
    title = "SAMM"
    class_names = ("anger", "contempt", "disgust", "fear", "happiness", "other", "sadness",
                   "surprise")
    info_keys = ("onset", "apex", "offset")
    required = ("SAMM",)
    expected = (f"SAMM/<subject>/<clip>/<subject>_<frame>.jpg and {SAMM_SHEET}.xlsx (or .csv) "
                "next to SAMM/")
    instructions = (
        "SAMM (Spontaneous Actions and Micro-Movements, Davison et al., Manchester Metropolitan "
        "University) is distributed on request from its authors. Put the frames as "
        "<manual_dir>/SAMM/<subject>/<clip>/<subject>_<frame>.jpg (e.g. "
        "SAMM/006/006_1_2/006_05562.jpg) and the coding sheet as "
        f"<manual_dir>/{SAMM_SHEET}.xlsx (reading it needs `pip install openpyxl`) or its CSV "
        f"export <manual_dir>/{SAMM_SHEET}.csv.")

    def _scan(self, scan: _Scan) -> None:
        sheet, rows = self._sheet(scan.root)
        folders = {}
        for subject in _folders(scan, scan.root / "SAMM", "subject"):
            for clip in _folders(scan, subject, "clip"):
                folders[(subject.name, clip.name)] = clip
        listed: set[tuple[str, str]] = set()
        for number, row in rows:
            self._row(scan, sheet, number, row, folders, listed)
        for key, clip in folders.items():
            if key not in listed:
                scan.problem(clip, f"no label: not in {sheet.name}; skipped")

    def _row(self, scan: _Scan, sheet: Path, number: int, row: dict[str, str],
             folders: dict[tuple[str, str], Path], listed: set[tuple[str, str]]) -> None:
        where = f"{sheet.name} row {number}"
        subject, clip = _samm_subject(row["Subject"]), row["Filename"].strip()
        if not subject or not clip:
            scan.problem(sheet, f"malformed {where}: no Subject or Filename; skipped")
            return
        folder = scan.root / "SAMM" / subject / clip
        if (subject, clip) in listed:
            scan.problem(folder, f"listed again in {where}; the first row is used")
            return
        listed.add((subject, clip))
        try:
            frames = tuple(_integer(row[c]) for c in _SAMM_FRAME_COLUMNS)
        except ValueError:
            values = ", ".join(row[c] for c in _SAMM_FRAME_COLUMNS)
            scan.problem(folder, f"malformed onset/apex/offset ({values}) in {where} (expected "
                                 "frame numbers); skipped")
            return
        emotion = row["Estimated Emotion"].strip().lower()
        emotion = SAMM_ALIASES.get(emotion, emotion)
        if emotion not in self.class_names:
            scan.problem(folder, f"unknown emotion {row['Estimated Emotion']!r} in {where} "
                                 f"(expected one of {', '.join(self.class_names)}); skipped")
            return
        if (subject, clip) not in folders:
            scan.problem(folder, f"missing clip folder (listed in {where}); skipped")
            return
        images = _files(scan, folder, ".jpg", "SAMM frame")
        if not images:
            scan.problem(folder, "empty clip folder: no frame images; skipped")
            return
        scan.add(folder, images, self.class_names.index(emotion), subject,
                 info=tuple(zip(self.info_keys, frames)))

    def _sheet(self, root: Path) -> tuple[Path, list[tuple[int, dict[str, str]]]]:
        """The coding sheet and its data rows: (1-based row number, column → cell text)."""
        csv_path, xlsx_path = root / f"{SAMM_SHEET}.csv", root / f"{SAMM_SHEET}.xlsx"
        if csv_path.is_file():
            path, table = csv_path, _csv_table(csv_path)
        elif xlsx_path.is_file():
            path, table = xlsx_path, _xlsx_table(xlsx_path)
        else:
            raise self.layout_error(f"{root} has no {SAMM_SHEET}.xlsx or {SAMM_SHEET}.csv")
        wanted = {_column_key(c) for c in SAMM_COLUMNS}
        for start, header in enumerate(table):
            keys = [_column_key(cell) for cell in header]
            if wanted <= set(keys):
                break
        else:
            raise UserError(f"{path}: no header row with the columns {', '.join(SAMM_COLUMNS)}; "
                            "use the sheet as distributed or an export of it")
        columns = {c: keys.index(_column_key(c)) for c in SAMM_COLUMNS}
        rows = []
        for number, cells in enumerate(table[start + 1:], start + 2):
            if any(cell.strip() for cell in cells):
                rows.append((number, {c: cells[i] if i < len(cells) else ""
                                      for c, i in columns.items()}))
        return path, rows


def _column_key(cell: str) -> str:
    return " ".join(cell.split()).lower()


def _integer(text: str) -> int:
    """An integer written as '12', '12.0' or '1.2e1'; ValueError otherwise."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _samm_subject(cell: str) -> str:
    """Subject folder name of a sheet cell: numbers zero-padded to 3 digits ('6' → '006')."""
    text = cell.strip()
    try:
        return f"{_integer(text):03d}"
    except ValueError:
        return text


def _csv_table(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return list(csv.reader(f))


def _xlsx_table(path: Path) -> list[list[str]]:
    """Cells of the first worksheet as text ('' for empty cells)."""
    try:
        import openpyxl
    except ImportError:
        raise UserError(f"{path} is an Excel sheet: `pip install openpyxl` to read it, or save it "
                        f"as {path.with_suffix('.csv').name} (CSV) next to it") from None
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile,
            openpyxl.utils.exceptions.InvalidFileException) as e:
        raise UserError(f"{path}: cannot be read as an .xlsx sheet ({e}); re-download it or "
                        f"export it as {path.with_suffix('.csv').name}") from None
    try:
        return [["" if cell is None else str(cell) for cell in row]
                for row in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()


HMDB51_CLASSES = (
    "brush_hair", "cartwheel", "catch", "chew", "clap", "climb", "climb_stairs", "dive",
    "draw_sword", "dribble", "drink", "eat", "fall_floor", "fencing", "flic_flac", "golf",
    "handstand", "hit", "hug", "jump", "kick", "kick_ball", "kiss", "laugh", "pick", "pour",
    "pullup", "punch", "push", "pushup", "ride_bike", "ride_horse", "run", "shake_hands",
    "shoot_ball", "shoot_bow", "shoot_gun", "sit", "situp", "smile", "smoke", "somersault",
    "stand", "swing_baseball", "sword", "sword_exercise", "talk", "throw", "turn", "walk", "wave")
HMDB8_CLASSES = ("fall_floor", "hug", "jump", "punch", "run", "smoke", "throw", "wave")
HMDB_SPLITS = "testTrainMulti_7030_splits"
HMDB_SPLIT_CODES = ("0", "1", "2")  # unused, train, test


class Hmdb(Layout):
    """HMDB-51 (or a subset of its classes): ``<class>/<clip>.avi``; no faces.

    class_names is fixed (labels stay stable whatever folders exist). Subject = the source video:
    the clip name before its last '_<class>_' (the whole name if absent). Folders that are HMDB-51
    classes outside ``class_names`` are ignored; other folders holding .avi files are a Problem
    (unknown class). With ``splits``, info holds the codes of ``<class>_test_split{1,2,3}.txt``
    (0 unused, 1 train, 2 test). A clip missing from a split file, or listed there with another
    code, is kept with code 0 (unused) in that split and reported as a Problem; a missing split
    file gives its class code 0 there (one Problem); malformed lines and lines naming a clip
    that does not exist are Problems.
    """

    title = "HMDB-51"
    faces = "none"

    def __init__(self, name: str, class_names: tuple[str, ...], splits: bool):
        self.name = name
        self.class_names = class_names
        self.splits = splits
        self.info_keys = ("split1", "split2", "split3") if splits else ()
        self.required = (HMDB_SPLITS,) if splits else ()
        folders = ("<class>/<clip>.avi for the classes " + ", ".join(class_names)
                   if len(class_names) < len(HMDB51_CLASSES)
                   else "<class>/<clip>.avi (51 class folders, e.g. brush_hair/)")
        splits_text = f" and {HMDB_SPLITS}/<class>_test_split{{1,2,3}}.txt" if splits else ""
        self.expected = folders + splits_text
        self.instructions = (
            "HMDB-51 (Kuehne et al. 2011, Serre lab, Brown University) is downloadable from its "
            "project page as hmdb51_org.rar (videos) and test_train_splits.rar (splits). Unrar "
            "hmdb51_org.rar, then every <class>.rar inside it, into the manual directory so that "
            "<manual_dir>/<class>/<clip>.avi exist (e.g. "
            "<manual_dir>/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi)"
            + (f"; unrar test_train_splits.rar there too, giving "
               f"<manual_dir>/{HMDB_SPLITS}/<class>_test_split1.txt (and 2, 3)." if splits else
               f". Only the folders {', '.join(class_names)} are used; other class folders may "
               "stay."))

    def _scan(self, scan: _Scan) -> None:
        classes = []
        for entry in _entries(scan.root):
            if not entry.is_dir() or entry.name == HMDB_SPLITS:
                continue
            if entry.name in self.class_names:
                classes.append(entry)
            elif (entry.name not in HMDB51_CLASSES
                  and any(p.suffix.lower() == ".avi" for p in entry.iterdir())):
                scan.problem(entry, "unknown class folder (not one of the 51 HMDB-51 classes); "
                                    "its videos skipped")
        if not classes:
            raise self.layout_error(f"{scan.root} has none of the class folders")
        for folder in classes:
            clips = _files(scan, folder, ".avi", "HMDB-51")
            codes = self._split_codes(scan, folder, clips) if self.splits else {}
            for clip in clips:
                scan.add(clip.with_suffix(""), [clip], self.class_names.index(folder.name),
                         _hmdb_source(clip.stem, folder.name),
                         info=tuple(zip(self.info_keys, codes.get(clip.name, ()))))

    def _split_codes(self, scan: _Scan, folder: Path, clips: list[Path]) -> dict[str, tuple]:
        """Clip file name → (code in split 1, 2, 3), 0 where missing (Problems recorded)."""
        codes = {clip.name: [0, 0, 0] for clip in clips}
        listed = {clip.name: [False] * 3 for clip in clips}
        absent: dict[str, list[str]] = {}
        for k in range(3):
            path = scan.root / HMDB_SPLITS / f"{folder.name}_test_split{k + 1}.txt"
            if not path.is_file():
                scan.problem(path, f"missing split file; the {folder.name} clips get code 0 "
                                   f"(unused) in split {k + 1}")
                for flags in listed.values():
                    flags[k] = True
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                tokens = line.split()
                if not tokens:
                    continue
                if len(tokens) != 2:
                    scan.problem(path, f"malformed line {number} {line.strip()[:60]!r} (expected "
                                       "'<clip>.avi 0|1|2'); ignored")
                    continue
                clip, code = tokens
                if clip not in codes:
                    absent.setdefault(clip, []).append(path.name)
                    continue
                listed[clip][k] = True
                if code not in HMDB_SPLIT_CODES:
                    scan.problem(folder / clip, f"unknown split code {code!r} in {path.name} line "
                                                f"{number} (expected 0, 1 or 2); given code 0 "
                                                f"(unused) in split {k + 1}")
                    continue
                codes[clip][k] = int(code)
        for clip, files in absent.items():
            scan.problem(folder / clip, f"missing video (listed in {', '.join(files)}); ignored")
        for clip, flags in listed.items():
            unlisted = [str(k + 1) for k in range(3) if not flags[k]]
            if unlisted:
                scan.problem(folder / clip, f"not listed in split {', '.join(unlisted)}; given "
                                            "code 0 (unused) there")
        return {clip: tuple(values) for clip, values in codes.items()}


def _hmdb_source(stem: str, class_name: str) -> str:
    """The source video of an HMDB clip: the name before its last '_<class>_'."""
    end = stem.rfind(f"_{class_name}_")
    return stem[:end] if end > 0 else stem


UNBC_LABELS = ("Frame_Labels/PSPI", "Sequence_Labels/OPI")


class Unbc(Layout):
    """UNBC-McMaster Shoulder Pain: ``Images/<subject>/<sequence>/<sequence><nnn>.png``.

    label = OPI rounded half up (``Sequence_Labels/OPI/<subject>/<sequence>.txt``, 0-5), class
    'opi<k>'; info: opi. frame_labels = PSPI of each frame from
    ``Frame_Labels/PSPI/<subject>/<sequence>/<frame stem>_facs.txt``. A sequence whose OPI file
    is missing, malformed or outside 0-5, or with any frame lacking a readable PSPI file, is
    skipped with one Problem (naming the first file concerned).
    """

    name = "unbc"
    title = "UNBC-McMaster"
    class_names = tuple(f"opi{k}" for k in range(6))
    info_keys = ("opi",)
    frame_labels = True
    required = ("Images",) + UNBC_LABELS
    expected = ("Images/<subject>/<sequence>/<sequence><nnn>.png, "
                "Frame_Labels/PSPI/<subject>/<sequence>/<sequence><nnn>_facs.txt and "
                "Sequence_Labels/OPI/<subject>/<sequence>.txt")
    instructions = (
        "The UNBC-McMaster Shoulder Pain Expression Archive (Lucey et al. 2011) is distributed "
        "on request by Jeffrey Cohn's group (University of Pittsburgh) and McMaster University. "
        "Put its Images, Frame_Labels and Sequence_Labels folders under the manual directory: "
        "<manual_dir>/Images/042-ll042/ll042t1aaaff/ll042t1aaaff001.png, "
        "<manual_dir>/Frame_Labels/PSPI/042-ll042/ll042t1aaaff/ll042t1aaaff001_facs.txt, "
        "<manual_dir>/Sequence_Labels/OPI/042-ll042/ll042t1aaaff.txt.")

    def _scan(self, scan: _Scan) -> None:
        for subject in _folders(scan, scan.root / "Images", "subject"):
            for sequence in _folders(scan, subject, "sequence"):
                frames = _files(scan, sequence, ".png", "UNBC frame")
                if not frames:
                    scan.problem(sequence, "empty sequence folder: no frame images; skipped")
                    continue
                opi = self._opi(scan, subject.name, sequence.name)
                pspi = None if opi is None else self._pspi(scan, subject.name, sequence.name,
                                                           frames)
                if pspi is not None:
                    scan.add(sequence, frames, opi, subject.name, frame_labels=pspi,
                             info=(("opi", opi),))

    def _opi(self, scan: _Scan, subject: str, sequence: str) -> int | None:
        path = scan.root / "Sequence_Labels" / "OPI" / subject / f"{sequence}.txt"
        if not path.is_file():
            scan.problem(path, "missing OPI sequence label; sequence skipped")
            return None
        value = _number_file(scan, path, "OPI label", "one number 0-5")
        if value is not None and not 0 <= value <= 5:
            scan.problem(path, f"unknown OPI value {value:g} (expected 0-5); sequence skipped")
            return None
        return None if value is None else int(value + 0.5)

    def _pspi(self, scan: _Scan, subject: str, sequence: str,
              frames: list[Path]) -> tuple[float, ...] | None:
        folder = scan.root / "Frame_Labels" / "PSPI" / subject / sequence
        paths = [folder / f"{frame.stem}_facs.txt" for frame in frames]
        missing = [path for path in paths if not path.is_file()]
        if missing:
            scan.problem(missing[0], f"missing PSPI frame label ({len(missing)} of {len(paths)} "
                                     "frames lack one); sequence skipped")
            return None
        values = []
        for path in paths:
            value = _number_file(scan, path, "PSPI label", "one number")
            if value is None:
                return None
            values.append(value)
        return tuple(values)


class BioVid(Layout):
    """BioVid Heat Pain Part A: ``video/<subject>/<subject>-<BL1|PA1..PA4>-<nnn>.mp4``.

    Subject = the folder; a name that does not split as above, an unknown class code, or a name
    whose subject differs from its folder is a Problem.
    """

    name = "biovid"
    title = "BioVid Part A"
    class_names = ("BL1", "PA1", "PA2", "PA3", "PA4")
    required = ("video",)
    expected = "video/<subject>/<subject>-<BL1|PA1|PA2|PA3|PA4>-<nnn>.mp4"
    instructions = (
        "The BioVid Heat Pain Database (Walter et al. 2013, Ulm University) is distributed on "
        "request (licence agreement) from its authors. From Part A put the videos as "
        "<manual_dir>/video/<subject>/<subject>-<BL1|PA1|PA2|PA3|PA4>-<nnn>.mp4, e.g. "
        "<manual_dir>/video/071309_w_21/071309_w_21-BL1-081.mp4.")
    _NAME = re.compile(r"(.+)-([A-Z]+\d*)-(\d+)")

    def _scan(self, scan: _Scan) -> None:
        for subject in _folders(scan, scan.root / "video", "subject"):
            for path in _files(scan, subject, ".mp4", "BioVid"):
                match = self._NAME.fullmatch(path.stem)
                if match is None:
                    scan.problem(path, f"malformed name (expected {subject.name}-<class>-<nnn>"
                                       ".mp4); skipped")
                elif match[2] not in self.class_names:
                    scan.problem(path, _unknown("class", match[2], ", ".join(self.class_names)))
                elif match[1] != subject.name:
                    scan.problem(path, f"subject {match[1]!r} of the name differs from its "
                                       f"folder {subject.name!r}; skipped")
                else:
                    scan.add(path.with_suffix(""), [path], self.class_names.index(match[2]),
                             subject.name)


RAFDB_LABELS = "EmoLabel/list_patition_label.txt"
RAFDB_IMAGES = "Image/aligned"
RAFDB_CODES = {"1": "surprise", "2": "fear", "3": "disgust", "4": "happiness", "5": "sadness",
               "6": "anger", "7": "neutral"}


class RafDb(Layout):
    """RAF-DB basic emotions: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/*.jpg``.

    Each labelled image is a one-frame video of an aligned face (faces='aligned'); partition
    'train' or 'test' from its name; RAF-DB has no subject ids: subject = the image stem
    ('train_00001'). Problems: malformed lines, unknown codes, images listed twice (first label
    used), listed images that are missing, and images in Image/aligned without a label.
    """

    name = "rafdb"
    still_images = True
    title = "RAF-DB"
    class_names = EXPRESSIONS
    faces = "aligned"
    required = (RAFDB_LABELS, RAFDB_IMAGES)
    expected = (f"{RAFDB_LABELS} ('train_00001.jpg 5' lines) and "
                f"{RAFDB_IMAGES}/train_00001_aligned.jpg")
    instructions = (
        "RAF-DB (Real-world Affective Faces, Li et al. 2017, Beijing University of Posts and "
        "Telecommunications) is distributed on request from its authors. From its basic-emotion "
        "part put <manual_dir>/EmoLabel/list_patition_label.txt and the aligned faces "
        "<manual_dir>/Image/aligned/train_00001_aligned.jpg (unzip aligned.zip into Image/).")
    _IMAGE = re.compile(r"((train|test)_\d+)\.jpg")

    def _scan(self, scan: _Scan) -> None:
        labels, folder = scan.root / RAFDB_LABELS, scan.root / RAFDB_IMAGES
        images = {path.name for path in _files(scan, folder, ".jpg", "RAF-DB aligned image")}
        listed = set()
        for number, line in enumerate(labels.read_text(errors="replace").splitlines(), 1):
            tokens = line.split()
            if not tokens:
                continue
            match = self._IMAGE.fullmatch(tokens[0]) if len(tokens) == 2 else None
            if match is None:
                scan.problem(labels, f"malformed line {number} {line.strip()[:60]!r} (expected "
                                     "'train_00001.jpg 5'); ignored")
                continue
            stem, partition = match.groups()
            image = folder / f"{stem}_aligned.jpg"
            if image.name in listed:
                scan.problem(image, f"listed again on line {number}; the first label is used")
                continue
            listed.add(image.name)
            if tokens[1] not in RAFDB_CODES:
                scan.problem(image, _unknown("emotion", tokens[1], "1-7"))
            elif image.name not in images:
                scan.problem(image, f"missing image (listed on line {number}); skipped")
            else:
                scan.add(image.with_suffix(""), [image],
                         self.class_names.index(RAFDB_CODES[tokens[1]]), stem,
                         partition=partition)
        for name in sorted(images - listed):
            scan.problem(folder / name, f"no label in {RAFDB_LABELS}; skipped")


AFFECTNET_IMAGES = "Manually_Annotated_Images"
AFFECTNET_LISTS = "Manually_Annotated_file_lists"
AFFECTNET_CSVS = (("training.csv", "train"), ("validation.csv", "test"))
"""Label file → partition of its images."""
AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal")
_AFFECTNET_BOX = ("face_x", "face_y", "face_width", "face_height")
AFFECTNET_CODES = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear",
                   5: "disgust", 6: "anger"}
AFFECTNET_EXCLUDED = {7: "Contempt", 8: "None", 9: "Uncertain", 10: "No-Face"}
"""AffectNet codes outside the 7 classes: excluded, counted per label file."""
AFFECTNET_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class AffectNet(Layout):
    """AffectNet, manually annotated part: ``Manually_Annotated_Images/<subDirectory>/<file>``
    + ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv``.

    A CSV row names an image (``subDirectory_filePath``, relative to Manually_Annotated_Images),
    its face box and its expression code. The CSV files may also lie directly under the root. A
    header row is optional (validation.csv comes without one); without it the columns are
    ``AFFECTNET_COLUMNS`` in that order. Each image is a one-frame video; partition 'train'
    (training.csv) or 'test' (validation.csv); AffectNet has no subject ids: subject = the image
    stem. ``RawVideo.box`` = the row's face box (face_x, face_y, face_x + face_width,
    face_y + face_height); the landmarks, valence and arousal columns are not read.

    Classes: codes 0-6 (the 7 classes of seed 003). Codes 7-10 (contempt, none, uncertain,
    no face) are excluded: one Problem per CSV file and code gives the number of rows left out
    (their images are not reported again). Problems: a missing CSV file (its images then have
    no label), a header without the needed columns (file ignored), rows with the wrong number of
    columns or a path that is not <subDirectory>/<file> (ignored), face boxes that are not
    numbers of positive size, unknown codes, images listed twice (first row used), listed images
    that are missing, images without a row, and unexpected entries in Manually_Annotated_Images.
    """

    name = "affectnet"
    still_images = True
    varied_sizes = True
    title = "AffectNet"
    class_names = EXPRESSIONS
    required = (AFFECTNET_IMAGES,)
    expected = (f"{AFFECTNET_IMAGES}/<subDirectory>/<file>.jpg and {AFFECTNET_LISTS}/"
                "training.csv, validation.csv (rows 'subDirectory_filePath,face_x,face_y,"
                "face_width,face_height,facial_landmarks,expression,valence,arousal')")
    instructions = (
        "AffectNet (Mollahosseini et al. 2017, University of Denver) is distributed on request "
        "from its authors (licence agreement). Unpack its manually annotated part "
        "(Manually_Annotated.part*.rar and Manually_Annotated_file_lists.zip) so that "
        f"<manual_dir>/{AFFECTNET_IMAGES}/689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b8"
        f"4363ca.jpg, <manual_dir>/{AFFECTNET_LISTS}/training.csv and "
        f"<manual_dir>/{AFFECTNET_LISTS}/validation.csv exist (the two CSV files may also lie "
        "directly in <manual_dir>).")

    def _scan(self, scan: _Scan) -> None:
        images = self._images(scan)
        listed: dict[str, str] = {}  # 'subDirectory/file' → where it was first listed
        names: set[str] = set()      # 'subDirectory/stem' of the videos added
        for csv_name, partition in AFFECTNET_CSVS:
            self._csv(scan, csv_name, partition, images, listed, names)
        files = " or ".join(csv_name for csv_name, _ in AFFECTNET_CSVS)
        for key in sorted(set(images) - set(listed)):
            scan.problem(images[key], f"no label in {files}; skipped")

    def _images(self, scan: _Scan) -> dict[str, Path]:
        """'subDirectory/file' → path of every image under Manually_Annotated_Images."""
        images = {}
        for folder in _folders(scan, scan.root / AFFECTNET_IMAGES, "AffectNet subDirectory"):
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    path = folder / entry.name
                    if entry.is_file() and path.suffix.lower() in AFFECTNET_SUFFIXES:
                        images[f"{folder.name}/{entry.name}"] = path
                    else:
                        kind = "folder" if entry.is_dir() else "file"
                        scan.problem(path, f"unexpected {kind} (expected AffectNet images "
                                           f"{'/'.join(AFFECTNET_SUFFIXES)} here); ignored")
        return images

    def _csv(self, scan: _Scan, csv_name: str, partition: str, images: dict[str, Path],
             listed: dict[str, str], names: set[str]) -> None:
        """Add the videos of one label file, streamed row by row."""
        path = next((p for p in (scan.root / AFFECTNET_LISTS / csv_name, scan.root / csv_name)
                     if p.is_file()), None)
        if path is None:
            scan.problem(scan.root / AFFECTNET_LISTS / csv_name,
                         f"missing label file; its {partition} images get no label")
            return
        excluded: dict[int, list[int]] = {}  # code → [rows, first row number]
        columns = None
        number = 0
        try:
            with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
                for number, row in enumerate(csv.reader(f), 1):
                    if not any(cell.strip() for cell in row):
                        continue
                    if columns is None:
                        columns = self._columns(scan, path, row)
                        if columns is None:
                            return
                        if row[0].strip() == AFFECTNET_COLUMNS[0]:
                            continue
                    self._row(scan, path, number, row, columns, partition, images, listed,
                              excluded, names)
        except (OSError, csv.Error) as e:
            scan.problem(path, f"unreadable after row {number} ({e}); the rest of the file "
                               "ignored")
        for code, (count, first) in sorted(excluded.items()):
            scan.problem(path, f"expression {code} ({AFFECTNET_EXCLUDED[code]}) is not one of "
                               f"the 7 classes: {count} row{'s' if count != 1 else ''} excluded "
                               f"(first: row {first}); their images skipped")

    def _columns(self, scan: _Scan, path: Path, first: list[str]) -> dict[str, int] | None:
        """Column name → index (from the header row if ``first`` is one), '' → row width;
        None after a Problem when the header lacks needed columns."""
        if first[0].strip() != AFFECTNET_COLUMNS[0]:
            return {**{c: i for i, c in enumerate(AFFECTNET_COLUMNS)},
                    "": len(AFFECTNET_COLUMNS)}
        header = [cell.strip() for cell in first]
        needed = (AFFECTNET_COLUMNS[0], *_AFFECTNET_BOX, "expression")
        lacking = [c for c in needed if c not in header]
        if lacking:
            scan.problem(path, f"header lacks the columns {', '.join(lacking)} (expected "
                               f"{','.join(AFFECTNET_COLUMNS)}); file ignored")
            return None
        return {**{c: header.index(c) for c in needed}, "": len(header)}

    def _row(self, scan: _Scan, path: Path, number: int, row: list[str],
             columns: dict[str, int], partition: str, images: dict[str, Path],
             listed: dict[str, str], excluded: dict[int, list[int]], names: set[str]) -> None:
        where = f"{path.name} row {number}"
        if len(row) != columns[""]:
            scan.problem(path, f"malformed row {number} {','.join(row)[:60]!r} (expected "
                               f"{columns['']} columns: {','.join(AFFECTNET_COLUMNS)}); ignored")
            return
        rel = row[columns[AFFECTNET_COLUMNS[0]]].strip().replace("\\", "/")
        parts = rel.split("/")
        if len(parts) != 2 or not all(parts) or {".", ".."} & set(parts):
            scan.problem(path, f"malformed row {number}: image path {rel[:60]!r} (expected "
                               "<subDirectory>/<file>, e.g. 689/737db248.jpg); ignored")
            return
        image = scan.root / AFFECTNET_IMAGES / rel
        if rel in listed:
            scan.problem(image, f"listed again in {where} (first in {listed[rel]}); the first "
                                "row is used")
            return
        listed[rel] = where
        text = row[columns["expression"]].strip()
        try:
            code = _integer(text)
        except ValueError:
            code = None
        if code in AFFECTNET_EXCLUDED:
            counts = excluded.setdefault(code, [0, number])
            counts[0] += 1
            return
        if code not in AFFECTNET_CODES:
            scan.problem(image, f"unknown expression code {text[:20]!r} in {where} (expected "
                                "0-10); skipped")
            return
        cells = [row[columns[c]].strip() for c in _AFFECTNET_BOX]
        try:
            x, y, width, height = (float(cell) for cell in cells)
            if not (math.isfinite(x + y + width + height) and width > 0 and height > 0):
                raise ValueError
        except ValueError:
            scan.problem(path, f"malformed face box in row {number} ({', '.join(cells)[:60]}) "
                               f"for {rel} (expected numbers face_x, face_y, face_width > 0, "
                               "face_height > 0); skipped")
            return
        if rel not in images:
            scan.problem(image, f"missing image (listed in {where}); skipped")
            return
        stem = f"{parts[0]}/{Path(parts[1]).stem}"
        if stem in names:
            scan.problem(image, f"another image named {stem!r} (other suffix) is listed before "
                                f"{where}; skipped")
            return
        names.add(stem)
        scan.add(image.with_suffix(""), [image], self.class_names.index(AFFECTNET_CODES[code]),
                 image.stem, partition=partition, box=(x, y, x + width, y + height))


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (
    CremaD(), Afew(), CkPlus(), Samm(), Hmdb("hmdb51", HMDB51_CLASSES, splits=True),
    Hmdb("hmdb8", HMDB8_CLASSES, splits=False), Unbc(), BioVid(), RafDb(),
    AffectNet())}
"""Registry of the dataset layouts by name (CK+ with its default neutral options)."""


def get(name: str) -> Layout:
    """The layout registered as ``name``."""
    if name not in LAYOUTS:
        raise UserError(f"unknown dataset layout {name!r}; available: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


# --------------------------------------------------------------------------- decoding
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
