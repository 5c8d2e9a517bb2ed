"""Sparseness and complexity of explanation maps: how concentrated a map's mass is.

* **Sparseness** (Chalasani et al., ICML 2020, "Concise Explanations of Neural Networks using
  Adversarial Training"): the Gini index of the map's absolute values ``a`` sorted in
  ascending order, ``Σ_i (2i − n − 1) a_(i) / (n Σ_i a_i)`` (``i = 1 … n``), as Quantus
  computes it: 0 for a uniform map, ``1 − 1/n`` for a map with a single non-zero value.
  Higher is sparser (more concise).
* **Complexity** (Bhatt et al., IJCAI 2020, "Evaluating and Aggregating Feature-based Model
  Explanations"): the entropy (natural logarithm) of the fractional contribution
  ``p_i = |a_i| / Σ_j |a_j|``, ``−Σ_i p_i ln p_i`` (``0 ln 0 = 0``): 0 for a single non-zero
  value, ``ln n`` for a uniform map. Lower is simpler.

Both are per example over all positions of ``maps [B, …]`` (``[B]`` results) and depend on
the number of positions ``n``, so maps of different methods are compared on one grid (the
report uses the occlusion-grid cells ``[B, T, g, g]``). A map without mass (all zeros) has no
fractional contribution: both are NaN for it (Quantus adds 1e-7 to every value instead, which
makes its sparseness 0 there). Pure ``jax.numpy``, batched and jit-compatible.
"""
from __future__ import annotations

import jax.numpy as jnp


def _mass(maps: jnp.ndarray) -> jnp.ndarray:
    """``|maps|`` flattened per example, float32 ``[B, n]``."""
    return jnp.abs(maps.reshape(len(maps), -1).astype(jnp.float32))


def sparseness(maps: jnp.ndarray) -> jnp.ndarray:
    """Gini index of ``|maps|`` per example ``[B]`` (NaN for a map of zeros)."""
    a = jnp.sort(_mass(maps), axis=-1)
    n = a.shape[-1]
    weights = 2 * jnp.arange(1, n + 1, dtype=jnp.float32) - n - 1
    total = a.sum(-1)
    return jnp.where(total > 0, (weights * a).sum(-1) / (n * jnp.where(total > 0, total, 1)),
                     jnp.nan)


def complexity(maps: jnp.ndarray) -> jnp.ndarray:
    """Entropy of the fractional contribution ``|maps| / Σ|maps|`` per example ``[B]`` (NaN
    for a map of zeros)."""
    a = _mass(maps)
    total = a.sum(-1, keepdims=True)
    p = a / jnp.where(total > 0, total, 1)
    entropy = -jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0).sum(-1)
    return jnp.where(total[:, 0] > 0, entropy, jnp.nan)
