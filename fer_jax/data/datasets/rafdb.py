"""RAF-DB (Real-world Affective Faces, basic emotions; Li et al. 2017): layout, protocol and test
fixture.

Protocols
``official``
  The distributed train / test partitions; validation = 10 % of train, stratified by emotion.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fer_jax.data.action_units import EXPRESSIONS
from fer_jax.data.datasets.base import Dataset, Layout, Scan, unknown_code
from fer_jax.data.datasets.fixture_kit import BAD_SUBJECT, Fixture, write_image
from fer_jax.data.datasets.schemes import OfficialSplit, Spec

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

    def _scan(self, scan: Scan) -> None:
        labels, folder = scan.root / RAFDB_LABELS, scan.root / RAFDB_IMAGES
        images = {path.name for path in scan.files(folder, ".jpg", "RAF-DB aligned image")}
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
                scan.problem(image, unknown_code("emotion", tokens[1], "1-7"))
            elif image.name not in images:
                scan.problem(image, f"missing image (listed on line {number}); skipped")
            else:
                scan.add(image.with_suffix(""), [image],
                         self.class_names.index(RAFDB_CODES[tokens[1]]), stem,
                         partition=partition)
        for name in sorted(images - listed):
            scan.problem(folder / name, f"no label in {RAFDB_LABELS}; skipped")


# --------------------------------------------------------------------------- fixture
def _write(tree, class_name, s, j, sample, label=None) -> Path:
    stem = f"{('train', 'test')[s % 2]}_{1000 * s + j + 1:05d}"
    frames = sample["frames"]
    apex = np.flatnonzero(sample["phase"][:len(frames)] == 2)
    path = tree.path(f"{RAFDB_IMAGES}/{stem}_aligned.jpg")
    write_image(path, frames[apex[0] if len(apex) else 0])
    if label != "":
        code = {v: k for k, v in RAFDB_CODES.items()}[class_name]
        tree.append(RAFDB_LABELS, f"{stem}.jpg {code if label is None else label}")
    return path


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    unknown = _write(tree, class_name, BAD_SUBJECT, 50, sample, label="9")
    unlisted = _write(tree, class_name, BAD_SUBJECT, 51, sample, label="")
    tree.append(RAFDB_LABELS, "test_09999.jpg 4")
    tree.append(RAFDB_LABELS, "train_09998.jpg")
    return {tree.rel(unknown): "unknown", tree.rel(unlisted): "no label",
            f"{RAFDB_IMAGES}/test_09999_aligned.jpg": "missing",
            RAFDB_LABELS: "malformed"}


DATASETS = (Dataset(
    RafDb(),
    protocols={
        "official": Spec("official train/test; validation = 10 % of train, stratified by "
                         "emotion", OfficialSplit("partitions", "train", "test", 0.10,
                                                  grouped=False)),
    },
    fixture=Fixture(_write, _bad_labels,
                    media_defects=("truncated", "unreadable", "grayscale", "odd size")),
),)
