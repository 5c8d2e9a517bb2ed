"""Evaluation protocols: per-video metadata of a stored dataset → train / validation / test.

Each real dataset is stored once (one record per video, in a fixed order). A protocol turns its
``Meta`` table into three disjoint sets of record indices, and, where the task needs it, new
labels (binary pain tasks). Videos that no split uses (e.g. HMDB-51 clips marked 0 in a split
file, UNBC-McMaster sequences with OPI 1-2) are counted in ``Splits.excluded``.

Every split is a deterministic function of ``(meta, protocol, fold, seed)``; the seed drives
the random draws (``np.random.default_rng(seed)``) and is ignored by leave-one-subject-out
protocols, which draw nothing. Fold assignments of k-fold protocols depend on the seed only, so
for one seed the test sets of the k folds partition the subjects.

Protocols (``PROTOCOLS`` lists them with one-line descriptions; the first is the default):

``cremad/random``
  Seed 000 split CREMA-D "randomly into 90% training, 5% testing and 5% validation". Chosen here:
  the 90/5/5 draw is stratified by emotion; videos, not actors, are drawn, so one actor appears
  in several splits (as in seed 000). Nothing is excluded.
``cremad/actors``
  Actor-independent 5-fold cross-validation (SPEC §6 "actor-independent folds"): the 91 actors
  are shuffled and dealt round-robin into 5 folds; test = the actors of fold k; validation =
  whole actors holding ~10 % of the remaining videos; train = the rest.
``afew/official``
  Thesis (seed 001 §3): the official Train partition split 80/20, stratified by emotion, into
  train / validation; the official Val partition is the test set; 9 seeds vary the 80/20 draw.
  Videos of any other partition (e.g. the unlabelled Test) are excluded.
``ckplus/6fold``
  Seed 002: "6-fold cross validation ... where 15% of the CK+ dataset was held out for
  validation each time", folds not specified. Chosen here: subject-independent folds (usual CK+
  practice), subjects dealt round-robin into 6 folds; validation = whole subjects from the other
  5 folds holding ~15 % of all videos (18 % of the remaining ones). Neutral videos
  (``<sequence>/neutral``) carry their sequence's subject, so they follow it.
``samm/loso``
  Leave one subject out: fold k tests on the k-th subject in sorted order; validation = the next
  subject in sorted order (cyclically); train = all others.
``hmdb51/split1`` .. ``split3``
  The official split files: code 1 = train, code 2 = test, code 0 = unused (excluded). Chosen
  here: validation = ~10 % of the train clips, stratified by action and grouped by source video
  (``Meta.subjects``), so no source video straddles train and validation.
``hmdb8/random``
  Seed 004: 1,687 / 382 / 363 clips (69.4 / 15.7 / 14.9 %), "randomly selected to create an even
  distribution", randomised "based on the original video". Chosen here: whole source videos are
  drawn to those clip proportions, stratified by action.
``unbc/loso``
  Thesis (seed 001 §3): No Pain = OPI 0 (92 sequences) vs Pain = OPI >= 3 (57); OPI 1-2 are
  excluded; leave one subject out over the 25 subjects. Chosen here: validation = the next
  subject in sorted order; only subjects with an included sequence make folds. New classes
  ``('no_pain', 'pain')``, read from the stored classes ``'opi0'`` .. ``'opi5'``.
``biovid/bl1_pa4``, ``biovid/bl1_pa34``
  Thesis (seed 001 §3), BioVid Part A: Task 1 = BL1 vs PA4, Task 2 = BL1 vs PA3+PA4, both with
  8-fold subject-independent cross-validation; the other classes are excluded. Chosen here:
  subjects dealt round-robin into 8 folds; validation = whole subjects holding ~1/8 of the
  remaining videos.
``rafdb/official``
  The distributed train / test partitions; validation = 10 % of train, stratified by emotion.
``affectnet/official``
  Seed 003, 7 classes: the images of training.csv (283,901) are the train pool, those of
  validation.csv (3,500, 500 per class) the test set; contempt and the codes that are not
  expressions (none, uncertain, no face) never reach the stored dataset (the layout counts
  them). Chosen here: validation = 10 % of the train pool, stratified by emotion, as RAF-DB.

Proportions are met per stratum (class) by cutting a random order of groups (videos, subjects
or source videos) at the cumulative fractions: a group goes to the part holding the middle of
its videos, so each part is within half a group of its share in every class.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from fer_jax.errors import UserError

EXCLUDED, TRAIN, VALIDATION, TEST = -1, 0, 1, 2
_PARTS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Meta:
    """Per-video metadata of a stored dataset, in record order (N videos).

    names: str [N] unique video keys (paths relative to the dataset root, no extension).
    labels: int32 [N] indices into ``class_names``.
    subjects: str [N] actor / subject / source-video id.
    partitions: str [N] official partition ('Train'/'Val' for AFEW, 'train'/'test' for RAF-DB
      and AffectNet) or ''.
    info: per-dataset integer facts, each int32 [N] (CREMA-D 'level', 'sentence'; HMDB-51
      'split1'..'split3'; UNBC 'opi').
    """

    names: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    partitions: np.ndarray
    info: dict[str, np.ndarray]
    class_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Subset:
    """One split: ``indices`` int64 [n] record indices, sorted ascending; ``labels`` int32 [n]
    under the protocol's class names."""

    indices: np.ndarray
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class Splits:
    """The three disjoint splits of one protocol fold; ``excluded`` = videos no split uses."""

    train: Subset
    validation: Subset
    test: Subset
    class_names: tuple[str, ...]
    protocol: str
    fold: int
    num_folds: int
    excluded: int


