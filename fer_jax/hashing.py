"""Stateless integer hashing: splitmix64 (Steele, Lea & Flood 2014; Vigna's reference code).

``splitmix64(x)`` is the output of a splitmix64 generator whose state is ``x``: the state is
advanced by the golden-ratio increment 0x9E3779B97F4A7C15 and then mixed, all modulo 2**64, so
``splitmix64(0) == 0xE220A8397B1DCDAF`` (the reference generator's first output from state 0).
Chaining ``h = splitmix64(h ^ key)`` over keys gives a hash that is the same in every process and
on every platform, which is what the synthetic benchmark and the clip samplers build their
"random" draws on.
"""
from __future__ import annotations

import numpy as np

GAMMA = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK = (1 << 64) - 1


def splitmix64(x):
    """splitmix64 of ``x``: a non-negative Python int (returns an int < 2**64) or a uint64 NumPy
    array or scalar (returns the same type; wraps modulo 2**64 without overflow warnings). The
    values are the same for both kinds of input."""
    if isinstance(x, (np.ndarray, np.generic)):
        if x.dtype != np.uint64:
            raise TypeError(f"splitmix64 needs uint64 arrays, got {x.dtype}")
        with np.errstate(over="ignore"):
            x = x + np.uint64(GAMMA)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX1)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX2)
            return x ^ (x >> np.uint64(31))
    x = (x + GAMMA) & _MASK
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK
    return x ^ (x >> 31)
