"""Tests of the raw dataset layouts (fer_jax.data.layouts) on rendered fixture trees
(fer_jax.data.fixtures): scanning, labels, decoding and the bad inputs of each dataset."""
import collections
import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_jax.data import datasets, fixtures, layouts
from fer_jax.data.action_units import EXPRESSIONS
from fer_jax.errors import UserError

NAMES = datasets.names()  # every registered dataset; each needs a _TRUTH entry below
KNOWN = ("cremad", "afew", "ckplus", "samm", "hmdb51", "hmdb8", "unbc", "biovid", "rafdb",
         "affectnet")  # the datasets the specific tests below cover, in registry order
FRAMES, SIZE, SUBJECTS = 12, 96, 2  # make_tree defaults

# Published label codes, written out independently of the module under test.
CREMAD = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness", "NEU": "neutral",
          "SAD": "sadness"}
AFEW = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness",
        "Neutral": "neutral", "Sad": "sadness", "Surprise": "surprise"}
CKPLUS = {0: "neutral", 1: "anger", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness",
          7: "surprise"}
RAFDB = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger",
         7: "neutral"}
AFFECTNET = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust",
             6: "anger"}  # 7 contempt, 8 none, 9 uncertain, 10 no face: excluded
AFFECTNET_LISTS = "Manually_Annotated_file_lists"


# --------------------------------------------------------------------------- ground truth
def _samm_rows(root: Path) -> dict[str, dict[str, str]]:
    """Filename → row of the fixture's CSV sheet (header found by its first column)."""
    with open(root / f"{layouts.SAMM_SHEET}.csv", newline="") as f:
        table = list(csv.reader(f))
    start = next(i for i, row in enumerate(table) if row and row[0] == "Subject")
    return {row[1]: dict(zip(table[start], row)) for row in table[start + 1:] if row}


def _rafdb_codes(root: Path) -> dict[str, int]:
    lines = (root / "EmoLabel/list_patition_label.txt").read_text().splitlines()
    return {image[:-len(".jpg")]: int(code) for image, code in (line.split() for line in lines)}


def _affectnet_rows(root: Path) -> dict[str, tuple[list[str], str]]:
    """'subDirectory/stem' → (CSV row, partition) of the fixture's label files."""
    rows = {}
    for csv_name, partition in (("training.csv", "train"), ("validation.csv", "test")):
        with open(root / AFFECTNET_LISTS / csv_name, newline="") as f:
            for row in csv.reader(f):
                if row and row[0] != "subDirectory_filePath":
                    rows[row[0].rsplit(".", 1)[0]] = (row, partition)
    return rows


def _number(path: Path) -> float:
    return float(path.read_text())


