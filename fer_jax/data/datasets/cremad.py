"""CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset, Cao et al. 2014): layout,
protocols and test fixture.

Protocols (the first is the default)
``random``
  Du Toit split CREMA-D "randomly into 90% training, 5% testing and 5% validation". Chosen here:
  the 90/5/5 draw is stratified by emotion; videos, not actors, are drawn, so one actor appears
  in several splits (as in Du Toit's protocol). Nothing is excluded.
``actors``
  Actor-independent 5-fold cross-validation, the alternative to Du Toit's split in which no
  actor appears in two splits: the 91 actors are shuffled and dealt round-robin into 5 folds;
  test = the actors of fold k; validation = whole actors holding ~10 % of the remaining videos;
  train = the rest.
"""
from __future__ import annotations

import re
from pathlib import Path

from fer_jax.data.action_units import EXPRESSIONS
from fer_jax.data.datasets.base import Dataset, Layout, Scan, unknown_code
from fer_jax.data.datasets.fixture_kit import BAD_SUBJECT, Fixture
from fer_jax.data.datasets.schemes import RandomSplit, Spec, SubjectKFold

CREMAD_ACTORS = tuple(str(a) for a in range(1001, 1092))
CREMAD_SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI",
                    "WSI")
CREMAD_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happiness",
                   "NEU": "neutral", "SAD": "sadness"}
CREMAD_LEVELS = ("LO", "MD", "HI", "XX")


class CremaD(Layout):
    """CREMA-D: ``VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv``.

    Labels from the emotion code; subject = actor ('1001'..'1091'); info: level (index in LO,
    MD, HI, XX), sentence (index in ``CREMAD_SENTENCES``). A name that does not split into four
    fields, or a field outside its code list (actors 1001-1091 included), is a Problem.
    """

    name = "cremad"
    title = "CREMA-D"
    class_names = EXPRESSIONS[:6]
    info_keys = ("level", "sentence")
    required = ("VideoFlash",)
    expected = ("VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv, "
                "e.g. VideoFlash/1001_DFA_ANG_XX.flv")
    instructions = (
        "CREMA-D (Crowd-sourced Emotional Multimodal Actors Dataset, Cao et al. 2014) is on "
        "GitHub: CheyneyComputerScience/CREMA-D (clone it with git-lfs, or download its "
        "VideoFlash folder). Put the 7,442 clips under the manual directory as "
        "<manual_dir>/VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv, e.g. "
        "<manual_dir>/VideoFlash/1001_DFA_ANG_XX.flv.")
    _NAME = re.compile(r"(\d+)_([A-Z]+)_([A-Z]+)_([A-Z]+)")

    def _scan(self, scan: Scan) -> None:
        for path in scan.files(scan.root / "VideoFlash", ".flv", "CREMA-D"):
            match = self._NAME.fullmatch(path.stem)
            if match is None:
                scan.problem(path, "malformed name (expected <actor>_<sentence>_<emotion>_"
                                   "<level>.flv, e.g. 1001_DFA_ANG_XX.flv); skipped")
                continue
            actor, sentence, emotion, level = match.groups()
            fields = (("actor", actor, CREMAD_ACTORS, "1001-1091"),
                      ("sentence", sentence, CREMAD_SENTENCES, ", ".join(CREMAD_SENTENCES)),
                      ("emotion", emotion, tuple(CREMAD_EMOTIONS), ", ".join(CREMAD_EMOTIONS)),
                      ("level", level, CREMAD_LEVELS, ", ".join(CREMAD_LEVELS)))
            bad = [(kind, code, text) for kind, code, allowed, text in fields
                   if code not in allowed]
            if bad:
                scan.problem(path, unknown_code(*bad[0]))
                continue
            scan.add(path.with_suffix(""), [path],
                     self.class_names.index(CREMAD_EMOTIONS[emotion]), actor,
                     info=(("level", CREMAD_LEVELS.index(level)),
                           ("sentence", CREMAD_SENTENCES.index(sentence))))


# --------------------------------------------------------------------------- fixture
def _write(tree, class_name, s, j, sample, label=None) -> Path:
    code = {v: k for k, v in CREMAD_EMOTIONS.items()}[class_name]
    sentence = CREMAD_SENTENCES[j % len(CREMAD_SENTENCES)]
    level = CREMAD_LEVELS[(s + j) % len(CREMAD_LEVELS)]
    return tree.video(f"VideoFlash/{1001 + s}_{sentence}_{code}_{level}.flv", sample["frames"])


def _bad_labels(tree, class_name, sample) -> dict[str, str]:
    out = {}
    for stem, keyword in ((f"{1001 + BAD_SUBJECT}_IEO_CON_HI", "unknown"),
                          (f"{1001 + BAD_SUBJECT}-IEO-ANG", "malformed")):
        out[tree.rel(tree.video(f"VideoFlash/{stem}.flv", sample["frames"]))] = keyword
    return out


DATASETS = (Dataset(
    CremaD(),
    protocols={
        "random": Spec("random 90/5/5 % of videos, stratified by emotion; actors shared "
                       "across splits (Du Toit)", RandomSplit((90, 5, 5), grouped=False)),
        "actors": Spec("actor-independent 5-fold CV; validation = whole actors holding ~10 % "
                       "of the other folds' videos", SubjectKFold(5, validation=0.10)),
    },
    # per_class is at most the number of distinct sentences per emotion
    fixture=Fixture(_write, _bad_labels, max_per_class=len(CREMAD_SENTENCES)),
),)
