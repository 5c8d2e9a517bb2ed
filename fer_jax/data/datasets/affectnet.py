"""AffectNet, manually annotated part (Mollahosseini et al. 2017): layout, protocol and test
fixture.

Protocols
``official``
  Belharbi et al., 7 classes: the images of training.csv (283,901) are the train pool, those of
  validation.csv (3,500, 500 per class) the test set; contempt and the codes that are not
  expressions (none, uncertain, no face) never reach the stored dataset (the layout counts
  them). Chosen here: validation = 10 % of the train pool, stratified by emotion, as RAF-DB.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
from pathlib import Path

import numpy as np

from fer_jax.data.action_units import EXPRESSIONS
from fer_jax.data.datasets.base import Dataset, Layout, Scan, parse_integer
from fer_jax.data.datasets.fixture_kit import BAD_SUBJECT, Fixture, write_image
from fer_jax.data.datasets.schemes import OfficialSplit, Spec

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

    Classes: codes 0-6 (the 7 classes of Belharbi et al.). Codes 7-10 (contempt, none, uncertain,
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

    def _scan(self, scan: Scan) -> None:
        images = self._images(scan)
        listed: dict[str, str] = {}  # 'subDirectory/file' → where it was first listed
        names: set[str] = set()      # 'subDirectory/stem' of the videos added
        for csv_name, partition in AFFECTNET_CSVS:
            self._csv(scan, csv_name, partition, images, listed, names)
        files = " or ".join(csv_name for csv_name, _ in AFFECTNET_CSVS)
        for key in sorted(set(images) - set(listed)):
            scan.problem(images[key], f"no label in {files}; skipped")

    def _images(self, scan: Scan) -> dict[str, Path]:
        """'subDirectory/file' → path of every image under Manually_Annotated_Images."""
        images = {}
        for folder in scan.folders(scan.root / AFFECTNET_IMAGES, "AffectNet subDirectory"):
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

    def _csv(self, scan: Scan, csv_name: str, partition: str, images: dict[str, Path],
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

    def _columns(self, scan: Scan, path: Path, first: list[str]) -> dict[str, int] | None:
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

    def _row(self, scan: Scan, path: Path, number: int, row: list[str],
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
            code = parse_integer(text)
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


# --------------------------------------------------------------------------- fixture
AFFECTNET_EXCLUDED_ROWS = ((7, 8, 9), (7, 7, 10))
"""Excluded AffectNet codes make_tree adds for even subjects (training.csv) and odd ones
(validation.csv)."""


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
    rel = f"{AFFECTNET_LISTS}/{AFFECTNET_CSVS[partition][0]}"
    if partition == 0 and not (tree.root / rel).exists():
        tree.append(rel, ",".join(AFFECTNET_COLUMNS))
    tree.append(rel, ",".join(cells))


def _write(tree, class_name, s, j, sample, label=None) -> Path:
    frames = sample["frames"]
    apex = np.flatnonzero(sample["phase"][:len(frames)] == 2)
    t = apex[0] if len(apex) else 0
    rel = _affectnet_image(s, j)
    path = tree.path(f"{AFFECTNET_IMAGES}/{rel}")
    write_image(path, frames[t])
    if label != "":
        code = {v: k for k, v in AFFECTNET_CODES.items()}[class_name]
        points = sample["landmarks"][t]
        box = affectnet_box(points, (frames.shape[2], frames.shape[1]))
        _affectnet_row(tree, s % 2, [
            rel, *map(str, box), ";".join(f"{v:.2f}" for v in points.ravel()),
            str(code) if label is None else label, f"{(code - 3) / 4:.6f}", "0.250000"])
    return path


def _finish(tree, names, subjects: int) -> list[str]:
    """The rows of ``AFFECTNET_EXCLUDED_ROWS`` and their images, after the valid ones; no
    video comes from them."""
    for s in range(subjects):
        for k, code in enumerate(AFFECTNET_EXCLUDED_ROWS[s % 2]):
            sample = tree.render("neutral", s)
            if code == 10:  # No-Face
                sample["frames"] = np.full_like(sample["frames"], 128)
            _write(tree, "neutral", s, 1000 + k, sample, label=str(code))
    return []


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    unknown = _write(tree, class_name, BAD_SUBJECT, 50, sample, label="12")
    unlisted = _write(tree, class_name, BAD_SUBJECT, 51, sample, label="")
    bad_box = _write(tree, class_name, BAD_SUBJECT, 52, sample, label="")
    missing = _affectnet_image(BAD_SUBJECT, 53)  # listed, never written
    _affectnet_row(tree, 0, [missing, "10", "10", "60", "60", "", "0", "0", "0"])
    _affectnet_row(tree, 0, [_affectnet_image(BAD_SUBJECT, 54), "10", "10", "60"])
    _affectnet_row(tree, 1, [_affectnet_image(BAD_SUBJECT, 52), "n/a", "10", "60", "60", "",
                             "0", "0", "0"])
    notes = tree.text(f"{AFFECTNET_IMAGES}/{bad_box.parent.name}/readme.txt",
                      "not an image\n")
    lists = AFFECTNET_LISTS
    return {tree.rel(unknown): "unknown", tree.rel(unlisted): "no label",
            f"{AFFECTNET_IMAGES}/{missing}": "missing", tree.rel(notes): "unexpected",
            f"{lists}/training.csv": "malformed", f"{lists}/validation.csv": "malformed"}


DATASETS = (Dataset(
    AffectNet(),
    protocols={
        "official": Spec("training.csv = train, validation.csv = test (7 classes, Belharbi et "
                         "al.); validation = 10 % of train, stratified by emotion",
                         OfficialSplit("partitions", "train", "test", 0.10, grouped=False)),
    },
    fixture=Fixture(_write, _bad_labels,
                    media_defects=("truncated", "unreadable", "grayscale"),  # sizes vary anyway
                    finish=_finish),
),)
