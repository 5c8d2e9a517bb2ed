"""How a protocol draws its splits: the schemes a dataset module's ``Spec`` can use.

A ``Spec`` is one protocol of one dataset: a one-line description, a ``Scheme`` that assigns
every video of the stored dataset to train, validation, test or no split, and optionally new
classes made of stored ones (binary pain tasks). ``protocols.split`` runs a Spec on a dataset's
``protocols.Meta`` table.

Schemes
  ``RandomSplit``        one random train / validation / test draw, of videos or whole subjects.
  ``OfficialSplit``      the distribution's own train / test partition (or split-file codes),
                         validation carved from the train pool.
  ``SubjectKFold``       subject-independent k-fold cross-validation.
  ``LeaveOneSubjectOut`` one fold per subject.

Draws use the ``np.random.Generator`` they are given (``protocols.split`` makes it from the
seed); leave-one-subject-out draws nothing. Proportions are met per stratum (class) by cutting a
random order of groups (videos, subjects or source videos) at the cumulative fractions: a group
goes to the part holding the middle of its videos, so each part is within half a group of its
share in every class.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fer_jax.errors import UserError

if TYPE_CHECKING:
    from fer_jax.data.protocols import Meta

EXCLUDED, TRAIN, VALIDATION, TEST = -1, 0, 1, 2
"""Part codes of a video: no split, train, validation, test."""


# --------------------------------------------------------------------------- drawing
def draw(fractions, groups: np.ndarray, strata: np.ndarray | None,
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


def subject_folds(subjects: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold int64 [n] of each video: the distinct subjects shuffled and dealt round-robin."""
    unique, subject_of = np.unique(subjects, return_inverse=True)
    if len(unique) < k:
        raise UserError(f"{k}-fold cross-validation needs at least {k} subjects, the metadata "
                        f"has {len(unique)}; use a leave-one-subject-out or random protocol")
    fold_of = np.empty(len(unique), np.int64)
    fold_of[rng.permutation(len(unique))] = np.arange(len(unique)) % k
    return fold_of[subject_of]


def carve_validation(codes: np.ndarray, groups: np.ndarray, strata: np.ndarray | None,
                     fraction: float, rng: np.random.Generator) -> None:
    """Move ~``fraction`` of the TRAIN videos of ``codes`` [N] (in place) to VALIDATION."""
    pool = np.flatnonzero(codes == TRAIN)
    codes[pool] = draw((1.0 - fraction, fraction), groups[pool],
                       None if strata is None else strata[pool], rng)


# --------------------------------------------------------------------------- schemes
class Scheme(Protocol):
    def num_folds(self, meta: Meta, keep: np.ndarray) -> int: ...

    def assign(self, meta: Meta, labels: np.ndarray, keep: np.ndarray, fold: int,
               rng: np.random.Generator) -> np.ndarray:
        """Part code int8 [N] per video (EXCLUDED, TRAIN, VALIDATION or TEST); ``labels``
        int32 [N] are the protocol's labels, -1 where ``keep`` [N] is False."""


@dataclasses.dataclass(frozen=True)
class RandomSplit:
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
        codes[kept] = draw(self.fractions, groups, labels[kept], rng)
        return codes


@dataclasses.dataclass(frozen=True)
class OfficialSplit:
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
        carve_validation(codes, groups, labels, self.validation, rng)
        return codes


@dataclasses.dataclass(frozen=True)
class SubjectKFold:
    """Subject-independent k-fold cross-validation; validation = whole subjects holding
    ~``validation`` of the videos outside the test fold."""

    k: int
    validation: float

    def num_folds(self, meta, keep):
        return self.k

    def assign(self, meta, labels, keep, fold, rng):
        codes = np.full(len(labels), EXCLUDED, np.int8)
        kept = np.flatnonzero(keep)
        in_test = subject_folds(meta.subjects[kept], self.k, rng) == fold
        codes[kept] = np.where(in_test, TEST, TRAIN)
        carve_validation(codes, meta.subjects, None, self.validation, rng)
        return codes


@dataclasses.dataclass(frozen=True)
class LeaveOneSubjectOut:
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


# --------------------------------------------------------------------------- protocols
@dataclasses.dataclass(frozen=True)
class Spec:
    """A protocol: ``scheme`` draws the splits; ``classes`` (new name, stored names it merges)
    relabels (stored classes not named are excluded); ``()`` keeps the stored labels."""

    description: str
    scheme: Scheme
    classes: tuple[tuple[str, tuple[str, ...]], ...] = ()