# dataset → (root, name parts) → (class name, subject, partition), read from the raw tree
_TRUTH = {
    "cremad": lambda root, p: (CREMAD[p[1].split("_")[2]], p[1].split("_")[0], ""),
    "afew": lambda root, p: (AFEW[p[1]], p[2], p[0]),
    "ckplus": lambda root, p: (
        "neutral" if p[-1] == "neutral"
        else CKPLUS[int(_number(next((root / "Emotion" / p[1] / p[2]).glob("*_emotion.txt"))))],
        p[1], ""),
    "samm": lambda root, p: (_samm_rows(root)[p[2]]["Estimated Emotion"].lower(), p[1], ""),
    "hmdb51": lambda root, p: (p[0], p[1].split(f"_{p[0]}_")[0], ""),
    "hmdb8": lambda root, p: (p[0], p[1].split(f"_{p[0]}_")[0], ""),
    "unbc": lambda root, p: (
        f"opi{int(_number(root / 'Sequence_Labels/OPI' / p[1] / f'{p[2]}.txt'))}", p[1], ""),
    "biovid": lambda root, p: (p[2].split("-")[1], p[1], ""),
    "rafdb": lambda root, p: (RAFDB[_rafdb_codes(root)[p[2][:-len("_aligned")]]],
                              p[2][:-len("_aligned")], p[2].split("_")[0]),
    "affectnet": lambda root, p: (AFFECTNET[int(_affectnet_rows(root)[f"{p[1]}/{p[2]}"][0][6])],
                                  p[2], _affectnet_rows(root)[f"{p[1]}/{p[2]}"][1]),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """name → (root, expected names) of a make_tree tree, built once per dataset."""
    cache = {}

    def get(name):
        if name not in cache:
            root = tmp_path_factory.mktemp(f"{name}_clean")
            cache[name] = (root, fixtures.make_tree(name, root))
        return cache[name]
    return get


# --------------------------------------------------------------------------- registry
def test_registry_names_and_metadata():
    assert tuple(layouts.LAYOUTS) == NAMES
    assert tuple(n for n in NAMES if n in KNOWN) == KNOWN
    assert set(_TRUTH) == set(NAMES), "add the ground truth of every dataset to _TRUTH"
    for name, layout in layouts.LAYOUTS.items():
        assert layouts.get(name) is layout and layout.name == name
        assert layout.faces in ("detect", "aligned", "none")
        assert "manual_dir" in layout.instructions
        assert all(entry.split("/")[0] in layout.instructions for entry in layout.required)
    with pytest.raises(UserError, match="unknown dataset layout 'nope'.*cremad.*rafdb"):
        layouts.get("nope")
    assert layouts.get("hmdb51").class_names == tuple(sorted(layouts.HMDB51_CLASSES))
    assert len(layouts.get("hmdb51").class_names) == 51
    assert layouts.get("hmdb8").class_names == ("fall_floor", "hug", "jump", "punch", "run",
                                                "smoke", "throw", "wave")
    assert layouts.get("cremad").class_names == EXPRESSIONS[:6]
    for name in ("afew", "ckplus", "rafdb", "affectnet"):
        assert layouts.get(name).class_names == EXPRESSIONS
    assert {n: l.faces for n, l in layouts.LAYOUTS.items() if l.faces != "detect"} == {
        "hmdb51": "none", "hmdb8": "none", "rafdb": "aligned"}
    assert [n for n, l in layouts.LAYOUTS.items() if l.frame_labels] == ["unbc"]
    assert issubclass(layouts.UnreadableVideo, UserError)


# --------------------------------------------------------------------------- clean trees
@pytest.mark.parametrize("name", NAMES)
def test_scan_finds_the_fixture_videos_with_their_labels(name, clean):
    root, expected = clean(name)
    layout = layouts.get(name)
    videos, problems = layout.scan(str(root))
    if name == "affectnet":  # its excluded codes, counted (test_affectnet_excluded_codes...)
        problems = [p for p in problems if " excluded " not in p.reason]
    assert problems == []
    assert [v.name for v in videos] == expected == sorted(expected)
    counts = collections.Counter(layout.class_names[v.label] for v in videos)
    classes = fixtures.DEFAULT_CLASSES.get(name, layout.class_names)
    assert counts == {**{c: SUBJECTS for c in classes},
                      **({"neutral": SUBJECTS * len(classes)} if name == "ckplus" else {})}
    for video in videos:
        class_name, subject, partition = _TRUTH[name](root, video.name.split("/"))
        assert (layout.class_names[video.label], video.subject, video.partition) == (
            class_name, subject, partition), video.name
        assert tuple(key for key, _ in video.info) == layout.info_keys
        assert all(isinstance(value, int) for _, value in video.info)
        assert (video.frame_labels is not None) == layout.frame_labels
        assert all(Path(p).is_absolute() and Path(p).is_file() for p in video.paths)
    if name not in ("afew", "rafdb", "affectnet"):  # no subject ids: subject = file stem
        assert len({v.subject for v in videos}) == SUBJECTS


@pytest.mark.parametrize("name", NAMES)
def test_read_frames_decodes_fixture_videos(name, clean):
    root, _ = clean(name)
    videos, _ = layouts.get(name).scan(str(root))
    for video in videos[:3] + videos[-1:]:
        frames, warnings = layouts.read_frames(video)
        length = (1 if name in ("rafdb", "affectnet") else 20 if video.name.endswith("/neutral")
                  else FRAMES)
        assert frames.dtype == np.uint8 and frames.shape == (length, SIZE, SIZE, 3)
        assert warnings == []
        assert frames.std() > 20  # a face on a background, not a blank frame
        if video.frame_labels is not None:
            assert len(video.frame_labels) == len(frames)


def test_make_tree_options(tmp_path):
    names = fixtures.make_tree("cremad", tmp_path, subjects=3, per_class=2,
                               classes=("anger", "sadness"))
    videos, problems = layouts.get("cremad").scan(str(tmp_path))
    assert [v.name for v in videos] == names and problems == [] and len(names) == 12
    assert {v.subject for v in videos} == {"1001", "1002", "1003"}
    assert {layouts.get("cremad").class_names[v.label] for v in videos} == {"anger", "sadness"}
    for bad in ({"classes": ("contempt",)}, {"subjects": 0}, {"per_class": 13}):
        with pytest.raises(ValueError):
            fixtures.make_tree("cremad", tmp_path / "x", **bad)


@pytest.mark.parametrize("suffix", [".flv", ".avi", ".mp4", ".png", ".jpg"])
def test_read_frames_returns_rgb(suffix, tmp_path):
    red, blue = (220, 40, 30), (30, 60, 210)
    frames = np.zeros((4, 64, 64, 3), np.uint8)
    frames[:, :, :32], frames[:, :, 32:] = red, blue
    path = tmp_path / f"clip{suffix}"
    if suffix in layouts.VIDEO_EXTENSIONS:
        fixtures.write_video(path, frames)
        length = 4
    else:
        fixtures.write_image(path, frames[0])
        length = 1
    decoded, warnings = layouts.read_frames(layouts.RawVideo("clip", (str(path),), 0, "s"))
    assert decoded.shape == (length, 64, 64, 3) and warnings == []
    np.testing.assert_allclose(decoded[:, 32, 12], np.broadcast_to(red, (length, 3)), atol=8)
    np.testing.assert_allclose(decoded[:, 32, 52], np.broadcast_to(blue, (length, 3)), atol=8)


def test_frame_images_in_natural_order(tmp_path):
    folder = tmp_path / "cohn-kanade-images/S001/001"
    folder.mkdir(parents=True)
    for number in (10, 2, 1):
        fixtures.write_image(folder / f"S001_001_{number}.png",
                             np.full((8, 8, 3), number, np.uint8))
    (tmp_path / "Emotion/S001/001").mkdir(parents=True)
    (tmp_path / "Emotion/S001/001/S001_001_10_emotion.txt").write_text("   5.0000000e+00\n")
    videos, problems = layouts.CkPlus(neutral_sequences=0).scan(str(tmp_path))
    assert problems == [] and len(videos) == 1
    assert [Path(p).stem for p in videos[0].paths] == ["S001_001_1", "S001_001_2", "S001_001_10"]
    frames, _ = layouts.read_frames(videos[0])
    assert frames[:, 0, 0, 0].tolist() == [1, 2, 10]
    assert EXPRESSIONS[videos[0].label] == "happiness"


# --------------------------------------------------------------------------- bad inputs
def _check_accepted(keyword: str, frames: np.ndarray) -> None:
    """The shape or content a bad-but-decodable input must come back with."""
    if keyword == "one frame":
        assert len(frames) == 1
    elif keyword == "grayscale":
        assert np.abs(frames.astype(int) - frames[..., :1]).max() <= 2
    elif keyword == "odd size":  # video codecs round odd sizes down to even ones
        assert frames.shape[1:3] in ((131, 97), (130, 96))
    elif keyword == "no face":
        assert frames.std() < 3
    elif keyword == "several faces":
        assert frames.shape[1:3] == (SIZE, 2 * SIZE)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_are_reported_where_expected(name, tmp_path):
    good = fixtures.make_tree(name, tmp_path)
    bad = fixtures.add_bad_files(name, tmp_path)
    videos, problems = layouts.get(name).scan(str(tmp_path))
    by_name = {v.name: v for v in videos}
    produced = set()
    for key, keyword in bad.items():
        stage = fixtures.BAD_INPUT_STAGES[keyword]
        if stage in ("skipped", "kept"):
            assert any(p.path == key and keyword in p.reason for p in problems), (key, keyword)
            video_name = str(Path(key).with_suffix(""))
            assert (video_name in by_name) == (stage == "kept"), key
            if stage == "kept":
                produced.add(video_name)
            continue
        produced.add(key)
        if stage == "read_frames":
            with pytest.raises(layouts.UnreadableVideo, match=keyword):
                layouts.read_frames(by_name[key])
            continue
        frames, warnings = layouts.read_frames(by_name[key])
        if stage == "warning":
            assert len(warnings) == 1 and keyword in warnings[0]
            assert 0 < len(frames) < FRAMES
        else:
            assert warnings == [], key
            _check_accepted(keyword, frames)
    assert all(p.path in bad for p in problems), [p for p in problems if p.path not in bad]
    neutral = {f"{n}/neutral" for n in produced} if name == "ckplus" else set()
    assert set(by_name) == set(good) | produced | neutral
    stages = {fixtures.BAD_INPUT_STAGES[k] for k in bad.values()}
    assert {"skipped", "read_frames", "accepted"} <= stages
    if name not in ("rafdb", "affectnet"):  # still images: no face-level defects
        assert "faces" in stages


# --------------------------------------------------------------------------- layout errors
@pytest.mark.parametrize("name", NAMES)
def test_missing_or_incomplete_root_is_a_one_line_user_error(name, tmp_path):
    layout = layouts.get(name)
    for root in (tmp_path / "absent", tmp_path):
        with pytest.raises(UserError, match=re.escape(layout.expected)) as error:
            layout.scan(str(root))
        assert "\n" not in str(error.value) and "missing or empty" in str(error.value)
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated/notes.txt").write_text("x")
    for entry in layout.required:  # every required entry but the first exists, empty
        if entry != layout.required[0]:
            (tmp_path / entry).mkdir(parents=True)
    with pytest.raises(UserError, match=re.escape(layout.expected)) as error:
        layout.scan(str(tmp_path))
    missing = f"has no {layout.required[0]}" if layout.required else "none of the class folders"
    assert missing in str(error.value)


@pytest.mark.parametrize("name", ["cremad", "afew", "ckplus", "unbc", "biovid"])
def test_empty_dataset_folders_are_a_user_error(name, tmp_path):
    layout = layouts.get(name)
    for entry in layout.required:
        (tmp_path / entry).mkdir(parents=True)
    with pytest.raises(UserError, match="no videos found"):
        layout.scan(str(tmp_path))


def test_read_frames_errors(tmp_path):
    with pytest.raises(layouts.UnreadableVideo, match="no frames"):
        layouts.read_frames(layouts.RawVideo("v", (), 0, "s"))
    with pytest.raises(layouts.UnreadableVideo, match="unreadable") as error:
        layouts.read_frames(layouts.RawVideo("v", (str(tmp_path / "gone.png"),), 0, "s"))
    assert error.value.path == str(tmp_path / "gone.png")
    assert error.value.reason.startswith("unreadable")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(layouts.UnreadableVideo, match="unreadable"):
        layouts.read_frames(layouts.RawVideo("v", (str(tmp_path / "empty.png"),), 0, "s"))


# --------------------------------------------------------------------------- CK+
def test_ckplus_neutral_videos_are_deterministic_from_the_seed(clean):
    root, _ = clean("ckplus")

    def neutral(**options):
        videos, problems = layouts.CkPlus(**options).scan(str(root))
        assert problems == []
        return [v for v in videos if v.name.endswith("/neutral")], videos

    chosen, videos = neutral(neutral_sequences=3, seed=4)
    assert len(chosen) == 3 and chosen == neutral(neutral_sequences=3, seed=4)[0]
    sequences = {v.name: v for v in videos}
    for video in chosen:
        source = sequences[video.name[:-len("/neutral")]]
        assert video.paths == (source.paths[0],) * 20 and EXPRESSIONS[video.label] == "neutral"
        assert (video.subject, video.info) == (source.subject, source.info)
    choices = {tuple(v.name for v in neutral(neutral_sequences=3, seed=s)[0]) for s in range(6)}
    assert len(choices) > 1
    assert neutral(neutral_sequences=0)[0] == []
    assert [len(v.paths) for v in neutral(neutral_sequences=2, neutral_frames=5)[0]] == [5, 5]
    labelled = [v for v in videos if not v.name.endswith("/neutral")]
    assert [v.name for v in neutral(neutral_sequences=1000)[0]] == [
        f"{v.name}/neutral" for v in labelled]
    with pytest.raises(UserError, match="neutral_frames"):
        layouts.CkPlus(neutral_frames=0)


def test_ckplus_landmarks(clean, tmp_path):
    root, _ = clean("ckplus")
    videos, _ = layouts.get("ckplus").scan(str(root))
    sequence = videos[0]
    points = layouts.ckplus_landmarks(sequence)
    assert points.dtype == np.float32 and points.shape == (FRAMES, 68, 2)
    assert (points >= 0).all() and (points <= SIZE).all()
    assert (points[:, 36:48, 1].mean(1) < points[:, 48:68, 1].mean(1)).all()  # eyes above mouth
    neutral = next(v for v in videos if v.name == f"{sequence.name}/neutral")
    np.testing.assert_array_equal(layouts.ckplus_landmarks(neutral),
                                  np.broadcast_to(points[0], (20, 68, 2)))
    frame = Path(sequence.paths[3])
    landmarks = root / "Landmarks" / frame.parent.parent.name / frame.parent.name / \
        f"{frame.stem}_landmarks.txt"
    text = landmarks.read_text()
    landmarks.write_text("1 2\n3 4\n")
    with pytest.raises(UserError, match="malformed CK\\+ landmarks"):
        layouts.ckplus_landmarks(sequence)
    landmarks.unlink()
    assert layouts.ckplus_landmarks(sequence) is None
    landmarks.write_text(text)


# --------------------------------------------------------------------------- HMDB
def test_hmdb_split_codes_and_subjects(clean):
    root, _ = clean("hmdb51")
    videos, _ = layouts.get("hmdb51").scan(str(root))
    for video in videos:
        s = int(re.match(r"Source_(\d+)_", Path(video.name).name)[1])
        assert video.subject == f"Source_{s:02d}"
        assert video.info == tuple((f"split{k}", (s + k) % 3) for k in (1, 2, 3))
    assert {layouts.HMDB51_CLASSES[v.label] for v in videos} == {"brush_hair", "climb_stairs",
                                                                 "wave"}
    eight, problems = layouts.get("hmdb8").scan(str(root))  # other HMDB-51 classes are ignored
    assert problems == [] and len(eight) == SUBJECTS
    assert all(v.label == 7 and v.info == () and v.name.startswith("wave/") for v in eight)


# --------------------------------------------------------------------------- UNBC
def test_unbc_pspi_per_frame_aligned_with_frames(clean):
    root, _ = clean("unbc")
    videos, _ = layouts.get("unbc").scan(str(root))
    for video in videos:
        frames, _ = layouts.read_frames(video)
        assert len(video.frame_labels) == len(frames) == len(video.paths)
        for path, value in zip(video.paths, video.frame_labels):
            path = Path(path)
            label = (root / "Frame_Labels/PSPI" / path.parent.parent.name / path.parent.name
                     / f"{path.stem}_facs.txt")
            assert value == _number(label)
        assert video.info == (("opi", video.label),)
        assert (max(video.frame_labels) > 0) == (video.label > 0)


# --------------------------------------------------------------------------- SAMM
def test_samm_info_from_the_sheet(clean):
    root, _ = clean("samm")
    videos, _ = layouts.get("samm").scan(str(root))
    rows = _samm_rows(root)
    for video in videos:
        row = rows[Path(video.name).name]
        numbers = [int(Path(p).stem.split("_")[1]) for p in video.paths]
        info = dict(video.info)
        assert info == {"onset": int(row["Onset Frame"]), "apex": int(row["Apex Frame"]),
                        "offset": int(row["Offset Frame"])}
        assert (info["onset"], info["offset"]) == (numbers[0], numbers[-1])
        assert info["onset"] < info["apex"] < info["offset"]


def test_samm_xlsx_needs_openpyxl(clean, tmp_path, monkeypatch):
    root, _ = clean("samm")
    (tmp_path / "SAMM").symlink_to(root / "SAMM")
    (tmp_path / f"{layouts.SAMM_SHEET}.xlsx").write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(UserError, match="pip install openpyxl"):
        layouts.get("samm").scan(str(tmp_path))


def test_samm_xlsx_sheet_reads_like_its_csv_export(clean, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    root, expected = clean("samm")
    (tmp_path / "SAMM").symlink_to(root / "SAMM")
    book = openpyxl.Workbook()
    with open(root / f"{layouts.SAMM_SHEET}.csv", newline="") as f:
        for row in csv.reader(f):
            book.active.append([int(c) if c.isdigit() else c for c in row])
    book.save(tmp_path / f"{layouts.SAMM_SHEET}.xlsx")
    videos, problems = layouts.get("samm").scan(str(tmp_path))
    assert problems == [] and [v.name for v in videos] == expected
    assert [(v.label, v.info) for v in videos] == [
        (v.label, v.info) for v in layouts.get("samm").scan(str(root))[0]]


# --------------------------------------------------------------------------- AffectNet
def test_affectnet_excluded_codes_are_counted_per_label_file(clean):
    root, expected = clean("affectnet")
    videos, problems = layouts.get("affectnet").scan(str(root))
    rows = _affectnet_rows(root)
    codes = collections.Counter((partition, int(row[6])) for row, partition in rows.values())
    assert {code for _, code in codes} == set(range(11))  # the fixture has every code
    files = {"train": f"{AFFECTNET_LISTS}/training.csv",
             "test": f"{AFFECTNET_LISTS}/validation.csv"}
    counted = {(p.path, int(re.match(r"expression (\d+) ", p.reason)[1]),
                int(re.search(r": (\d+) rows? excluded", p.reason)[1])) for p in problems}
    assert len(counted) == len(problems)  # one Problem per label file and code, nothing else
    assert counted == {(files[partition], code, count)
                       for (partition, code), count in codes.items() if code >= 7}
    kept = {key for key, (row, _) in rows.items() if int(row[6]) < 7}
    assert {v.name.split("/", 1)[1] for v in videos} == kept
    assert len(videos) == len(expected) == sum(n for (_, c), n in codes.items() if c < 7)
    assert {v.partition for v in videos} == {"train", "test"}


def test_affectnet_face_box_comes_from_the_csv(clean):
    from fer_jax.data import faces

    root, _ = clean("affectnet")
    videos, _ = layouts.get("affectnet").scan(str(root))
    rows = _affectnet_rows(root)
    for video in videos:
        row, _ = rows[video.name.split("/", 1)[1]]
        x, y, width, height = map(float, row[1:5])
        assert video.box == (x, y, x + width, y + height)
        points = np.array(row[5].split(";"), float).reshape(68, 2)
        assert (points >= np.array(video.box[:2]) - 1).all()
        assert (points <= np.array(video.box[2:]) + 1).all()
        assert 0 <= video.box[0] < video.box[2] <= SIZE and 0 <= video.box[1] < video.box[3] <= SIZE
    frames, _ = layouts.read_frames(videos[0])
    track = faces.FaceProcessor(backend="opencv", crop_size=32)(np.zeros_like(frames),
                                                                boxes=videos[0].box)
    np.testing.assert_allclose(track.boxes[0], videos[0].box)  # no detection on a blank image


def test_affectnet_label_files_where_they_lie_missing_or_odd(clean, tmp_path):
    source, expected = clean("affectnet")
    (tmp_path / "Manually_Annotated_Images").symlink_to(source / "Manually_Annotated_Images")
    layout = layouts.get("affectnet")
    training = (source / AFFECTNET_LISTS / "training.csv").read_text()
    validation = (source / AFFECTNET_LISTS / "validation.csv").read_text()
    (tmp_path / "training.csv").write_text(training)  # directly under the root also works
    (tmp_path / "validation.csv").write_text(validation)
    videos, problems = layout.scan(str(tmp_path))
    assert [v.name for v in videos] == expected
    assert {p.path for p in problems} == {"training.csv", "validation.csv"}  # the exclusions

    (tmp_path / "validation.csv").unlink()
    videos, problems = layout.scan(str(tmp_path))
    assert {v.partition for v in videos} == {"train"}
    missing = [p for p in problems if p.path == f"{AFFECTNET_LISTS}/validation.csv"]
    assert len(missing) == 1 and "missing label file" in missing[0].reason
    unlabelled = [p for p in problems if "no label in" in p.reason]
    assert len(unlabelled) == len(validation.splitlines())  # every image of validation.csv

    lines = training.splitlines()
    header, first = lines[0], lines[1]
    (tmp_path / "validation.csv").write_text(first + "\n")  # the same image again
    (tmp_path / "training.csv").write_text("\n".join([header, *lines[1:], first.replace(
        ".jpg", ".png", 1)]) + "\n")
    videos, problems = layout.scan(str(tmp_path))
    again = f"Manually_Annotated_Images/{first.split(',')[0]}"
    assert {v.name: v.partition for v in videos}[again.rsplit(".", 1)[0]] == "train"
    assert any(p.path == again and "listed again in validation.csv row 1 (first in "
               "training.csv row 2)" in p.reason for p in problems)
    assert any(p.path.endswith(".png") and "missing image" in p.reason for p in problems)

    (tmp_path / "training.csv").write_text(header.replace("expression", "emotion") + "\n"
                                           + "\n".join(lines[1:]) + "\n")
    (tmp_path / "validation.csv").write_text(f"{lines[1]}\n1/a.jpg,{'9' * 200_000}\n")
    videos, problems = layout.scan(str(tmp_path))
    assert [v.partition for v in videos] == ["test"]
    reasons = {p.path: p.reason for p in problems if not p.path.startswith("Manually")}
    assert "header lacks the columns expression" in reasons["training.csv"]
    assert reasons["validation.csv"].startswith("unreadable after row 1 (field larger")
