"""Input invariance (Kindermans et al., 2019, "The (Un)reliability of Saliency Methods"): a
constant ``SHIFT`` is added to every value of the model's input (normalised units: one
``input.std`` of pixels) and the model's first Conv or Dense layer absorbs it
(``sanity.first_layer``, ``sanity.absorb_shift``: its bias, or the running mean of the batch
normalisation after it, takes back ``SHIFT · ΣW``), so the shifted model computes the same
function of the unshifted data. A method whose map of the same class then changes reacts to
the input's offset, not to what the model does: gradient × input and integrated gradients
from a zero baseline fail, plain gradients and Grad-CAM pass.

Exactness: the compensation is exact for a Dense layer and an unpadded convolution (e.g. a
TimeSformer's patch embedding); a zero-padded ('SAME') first convolution sees the shift only
on its taps inside the frame, so the outputs at the frame borders change a little, and with
them every map. ``logit_change`` (the largest change of a logit, relative to the largest
absolute logit of the video, over the videos) says how well the model absorbed the shift;
``exact`` is true when it is at most ``EXACT_TOLERANCE``.

A model whose first layer cannot absorb a shift (no bias and no batch normalisation after it,
no kernel at all) is skipped with its reason, logged and listed in ``report.json``'s
``skipped``.

Results ``input_invariance``: ``difference`` (mean over videos of the mean absolute
difference of the two absolute maps, each min-max normalised; maps of the predicted class on
the occlusion grid), ``spearman`` (their rank correlation), ``logit_change``, ``exact``,
``passes`` (``difference`` below ``PASS_BELOW``), ``layer``, ``shift`` and ``videos``.
Optional: runs only when named in ``config.explain.measurements``.
"""
from __future__ import annotations

import jax.numpy as jnp

from fer_jax.evaluation import sanity
from fer_jax.evaluation.measurements import base

SHIFT = 1.0              # added to the normalised input
EXACT_TOLERANCE = 1e-3   # relative logit change up to which the shift counts as absorbed
PASS_BELOW = 0.05        # mean absolute difference of normalised maps under which a method passes


class InputInvariance(base.Measurement):
    name = "input_invariance"
    optional = True
    description = ("Input shift Δ: mean absolute difference between the normalised maps "
                   "before and after a constant input shift the model absorbs (Kindermans et "
                   f"al.; lower is better, a method passes below {PASS_BELOW}).")

    def prepare(self, model, variables, x, context):
        try:
            layer = sanity.first_layer(model, x, variables, train=False)
        except ValueError as e:
            raise base.Skip(f"no constant input shift can be absorbed: {e}") from None
        return base.Prepared(arrays=sanity.absorb_shift(variables, layer, SHIFT),
                             setup={"layer": layer.describe(), "shift": SHIFT})

    def zero(self, context):
        return {"difference": jnp.float32(0), "spearman": jnp.zeros(2),
                "logit_change": jnp.float32(0), "videos": jnp.float32(0)}

    def add(self, sums, batch, context):
        shifted_variables = batch.prepared[self.name]
        shifted = batch.x + SHIFT
        reference = batch.cells
        cells = batch.cells_of(shifted_variables, shifted)
        difference = sanity.normalised_difference(reference, cells)
        rho = sanity.spearman(jnp.abs(reference), jnp.abs(cells))
        rho_valid = batch.mask & jnp.isfinite(rho)
        before, after = batch.apply(), batch.apply(shifted_variables, shifted)
        change = (jnp.abs(after - before).max(-1)
                  / jnp.maximum(jnp.abs(before).max(-1), 1e-6))
        return {"difference": sums["difference"] + base.masked_sum(difference, batch.mask),
                "spearman": sums["spearman"] + jnp.stack([
                    jnp.where(rho_valid, rho, 0.0).sum(), rho_valid.sum()]),
                "logit_change": jnp.maximum(sums["logit_change"],
                                            jnp.where(batch.mask, change, 0.0).max()),
                "videos": sums["videos"] + batch.mask.sum()}

    def summarise(self, sums, context):
        videos = float(sums["videos"])
        difference = float(sums["difference"] / videos) if videos else None
        setup = context.setup[self.name]
        return {"input_invariance": {
            "difference": difference,
            "spearman": float(sums["spearman"][0] / sums["spearman"][1])
            if sums["spearman"][1] else None,
            "logit_change": sanity.finite(float(sums["logit_change"])),
            "exact": bool(sums["logit_change"] <= EXACT_TOLERANCE),
            "passes": difference is not None and difference < PASS_BELOW,
            "layer": setup["layer"], "shift": setup["shift"], "videos": int(videos)}}

    def columns(self, result):
        return [base.Column("input shift Δ ↓",
                            base.part(result, "input_invariance", "difference"), "min",
                            "shift Δ")]

    def draw(self, page, results, context):
        methods = {m: v["input_invariance"] for m, v in results["methods"].items()}
        first = next(iter(methods.values()))
        absorbed = ("the logits are unchanged" if first["exact"] else
                    f"the logits still change by up to {first['logit_change']:.2g} of their "
                    "largest value (zero padding at the frame borders): the test is only "
                    "approximate for this model")
        page.section(base.SANITY_SECTION).table(
            ["method", "difference", "Spearman ρ", "passes"],
            [[m, r["difference"], r["spearman"], "yes" if r["passes"] else "no"]
             for m, r in methods.items()],
            caption=f"Input invariance: input + {first['shift']:g}, absorbed by "
                    f"{first['layer']}; {absorbed}. A method passes when the normalised maps "
                    f"differ by less than {PASS_BELOW} on average.",
            highlight={1: "min"})


MEASUREMENT = InputInvariance()
