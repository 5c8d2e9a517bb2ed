"""HMDB-51 (Kuehne et al. 2011) and its 8-action subset HMDB-8: layouts, protocols and test
fixture. Both read the same tree; neither has faces.

Protocols
``hmdb51/split1`` .. ``split3``
  The official split files: code 1 = train, code 2 = test, code 0 = unused (excluded). Chosen
  here: validation = ~10 % of the train clips, stratified by action and grouped by source video
  (``Meta.subjects``), so no source video straddles train and validation.
``hmdb8/random``
  Forsman & Singh: 1,687 / 382 / 363 clips (69.4 / 15.7 / 14.9 %), "randomly selected to create
  an even distribution", randomised "based on the original video". Chosen here: whole source
  videos are drawn to those clip proportions, stratified by action.
"""
from __future__ import annotations

from pathlib import Path

from fer_jax.data.datasets.base import Dataset, Layout, Scan, entries
from fer_jax.data.datasets.fixture_kit import BAD_SUBJECT, Fixture
from fer_jax.data.datasets.schemes import OfficialSplit, RandomSplit, Spec

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

    def _scan(self, scan: Scan) -> None:
        classes = []
        for entry in entries(scan.root):
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
            clips = scan.files(folder, ".avi", "HMDB-51")
            codes = self._split_codes(scan, folder, clips) if self.splits else {}
            for clip in clips:
                scan.add(clip.with_suffix(""), [clip], self.class_names.index(folder.name),
                         _hmdb_source(clip.stem, folder.name),
                         info=tuple(zip(self.info_keys, codes.get(clip.name, ()))))

    def _split_codes(self, scan: Scan, folder: Path, clips: list[Path]) -> dict[str, tuple]:
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


# --------------------------------------------------------------------------- fixture
def _write(tree, class_name, s, j, sample, label=None) -> Path:
    clip = f"Source_{s:02d}_{class_name}_u_nm_np1_fr_goo_{j}.avi"
    path = tree.video(f"{class_name}/{clip}", sample["frames"])
    if tree.layout.info_keys and label != "":
        for k in (1, 2, 3):
            code = str((s + k) % 3) if label is None else label
            tree.append(f"{HMDB_SPLITS}/{class_name}_test_split{k}.txt", f"{clip} {code} ")
    return path


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    unknown = tree.video(f"dance/Source_{BAD_SUBJECT}_dance_u_nm_np1_fr_goo_0.avi",
                         sample["frames"])
    out = {tree.rel(unknown.parent): "unknown"}
    if tree.layout.info_keys:
        unlisted = _write(tree, class_name, BAD_SUBJECT, 50, sample, label="")
        bad_code = _write(tree, class_name, BAD_SUBJECT, 51, sample, label="7")
        splits = f"{HMDB_SPLITS}/{class_name}_test_split"
        absent = f"Absent_00_{class_name}_u_nm_np1_fr_goo_0.avi"
        tree.append(f"{splits}1.txt", f"{absent} 1 ")
        tree.append(f"{splits}3.txt", "half a line")
        out.update({tree.rel(unlisted): "not listed", tree.rel(bad_code): "unknown split code",
                    f"{class_name}/{absent}": "missing", f"{splits}3.txt": "malformed"})
    return out


def _hmdb_split(k: int) -> Spec:
    return Spec(f"official split {k}: train = code 1, test = code 2, code 0 unused; "
                f"validation = ~10 % of train by whole source video",
                OfficialSplit(f"split{k}", train=1, test=2, validation=0.10, grouped=True))


DATASETS = (
    Dataset(Hmdb("hmdb51", HMDB51_CLASSES, splits=True),
            protocols={f"split{k}": _hmdb_split(k) for k in (1, 2, 3)},
            fixture=Fixture(_write, _bad_labels,
                            classes=("brush_hair", "climb_stairs", "wave"))),
    Dataset(Hmdb("hmdb8", HMDB8_CLASSES, splits=False),
            protocols={
                "random": Spec("random 1,687/382/363 clips (69.4/15.7/14.9 %) by whole source "
                               "video, stratified by action (Forsman & Singh)",
                               RandomSplit((1687, 382, 363), grouped=True)),
            },
            fixture=Fixture(_write, _bad_labels)),
)
