"""Tiny dataset trees that mimic each raw layout of ``layouts``, rendered when called.

Nothing binary is stored: frames come from ``synthetic.SyntheticFaces`` (nuisance 0) and are
written with OpenCV, videos at 25 fps as .flv (FLV1), .avi (MJPG) or .mp4 (mp4v), frames as PNG
(CK+, UNBC) or JPEG (SAMM, RAF-DB, AffectNet).

``make_tree(name, root)`` writes a small valid tree and returns the names of the ``RawVideo``s
that ``layouts.LAYOUTS[name].scan(root)`` should find (for CK+ including the neutral videos its
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

import csv
import hashlib
import io
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from fer_jax.data import layouts, synthetic
from fer_jax.data.action_units import EXPRESSIONS

FPS = 25.0
FOURCC = {".flv": "FLV1", ".avi": "MJPG", ".mp4": "mp4v"}
ODD_SIZE = (97, 131)  # (width, height) of the 'odd size' and 'differing sizes' bad inputs
BAD_SUBJECT = 90      # fixture subject of the bad inputs; make_tree allows 1..BAD_SUBJECT subjects
DEFAULT_CLASSES = {"ckplus": EXPRESSIONS[1:], "hmdb51": ("brush_hair", "climb_stairs", "wave")}
_MAX_PER_CLASS = {"cremad": len(layouts.CREMAD_SENTENCES)}  # distinct sentences per emotion
AFFECTNET_EXCLUDED_ROWS = ((7, 8, 9), (7, 7, 10))
"""Excluded AffectNet codes make_tree adds for even subjects (training.csv) and odd ones
(validation.csv)."""

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


# --------------------------------------------------------------------------- writing media
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


def _label_number(value: float) -> str:
    """A number as CK+ / UNBC label files write it ('   3.0000000e+00')."""
    return f"   {value:.7e}"


class _Tree:
    """A fixture being written: its root, layout, and the synthetic videos it draws from."""

    def __init__(self, name: str, root: str | Path, subjects: int, frames: int, image_size: int,
                 seed: int):
        self.layout = layouts.get(name)
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


# --------------------------------------------------------------------------- per-dataset writers
# writer(tree, class_name, subject, j, sample, label=None) -> the video file or frame folder.
# j is unique among the subject's videos; sample is a SyntheticFaces.load dict whose 'frames'
# may have been altered. ``label`` is the text of the dataset's label slot: None writes the
# right label, "" writes none; datasets labelled by their paths ignore it.
def _cremad(tree, class_name, s, j, sample, label=None) -> Path:
    code = {v: k for k, v in layouts.CREMAD_EMOTIONS.items()}[class_name]
    sentence = layouts.CREMAD_SENTENCES[j % len(layouts.CREMAD_SENTENCES)]
    level = layouts.CREMAD_LEVELS[(s + j) % len(layouts.CREMAD_LEVELS)]
    return tree.video(f"VideoFlash/{1001 + s}_{sentence}_{code}_{level}.flv", sample["frames"])


def _afew(tree, class_name, s, j, sample, label=None) -> Path:
    folder = {v: k for k, v in layouts.AFEW_EMOTIONS.items()}[class_name]
    partition = layouts.AFEW_PARTITIONS[s % 2]
    return tree.video(f"{partition}/{folder}/{s:03d}{j:06d}.avi", sample["frames"])


def _ckplus(tree, class_name, s, j, sample, label=None) -> Path:
    subject, sequence = f"S{5 * (s + 1):03d}", f"{j + 1:03d}"
    frames = sample["frames"]
    stems = [f"{subject}_{sequence}_{t + 1:08d}" for t in range(max(len(frames), 1))]
    folder = tree.frames(f"cohn-kanade-images/{subject}/{sequence}", stems, ".png", frames)
    for stem, points in zip(stems, sample["landmarks"][:len(frames)]):
        tree.text(f"Landmarks/{subject}/{sequence}/{stem}_landmarks.txt",
                  "".join(f"{_label_number(x)}{_label_number(y)}\n" for x, y in points))
    if label is None:
        label = _label_number(layouts.CKPLUS_CODES.index(class_name)) + "\n"
    if label:
        tree.text(f"Emotion/{subject}/{sequence}/{stems[-1]}_emotion.txt", label)
    return folder


SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Type", "Action Units", "Notes", "Estimated Emotion")


def _samm_row(tree, cells: dict[str, str]) -> None:
    """Append a row to the CSV coding sheet (created with a title row and the header)."""
    sheet = tree.root / f"{layouts.SAMM_SHEET}.csv"
    lines = [] if sheet.exists() else [["SAMM micro-movement FACS codes"], [], list(SAMM_HEADER)]
    lines.append([cells.get(column, "") for column in SAMM_HEADER])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    with open(sheet, "a", newline="") as f:
        f.write(out.getvalue())


def _samm(tree, class_name, s, j, sample, label=None) -> Path:
    subject = f"{6 + s:03d}"
    clip = f"{subject}_{tree.layout.class_names.index(class_name) + 1}_{j + 1}"
    frames, start = sample["frames"], 1000 * (j + 1)
    folder = tree.frames(f"SAMM/{subject}/{clip}",
                         [f"{subject}_{start + t:05d}" for t in range(len(frames))], ".jpg", frames)
    apex = np.flatnonzero(sample["phase"][:len(frames)] == 2)
    if label != "":
        _samm_row(tree, {
            "Subject": subject, "Filename": clip, "Inducement Code": "1",
            "Onset Frame": str(start), "Apex Frame": str(start + (apex[0] if len(apex) else 0)),
            "Offset Frame": str(start + max(len(frames) - 1, 0)), "Duration": str(len(frames)),
            "Type": "Micro - 1/2", "Action Units": "R12",
            "Estimated Emotion": class_name.capitalize() if label is None else label})
    return folder


def _hmdb(tree, class_name, s, j, sample, label=None) -> Path:
    clip = f"Source_{s:02d}_{class_name}_u_nm_np1_fr_goo_{j}.avi"
    path = tree.video(f"{class_name}/{clip}", sample["frames"])
    if tree.layout.info_keys and label != "":
        for k in (1, 2, 3):
            code = str((s + k) % 3) if label is None else label
            tree.append(f"{layouts.HMDB_SPLITS}/{class_name}_test_split{k}.txt", f"{clip} {code} ")
    return path


_UNBC_INITIALS = ("ll", "jh", "jk", "nm", "hs", "th", "bm", "dr", "ak", "mg")


def _unbc_ids(s: int, j: int) -> tuple[str, str]:
    """(subject, sequence) folder names, e.g. ('042-ll042', 'll042t1aaaff')."""
    code = f"{_UNBC_INITIALS[s % len(_UNBC_INITIALS)]}{42 + s:03d}"
    return f"{42 + s:03d}-{code}", f"{code}t{j + 1}aaaff"


def _unbc(tree, class_name, s, j, sample, label=None) -> Path:
    subject, sequence = _unbc_ids(s, j)
    opi = tree.layout.class_names.index(class_name)
    frames = sample["frames"]
    stems = [f"{sequence}{t + 1:03d}" for t in range(len(frames))]
    folder = tree.frames(f"Images/{subject}/{sequence}", stems, ".png", frames)
    for stem, intensity in zip(stems, sample["intensity"]):
        tree.text(f"Frame_Labels/PSPI/{subject}/{sequence}/{stem}_facs.txt",
                  _label_number(round(16 * float(intensity) * opi / 5)) + "\n")
    if label != "":
        tree.text(f"Sequence_Labels/OPI/{subject}/{sequence}.txt",
                  (_label_number(opi) if label is None else label) + "\n")
    return folder


def _biovid_subject(s: int) -> str:
    return f"{71309 + s:06d}_{'wm'[s % 2]}_{21 + s}"


def _biovid(tree, class_name, s, j, sample, label=None) -> Path:
    subject = _biovid_subject(s)
    return tree.video(f"video/{subject}/{subject}-{class_name}-{j + 1:03d}.mp4", sample["frames"])


def _rafdb(tree, class_name, s, j, sample, label=None) -> Path:
    stem = f"{('train', 'test')[s % 2]}_{1000 * s + j + 1:05d}"
    frames = sample["frames"]
    apex = np.flatnonzero(sample["phase"][:len(frames)] == 2)
    path = tree.path(f"{layouts.RAFDB_IMAGES}/{stem}_aligned.jpg")
    write_image(path, frames[apex[0] if len(apex) else 0])
    if label != "":
        code = {v: k for k, v in layouts.RAFDB_CODES.items()}[class_name]
        tree.append(layouts.RAFDB_LABELS, f"{stem}.jpg {code if label is None else label}")
    return path


def affectnet_box(points: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """AffectNet's (face_x, face_y, face_width, face_height) for landmarks [68, 2] in an image of
    ``size`` (width, height): the landmarks' bounding box with its top raised by a tenth of its
    height (as a face detector's box), in whole pixels, inside the image."""
    low, high = points.min(0), points.max(0)
    low = low - np.array([0.0, 0.1 * (high[1] - low[1])])
    x0, y0 = (int(max(0, np.floor(v))) for v in low)
    x1, y1 = (int(min(limit, np.ceil(v))) for v, limit in zip(high, size))
    return x0, y0, x1 - x0, y1 - y0


def _affectnet_image(s: int, j: int) -> str:
    """'subDirectory/file' of the image ``j`` of subject ``s`` (a hash name as distributed)."""
    digest = hashlib.sha224(f"affectnet {s} {j}".encode()).hexdigest()
    return f"{1 + (7 * s + j) % 5}/{digest}.jpg"


def _affectnet_row(tree, partition: int, cells: list[str]) -> None:
    """Append a row to training.csv (partition 0, created with its header) or validation.csv."""
    rel = f"{layouts.AFFECTNET_LISTS}/{layouts.AFFECTNET_CSVS[partition][0]}"
    if partition == 0 and not (tree.root / rel).exists():
        tree.append(rel, ",".join(layouts.AFFECTNET_COLUMNS))
    tree.append(rel, ",".join(cells))


def _affectnet(tree, class_name, s, j, sample, label=None) -> Path:
    frames = sample["frames"]
    apex = np.flatnonzero(sample["phase"][:len(frames)] == 2)
    t = apex[0] if len(apex) else 0
    rel = _affectnet_image(s, j)
    path = tree.path(f"{layouts.AFFECTNET_IMAGES}/{rel}")
    write_image(path, frames[t])
    if label != "":
        code = {v: k for k, v in layouts.AFFECTNET_CODES.items()}[class_name]
        points = sample["landmarks"][t]
        box = affectnet_box(points, (frames.shape[2], frames.shape[1]))
        _affectnet_row(tree, s % 2, [
            rel, *map(str, box), ";".join(f"{v:.2f}" for v in points.ravel()),
            str(code) if label is None else label, f"{(code - 3) / 4:.6f}", "0.250000"])
    return path


def _affectnet_excluded(tree, subjects: int) -> None:
    """The rows of ``AFFECTNET_EXCLUDED_ROWS`` and their images, after the valid ones."""
    for s in range(subjects):
        for k, code in enumerate(AFFECTNET_EXCLUDED_ROWS[s % 2]):
            sample = tree.render("neutral", s)
            if code == 10:  # No-Face
                sample["frames"] = np.full_like(sample["frames"], 128)
            _affectnet(tree, "neutral", s, 1000 + k, sample, label=str(code))


_WRITERS: dict[str, Callable[..., Path]] = {
    "cremad": _cremad, "afew": _afew, "ckplus": _ckplus, "samm": _samm, "hmdb51": _hmdb,
    "hmdb8": _hmdb, "unbc": _unbc, "biovid": _biovid, "rafdb": _rafdb, "affectnet": _affectnet}


# --------------------------------------------------------------------------- make_tree
def make_tree(name: str, root: str | Path, *, subjects: int = 2, per_class: int = 1,
              classes: tuple[str, ...] | None = None, frames: int = 12, image_size: int = 96,
              seed: int = 0) -> list[str]:
    """Write a small valid ``name`` tree under a new or empty ``root``; the sorted names scan
    should find. ``frames`` (>= 10) frames of ``image_size`` pixels per video; label lists are
    appended to, so a second call on the same root duplicates them. See the module docstring.
    """
    layout = layouts.get(name)
    classes = tuple(DEFAULT_CLASSES.get(name, layout.class_names) if classes is None else classes)
    unknown = [c for c in classes if c not in layout.class_names]
    if unknown or not classes:
        raise ValueError(f"classes must be a non-empty subset of {layout.class_names}, got "
                         f"{classes!r}")
    if not 1 <= subjects <= BAD_SUBJECT:
        raise ValueError(f"subjects must be in 1..{BAD_SUBJECT}, got {subjects}")
    if not 1 <= per_class <= _MAX_PER_CLASS.get(name, per_class):
        raise ValueError(f"per_class must be in 1..{_MAX_PER_CLASS.get(name, 'any')} for {name}, "
                         f"got {per_class}")
    tree = _Tree(name, root, subjects, frames, image_size, seed)
    write = _WRITERS[name]
    names = []
    for s in range(subjects):
        for c, class_name in enumerate(classes):
            for k in range(per_class):
                path = write(tree, class_name, s, c * per_class + k, tree.render(class_name, s))
                names.append(tree.name(path))
    if isinstance(layout, layouts.CkPlus):
        names += [f"{n}/neutral" for n in layout.choose_neutral(names)]
    if isinstance(layout, layouts.AffectNet):
        _affectnet_excluded(tree, subjects)
    return sorted(names)


# --------------------------------------------------------------------------- add_bad_files
VIDEO_DEFECTS = ("truncated", "unreadable", "zero frames", "one frame", "no face",
                 "several faces", "grayscale", "odd size")
FRAME_DEFECTS = VIDEO_DEFECTS + ("differing sizes",)
_DEFECTS = {"ckplus": FRAME_DEFECTS, "samm": FRAME_DEFECTS, "unbc": FRAME_DEFECTS,
            "rafdb": ("truncated", "unreadable", "grayscale", "odd size"),
            "affectnet": ("truncated", "unreadable", "grayscale")}  # sizes vary by nature
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


def _media_defects(tree: _Tree, class_name: str) -> dict[str, str]:
    """One bad video per defect of the dataset, under BAD_SUBJECT: {name: keyword}."""
    write = _WRITERS[tree.layout.name]
    out = {}
    for j, defect in enumerate(_DEFECTS.get(tree.layout.name, VIDEO_DEFECTS)):
        sample = tree.render(class_name, 0)
        if defect in _ALTER:
            sample["frames"] = _ALTER[defect](sample["frames"],
                                              tree.render(class_name, 1)["frames"])
        path = write(tree, class_name, BAD_SUBJECT, j, sample)
        _corrupt(path, defect, tree.rng)
        medium = "folder" if path.is_dir() else path.suffix
        out[tree.name(path)] = _KEYWORDS.get((defect, medium), defect)
    return out


# Label-level bad inputs: fn(tree, class_name, sample) -> {key: keyword}, j from 50 on.
def _cremad_labels(tree, class_name, sample) -> dict[str, str]:
    out = {}
    for stem, keyword in ((f"{1001 + BAD_SUBJECT}_IEO_CON_HI", "unknown"),
                          (f"{1001 + BAD_SUBJECT}-IEO-ANG", "malformed")):
        out[tree.rel(tree.video(f"VideoFlash/{stem}.flv", sample["frames"]))] = keyword
    return out


def _afew_labels(tree, class_name, sample) -> dict[str, str]:
    tree.video("Train/Contempt/000000001.avi", sample["frames"])
    notes = tree.text("Val/Happy/readme.txt", "not a video\n")
    return {"Train/Contempt": "unknown", tree.rel(notes): "unexpected"}


def _ckplus_labels(tree, class_name, sample) -> dict[str, str]:
    out = {}
    for j, (label, keyword) in enumerate((("", "no emotion label"), ("n/a\n", "malformed"),
                                          (_label_number(9) + "\n", "unknown"),
                                          (_label_number(2) + "\n", "contempt")), start=50):
        folder = _ckplus(tree, class_name, BAD_SUBJECT, j, sample, label=label)
        emotion = tree.root / "Emotion" / folder.parent.name / folder.name
        out[tree.rel(next(emotion.glob("*_emotion.txt")) if label else folder)] = keyword
    return out


def _samm_labels(tree, class_name, sample) -> dict[str, str]:
    unlisted = _samm(tree, class_name, BAD_SUBJECT, 50, sample, label="")
    unknown = _samm(tree, class_name, BAD_SUBJECT, 51, sample, label="Boredom")
    malformed = _samm(tree, class_name, BAD_SUBJECT, 52, sample, label="")
    subject = malformed.parent.name
    _samm_row(tree, {"Subject": subject, "Filename": malformed.name, "Onset Frame": "first",
                     "Apex Frame": "5", "Offset Frame": "9", "Estimated Emotion": "Anger"})
    _samm_row(tree, {"Subject": subject, "Filename": f"{subject}_9_99", "Onset Frame": "1",
                     "Apex Frame": "5", "Offset Frame": "9", "Estimated Emotion": "Anger"})
    return {tree.rel(unlisted): "no label", tree.rel(unknown): "unknown",
            tree.rel(malformed): "malformed", f"SAMM/{subject}/{subject}_9_99": "missing"}


def _hmdb_labels(tree, class_name, sample) -> dict[str, str]:
    unknown = tree.video(f"dance/Source_{BAD_SUBJECT}_dance_u_nm_np1_fr_goo_0.avi",
                         sample["frames"])
    out = {tree.rel(unknown.parent): "unknown"}
    if tree.layout.info_keys:
        unlisted = _hmdb(tree, class_name, BAD_SUBJECT, 50, sample, label="")
        bad_code = _hmdb(tree, class_name, BAD_SUBJECT, 51, sample, label="7")
        splits = f"{layouts.HMDB_SPLITS}/{class_name}_test_split"
        absent = f"Absent_00_{class_name}_u_nm_np1_fr_goo_0.avi"
        tree.append(f"{splits}1.txt", f"{absent} 1 ")
        tree.append(f"{splits}3.txt", "half a line")
        out.update({tree.rel(unlisted): "not listed", tree.rel(bad_code): "unknown split code",
                    f"{class_name}/{absent}": "missing", f"{splits}3.txt": "malformed"})
    return out


def _unbc_labels(tree, class_name, sample) -> dict[str, str]:
    out = {}
    no_opi = _unbc(tree, class_name, BAD_SUBJECT, 50, sample, label="")
    bad_opi = _unbc(tree, class_name, BAD_SUBJECT, 51, sample, label=_label_number(7))
    for folder, keyword in ((no_opi, "missing"), (bad_opi, "unknown")):
        subject, sequence = folder.parent.name, folder.name
        out[f"Sequence_Labels/OPI/{subject}/{sequence}.txt"] = keyword
    for j, keyword in ((52, "missing"), (53, "malformed")):
        folder = _unbc(tree, class_name, BAD_SUBJECT, j, sample)
        pspi = sorted((tree.root / "Frame_Labels/PSPI" / folder.parent.name / folder.name
                       ).iterdir())
        if keyword == "missing":
            pspi[2].unlink()
        else:
            pspi[2].write_text("n/a\n")
        out[tree.rel(pspi[2])] = keyword
    return out


def _biovid_labels(tree, class_name, sample) -> dict[str, str]:
    subject = _biovid_subject(BAD_SUBJECT)
    out = {}
    for stem, keyword in ((f"{subject}-PA5-001", "unknown"), (f"{subject}_BL1_002", "malformed"),
                          (f"{_biovid_subject(0)}-BL1-003", "folder")):
        out[tree.rel(tree.video(f"video/{subject}/{stem}.mp4", sample["frames"]))] = keyword
    return out


def _rafdb_labels(tree, class_name, sample) -> dict[str, str]:
    unknown = _rafdb(tree, class_name, BAD_SUBJECT, 50, sample, label="9")
    unlisted = _rafdb(tree, class_name, BAD_SUBJECT, 51, sample, label="")
    tree.append(layouts.RAFDB_LABELS, "test_09999.jpg 4")
    tree.append(layouts.RAFDB_LABELS, "train_09998.jpg")
    return {tree.rel(unknown): "unknown", tree.rel(unlisted): "no label",
            f"{layouts.RAFDB_IMAGES}/test_09999_aligned.jpg": "missing",
            layouts.RAFDB_LABELS: "malformed"}


def _affectnet_labels(tree, class_name, sample) -> dict[str, str]:
    unknown = _affectnet(tree, class_name, BAD_SUBJECT, 50, sample, label="12")
    unlisted = _affectnet(tree, class_name, BAD_SUBJECT, 51, sample, label="")
    bad_box = _affectnet(tree, class_name, BAD_SUBJECT, 52, sample, label="")
    missing = _affectnet_image(BAD_SUBJECT, 53)  # listed, never written
    _affectnet_row(tree, 0, [missing, "10", "10", "60", "60", "", "0", "0", "0"])
    _affectnet_row(tree, 0, [_affectnet_image(BAD_SUBJECT, 54), "10", "10", "60"])
    _affectnet_row(tree, 1, [_affectnet_image(BAD_SUBJECT, 52), "n/a", "10", "60", "60", "",
                             "0", "0", "0"])
    notes = tree.text(f"{layouts.AFFECTNET_IMAGES}/{bad_box.parent.name}/readme.txt",
                      "not an image\n")
    lists = layouts.AFFECTNET_LISTS
    return {tree.rel(unknown): "unknown", tree.rel(unlisted): "no label",
            f"{layouts.AFFECTNET_IMAGES}/{missing}": "missing", tree.rel(notes): "unexpected",
            f"{lists}/training.csv": "malformed", f"{lists}/validation.csv": "malformed"}


_LABEL_DEFECTS = {
    "cremad": _cremad_labels, "afew": _afew_labels, "ckplus": _ckplus_labels,
    "samm": _samm_labels, "hmdb51": _hmdb_labels, "hmdb8": _hmdb_labels, "unbc": _unbc_labels,
    "biovid": _biovid_labels, "rafdb": _rafdb_labels, "affectnet": _affectnet_labels}


def add_bad_files(name: str, root: str | Path) -> dict[str, str]:
    """Add the dataset's bad inputs to a ``make_tree`` tree: {key: keyword} (module docstring)."""
    tree = _Tree(name, root, subjects=2, frames=12, image_size=96, seed=0)
    class_name = DEFAULT_CLASSES.get(name, tree.layout.class_names)[0]
    bad = _media_defects(tree, class_name)
    bad.update(_LABEL_DEFECTS[name](tree, class_name, tree.render(class_name, 0)))
    return bad
