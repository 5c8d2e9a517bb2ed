"""``jit_once``: ``jax.jit`` for programs that run once, such as a model's initialisation.

XLA's CPU backend spends most of an initialisation program's compile time optimising code
that then runs a single time: every parameter's random draw is a loop of its own (threefry),
optimised at length by the LLVM passes of the default level (3). Level 1 compiles the same
program several times faster and the draws run as fast (``benchmarks/init_compile.py``; the
I3D of width 0.25: 57 s → 15 s of CPU on a 2-core EPYC). Only the CPU backend is affected,
and only when ``XLA_FLAGS`` does not choose a level itself.
"""
from __future__ import annotations

import os

import jax

RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 1}


def compiler_options() -> dict | None:
    """The compiler options of a program that runs once on the default backend; None (XLA's
    defaults) off the CPU or when ``XLA_FLAGS`` sets ``--xla_backend_optimization_level``."""
    if jax.default_backend() != "cpu":
        return None
    if "xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", ""):
        return None
    return dict(RUN_ONCE_OPTIONS)


def jit_once(fn, **jit_kwargs):
    """``jax.jit(fn, **jit_kwargs)`` compiled with ``compiler_options()``."""
    return jax.jit(fn, compiler_options=compiler_options(), **jit_kwargs)