# --------------------------------------------------------------------------- drawing
def _draw(fractions, groups: np.ndarray, strata: np.ndarray | None,
          rng: np.random.Generator) -> np.ndarray:
    """Part index int64 [n] in 0..len(fractions)-1 for n videos, whole groups at a time.

    groups: [n] group key of each video (a group never straddles parts). strata: int [n] or
    None; a group's stratum is that of its first video. Within each stratum the groups are put
    in random order and a group goes to the part whose cumulative share of the stratum's videos
    contains the middle of the group.
    """
    fractions = np.asarray(fractions, np.float64) / np.sum(fractions)
    _, first, group_of = np.unique(groups, return_index=True, return_inverse=True)
    sizes = np.bincount(group_of)
    stratum = np.zeros(len(sizes), np.int64) if strata is None else np.asarray(strata)[first]
    order = np.lexsort((rng.random(len(sizes)), stratum))
    sizes, stratum = sizes[order], stratum[order]
    end = np.cumsum(sizes)
    _, stratum_first, stratum_of = np.unique(stratum, return_index=True, return_inverse=True)
    before = (end - sizes)[stratum_first][stratum_of]
    total = np.bincount(stratum_of, weights=sizes)[stratum_of]
    middle = (end - sizes / 2 - before) / total
    part = np.empty(len(sizes), np.int64)
    part[order] = np.searchsorted(np.cumsum(fractions)[:-1], middle, side="right")
    return part[group_of]


