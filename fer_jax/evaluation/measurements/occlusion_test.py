"""Du Toit's occlusion test (``evaluation/occlusion.py``): accuracy with the most / least
important cells of every frame and the most / least important frames occluded, on the
grid ``settings.fractions`` × ``settings.frame_counts``; maps of the predicted class.

Results ``occlusion``: ``most``, ``least`` (accuracy [P][F]), ``difference`` (least − most)
and ``mean_difference`` (over the grid without its (0 %, 0 frames) corner)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.evaluation import occlusion
from fer_jax.evaluation.measurements import base


class OcclusionTest(base.Measurement):
    name = "occlusion"
    description = ("Occlusion difference: accuracy with the least important cells occluded "
                   "minus accuracy with the most important ones occluded, averaged over Du "
                   "Toit's grid (higher is better).")

    @staticmethod
    def _shape(context):
        s = context.settings
        return 2, len(s.fractions), len(s.frame_counts)

    @staticmethod
    def _conditions(context):
        s = context.settings
        return occlusion.grid_conditions(s.fractions, s.frame_counts, s.grid**2,
                                         context.num_frames)

    def check(self, context):
        self._conditions(context)

    def zero(self, context):
        return {"hits": jnp.zeros(np.prod(self._shape(context))), "videos": jnp.float32(0)}

    def add(self, sums, batch, context):
        s = context.settings
        conditions = jnp.asarray(self._conditions(context))
        cells = batch.cells
        b, t, g, _ = cells.shape
        keys = jax.random.split(batch.key, 3)  # [2] is deletion's (deletion.py)
        cell_rank = occlusion.ranks(cells.reshape(b, t, g * g), keys[0])
        frame_rank = occlusion.ranks(cells.sum(axis=(2, 3)), keys[1])

        def occluded_hits(condition):
            keep = occlusion.occlusion_keep(cell_rank, frame_rank, condition[0], condition[1],
                                            condition[2] == 1)
            logits = batch.logits(occlusion.occlude(batch.video, keep.reshape(b, t, g, g),
                                                    s.fill))
            hits = (jnp.argmax(logits, -1) == batch.labels).astype(jnp.float32)
            return base.masked_sum(hits, batch.mask)

        return {"hits": sums["hits"] + jax.lax.map(occluded_hits, conditions),
                "videos": sums["videos"] + batch.mask.sum()}

    def summarise(self, sums, context):
        accuracy = sums["hits"].reshape(self._shape(context)) / max(float(sums["videos"]), 1)
        difference = accuracy[1] - accuracy[0]
        return {"occlusion": {
            "most": accuracy[0].tolist(), "least": accuracy[1].tolist(),
            "difference": difference.tolist(),
            # (0 %, 0 frames) is the clean accuracy in both rows: left out
            "mean_difference": float((difference.sum() - difference[0, 0])
                                     / max(difference.size - 1, 1))}}

    def columns(self, result):
        o = result.get("occlusion") or {}
        return [base.Column("occlusion difference (mean)", o.get("mean_difference"), "max",
                            "occl. diff"),
                base.Column("difference at 50 %, 0 frames",
                            o["difference"][-1][0] if o else None, "max")]

    def draw(self, page, results, context):
        from fer_jax.viz import plots
        s, methods = context.settings, results["methods"]
        accuracy = {m: np.stack([v["occlusion"]["most"], v["occlusion"]["least"]])
                    for m, v in methods.items()}
        section = page.section(base.OCCLUSION_SECTION)
        section.figure(plots.occlusion_curves(accuracy, s.fractions, s.frame_counts),
                       caption="Accuracy under occlusion.")
        section.figure(plots.difference_curves(accuracy, s.fractions, s.frame_counts),
                       caption="Difference: least-occluded minus most-occluded accuracy.")
        section.table(["method"] + [f"{p:.0%}" for p in s.fractions],
                      [[m] + [row[0] for row in v["occlusion"]["difference"]]
                       for m, v in methods.items()],
                      caption="Difference with no frame occluded, by share of cells occluded.")


MEASUREMENT = OcclusionTest()
