"""Data randomisation (Adebayo et al., NeurIPS 2018, "Sanity Checks for Saliency Maps"): the
maps of a model of the same architecture trained on permuted labels (``config.train.
shuffle_labels``; its workdir given as ``config.explain.compare_workdir``, newest checkpoint)
against those of the real model, on the same videos and for the same class (the real
model's prediction). A model trained on permuted labels can only memorise, so a method whose
maps are alike for both does not show what the real model learned. Scores as the
randomisation test (``sanity.similarities`` on the occlusion grid): Spearman rank correlation
of absolute values, SSIM of min-max normalised maps, top-10 % cell overlap.

Results ``data_randomisation``: ``spearman``, ``ssim``, ``top_k`` (means over videos; None
where undefined), ``compare_accuracy`` (the other model's accuracy on these videos, near
chance for a model of permuted labels), ``passes`` (``spearman`` below ``PASS_BELOW``) and
``videos``. Optional: runs only when named in ``config.explain.measurements``, and needs
``explain.compare_workdir``.
"""
from __future__ import annotations

import jax.numpy as jnp

from fer_jax.errors import UserError
from fer_jax.evaluation import sanity
from fer_jax.evaluation.measurements import base

REFERENCE = "compare"   # the name of the other model in ``Context.references``
PASS_BELOW = 0.5        # Spearman correlation under which a method passes


class DataRandomisation(base.Measurement):
    name = "data_randomisation"
    optional = True
    description = ("Data randomisation ρ: Spearman correlation between the maps of the model "
                   "and of the same model trained on permuted labels (Adebayo et al.; lower is "
                   f"better, a method passes below {PASS_BELOW}).")

    def check(self, context):
        if REFERENCE not in context.references:
            raise UserError("the data_randomisation measurement needs "
                            "explain.compare_workdir: the workdir of the same model trained "
                            "with --config.train.shuffle_labels=True")

    def prepare(self, model, variables, x, context):
        return base.Prepared(arrays=context.references[REFERENCE])

    def zero(self, context):
        return {"scores": jnp.zeros((2, len(sanity.SCORES))), "correct": jnp.float32(0),
                "videos": jnp.float32(0)}

    def add(self, sums, batch, context):
        other = batch.prepared[self.name]
        scores = sanity.similarities(batch.cells, batch.cells_of(other))
        correct = (jnp.argmax(batch.apply(other), -1) == batch.labels).astype(jnp.float32)
        return {"scores": sums["scores"] + sanity.score_sums(scores, batch.mask),
                "correct": sums["correct"] + base.masked_sum(correct, batch.mask),
                "videos": sums["videos"] + batch.mask.sum()}

    def summarise(self, sums, context):
        means = sanity.score_means(sums["scores"])
        videos = float(sums["videos"])
        return {"data_randomisation": {
            **means, "compare_accuracy": float(sums["correct"] / videos) if videos else None,
            "passes": means["spearman"] is not None and means["spearman"] < PASS_BELOW,
            "videos": int(videos)}}

    def columns(self, result):
        return [base.Column("data randomisation ρ ↓",
                            base.part(result, "data_randomisation", "spearman"), "min",
                            "data ρ")]

    def draw(self, page, results, context):
        methods = {m: v["data_randomisation"] for m, v in results["methods"].items()}
        accuracy = next(iter(methods.values()))["compare_accuracy"]
        page.section(base.SANITY_SECTION).table(
            ["method"] + [sanity.SCORE_NAMES[s] for s in sanity.SCORES] + ["passes"],
            [[m] + [r[s] for s in sanity.SCORES] + ["yes" if r["passes"] else "no"]
             for m, r in methods.items()],
            caption="Data randomisation: maps of the model trained on permuted labels "
                    f"({results.get('compare_workdir', 'explain.compare_workdir')}; its "
                    f"accuracy here "
                    f"{'–' if accuracy is None else f'{accuracy:.3f}'}) against the real "
                    f"model's. A method passes when its Spearman ρ is below {PASS_BELOW}.",
            highlight={1: "min", 2: "min", 3: "min"})


MEASUREMENT = DataRandomisation()
