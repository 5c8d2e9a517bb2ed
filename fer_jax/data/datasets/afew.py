"""AFEW (Acted Facial Expressions in the Wild, Dhall et al.): layout, protocol and test fixture.

Protocols
``official``
  Ayral's thesis (§3): the official Train partition split 80/20, stratified by emotion, into
  train / validation; the official Val partition is the test set; 9 seeds vary the 80/20 draw.
  Videos of any other partition (e.g. the unlabelled Test) are excluded.
"""
from __future__ import annotations

from pathlib import Path

from fer_jax.data.action_units import EXPRESSIONS
from fer_jax.data.datasets.base import Dataset, Layout, Scan, entries
from fer_jax.data.datasets.fixture_kit import Fixture
from fer_jax.data.datasets.schemes import OfficialSplit, Spec

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

    def _scan(self, scan: Scan) -> None:
        for partition in AFEW_PARTITIONS:
            for folder in scan.folders(scan.root / partition, "emotion"):
                if folder.name not in AFEW_EMOTIONS:
                    scan.problem(folder, f"unknown emotion folder {folder.name!r} (expected one "
                                         f"of {', '.join(AFEW_EMOTIONS)}); its "
                                         f"{len(entries(folder))} entries skipped")
                    continue
                label = self.class_names.index(AFEW_EMOTIONS[folder.name])
                for path in scan.files(folder, ".avi", "AFEW"):
                    scan.add(path.with_suffix(""), [path], label, path.stem, partition=partition)


# --------------------------------------------------------------------------- fixture
def _write(tree, class_name, s, j, sample, label=None) -> Path:
    folder = {v: k for k, v in AFEW_EMOTIONS.items()}[class_name]
    partition = AFEW_PARTITIONS[s % 2]
    return tree.video(f"{partition}/{folder}/{s:03d}{j:06d}.avi", sample["frames"])


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    tree.video("Train/Contempt/000000001.avi", sample["frames"])
    notes = tree.text("Val/Happy/readme.txt", "not a video\n")
    return {"Train/Contempt": "unknown", tree.rel(notes): "unexpected"}


DATASETS = (Dataset(
    Afew(),
    protocols={
        "official": Spec("official Train split 80/20 (stratified) into train/validation, "
                         "official Val = test; the seed varies the draw (Ayral's thesis)",
                         OfficialSplit("partitions", "Train", "Val", 0.20, grouped=False)),
    },
    fixture=Fixture(_write, _bad_labels),
),)
