"""The registry of datasets: one module per dataset, each defining ``DATASETS``.

A dataset module (``cremad.py``, ``afew.py``, ...) holds everything about its dataset: the raw
``Layout`` (``base.Layout``) that scans a manual-download folder, its evaluation protocols
(``schemes.Spec``) and its test-fixture writer (``fixture_kit.Fixture``), bundled as
``base.Dataset`` records in its ``DATASETS`` tuple (one record, or several datasets read from one
tree such as HMDB-51 and HMDB-8). ``MODULES`` lists the modules; their datasets are registered in
that order, which is the order of every listing (``names()``, ``layouts.LAYOUTS``,
``protocols.PROTOCOLS``, the TFDS builders) and of the names in error messages. See
docs/extending.md, "Adding a dataset".
"""
from __future__ import annotations

import importlib

from fer_jax.data.datasets.base import Dataset
from fer_jax.errors import UserError

MODULES: tuple[str, ...] = ("cremad", "afew", "ckplus", "samm", "hmdb", "unbc", "biovid",
                            "rafdb", "affectnet")
"""The dataset modules of this package, in listing order."""

DATASETS: dict[str, Dataset] = {}
"""Every registered dataset by name, in listing order."""


def _register_modules() -> None:
    for module in MODULES:
        for dataset in importlib.import_module(f"{__name__}.{module}").DATASETS:
            if dataset.name in DATASETS:
                raise ValueError(f"dataset {dataset.name!r} is defined twice (module {module})")
            DATASETS[dataset.name] = dataset


_register_modules()


def names() -> tuple[str, ...]:
    """The registered dataset names, in listing order."""
    return tuple(DATASETS)


def get(name: str) -> Dataset:
    """The dataset registered as ``name``."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name]
