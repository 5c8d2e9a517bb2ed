"""Sensitivity-max (Yeh et al. 2019; ``evaluation/fidelity.py``, Captum's definition): the
largest relative change ``‖Φ(x + δ) − Φ(x)‖ / ‖Φ(x)‖`` of the method's map of the predicted
class over ``SAMPLES`` perturbations ``δ`` drawn uniformly from the L∞ ball of radius
``RADIUS`` times the clip's value range (Captum's default radius 0.02 on inputs spanning
[0, 1]); the maps as the method returns them, the class that of the unperturbed clip. The
draws come from the batch's key (an independent stream) and are the same for every method.

Cost: the maps again ``SAMPLES`` times per batch (``jax.lax.map``), so it is optional: it runs
only when named in ``config.explain.measurements``.

Results ``sensitivity_max``: per-class means, macro, mean, videos (lower is better).
"""
from __future__ import annotations

import jax

from fer_jax.evaluation import fidelity
from fer_jax.evaluation.measurements import base

SAMPLES = 10       # perturbations per video (Captum's n_perturb_samples default)
RADIUS = 0.02      # of the L∞ ball, relative to each clip's value range (Captum's default)
KEY_STREAM = 29    # jax.random.fold_in(batch.key, KEY_STREAM): this measurement's draws


class Sensitivity(base.PerVideoMean):
    name = "sensitivity"
    keys = ("sensitivity_max",)
    optional = True
    description = (f"Sensitivity-max: the largest relative change of the map under {SAMPLES} "
                   f"uniform input perturbations of {RADIUS:g} of the clip's range (Yeh et al.; "
                   "lower is better).")

    def values(self, batch, context):
        x = batch.x
        axes = tuple(range(1, x.ndim))
        radius = RADIUS * (x.max(axis=axes) - x.min(axis=axes))
        values = fidelity.sensitivity_max(
            lambda inputs: batch.explain(batch.predicted, None, inputs), x, radius, SAMPLES,
            rng=jax.random.fold_in(batch.key, KEY_STREAM))
        return {"sensitivity_max": (values, batch.mask)}

    def columns(self, result):
        return [base.Column("sensitivity-max ↓", base.part(result, "sensitivity_max"), "min",
                            "sens. max")]


MEASUREMENT = Sensitivity()
