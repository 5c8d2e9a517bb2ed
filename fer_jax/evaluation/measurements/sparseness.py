"""Sparseness (Gini index, Chalasani et al. 2020) and complexity (entropy of the fractional
contribution, Bhatt et al. 2020) of the maps of the predicted class on the occlusion grid
(``evaluation/complexity.py``): one grid for every method, since both depend on the number of
positions. Maps without mass (all zeros) do not count. No extra pass.

Results ``sparseness`` (higher: more concise) and ``complexity`` (lower: simpler): per-class
means, macro, mean, videos.
"""
from __future__ import annotations

import jax.numpy as jnp

from fer_jax.evaluation import complexity
from fer_jax.evaluation.measurements import base


class Sparseness(base.PerVideoMean):
    name = "sparseness"
    keys = ("sparseness", "complexity")
    description = ("Sparseness / complexity: Gini index / entropy of the absolute map on the "
                   "grid (Chalasani et al. / Bhatt et al.; a concentrated map has a high Gini "
                   "index and a low entropy).")

    def values(self, batch, context):
        cells = batch.cells
        gini, entropy = complexity.sparseness(cells), complexity.complexity(cells)
        return {"sparseness": (gini, jnp.isfinite(gini)),
                "complexity": (entropy, jnp.isfinite(entropy))}

    def columns(self, result):
        return [base.Column("sparseness ↑", base.part(result, "sparseness"), "max", "sparse"),
                base.Column("complexity ↓", base.part(result, "complexity"), "min",
                            "complex.")]


MEASUREMENT = Sparseness()