def _subject_folds(subjects: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold int64 [n] of each video: the distinct subjects shuffled and dealt round-robin."""
    unique, subject_of = np.unique(subjects, return_inverse=True)
    if len(unique) < k:
        raise UserError(f"{k}-fold cross-validation needs at least {k} subjects, the metadata "
                        f"has {len(unique)}; use a leave-one-subject-out or random protocol")
    fold_of = np.empty(len(unique), np.int64)
    fold_of[rng.permutation(len(unique))] = np.arange(len(unique)) % k
    return fold_of[subject_of]


def _carve_validation(codes: np.ndarray, groups: np.ndarray, strata: np.ndarray | None,
                      fraction: float, rng: np.random.Generator) -> None:
    """Move ~``fraction`` of the TRAIN videos of ``codes`` [N] (in place) to VALIDATION."""
    pool = np.flatnonzero(codes == TRAIN)
    codes[pool] = _draw((1.0 - fraction, fraction), groups[pool],
                        None if strata is None else strata[pool], rng)


# --------------------------------------------------------------------------- schemes
class _Scheme(Protocol):
    def num_folds(self, meta: Meta, keep: np.ndarray) -> int: ...

    def assign(self, meta: Meta, labels: np.ndarray, keep: np.ndarray, fold: int,
               rng: np.random.Generator) -> np.ndarray:
        """Part code int8 [N] per video (EXCLUDED, TRAIN, VALIDATION or TEST); ``labels``
        int32 [N] are the protocol's labels, -1 where ``keep`` [N] is False."""


@dataclasses.dataclass(frozen=True)
class _Random:
    """One random train / validation / test draw in proportion to ``fractions`` (any scale),
    stratified by label, of videos or (``grouped``) of whole subjects."""

    fractions: tuple[float, float, float]
    grouped: bool

    def num_folds(self, meta, keep):
        return 1

    def assign(self, meta, labels, keep, fold, rng):
        codes = np.full(len(labels), EXCLUDED, np.int8)
        kept = np.flatnonzero(keep)
        groups = meta.subjects[kept] if self.grouped else kept
        codes[kept] = _draw(self.fractions, groups, labels[kept], rng)
        return codes


@dataclasses.dataclass(frozen=True)
class _Official:
    """An official partition: ``column`` (``'partitions'`` or a ``Meta.info`` key) equal to
    ``train`` → train pool, to ``test`` → test, anything else excluded. ``validation`` of the
    train pool, stratified by label, of videos or (``grouped``) of whole subjects."""

    column: str
    train: str | int
    test: str | int
    validation: float
    grouped: bool

    def num_folds(self, meta, keep):
        return 1

    def assign(self, meta, labels, keep, fold, rng):
        if self.column == "partitions":
            values = meta.partitions
        elif self.column in meta.info:
            values = meta.info[self.column]
        else:
            raise UserError(f"the metadata lacks info[{self.column!r}] (the official split "
                            f"codes); rebuild the dataset with its split files")
        codes = np.where(values == self.train, TRAIN,
                         np.where(values == self.test, TEST, EXCLUDED)).astype(np.int8)
        codes[~keep] = EXCLUDED
        groups = meta.subjects if self.grouped else np.arange(len(codes))
        _carve_validation(codes, groups, labels, self.validation, rng)
        return codes


@dataclasses.dataclass(frozen=True)
class _SubjectKFold:
    """Subject-independent k-fold cross-validation; validation = whole subjects holding
    ~``validation`` of the videos outside the test fold."""

    k: int
    validation: float

    def num_folds(self, meta, keep):
        return self.k

    def assign(self, meta, labels, keep, fold, rng):
        codes = np.full(len(labels), EXCLUDED, np.int8)
        kept = np.flatnonzero(keep)
        in_test = _subject_folds(meta.subjects[kept], self.k, rng) == fold
        codes[kept] = np.where(in_test, TEST, TRAIN)
        _carve_validation(codes, meta.subjects, None, self.validation, rng)
        return codes


@dataclasses.dataclass(frozen=True)
class _LeaveOneSubjectOut:
    """Fold k: test = the k-th subject in sorted order, validation = the next one (cyclically),
    train = the rest; only subjects with a kept video count. Draws nothing."""

    def num_folds(self, meta, keep):
        return len(np.unique(meta.subjects[keep]))

    def assign(self, meta, labels, keep, fold, rng):
        subjects = np.unique(meta.subjects[keep])
        test, validation = subjects[fold], subjects[(fold + 1) % len(subjects)]
        codes = np.where(meta.subjects == test, TEST,
                         np.where(meta.subjects == validation, VALIDATION, TRAIN))
        return np.where(keep, codes, EXCLUDED).astype(np.int8)


# --------------------------------------------------------------------------- the table
@dataclasses.dataclass(frozen=True)
class _Spec:
    """A protocol: ``scheme`` draws the splits; ``classes`` (new name, stored names it merges)
    relabels (stored classes not named are excluded); ``()`` keeps the stored labels."""

    description: str
    scheme: _Scheme
    classes: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _hmdb_split(k: int) -> _Spec:
    return _Spec(f"official split {k}: train = code 1, test = code 2, code 0 unused; "
                 f"validation = ~10 % of train by whole source video",
                 _Official(f"split{k}", train=1, test=2, validation=0.10, grouped=True))


def _biovid_task(task: int, pain: str, merged: tuple[str, ...]) -> _Spec:
    return _Spec(f"Task {task}, BL1 vs {pain}: subject-independent 8-fold CV, validation = "
                 f"~1/8 of the training subjects (thesis)",
                 _SubjectKFold(8, validation=1 / 8), (("BL1", ("BL1",)), (pain, merged)))


_TABLE: dict[str, dict[str, _Spec]] = {
    "cremad": {
        "random": _Spec("random 90/5/5 % of videos, stratified by emotion; actors shared "
                        "across splits (seed 000)", _Random((90, 5, 5), grouped=False)),
        "actors": _Spec("actor-independent 5-fold CV; validation = whole actors holding ~10 % "
                        "of the other folds' videos", _SubjectKFold(5, validation=0.10)),
    },
    "afew": {
        "official": _Spec("official Train split 80/20 (stratified) into train/validation, "
                          "official Val = test; the seed varies the draw (thesis)",
                          _Official("partitions", "Train", "Val", 0.20, grouped=False)),
    },
    "ckplus": {
        # 15 % of all videos = 18 % of the 5/6 outside the test fold.
        "6fold": _Spec("subject-independent 6-fold CV, whole subjects holding ~15 % of the "
                       "videos held out for validation (seed 002)",
                       _SubjectKFold(6, validation=0.15 * 6 / 5)),
    },
    "samm": {
        "loso": _Spec("leave one subject out; validation = the next subject in sorted order",
                      _LeaveOneSubjectOut()),
    },
    "hmdb51": {f"split{k}": _hmdb_split(k) for k in (1, 2, 3)},
    "hmdb8": {
        "random": _Spec("random 1,687/382/363 clips (69.4/15.7/14.9 %) by whole source video, "
                        "stratified by action (seed 004)",
                        _Random((1687, 382, 363), grouped=True)),
    },
    "unbc": {
        "loso": _Spec("No Pain (OPI 0) vs Pain (OPI >= 3), OPI 1-2 excluded; leave one subject "
                      "out, validation = the next subject (thesis)", _LeaveOneSubjectOut(),
                      (("no_pain", ("opi0",)), ("pain", ("opi3", "opi4", "opi5")))),
    },
    "biovid": {
        "bl1_pa4": _biovid_task(1, "PA4", ("PA4",)),
        "bl1_pa34": _biovid_task(2, "PA3+PA4", ("PA3", "PA4")),
    },
    "rafdb": {
        "official": _Spec("official train/test; validation = 10 % of train, stratified by "
                          "emotion", _Official("partitions", "train", "test", 0.10,
                                               grouped=False)),
    },
    "affectnet": {
        "official": _Spec("training.csv = train, validation.csv = test (7 classes, seed 003); "
                          "validation = 10 % of train, stratified by emotion",
                          _Official("partitions", "train", "test", 0.10, grouped=False)),
    },
}

PROTOCOLS: dict[str, dict[str, str]] = {
    dataset: {name: spec.description for name, spec in specs.items()}
    for dataset, specs in _TABLE.items()}


# --------------------------------------------------------------------------- split
def _check_meta(meta: Meta) -> None:
    """Consistent lengths, unique names, labels inside ``class_names``."""
    n = len(meta.names)
    columns = {"labels": meta.labels, "subjects": meta.subjects, "partitions": meta.partitions,
               **{f"info[{key!r}]": value for key, value in meta.info.items()}}
    for column, value in columns.items():
        if len(value) != n:
            raise UserError(f"metadata {column} has {len(value)} entries for {n} names; "
                            f"rebuild the dataset metadata")
    if len(np.unique(meta.names)) != n:
        raise UserError("metadata names are not unique; rebuild the dataset metadata")
    c = len(meta.class_names)
    if n and (meta.labels.min() < 0 or meta.labels.max() >= c):
        raise UserError(f"metadata labels must lie in 0..{c - 1} ({c} class names), found "
                        f"{meta.labels.min()}..{meta.labels.max()}; rebuild the dataset "
                        f"metadata")


def _relabel(meta: Meta, spec: _Spec) -> tuple[tuple[str, ...], np.ndarray]:
    """The protocol's class names and labels int32 [N] (-1 for stored classes it drops)."""
    if not spec.classes:
        return tuple(meta.class_names), np.asarray(meta.labels, np.int32)
    lookup = np.full(len(meta.class_names), -1, np.int32)
    for new, (_, stored) in enumerate(spec.classes):
        missing = sorted(set(stored) - set(meta.class_names))
        if missing:
            raise UserError(f"the metadata lacks the classes {missing} this protocol uses "
                            f"(it has {', '.join(meta.class_names)}); check the dataset")
        lookup[[meta.class_names.index(name) for name in stored]] = new
    return tuple(name for name, _ in spec.classes), lookup[meta.labels]


def _subsets(codes: np.ndarray, labels: np.ndarray, where: str) -> list[Subset]:
    subsets = []
    for part, name in enumerate(_PARTS):
        indices = np.flatnonzero(codes == part).astype(np.int64)
        if not len(indices):
            raise UserError(f"{where}: the {name} split comes out empty on this metadata "
                            f"({len(codes)} videos); use more videos/subjects or another "
                            f"protocol")
        subsets.append(Subset(indices, labels[indices].astype(np.int32)))
    return subsets


def split(dataset: str, meta: Meta, protocol: str = "", fold: int = 0,
          seed: int = 0) -> Splits:
    """Train / validation / test record indices of ``dataset``'s ``protocol`` (default: the
    first in ``PROTOCOLS[dataset]``) for ``fold``, drawn with ``seed``; see the module
    docstring for what each protocol does. Raises ``UserError`` on an unknown dataset,
    protocol or fold, inconsistent metadata, or a split that comes out empty."""
    if dataset not in _TABLE:
        raise UserError(f"unknown dataset {dataset!r} for protocols; choose one of "
                        f"{', '.join(_TABLE)}")
    specs = _TABLE[dataset]
    name = protocol or next(iter(specs))
    if name not in specs:
        raise UserError(f"unknown protocol {name!r} for {dataset}; choose one of "
                        f"{', '.join(specs)}")
    where = f"{dataset}/{name}"
    spec = specs[name]
    _check_meta(meta)
    class_names, labels = _relabel(meta, spec)
    keep = labels >= 0
    if not keep.any():
        raise UserError(f"{where}: no video has one of the classes "
                        f"{', '.join(class_names)}; check the dataset")
    num_folds = spec.scheme.num_folds(meta, keep)
    if not 0 <= fold < num_folds:
        raise UserError(f"{where}: fold {fold} out of range; choose 0..{num_folds - 1}")
    codes = spec.scheme.assign(meta, labels, keep, fold, np.random.default_rng(seed))
    train, validation, test = _subsets(codes, labels, f"{where} fold {fold}")
    return Splits(train, validation, test, class_names, name, fold, num_folds,
                  excluded=int(np.sum(codes == EXCLUDED)))
