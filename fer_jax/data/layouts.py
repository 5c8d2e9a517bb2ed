"""Datasets as distributed: each ``Layout`` turns a manual-download folder into a list of videos.

The raw-layout API used by preprocessing and the TFDS builders: ``get(name)`` / ``LAYOUTS`` (the
layouts of the registered datasets), ``Layout`` and ``Problem`` (``datasets.base``),
``RawVideo``, ``read_frames`` and ``UnreadableVideo`` (``decoding``). Each dataset's layout,
with its constants and documented decisions, lives in its module of ``fer_jax.data.datasets``
(``cremad``, ``afew``, ``ckplus``, ``samm``, ``hmdb``, ``unbc``, ``biovid``, ``rafdb``,
``affectnet``); the conventions all layouts share are in ``datasets.base``. The per-dataset
names are re-exported here (``layouts.CremaD``, ``layouts.CREMAD_SENTENCES``,
``layouts.ckplus_landmarks``, ...) so that code written against this module keeps working.
"""
from __future__ import annotations

from fer_jax.data.datasets import DATASETS
from fer_jax.data.datasets.afew import AFEW_EMOTIONS, AFEW_PARTITIONS, Afew
from fer_jax.data.datasets.affectnet import (
    AFFECTNET_CODES,
    AFFECTNET_COLUMNS,
    AFFECTNET_CSVS,
    AFFECTNET_EXCLUDED,
    AFFECTNET_IMAGES,
    AFFECTNET_LISTS,
    AFFECTNET_SUFFIXES,
    AffectNet,
)
from fer_jax.data.datasets.base import Layout, Problem
from fer_jax.data.datasets.biovid import BioVid
from fer_jax.data.datasets.ckplus import CKPLUS_CODES, CkPlus, ckplus_landmarks
from fer_jax.data.datasets.cremad import (
    CREMAD_ACTORS,
    CREMAD_EMOTIONS,
    CREMAD_LEVELS,
    CREMAD_SENTENCES,
    CremaD,
)
from fer_jax.data.datasets.hmdb import (
    HMDB8_CLASSES,
    HMDB51_CLASSES,
    HMDB_SPLIT_CODES,
    HMDB_SPLITS,
    Hmdb,
)
from fer_jax.data.datasets.rafdb import RAFDB_CODES, RAFDB_IMAGES, RAFDB_LABELS, RafDb
from fer_jax.data.datasets.samm import SAMM_ALIASES, SAMM_COLUMNS, SAMM_SHEET, Samm
from fer_jax.data.datasets.unbc import UNBC_LABELS, Unbc
from fer_jax.data.decoding import (
    VIDEO_EXTENSIONS,
    RawVideo,
    UnreadableVideo,
    read_frames,
)
from fer_jax.errors import UserError

__all__ = [
    "AFEW_EMOTIONS", "AFEW_PARTITIONS", "AFFECTNET_CODES", "AFFECTNET_COLUMNS", "AFFECTNET_CSVS",
    "AFFECTNET_EXCLUDED", "AFFECTNET_IMAGES", "AFFECTNET_LISTS", "AFFECTNET_SUFFIXES",
    "CKPLUS_CODES", "CREMAD_ACTORS", "CREMAD_EMOTIONS", "CREMAD_LEVELS", "CREMAD_SENTENCES",
    "HMDB8_CLASSES", "HMDB51_CLASSES", "HMDB_SPLITS", "HMDB_SPLIT_CODES", "LAYOUTS",
    "RAFDB_CODES", "RAFDB_IMAGES", "RAFDB_LABELS", "SAMM_ALIASES", "SAMM_COLUMNS", "SAMM_SHEET",
    "UNBC_LABELS", "VIDEO_EXTENSIONS", "Afew", "AffectNet", "BioVid", "CkPlus", "CremaD", "Hmdb",
    "Layout", "Problem", "RafDb", "RawVideo", "Samm", "Unbc", "UnreadableVideo",
    "ckplus_landmarks", "get", "read_frames",
]

LAYOUTS: dict[str, Layout] = {name: dataset.layout for name, dataset in DATASETS.items()}
"""Registry of the dataset layouts by name (CK+ with its default neutral options)."""


def get(name: str) -> Layout:
    """The layout registered as ``name``."""
    if name not in LAYOUTS:
        raise UserError(f"unknown dataset layout {name!r}; available: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]
