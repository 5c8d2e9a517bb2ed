"""AU alignment, CAM-COS / ATT-COS of Belharbi et al. (``localisation.au_cosine``): cosine
between the map of the true class, upsampled to the action-unit heatmap and min-max normalised
to [0, 1] per video (over the whole clip; a constant map scores 0), and the heatmap, over the
whole clip; neutral videos (no action units) are left out. ``settings.cosine='raw'`` takes the
signed map as it is instead (``NORMALISE``).

Results ``au_cosine``: per-class means, their macro mean over the expressive classes, the
mean over all videos and their number (``localisation.class_means``)."""
from __future__ import annotations

from fer_jax.errors import UserError
from fer_jax.evaluation import localisation
from fer_jax.evaluation.measurements import base

# config.explain.cosine → localisation.normalise_maps mode of every method's map.
NORMALISE = {"normalised": "minmax", "raw": "raw"}


class AuCosine(base.PerVideoMean):
    name = "au_cosine"
    needs = ("au_masks", "intensity")
    description = ("CAM-COS: cosine between the map of the true class, normalised to [0, 1], "
                   "and the action-unit heatmap of the expression (macro mean over the "
                   "expressive classes).")

    def check(self, context):
        if context.settings.cosine not in NORMALISE:
            raise UserError(f"explain.cosine must be one of {', '.join(NORMALISE)}, got "
                            f"{context.settings.cosine!r}")

    def values(self, batch, context):
        return {"au_cosine": localisation.au_cosine(
            batch.true_cells, batch.au_masks, normalise=NORMALISE[context.settings.cosine])}

    def columns(self, result):
        return [base.Column("CAM-COS (macro)", base.part(result, "au_cosine", "macro"), "max",
                            "CAM-COS")]

    def draw(self, page, results, context):
        names = context.expressive
        page.section(base.GROUND_TRUTH_SECTION).table(
            ["method"] + names + ["macro"],
            [[m] + [v["au_cosine"]["per_class"][n] for n in names] + [v["au_cosine"]["macro"]]
             for m, v in results["methods"].items()],
            caption=f"CAM-COS per class ({context.settings.cosine} maps)",
            highlight={len(names) + 1: "max"})
        self.score(page, results, "CAM-COS")


MEASUREMENT = AuCosine()
