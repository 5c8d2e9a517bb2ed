"""AU-region energy share (``localisation.energy_inside``): the share of the positive map of
the true class inside the action-unit regions (heatmap ≥ ``settings.region_threshold``) on
the expressive frames (intensity ≥ ``settings.min_intensity``), and the share a uniform map
would get (the regions' area: chance level).

Results ``energy_inside`` and ``energy_chance``: per-class means, macro, mean, videos
(``localisation.class_means``)."""
from __future__ import annotations

from fer_jax.evaluation import localisation
from fer_jax.evaluation.measurements import base


class EnergyShare(base.PerVideoMean):
    name = "energy_share"
    keys = ("energy_inside", "energy_chance")
    needs = ("au_masks", "intensity")
    description = ("AU energy share: the share of the positive map of the true class inside "
                   "the action-unit regions of the expression; the uniform-map column is the "
                   "share of a map without information.")

    def values(self, batch, context):
        s = context.settings
        share, chance, valid = localisation.energy_inside(
            batch.true_cells, batch.au_masks, batch.intensity, s.min_intensity,
            s.region_threshold)
        return {"energy_inside": (share, valid), "energy_chance": (chance, valid)}

    def columns(self, result):
        return [base.Column("AU energy share", base.part(result, "energy_inside"), "max",
                            "AU energy"),
                base.Column("(uniform map)", base.part(result, "energy_chance"))]

    def draw(self, page, results, context):
        self.score(page, results, "AU energy share", "energy_inside")


MEASUREMENT = EnergyShare()
