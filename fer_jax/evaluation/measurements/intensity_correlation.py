"""Intensity correlation (``localisation.temporal_correlation``): Pearson correlation between
the per-frame positive mass of the true class's map and the ground-truth expression intensity
(synthetic benchmark); videos where either is constant are left out.

Results ``temporal_correlation``: per-class means, macro, mean, videos
(``localisation.class_means``)."""
from __future__ import annotations

from fer_jax.evaluation import localisation
from fer_jax.evaluation.measurements import base


class IntensityCorrelation(base.PerVideoMean):
    name = "intensity_correlation"
    keys = ("temporal_correlation",)
    needs = ("au_masks", "intensity")
    description = ("Intensity correlation: Pearson correlation between the per-frame map "
                   "mass and the expression intensity.")

    def values(self, batch, context):
        return {"temporal_correlation": localisation.temporal_correlation(batch.true_cells,
                                                                          batch.intensity)}

    def columns(self, result):
        return [base.Column("intensity correlation", base.part(result, "temporal_correlation"),
                            "max")]

    def draw(self, page, results, context):
        self.score(page, results, "intensity correlation")


MEASUREMENT = IntensityCorrelation()
