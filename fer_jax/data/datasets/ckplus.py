"""CK+ (Extended Cohn-Kanade, Lucey et al. 2010): layout, landmarks, protocol and test fixture.

Protocols
``6fold``
  Gund et al.: "6-fold cross validation ... where 15% of the CK+ dataset was held out for
  validation each time", folds not specified. Chosen here: subject-independent folds (usual CK+
  practice), subjects dealt round-robin into 6 folds; validation = whole subjects from the other
  5 folds holding ~15 % of all videos (18 % of the remaining ones). Neutral videos
  (``<sequence>/neutral``) carry their sequence's subject, so they follow it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fer_jax.data.action_units import EXPRESSIONS
from fer_jax.data.datasets.base import Dataset, Layout, Scan
from fer_jax.data.datasets.fixture_kit import (
    BAD_SUBJECT,
    FRAME_DEFECTS,
    Fixture,
    label_number,
)
from fer_jax.data.datasets.schemes import Spec, SubjectKFold
from fer_jax.data.decoding import RawVideo
from fer_jax.errors import UserError

CKPLUS_CODES = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness",
                "surprise")
"""CK+ emotion code → class name (the code is the index)."""


class CkPlus(Layout):
    """CK+: ``cohn-kanade-images/<S>/<seq>/*.png`` + ``Emotion/<S>/<seq>/*_emotion.txt``.

    Subject = the 'S005' folder; info: sequence (int of the '001' folder). Sequences without an
    emotion file are unlabelled in CK+ (266 of 593): each is a Problem "no emotion label". Contempt
    (code 2) is not one of Gund et al.'s 7 classes: Problem. A code that is not an integer 0-7 is
    a Problem; a sequence folder with no .png, or whose name is not a number, too.

    Neutral class (one of Gund et al.'s 7): ``neutral_sequences`` of the labelled sequences (all
    of them if fewer), drawn without replacement with ``np.random.default_rng(seed)`` from the
    sorted list of labelled sequence names, each give a video '<sequence>/neutral' of its first
    frame repeated ``neutral_frames`` times (same subject and info). ``neutral_sequences=0``
    disables it.
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

    def _scan(self, scan: Scan) -> None:
        for subject in scan.folders(scan.root / "cohn-kanade-images", "subject"):
            for sequence in scan.folders(subject, "sequence"):
                self._sequence(scan, subject.name, sequence)
        labelled = {video.name: video for video in scan.videos}
        for name in self.choose_neutral(list(labelled)):
            video = labelled[name]
            scan.videos.append(dataclasses.replace(
                video, name=f"{name}/neutral", paths=(video.paths[0],) * self.neutral_frames,
                label=self.class_names.index("neutral")))

    def _sequence(self, scan: Scan, subject: str, folder: Path) -> None:
        frames = scan.files(folder, ".png", "CK+ frame")
        if not frames:
            scan.problem(folder, "empty sequence folder: no frame images; skipped")
        elif not folder.name.isdigit():
            scan.problem(folder, "malformed sequence folder name (expected digits, e.g. 001); "
                                 "skipped")
        else:
            label = self._emotion(scan, subject, folder)
            if label is not None:
                scan.add(folder, frames, label, subject, info=(("sequence", int(folder.name)),))

    def _emotion(self, scan: Scan, subject: str, sequence: Path) -> int | None:
        folder = scan.root / "Emotion" / subject / sequence.name
        files = sorted(folder.glob("*_emotion.txt")) if folder.is_dir() else []
        if not files:
            scan.problem(sequence, "no emotion label; skipped")
            return None
        if len(files) > 1:
            scan.problem(folder, f"{len(files)} emotion files for one sequence; skipped")
            return None
        code = scan.number(files[0], "emotion file", "one code 0-7")
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


# --------------------------------------------------------------------------- fixture
def _write(tree, class_name, s, j, sample, label=None) -> Path:
    subject, sequence = f"S{5 * (s + 1):03d}", f"{j + 1:03d}"
    frames = sample["frames"]
    stems = [f"{subject}_{sequence}_{t + 1:08d}" for t in range(max(len(frames), 1))]
    folder = tree.frames(f"cohn-kanade-images/{subject}/{sequence}", stems, ".png", frames)
    for stem, points in zip(stems, sample["landmarks"][:len(frames)]):
        tree.text(f"Landmarks/{subject}/{sequence}/{stem}_landmarks.txt",
                  "".join(f"{label_number(x)}{label_number(y)}\n" for x, y in points))
    if label is None:
        label = label_number(CKPLUS_CODES.index(class_name)) + "\n"
    if label:
        tree.text(f"Emotion/{subject}/{sequence}/{stems[-1]}_emotion.txt", label)
    return folder


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    out = {}
    for j, (label, keyword) in enumerate((("", "no emotion label"), ("n/a\n", "malformed"),
                                          (label_number(9) + "\n", "unknown"),
                                          (label_number(2) + "\n", "contempt")), start=50):
        folder = _write(tree, class_name, BAD_SUBJECT, j, sample, label=label)
        emotion = tree.root / "Emotion" / folder.parent.name / folder.name
        out[tree.rel(next(emotion.glob("*_emotion.txt")) if label else folder)] = keyword
    return out


def _finish(tree, names, subjects) -> list[str]:
    """The neutral videos the CK+ layout derives from the written sequences."""
    return [f"{n}/neutral" for n in tree.layout.choose_neutral(names)]


DATASETS = (Dataset(
    CkPlus(),  # the default neutral options
    protocols={
        # 15 % of all videos = 18 % of the 5/6 outside the test fold.
        "6fold": Spec("subject-independent 6-fold CV, whole subjects holding ~15 % of the "
                      "videos held out for validation (Gund et al.)",
                      SubjectKFold(6, validation=0.15 * 6 / 5)),
    },
    # neutral videos come from first frames (the layout derives them), so none are written
    fixture=Fixture(_write, _bad_labels, classes=EXPRESSIONS[1:],
                    media_defects=FRAME_DEFECTS, finish=_finish),
),)
