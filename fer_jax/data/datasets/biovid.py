"""BioVid Heat Pain Database, Part A (Walter et al. 2013): layout, protocols and test fixture.

Protocols
``bl1_pa4``, ``bl1_pa34``
  Ayral's thesis (§3), BioVid Part A: Task 1 = BL1 vs PA4, Task 2 = BL1 vs PA3+PA4, both with
  8-fold subject-independent cross-validation; the other classes are excluded. Chosen here:
  subjects dealt round-robin into 8 folds; validation = whole subjects holding ~1/8 of the
  remaining videos.
"""
from __future__ import annotations

import re
from pathlib import Path

from fer_jax.data.datasets.base import Dataset, Layout, Scan, unknown_code
from fer_jax.data.datasets.fixture_kit import BAD_SUBJECT, Fixture
from fer_jax.data.datasets.schemes import Spec, SubjectKFold


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

    def _scan(self, scan: Scan) -> None:
        for subject in scan.folders(scan.root / "video", "subject"):
            for path in scan.files(subject, ".mp4", "BioVid"):
                match = self._NAME.fullmatch(path.stem)
                if match is None:
                    scan.problem(path, f"malformed name (expected {subject.name}-<class>-<nnn>"
                                       ".mp4); skipped")
                elif match[2] not in self.class_names:
                    scan.problem(path, unknown_code("class", match[2], ", ".join(self.class_names)))
                elif match[1] != subject.name:
                    scan.problem(path, f"subject {match[1]!r} of the name differs from its "
                                       f"folder {subject.name!r}; skipped")
                else:
                    scan.add(path.with_suffix(""), [path], self.class_names.index(match[2]),
                             subject.name)


# --------------------------------------------------------------------------- fixture
def _biovid_subject(s: int) -> str:
    return f"{71309 + s:06d}_{'wm'[s % 2]}_{21 + s}"


def _write(tree, class_name, s, j, sample, label=None) -> Path:
    subject = _biovid_subject(s)
    return tree.video(f"video/{subject}/{subject}-{class_name}-{j + 1:03d}.mp4", sample["frames"])


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    subject = _biovid_subject(BAD_SUBJECT)
    out = {}
    for stem, keyword in ((f"{subject}-PA5-001", "unknown"), (f"{subject}_BL1_002", "malformed"),
                          (f"{_biovid_subject(0)}-BL1-003", "folder")):
        out[tree.rel(tree.video(f"video/{subject}/{stem}.mp4", sample["frames"]))] = keyword
    return out


def _biovid_task(task: int, pain: str, merged: tuple[str, ...]) -> Spec:
    return Spec(f"Task {task}, BL1 vs {pain}: subject-independent 8-fold CV, validation = "
                f"~1/8 of the training subjects (Ayral's thesis)",
                SubjectKFold(8, validation=1 / 8), (("BL1", ("BL1",)), (pain, merged)))


DATASETS = (Dataset(
    BioVid(),
    protocols={
        "bl1_pa4": _biovid_task(1, "PA4", ("PA4",)),
        "bl1_pa34": _biovid_task(2, "PA3+PA4", ("PA3", "PA4")),
    },
    fixture=Fixture(_write, _bad_labels),
),)
