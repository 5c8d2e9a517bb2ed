"""Evaluation protocols: per-video metadata of a stored dataset → train / validation / test.

Each real dataset is stored once (one record per video, in a fixed order). A protocol turns its
``Meta`` table into three disjoint sets of record indices, and, where the task needs it, new
labels (binary pain tasks). Videos that no split uses (e.g. HMDB-51 clips marked 0 in a split
file, UNBC-McMaster sequences with OPI 1-2) are counted in ``Splits.excluded``.

Every split is a deterministic function of ``(meta, protocol, fold, seed)``; the seed drives
the random draws (``np.random.default_rng(seed)``) and is ignored by leave-one-subject-out
protocols, which draw nothing. Fold assignments of k-fold protocols depend on the seed only, so
for one seed the test sets of the k folds partition the subjects.

``PROTOCOLS`` lists the protocols of every registered dataset with one-line descriptions (the
first of a dataset is its default). Each is defined, with its reading of the paper it follows
and what is chosen where the paper is silent, in the dataset's module of
``fer_jax.data.datasets`` (e.g. ``cremad/random``, Du Toit's 90/5/5 split, in
``datasets/cremad.py``); the schemes they use, and how proportions are met per class, are in
``datasets/schemes.py``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from fer_jax.data.datasets import DATASETS
from fer_jax.data.datasets.schemes import EXCLUDED, TEST, TRAIN, VALIDATION, Spec
from fer_jax.errors import UserError

__all__ = ["EXCLUDED", "PROTOCOLS", "TEST", "TRAIN", "VALIDATION", "Meta", "Splits", "Subset",
           "split"]

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


# --------------------------------------------------------------------------- the table
_TABLE: dict[str, dict[str, Spec]] = {
    name: dataset.protocols for name, dataset in DATASETS.items() if dataset.protocols}

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


def _relabel(meta: Meta, spec: Spec) -> tuple[tuple[str, ...], np.ndarray]:
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
