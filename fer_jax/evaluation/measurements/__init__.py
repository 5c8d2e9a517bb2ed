"""Explanation measurements as plug-ins: one module each, chosen by name.

Every module of ``MODULES`` defines ``MEASUREMENT``, an instance of ``base.Measurement``
(the interface: sums on the device, results, ranking columns, report section); this registry
holds them by ``name``. ``config.explain.measurements`` chooses which run (``select``:
'' = the default ones, every registered measurement but the optional ones; else
comma-separated names, where ``default`` stands for those; always in the order below), and
``evaluation.suite``, ``report.json``, the HTML report and the console table go through the
chosen ones without naming any. ``register`` adds one from elsewhere (a test, a script).

==========================  =======================================  =====================
name (module)               results (keys of ``report.json``)        ground truth needed
==========================  =======================================  =====================
occlusion (occlusion_test)  occlusion                                —
deletion                    deletion, insertion                      —
infidelity                  infidelity                               —
sparseness                  sparseness, complexity                   —
energy_share                energy_inside, energy_chance             au_masks, intensity
pointing_game               pointing_game                            au_masks, intensity
au_cosine                   au_cosine                                au_masks, intensity
intensity_correlation       temporal_correlation                     au_masks, intensity
trends                      trends (→ trend_videos, .npz)            —
sensitivity                 sensitivity_max                          —
randomisation               randomisation                            —
input_invariance            input_invariance                         —
data_randomisation          data_randomisation                       —
==========================  =======================================  =====================

Sensitivity-max (which computes every map again ten times) and the last three, the sanity
checks (``evaluation/sanity.py``), are optional: they run only when named.

The order is that of the report: the ranking columns, then the sections (occlusion test,
ground truth, emotion trends, sanity checks); infidelity, sparseness and sensitivity-max add
ranking columns only.
"""
from __future__ import annotations

import importlib

from fer_jax.errors import UserError
from fer_jax.evaluation.measurements.base import (  # noqa: F401
    GROUND_TRUTH_SECTION,
    OCCLUSION_SECTION,
    SANITY_SECTION,
    Batch,
    Column,
    Context,
    Measurement,
    PerVideoMean,
    Prepared,
    SectionSpec,
    Skip,
)

MODULES = ("occlusion_test", "deletion", "infidelity", "sparseness", "energy_share",
           "pointing_game", "au_cosine", "intensity_correlation", "trends", "sensitivity",
           "randomisation", "input_invariance", "data_randomisation")
DEFAULT = "default"  # in config.explain.measurements: the measurements that are not optional

_REGISTRY: dict[str, Measurement] = {}


def register(measurement: Measurement) -> Measurement:
    """Adds ``measurement`` after the registered ones (its name and result keys unique);
    returns it."""
    taken = {key: m.name for m in _REGISTRY.values() for key in m.result_keys}
    clash = [k for k in measurement.result_keys if k in taken]
    if measurement.name in _REGISTRY or clash:
        raise ValueError(f"measurement {measurement.name!r}: name or result keys {clash} "
                         f"already registered ({sorted(_REGISTRY)})")
    _REGISTRY[measurement.name] = measurement
    return measurement


def unregister(name: str) -> None:
    """Removes a measurement added by ``register``."""
    _REGISTRY.pop(name, None)


for _module in MODULES:
    register(importlib.import_module(f"{__name__}.{_module}").MEASUREMENT)


def names() -> list[str]:
    """The registered measurements, in their default order."""
    return list(_REGISTRY)


def get(name: str) -> Measurement:
    """The measurement called ``name``; unknown → ``UserError`` naming the choices."""
    if name not in _REGISTRY:
        raise UserError(f"unknown measurement {name!r} in explain.measurements; choose from "
                        f"{', '.join(_REGISTRY)} (comma-separated; '' or '{DEFAULT}' = all "
                        f"but the optional {', '.join(optional())})")
    return _REGISTRY[name]


def optional() -> list[str]:
    """The measurements that run only when named (``Measurement.optional``)."""
    return [m.name for m in _REGISTRY.values() if m.optional]


def select(text: str = "") -> list[Measurement]:
    """``config.explain.measurements``: '' = the default measurements (every registered one
    that is not ``optional``), else the comma-separated names, ``default`` standing for the
    default ones (``'default,randomisation'``); in the registry's order either way (that of
    the report's columns and sections)."""
    names = [n.strip() for n in str(text or "").split(",") if n.strip()] or [DEFAULT]
    chosen = {m.name for m in _REGISTRY.values() if not m.optional} if DEFAULT in names \
        else set()
    chosen |= {get(n).name for n in names if n != DEFAULT}
    return [m for m in _REGISTRY.values() if m.name in chosen]


def applicable(chosen: list[Measurement], fields) -> list[Measurement]:
    """Those of ``chosen`` whose ground truth is among the batch ``fields``."""
    return [m for m in chosen if set(m.needs) <= set(fields)]


def present(results: dict) -> list[Measurement]:
    """The registered measurements with results in ``results['methods']`` (of
    ``suite.measure`` or ``report.json``), in the order of those results."""
    owner = {key: m for m in _REGISTRY.values() for key in m.result_keys}
    found = []
    for result in results.get("methods", {}).values():
        for key in result:
            if key in owner and owner[key] not in found:
                found.append(owner[key])
    return found


def ranking(results: dict) -> dict[str, list[Column]]:
    """Each method's ranking columns (method label → ``Column`` list), over the measurements
    with results: the HTML report's ranking table and the console table (``short``)."""
    chosen = present(results)
    return {label: [c for m in chosen for c in m.columns(result)]
            for label, result in results.get("methods", {}).items()}
