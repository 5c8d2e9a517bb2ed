"""2D → 3D weight inflation (Carreira & Zisserman 2017).

A 2D convolution kernel ``[kh, kw, I, O]`` becomes ``[k_t, kh, kw, I, O]`` by repeating it
``k_t`` times along a new leading time axis and dividing by ``k_t``:
``W3D[t] = W2D / k_t``. On a video whose frames are all the same image, each output frame of
the inflated convolution then equals the 2D convolution of that image (the ``k_t`` taps sum
back to ``W2D``), so the inflated network starts out as the 2D network applied frame by frame.
Biases, dense layers and every other parameter are copied unchanged.

>>> params_3d = inflate_2d_to_3d(params_2d, time_kernel=3)
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def inflate_kernel(kernel: np.ndarray, time_kernel: int) -> np.ndarray:
    """``[kh, kw, I, O] → [time_kernel, kh, kw, I, O]``, each slice ``kernel / time_kernel``."""
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"expected a 2D conv kernel [kh, kw, I, O], got shape {kernel.shape}")
    if time_kernel < 1:
        raise ValueError(f"time_kernel must be at least 1, got {time_kernel}")
    return np.repeat((kernel / np.asarray(time_kernel, kernel.dtype))[None], time_kernel, axis=0)


def inflate_2d_to_3d(params_2d: Mapping, time_kernel: int | Mapping[str, int] = 3) -> dict:
    """Inflates every 2D conv kernel in a Flax parameter tree; copies everything else.

    Args:
      params_2d: nested ``{module: {..., 'kernel': array}}`` tree (the ``'params'``
        collection). Leaves named ``kernel`` with 4 dimensions are 2D convolution kernels
        ``[kh, kw, I, O]``; dense kernels (2 dimensions), biases and BatchNorm parameters are
        copied.
      time_kernel: the temporal size ``k_t`` of every inflated kernel, or a mapping from a
        convolution's '/'-joined module path (e.g. ``'conv1_1'``, ``'mixed_3b/branch_0/conv'``)
        to its own ``k_t``; with a mapping, every conv kernel of the tree must be listed and
        every entry must name one.

    Returns:
      A new tree with the same structure: conv kernels ``[k_t, kh, kw, I, O]``, the other
      leaves as NumPy arrays (not copied when they already are).
    """

    def visit(node: Mapping, path: tuple[str, ...]) -> dict:
        out = {}
        for key, value in node.items():
            if isinstance(value, Mapping):
                out[key] = visit(value, path + (key,))
            elif key == "kernel" and np.ndim(value) == 4:
                out[key] = inflate_kernel(value, kernel_time(path))
            else:
                out[key] = np.asarray(value)
        return out

    seen: set[str] = set()

    def kernel_time(path: tuple[str, ...]) -> int:
        if not isinstance(time_kernel, Mapping):
            return time_kernel
        name = "/".join(path)
        if name not in time_kernel:
            raise KeyError(f"time_kernel mapping has no entry for conv {name!r}")
        seen.add(name)
        return time_kernel[name]

    params_3d = visit(params_2d, ())
    if isinstance(time_kernel, Mapping) and set(time_kernel) - seen:
        raise KeyError(f"time_kernel mapping names no conv of the tree: "
                       f"{sorted(set(time_kernel) - seen)}")
    return params_3d
