"""Cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018, "Sanity Checks for
Saliency Maps"): the model's stages (``sanity.stages``: the top-level entries of its
parameters, e.g. a TimeSformer's classifier, final norm, blocks, embeddings) are re-initialised
from the top down, one more at each depth, with the model's own initialisers
(``model.init`` with ``config.seed``; a stage's batch statistics are reset with its
parameters), and each randomised model's maps of the trained model's predicted class are
compared with the trained model's maps of the same videos (``sanity.similarities`` on the
occlusion grid: Spearman rank correlation of absolute values, SSIM of min-max normalised maps,
top-10 % cell overlap). A method whose maps still resemble the trained model's once the
parameters they should depend on are random explains the input, not the model.

All depths of a batch run inside the jitted step: ``jax.lax.map`` over the rows of
``sanity.cascade`` (one selection of stages per depth; the randomised parameters are picked
leaf by leaf with ``jnp.where`` from the trained and the initial variables, so only those two
copies are held).

Results ``randomisation``: ``stages`` (top first: depth d randomises the first d),
``spearman``, ``ssim``, ``top_k`` (the mean over videos at each depth, [D]; None where no
video's score is defined, e.g. constant maps), ``final_spearman`` (at full randomisation),
``passes`` (``final_spearman`` below ``PASS_BELOW``) and ``videos``. Optional: runs only when
named in ``config.explain.measurements``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from fer_jax.evaluation import sanity
from fer_jax.evaluation.measurements import base

PASS_BELOW = 0.5  # Spearman correlation at full randomisation under which a method passes


class Randomisation(base.Measurement):
    name = "randomisation"
    optional = True
    description = ("Randomisation ρ: Spearman correlation between the maps of the trained "
                   f"model and of the fully re-initialised one (Adebayo et al.; lower is "
                   f"better, a method passes below {PASS_BELOW}).")

    def prepare(self, model, variables, x, context):
        if not jax.tree.leaves(variables.get("params", {})):
            raise base.Skip("the model has no parameters to randomise")
        order = sanity.stages(model, x, train=False)
        random = sanity.initial_variables(model, x, seed=context.seed,
                                          collections=list(variables), train=False)
        return base.Prepared(arrays=random, setup={"stages": order[::-1],
                                                   "seed": context.seed})

    def zero(self, context):
        depths = len(context.setup[self.name]["stages"])
        return {"scores": jnp.zeros((depths, 2, len(sanity.SCORES))),
                "videos": jnp.float32(0)}

    def add(self, sums, batch, context):
        order = context.setup[self.name]["stages"][::-1]  # first to run first
        random = batch.prepared[self.name]
        reference = batch.cells

        def at_depth(row):  # row: bool [S], the stages randomised at this depth
            chosen = {stage: row[i] for i, stage in enumerate(order)}
            cells = batch.cells_of(sanity.randomise(batch.variables, random, chosen))
            return sanity.score_sums(sanity.similarities(reference, cells), batch.mask)

        rows = jnp.asarray(sanity.cascade(order).T)  # [D, S]
        return {"scores": sums["scores"] + jax.lax.map(at_depth, rows),
                "videos": sums["videos"] + batch.mask.sum()}

    def summarise(self, sums, context):
        means = [sanity.score_means(depth) for depth in sums["scores"]]
        curves = {score: [m[score] for m in means] for score in sanity.SCORES}
        final = curves["spearman"][-1] if means else None
        return {"randomisation": {
            "stages": list(context.setup[self.name]["stages"]), **curves,
            "final_spearman": final, "passes": final is not None and final < PASS_BELOW,
            "videos": int(sums["videos"])}}

    def columns(self, result):
        return [base.Column("randomisation ρ ↓",
                            base.part(result, "randomisation", "final_spearman"), "min",
                            "rand. ρ")]

    def draw(self, page, results, context):
        from fer_jax.viz import plots
        methods = {m: v["randomisation"] for m, v in results["methods"].items()}
        stages = next(iter(methods.values()))["stages"]
        section = page.section(base.SANITY_SECTION)
        section.figure(plots.randomisation_curves(
            {m: {sanity.SCORE_NAMES[s]: r[s] for s in sanity.SCORES}
             for m, r in methods.items()}, stages),
            caption="Cascading randomisation: similarity of each method's maps to the "
                    "trained model's as the stages are re-initialised from the top down "
                    "(1 = unchanged).")
        section.table(["method"] + [sanity.SCORE_NAMES[s] for s in sanity.SCORES] + ["passes"],
                      [[m] + [r[s][-1] for s in sanity.SCORES]
                       + ["yes" if r["passes"] else "no"] for m, r in methods.items()],
                      caption=f"Randomisation at full depth ({len(stages)} stages): a method "
                              f"passes when its Spearman ρ is below {PASS_BELOW}.",
                      highlight={1: "min", 2: "min", 3: "min"})


MEASUREMENT = Randomisation()
