"""Infidelity (Yeh et al. 2019; ``evaluation/fidelity.py``, Captum's definition with
``normalize=True``) of the maps of the predicted class on the occlusion grid: does the map
predict how the class's logit changes when the clip is perturbed?

``SAMPLES`` perturbations per video (Captum's default number), each Gaussian noise of standard
deviation ``NOISE`` (normalised input units) drawn per cell of the grid and frame, the same on
every pixel of the cell and every channel, and subtracted from the clip; the map is the
cell map (cell means) upsampled to the pixels, so ``Σ map · I`` is the cell area times
``Σ cells · I_cells``. Normalised: the map is scaled by the factor that fits it best, so maps
of any scale compare (CAMs, relevance, gradients). The draws come from the batch's key (an
independent stream of it) and are the same for every method. Cost: ``SAMPLES`` forward passes
per batch, one at a time (``jax.lax.map``).

Results ``infidelity``: per-class means, macro, mean, videos (lower is better).
"""
from __future__ import annotations

import jax

from fer_jax.evaluation import fidelity, occlusion
from fer_jax.evaluation.measurements import base

SAMPLES = 10       # perturbations per video (Captum's n_perturb_samples default)
NOISE = 0.2        # standard deviation of the noise per cell, normalised input units
KEY_STREAM = 23    # jax.random.fold_in(batch.key, KEY_STREAM): this measurement's draws


class Infidelity(base.PerVideoMean):
    name = "infidelity"
    description = ("Infidelity: mean squared error of the map (scaled to fit best) predicting "
                   f"the logit change under {SAMPLES} Gaussian perturbations of the grid's "
                   "cells (Yeh et al.; lower is better).")

    def values(self, batch, context):
        cells = batch.cells  # [B, T, g, g]
        b, t, g, _ = cells.shape
        height, width = batch.x.shape[2:4]
        noise = NOISE * jax.random.normal(jax.random.fold_in(batch.key, KEY_STREAM),
                                          (SAMPLES, b, t, g, g))
        pixels = jax.vmap(lambda n: occlusion.to_pixels(n, height, width))(noise)
        maps = occlusion.to_pixels(cells, height, width)
        values = fidelity.infidelity_of(lambda x: batch.apply(None, x), batch.x, maps,
                                        batch.predicted, pixels, normalize=True)
        return {"infidelity": (values, batch.mask)}

    def columns(self, result):
        return [base.Column("infidelity ↓", base.part(result, "infidelity"), "min", "infid.")]


MEASUREMENT = Infidelity()
