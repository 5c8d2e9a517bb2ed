"""AU-guided training (Belharbi et al.): cross-entropy + λ · (1 − cos(T_l, A)).

The layer attention ``T_l`` is the channel mean of the activation grid of layer ``l``
(``attribution.channel_mean``): per frame for video models, ``[B, T', h, w]`` for 2D and 3D
CNN feature maps, ``[B, T, h, w]`` for TimeSformer patch tokens (the model's
``attribution_grid``). ``A`` ``[B, T, H, W]`` are the clip's action-unit heatmaps (the
pipeline draws them from the augmented landmarks with the expression's AUs,
``action_units.au_maps``), resized to ``T_l`` (linear, antialiased). ``R(T_l, A)`` is the
cosine over the whole clip, ``localisation.au_cosine(..., resolution='map')``, the same
function the evaluation uses for ATT-COS / CAM-COS (there with the map upsampled to ``A``).

Samples whose ``A`` is empty — neutral expressions, videos without landmarks — are invalid:
the alignment term is the mean of ``1 − R`` over the valid samples of the batch (0 when there
are none), so they are trained with cross-entropy only. With several layers the term is the
mean of the per-layer terms (Belharbi et al., Table 3).

Options (``config.au_guidance``): ``weight`` (λ; Belharbi et al. use 4 on RAF-DB, 0 = off),
``layers`` (comma-separated module paths, '' = the model's ``attribution_layer``: the last
ResNet stage, layer 5 of Belharbi et al.), ``measure`` (report ATT-COS and CAM-COS in validation
and ``--mode=eval``; always on when λ > 0), ``cam_method`` (the CAM-COS map: '' = ``cam`` for
models whose head is global average pooling → linear, else ``grad_cam``).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from fer_jax import attribution
from fer_jax.errors import UserError
from fer_jax.evaluation import localisation


@dataclasses.dataclass(frozen=True)
class Guidance:
    """Resolved ``config.au_guidance`` for one model."""

    weight: float               # λ (0: measured, not trained)
    layers: tuple[str, ...]     # module paths whose channel mean is aligned
    cam_method: str             # explanation method of CAM-COS (evaluation/explainers.py)

    @property
    def trains(self) -> bool:
        """Whether the alignment term is part of the training loss (λ > 0); else the
        alignment is only measured."""
        return self.weight > 0


def from_config(config, model) -> Guidance | None:
    """The guidance of ``config`` for ``model``, or None when neither trained nor measured.

    Raises a one-line UserError for options that cannot work (negative λ, landmark inputs,
    full-video or multi-clip evaluation)."""
    options = config.get("au_guidance") or {}
    weight = float(options.get("weight", 0.0))
    if weight < 0:
        raise UserError(f"au_guidance.weight must be >= 0, got {weight}")
    if not (weight > 0 or options.get("measure", False)):  # neither trained nor measured
        return None
    if config.input.get("modality", "rgb") == "landmarks":
        raise UserError("AU guidance aligns pixel feature maps with AU heatmaps; a landmark "
                        "model has none (set au_guidance.weight=0 and au_guidance.measure=False)")
    if config.eval.get("full_video"):
        raise UserError("AU alignment is measured on clips; it cannot be combined with "
                        "eval.full_video (set au_guidance.measure=False or "
                        "eval.full_video=False)")
    if config.eval.get("clips"):
        raise UserError("AU alignment is measured on one clip per video; it cannot be combined "
                        "with eval.clips (set au_guidance.measure=False or eval.clips=0)")
    layers = tuple(p.strip() for p in str(options.get("layers", "")).split(",") if p.strip())
    layers = layers or (attribution.default_layer(model),)
    cam_method = options.get("cam_method", "") or (
        "cam" if getattr(model, "attribution_classifier", None) else "grad_cam")
    return Guidance(weight, layers, cam_method)


def layer_attention(model, outputs: dict, x: jnp.ndarray, layers: tuple[str, ...]
                    ) -> list[jnp.ndarray]:
    """``T_l`` ``[B, *positions]`` of each of ``layers`` from their tapped ``outputs``
    (``attribution.LayerTaps``) for the model input ``x``."""
    return [attribution.channel_mean(model, outputs[layer], x) for layer in layers]


def alignment(attention: list[jnp.ndarray], au_maps: jnp.ndarray
              ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``(term, cosine [B], valid [B])`` for ``attention`` (one ``[B, t, h, w]`` map per
    layer) and ``au_maps [B, T, H, W]``.

    ``term`` = mean over layers of the masked mean over valid samples of ``1 − R``; ``cosine``
    = mean over layers of ``R`` per sample (training's ATT-COS)."""
    terms, cosines = [], []
    valid = None
    for maps in attention:
        if maps.ndim != au_maps.ndim:
            raise UserError(f"layer attention of shape {maps.shape} cannot be aligned with AU "
                            f"maps {au_maps.shape}: choose a layer with a spatial grid per "
                            "frame (au_guidance.layers)")
        cosine, valid = localisation.au_cosine(maps, au_maps, resolution="map")
        count = valid.sum()
        terms.append(jnp.where(valid, 1.0 - cosine, 0.0).sum() / jnp.maximum(count, 1))
        cosines.append(cosine)
    return jnp.mean(jnp.stack(terms)), jnp.mean(jnp.stack(cosines), axis=0), valid
