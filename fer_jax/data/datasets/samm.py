"""SAMM (Spontaneous Actions and Micro-Movements, Davison et al.): layout, protocol and test
fixture.

Protocols
``loso``
  Leave one subject out: fold k tests on the k-th subject in sorted order; validation = the next
  subject in sorted order (cyclically); train = all others.
"""
from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np

from fer_jax.data.datasets.base import Dataset, Layout, Scan, parse_integer
from fer_jax.data.datasets.fixture_kit import BAD_SUBJECT, FRAME_DEFECTS, Fixture
from fer_jax.data.datasets.schemes import LeaveOneSubjectOut, Spec
from fer_jax.errors import UserError

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

    def _scan(self, scan: Scan) -> None:
        sheet, rows = self._sheet(scan.root)
        folders = {}
        for subject in scan.folders(scan.root / "SAMM", "subject"):
            for clip in scan.folders(subject, "clip"):
                folders[(subject.name, clip.name)] = clip
        listed: set[tuple[str, str]] = set()
        for number, row in rows:
            self._row(scan, sheet, number, row, folders, listed)
        for key, clip in folders.items():
            if key not in listed:
                scan.problem(clip, f"no label: not in {sheet.name}; skipped")

    def _row(self, scan: Scan, sheet: Path, number: int, row: dict[str, str],
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
            frames = tuple(parse_integer(row[c]) for c in _SAMM_FRAME_COLUMNS)
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
        images = scan.files(folder, ".jpg", "SAMM frame")
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


def _samm_subject(cell: str) -> str:
    """Subject folder name of a sheet cell: numbers zero-padded to 3 digits ('6' → '006')."""
    text = cell.strip()
    try:
        return f"{parse_integer(text):03d}"
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


# --------------------------------------------------------------------------- fixture
SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame",
               "Offset Frame", "Duration", "Type", "Action Units", "Notes", "Estimated Emotion")


def _samm_row(tree, cells: dict[str, str]) -> None:
    """Append a row to the CSV coding sheet (created with a title row and the header)."""
    sheet = tree.root / f"{SAMM_SHEET}.csv"
    lines = [] if sheet.exists() else [["SAMM micro-movement FACS codes"], [], list(SAMM_HEADER)]
    lines.append([cells.get(column, "") for column in SAMM_HEADER])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(lines)
    with open(sheet, "a", newline="") as f:
        f.write(out.getvalue())


def _write(tree, class_name, s, j, sample, label=None) -> Path:
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


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    unlisted = _write(tree, class_name, BAD_SUBJECT, 50, sample, label="")
    unknown = _write(tree, class_name, BAD_SUBJECT, 51, sample, label="Boredom")
    malformed = _write(tree, class_name, BAD_SUBJECT, 52, sample, label="")
    subject = malformed.parent.name
    _samm_row(tree, {"Subject": subject, "Filename": malformed.name, "Onset Frame": "first",
                     "Apex Frame": "5", "Offset Frame": "9", "Estimated Emotion": "Anger"})
    _samm_row(tree, {"Subject": subject, "Filename": f"{subject}_9_99", "Onset Frame": "1",
                     "Apex Frame": "5", "Offset Frame": "9", "Estimated Emotion": "Anger"})
    return {tree.rel(unlisted): "no label", tree.rel(unknown): "unknown",
            tree.rel(malformed): "malformed", f"SAMM/{subject}/{subject}_9_99": "missing"}


DATASETS = (Dataset(
    Samm(),
    protocols={
        "loso": Spec("leave one subject out; validation = the next subject in sorted order",
                     LeaveOneSubjectOut()),
    },
    fixture=Fixture(_write, _bad_labels, media_defects=FRAME_DEFECTS),
),)
