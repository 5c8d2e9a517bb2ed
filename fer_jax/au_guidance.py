"""AU-guided training (Belharbi et al.): cross-entropy + λ · (1 − cos(T_l, A)).

The layer attention ``T_l`` is the channel mean of the activation grid of layer ``l``
(``attribution.channel_mean``): per frame for video models, ``[B, T', h, w]`` for 2D and 3D
CNN feature maps, ``[B, T, h, w]`` for TimeSformer patch tokens (the model's
``attribution_grid``). ``A`` ``[B, T, H, W]`` are the clip's action-unit heatmaps (the
pipeline draws them from the augmented landmarks with the expression's AUs,
``action_units.au_maps``), resized to ``T_l`` (linear, antialiased). ``R(T_l, A)`` is the
cosine over the whole clip of the raw, signed ``T_l`` (Eq. 2; "the dynamic range of the
attention map is unknown beforehand"): ``localisation.au_cosine(..., resolution='map',
normalise='raw')`` (``alignment``).

The reported alignment is a separate measurement (``att_cos``, and CAM-COS in
``evaluation/classification.py``): the map upsampled to ``A`` and normalised first, as
Belharbi et al. evaluate ("Although they are both normalized between [0, 1]", Sec. 4.1;
``localisation.au_cosine``). ``config.au_guidance.cosine`` chooses the normalisations
(``COSINES``): 'normalised' (default) follows the authors' evaluation code — the CAM min-max
normalised, the layer attention shifted by −min where it has negative values —, 'minmax'
min-max normalises both, 'raw' takes both as they are (the loss's cosine, upsampled to ``A``).
The training ATT-COS (``train/att_cos``), the validation and ``--mode=eval`` ATT-COS / CAM-COS
all use it; the loss never does.

Samples whose ``A`` is empty — neutral expressions, videos without landmarks — are invalid:
the alignment term is the mean of ``1 − R`` over the valid samples of the batch (0 when there
are none), so they are trained with cross-entropy only. With several layers the term is the
mean of the per-layer terms (Belharbi et al., Table 3).

Options (``config.au_guidance``): ``weight`` (λ; Belharbi et al. use 4 on RAF-DB, 0 = off),
``layers`` (comma-separated module paths, '' = the model's ``attribution_layer``: the last
ResNet stage, layer 5 of Belharbi et al.), ``measure`` (report ATT-COS and CAM-COS in validation
and ``--mode=eval``; always on when λ > 0), ``cam_method`` (the CAM-COS map: '' = ``cam`` for
models whose head is global average pooling → linear, else ``grad_cam``), ``cosine`` (the
normalisation of the reported ATT-COS / CAM-COS, above).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from fer_jax import attribution
from fer_jax.errors import UserError
from fer_jax.evaluation import localisation

# config.au_guidance.cosine → (ATT-COS, CAM-COS) modes of localisation.normalise_maps.
COSINES = {"normalised": ("shift", "minmax"), "minmax": ("minmax", "minmax"),
           "raw": ("raw", "raw")}


@dataclasses.dataclass(frozen=True)
class Guidance:
    """Resolved ``config.au_guidance`` for one model."""

    weight: float               # λ (0: measured, not trained)
    layers: tuple[str, ...]     # module paths whose channel mean is aligned
    cam_method: str             # explanation method of CAM-COS (evaluation/explainers.py)
    cosine: str = "normalised"  # normalisation of the reported ATT-COS / CAM-COS (COSINES)

    @property
    def trains(self) -> bool:
        """Whether the alignment term is part of the training loss (λ > 0); else the
        alignment is only measured."""
        return self.weight > 0

    @property
    def att_normalise(self) -> str:
        """``localisation.normalise_maps`` mode of the reported ATT-COS."""
        return COSINES[self.cosine][0]

    @property
    def cam_normalise(self) -> str:
        """``localisation.normalise_maps`` mode of the reported CAM-COS."""
        return COSINES[self.cosine][1]


def from_config(config, model) -> Guidance | None:
    """The guidance of ``config`` for ``model``, or None when neither trained nor measured.

    Raises a one-line UserError for options that cannot work (negative λ, landmark inputs,
    full-video or multi-clip evaluation, an unknown ``cosine``)."""
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
    cosine = options.get("cosine", "normalised")
    if cosine not in COSINES:
        raise UserError(f"au_guidance.cosine must be one of {', '.join(COSINES)}, got "
                        f"{cosine!r}")
    return Guidance(weight, layers, cam_method, cosine)


def layer_attention(model, outputs: dict, x: jnp.ndarray, layers: tuple[str, ...]
                    ) -> list[jnp.ndarray]:
    """``T_l`` ``[B, *positions]`` of each of ``layers`` from their tapped ``outputs``
    (``attribution.LayerTaps``) for the model input ``x``."""
    return [attribution.channel_mean(model, outputs[layer], x) for layer in layers]


def _check(maps: jnp.ndarray, au_maps: jnp.ndarray) -> None:
    if maps.ndim != au_maps.ndim:
        raise UserError(f"layer attention of shape {maps.shape} cannot be aligned with AU "
                        f"maps {au_maps.shape}: choose a layer with a spatial grid per "
                        "frame (au_guidance.layers)")


def alignment(attention: list[jnp.ndarray], au_maps: jnp.ndarray
              ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(term, valid [B])``: the training loss's alignment term for ``attention`` (one
    ``[B, t, h, w]`` map per layer) and ``au_maps [B, T, H, W]``.

    ``term`` = mean over layers of the masked mean over valid samples of ``1 − R(T_l, A)``,
    ``R`` the cosine of the raw ``T_l`` with ``A`` resized to it (Eq. 2). Not a measurement:
    the reported ATT-COS is ``att_cos``."""
    terms = []
    valid = None
    for maps in attention:
        _check(maps, au_maps)
        cosine, valid = localisation.au_cosine(maps, au_maps, resolution="map",
                                               normalise="raw")
        count = valid.sum()
        terms.append(jnp.where(valid, 1.0 - cosine, 0.0).sum() / jnp.maximum(count, 1))
    return jnp.mean(jnp.stack(terms)), valid


def att_cos(attention: list[jnp.ndarray], au_maps: jnp.ndarray, normalise: str = "shift"
            ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(ATT-COS [B], valid [B])``: the reported alignment of ``attention`` (one map per
    layer, mean over layers) with ``au_maps``: each map upsampled to ``A`` and normalised
    (``normalise``: ``Guidance.att_normalise``; default the authors' 'shift'), then the cosine
    (``localisation.au_cosine``)."""
    cosines = []
    valid = None
    for maps in attention:
        _check(maps, au_maps)
        cosine, valid = localisation.au_cosine(maps, au_maps, normalise=normalise)
        cosines.append(cosine)
    return jnp.mean(jnp.stack(cosines), axis=0), valid
