"""Emotion trends (Du Toit): class-average maps of the predicted class, each video min-max
normalised, over the correctly classified videos; the per-frame mean of those maps and its
standard deviation over the class's videos.

Results ``trends``: ``maps`` [C, T, g, g], ``frame_mean`` and ``frame_std`` [C, T] (NumPy,
NaN for classes without a correct video: moved to ``report_trends.npz`` by ``export``) and
``videos`` (per class; ``report.json``'s ``trend_videos``)."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from fer_jax.attribution.postprocess import normalise as normalise_maps
from fer_jax.evaluation.measurements import base

ARRAYS = ("maps", "frame_mean", "frame_std")


class Trends(base.Measurement):
    name = "trends"

    def zero(self, context):
        c, t, g = context.num_classes, context.num_frames, context.settings.grid
        return {"maps": jnp.zeros((c, t, g, g)), "frame": jnp.zeros((c, t)),
                "frame_sq": jnp.zeros((c, t)), "videos": jnp.zeros(c)}

    def add(self, sums, batch, context):
        correct = batch.mask & (batch.predicted == batch.labels)
        weights = batch.onehot * correct[:, None]
        shown = normalise_maps(batch.cells)  # min-max per video
        frame_mean = shown.mean(axis=(2, 3))
        return {"maps": sums["maps"] + jnp.einsum("bc,bthw->cthw", weights, shown),
                "frame": sums["frame"] + weights.T @ frame_mean,
                "frame_sq": sums["frame_sq"] + weights.T @ frame_mean**2,
                "videos": sums["videos"] + weights.sum(0)}

    def summarise(self, sums, context):
        counts = sums["videos"]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums["frame"] / counts[:, None]
            std = np.sqrt(np.maximum(sums["frame_sq"] / counts[:, None] - mean**2, 0))
            maps = sums["maps"] / counts[:, None, None, None]
        return {"trends": {"frame_mean": np.where(counts[:, None] > 0, mean, np.nan),
                           "frame_std": np.where(counts[:, None] > 0, std, np.nan),
                           "maps": np.where(counts[:, None, None, None] > 0, maps, np.nan),
                           "videos": counts.astype(int).tolist()}}

    def draw(self, page, results, context):
        from fer_jax.viz import plots
        section = page.section(base.SectionSpec("Emotion trends", "trends", intro=(
            "As in Du Toit: class-average maps (each video min-max normalised) over the "
            "correctly classified videos, and the per-frame mean of those maps with one "
            "standard deviation.")))
        names = list(context.class_names)
        for n, (method, m) in enumerate(results["methods"].items()):
            t = m["trends"]
            details = section.details(method, open=n == 0)
            details.figure(plots.trend_maps(t["maps"], names, title=method),
                           caption="Class-average maps.")
            details.figure(plots.trend_lines(t["frame_mean"], t["frame_std"], names,
                                             title=method),
                           caption="Per-frame mean of the normalised map over the frame's "
                                   "pixels (map mass, not expression intensity): mean ± 1 sd "
                                   "over the class's videos.")

    def export(self, results, method_keys):
        trends = {label: m.pop("trends") for label, m in results["methods"].items()}
        results["trend_videos"] = {label: t["videos"] for label, t in trends.items()}
        return {f"{method_keys[label]}_{name}": t[name]
                for label, t in trends.items() for name in ARRAYS}


MEASUREMENT = Trends()
