"""Attribution methods called outside ``jax.jit`` run as one compiled program.

Called eagerly, a method of ``fer_jax.attribution`` would otherwise run operation by operation:
JAX compiles and dispatches each of its several hundred forward and backward operations on
its own (the README's library example: 583 small compilations). ``compile_when_eager(fn)``
returns ``fn`` wrapped so that an eager call compiles the whole method once per model, options
and input shapes, and a call inside a trace (``jax.jit``, ``jax.vmap``, ``jax.grad``, a report's
jitted step) goes straight to ``fn``.

What is traced and what is fixed: ``variables``, ``x``, a non-None ``target`` and every
``jax.Array`` among the options are inputs of the program; the model and every other option
(strings, numbers, tuples, NumPy arrays such as feature groups, whose values can set shapes)
are fixed, so a new value compiles a new program. An option that cannot be fixed (a dict or
another unhashable value, e.g. a rule composite given as a dict) runs the method eagerly, as
does a method that needs concrete values of its inputs; each such fallback is logged once
and counted in ``EAGER_FALLBACKS``.
"""
from __future__ import annotations

import collections
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from absl import logging

# (method name, reason) → number of eager calls that could not be compiled as a whole.
EAGER_FALLBACKS: collections.Counter = collections.Counter()


class _Fixed:
    """A NumPy array as a hashable, fixed option (compared by dtype, shape and bytes)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self._key = (array.dtype.str, array.shape, array.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Fixed) and self._key == other._key


def _is_traced(values) -> bool:
    """Whether any of ``values`` holds a tracer (a value that is no pytree, such as a dict
    keyed by layer types, counts as holding none)."""
    for value in values:
        try:
            leaves = jax.tree.leaves(value)
        except (TypeError, ValueError):
            continue
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return True
    return False


def _split(options: dict) -> tuple[dict, tuple]:
    """``(traced options, fixed options as a sorted hashable tuple)``."""
    traced, fixed = {}, []
    for name, value in options.items():
        if isinstance(value, jax.Array):
            traced[name] = value
        elif isinstance(value, np.ndarray):
            fixed.append((name, _Fixed(value)))
        else:
            fixed.append((name, value))
    return traced, tuple(sorted(fixed, key=lambda item: item[0]))


def compile_when_eager(fn: Callable) -> Callable:
    """``fn(model, variables, x, target=None, **options)`` that compiles as a whole when
    called outside a trace; see the module docstring. ``fn`` keeps its name and docstring."""
    signature = inspect.signature(fn).parameters
    parameters = [name for name, p in signature.items()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_target = "target" in signature

    @functools.partial(jax.jit, static_argnums=(0, 4, 5))
    def program(model, variables, x, traced, fixed, has_target, target):
        options = {**traced, **{name: (value.array if isinstance(value, _Fixed) else value)
                                for name, value in fixed}}
        if takes_target:
            options["target"] = target if has_target else None
        return fn(model, variables, x, **options)

    @functools.wraps(fn)
    def wrapper(model, variables, x, *args, **kwargs):
        options = dict(zip(parameters[3:], args), **kwargs)
        target = options.pop("target", None) if takes_target else None
        if _is_traced((variables, x, target, *options.values())):
            return fn(model, variables, x, *args, **kwargs)
        traced, fixed = _split(options)
        try:
            hash((model, fixed))
        except TypeError:
            return _eager(fn, "an option that cannot be fixed (unhashable)",
                          model, variables, x, args, kwargs)
        try:
            return program(model, variables, x, traced, fixed, target is not None,
                           None if target is None else np.asarray(target))
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                jax.errors.TracerIntegerConversionError):
            return _eager(fn, "it needs concrete values of its inputs",
                          model, variables, x, args, kwargs)

    wrapper.eager = fn
    return wrapper


def _eager(fn: Callable, reason: str, model, variables, x, args, kwargs) -> Any:
    key = (fn.__name__, reason)
    if not EAGER_FALLBACKS[key]:
        logging.info("attribution.%s runs operation by operation: %s", fn.__name__, reason)
    EAGER_FALLBACKS[key] += 1
    return fn(model, variables, x, *args, **kwargs)
