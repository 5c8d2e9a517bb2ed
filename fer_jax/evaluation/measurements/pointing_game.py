"""Pointing game (Zhang et al. 2018, no tolerance margin; ``localisation.pointing_game``):
the share of a video's expressive frames (intensity ≥ ``settings.min_intensity``) whose
maximum of the true class's map lies inside the action-unit regions (heatmap ≥
``settings.region_threshold``).

Results ``pointing_game``: per-class means, macro, mean, videos (``localisation.class_means``)."""
from __future__ import annotations

from fer_jax.evaluation import localisation
from fer_jax.evaluation.measurements import base


class PointingGame(base.PerVideoMean):
    name = "pointing_game"
    needs = ("au_masks", "intensity")
    description = ("Pointing game: the share of expressive frames whose map maximum lies in "
                   "the action-unit regions.")

    def values(self, batch, context):
        s = context.settings
        return {"pointing_game": localisation.pointing_game(
            batch.true_cells, batch.au_masks, batch.intensity, s.min_intensity,
            s.region_threshold)}

    def columns(self, result):
        return [base.Column("pointing game", base.part(result, "pointing_game"), "max",
                            "pointing")]

    def draw(self, page, results, context):
        self.score(page, results, "pointing game")


MEASUREMENT = PointingGame()
