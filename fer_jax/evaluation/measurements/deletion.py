"""Deletion and insertion (Petsiuk et al. 2018, ``evaluation/occlusion.py``): the mean
probability of the predicted class as the most important cells of the whole clip are
occluded (deletion) or revealed from a fully occluded clip (insertion), in
``settings.deletion_steps`` steps; maps of the predicted class.

Results ``deletion`` and ``insertion``: ``curve`` (steps + 1 points) and ``auc`` (trapezoid
over [0, 1]; lower deletion and higher insertion are better)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.evaluation import occlusion
from fer_jax.evaluation.measurements import base


class Deletion(base.Measurement):
    name = "deletion"
    keys = ("deletion", "insertion")
    description = ("Deletion / insertion: area under the probability of the explained class "
                   "as the most important cells are removed / revealed.")

    @staticmethod
    def _conditions(context):
        return occlusion.deletion_conditions(context.settings.deletion_steps,
                                             context.num_frames * context.settings.grid**2)

    def check(self, context):
        self._conditions(context)

    def zero(self, context):
        return {"probability": jnp.zeros(2 * (context.settings.deletion_steps + 1)),
                "videos": jnp.float32(0)}

    def add(self, sums, batch, context):
        s = context.settings
        conditions = jnp.asarray(self._conditions(context))
        cells = batch.cells
        b, t, g, _ = cells.shape
        # the third of the batch key's split ([0] and [1] are occlusion_test.py's)
        clip_rank = occlusion.ranks(cells.reshape(b, t * g * g),
                                    jax.random.split(batch.key, 3)[2])

        def occluded_probability(condition):
            keep = occlusion.deletion_keep(clip_rank, condition[0], condition[1] == 1)
            logits = batch.logits(occlusion.occlude(batch.video, keep.reshape(b, t, g, g),
                                                    s.fill))
            p = jnp.take_along_axis(jax.nn.softmax(logits), batch.predicted[:, None],
                                    axis=1)[:, 0]
            return base.masked_sum(p, batch.mask)

        return {"probability": sums["probability"]
                + jax.lax.map(occluded_probability, conditions),
                "videos": sums["videos"] + batch.mask.sum()}

    def summarise(self, sums, context):
        curves = sums["probability"].reshape(2, -1) / max(float(sums["videos"]), 1)
        steps = np.linspace(0, 1, context.settings.deletion_steps + 1)
        return {name: {"curve": curve.tolist(), "auc": float(np.trapezoid(curve, steps))}
                for name, curve in zip(self.keys, curves)}

    def columns(self, result):
        return [base.Column("deletion AUC ↓", base.part(result, "deletion", "auc"), "min",
                            "deletion"),
                base.Column("insertion AUC ↑", base.part(result, "insertion", "auc"), "max",
                            "insertion")]

    def draw(self, page, results, context):
        from fer_jax.viz import plots
        steps = np.linspace(0, 1, context.settings.deletion_steps + 1)
        page.section(base.OCCLUSION_SECTION).figure(plots.deletion_insertion(
            {m: {"deletion": np.asarray(v["deletion"]["curve"]),
                 "insertion": np.asarray(v["insertion"]["curve"])}
             for m, v in results["methods"].items()}, steps),
            caption="Deletion and insertion curves (mean probability of the explained class).")


MEASUREMENT = Deletion()
