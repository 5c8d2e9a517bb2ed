"""UNBC-McMaster Shoulder Pain Expression Archive (Lucey et al. 2011): layout, protocol and test
fixture.

Protocols
``loso``
  Ayral's thesis (§3): No Pain = OPI 0 (92 sequences) vs Pain = OPI >= 3 (57); OPI 1-2 are
  excluded; leave one subject out over the 25 subjects. Chosen here: validation = the next
  subject in sorted order; only subjects with an included sequence make folds. New classes
  ``('no_pain', 'pain')``, read from the stored classes ``'opi0'`` .. ``'opi5'``.
"""
from __future__ import annotations

from pathlib import Path

from fer_jax.data.datasets.base import Dataset, Layout, Scan
from fer_jax.data.datasets.fixture_kit import (
    BAD_SUBJECT,
    FRAME_DEFECTS,
    Fixture,
    label_number,
)
from fer_jax.data.datasets.schemes import LeaveOneSubjectOut, Spec

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

    def _scan(self, scan: Scan) -> None:
        for subject in scan.folders(scan.root / "Images", "subject"):
            for sequence in scan.folders(subject, "sequence"):
                frames = scan.files(sequence, ".png", "UNBC frame")
                if not frames:
                    scan.problem(sequence, "empty sequence folder: no frame images; skipped")
                    continue
                opi = self._opi(scan, subject.name, sequence.name)
                pspi = None if opi is None else self._pspi(scan, subject.name, sequence.name,
                                                           frames)
                if pspi is not None:
                    scan.add(sequence, frames, opi, subject.name, frame_labels=pspi,
                             info=(("opi", opi),))

    def _opi(self, scan: Scan, subject: str, sequence: str) -> int | None:
        path = scan.root / "Sequence_Labels" / "OPI" / subject / f"{sequence}.txt"
        if not path.is_file():
            scan.problem(path, "missing OPI sequence label; sequence skipped")
            return None
        value = scan.number(path, "OPI label", "one number 0-5")
        if value is not None and not 0 <= value <= 5:
            scan.problem(path, f"unknown OPI value {value:g} (expected 0-5); sequence skipped")
            return None
        return None if value is None else int(value + 0.5)

    def _pspi(self, scan: Scan, subject: str, sequence: str,
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
            value = scan.number(path, "PSPI label", "one number")
            if value is None:
                return None
            values.append(value)
        return tuple(values)


# --------------------------------------------------------------------------- fixture
_UNBC_INITIALS = ("ll", "jh", "jk", "nm", "hs", "th", "bm", "dr", "ak", "mg")


def _unbc_ids(s: int, j: int) -> tuple[str, str]:
    """(subject, sequence) folder names, e.g. ('042-ll042', 'll042t1aaaff')."""
    code = f"{_UNBC_INITIALS[s % len(_UNBC_INITIALS)]}{42 + s:03d}"
    return f"{42 + s:03d}-{code}", f"{code}t{j + 1}aaaff"


def _write(tree, class_name, s, j, sample, label=None) -> Path:
    subject, sequence = _unbc_ids(s, j)
    opi = tree.layout.class_names.index(class_name)
    frames = sample["frames"]
    stems = [f"{sequence}{t + 1:03d}" for t in range(len(frames))]
    folder = tree.frames(f"Images/{subject}/{sequence}", stems, ".png", frames)
    for stem, intensity in zip(stems, sample["intensity"]):
        tree.text(f"Frame_Labels/PSPI/{subject}/{sequence}/{stem}_facs.txt",
                  label_number(round(16 * float(intensity) * opi / 5)) + "\n")
    if label != "":
        tree.text(f"Sequence_Labels/OPI/{subject}/{sequence}.txt",
                  (label_number(opi) if label is None else label) + "\n")
    return folder


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    out = {}
    no_opi = _write(tree, class_name, BAD_SUBJECT, 50, sample, label="")
    bad_opi = _write(tree, class_name, BAD_SUBJECT, 51, sample, label=label_number(7))
    for folder, keyword in ((no_opi, "missing"), (bad_opi, "unknown")):
        subject, sequence = folder.parent.name, folder.name
        out[f"Sequence_Labels/OPI/{subject}/{sequence}.txt"] = keyword
    for j, keyword in ((52, "missing"), (53, "malformed")):
        folder = _write(tree, class_name, BAD_SUBJECT, j, sample)
        pspi = sorted((tree.root / "Frame_Labels/PSPI" / folder.parent.name / folder.name
                       ).iterdir())
        if keyword == "missing":
            pspi[2].unlink()
        else:
            pspi[2].write_text("n/a\n")
        out[tree.rel(pspi[2])] = keyword
    return out


DATASETS = (Dataset(
    Unbc(),
    protocols={
        "loso": Spec("No Pain (OPI 0) vs Pain (OPI >= 3), OPI 1-2 excluded; leave one subject "
                     "out, validation = the next subject (Ayral's thesis)", LeaveOneSubjectOut(),
                     (("no_pain", ("opi0",)), ("pain", ("opi3", "opi4", "opi5")))),
    },
    fixture=Fixture(_write, _bad_labels, media_defects=FRAME_DEFECTS),
),)
