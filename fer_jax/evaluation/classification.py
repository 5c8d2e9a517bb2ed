"""Classification evaluation of a trained model on one split: the jitted evaluation step and
the loop over a split's padded batches.

``evaluate(run, variables, source)`` returns the loss and ``metrics.from_scores`` (accuracy,
F1, confusion, ROC-AUC, EER accuracy) of every video of ``source``. Three test protocols,
chosen by the batch: one clip per video (``model``); the whole padded video scored by the
dense ``backbone`` and pooled over clips (``eval.full_video``, Ayral's thesis, Eq. 3.3); K
clips per video with their logits averaged (``eval.clips``). With AU guidance
(``au_guidance.py``) it also measures ATT-COS and CAM-COS per class (Belharbi et al.).

``run`` is any object with the attributes of ``experiment.Run`` that evaluation reads:
``config``, ``model``, ``backbone``, ``guidance``, ``replicated``, ``class_names``,
``shard`` and ``local_rows`` (this module does not import the experiment runtime).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from fer_jax import au_guidance
from fer_jax.attribution import LayerTaps
from fer_jax.data import pipeline
from fer_jax.data.pipeline import normalise
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers, localisation, metrics
from fer_jax.models import pooling


def full_video_logits(backbone, variables: dict, batch: dict, config) -> jnp.ndarray:
    """Test-time pooling of the thesis (chapter 3): per-frame scores of the whole (padded)
    video ``[B, L, C]`` from the dense ``backbone``, temporal max-pool with kernel F =
    ``input.clip_frames`` → one score per clip start, softmax pooling over the clips that lie
    inside the video with ``eval.pooling_gamma`` (Eq. 3.3) → ``[B, C]``. Models trained with
    ``model.temporal_pooling='mean'`` (chapter 2) score each clip by its mean instead, so
    with γ_p = 0 every frame of the video counts (the fully convolutional test)."""
    scores = backbone.apply(variables, normalise(batch["video"], config), train=False)
    if scores.ndim != 3:
        raise UserError(f"eval.full_video needs a dense model (per-frame scores); "
                        f"{config.model.name} returned shape {scores.shape}")
    clip = config.input.clip_frames
    clip_pool = pooling.clip_mean_pool if config.model.get("temporal_pooling") == "mean" \
        else pooling.clip_max_pool
    clips = clip_pool(scores, clip)  # [B, N, C]
    last_start = jnp.maximum(batch["length"] - clip, 0)  # shorter videos: one padded clip
    valid = jnp.arange(clips.shape[1])[None, :] <= last_start[:, None]
    return pooling.softmax_pool(clips, config.eval.pooling_gamma, axis=1,
                                mask=valid[:, :, None])


def clip_aggregate_logits(model, variables: dict, batch: dict, config) -> jnp.ndarray:
    """Multi-clip test protocol (``eval.clips``): the K clips of every video,
    ``batch['video']`` ``[B, K, F, ...]``, go through ``model`` as one batch of B·K clips and
    their logits ``[B, K, C]`` are averaged over the clips (mean of logits) → ``[B, C]``."""
    video = batch["video"]
    num_videos, num_clips = video.shape[:2]
    clips = normalise(video.reshape((num_videos * num_clips,) + video.shape[2:]), config)
    logits = model.apply(variables, clips, train=False)
    return logits.reshape(num_videos, num_clips, -1).mean(axis=1)


def eval_step(variables: dict, batch: dict, sums: dict, *, model, backbone, config,
              guidance: au_guidance.Guidance | None = None):
    """Adds the masked loss of one padded batch to ``sums``; returns ``(sums, class
    probabilities [B, C])``.

    ``variables``: ``{'params': …, **model_state}``. Clip batches go through ``model``;
    full-video batches (``eval.full_video``) through ``full_video_logits``; multi-clip
    batches (``eval.clips``, with ``clip_starts``) through ``clip_aggregate_logits``. With
    ``guidance`` (the batch holds ``au_masks``) the per-class sums of ATT-COS (layer
    attention of the guided layers, mean over layers) and CAM-COS (``guidance.cam_method``
    for the true class), normalised as ``guidance.cosine`` says (``au_guidance.COSINES``), are
    added to ``sums['att_cos']`` / ``sums['cam_cos']`` ``[2, C]``."""
    num_classes = config.dataset.num_classes
    single = not ("length" in batch or "clip_starts" in batch)  # one clip per video
    x = normalise(batch["video"], config) if single else None
    with LayerTaps(guidance.layers if guidance else ()) as taps:
        if "length" in batch:
            logits = full_video_logits(backbone, variables, batch, config)
        elif "clip_starts" in batch:
            logits = clip_aggregate_logits(model, variables, batch, config)
        else:
            logits = model.apply(variables, x, train=False)
    onehot = jax.nn.one_hot(batch["label"], num_classes)
    mask = batch["mask"].astype(jnp.float32)
    loss = optax.softmax_cross_entropy(logits, onehot)
    out = {"loss": sums["loss"] + jnp.sum(loss * mask)}
    if guidance:
        au = batch["au_masks"]
        attention = au_guidance.layer_attention(model, taps.outputs(model), x, guidance.layers)
        att_cos, _ = au_guidance.att_cos(attention, au, guidance.att_normalise)
        cam = explainers.parse(guidance.cam_method, getattr(model, "attention_type", None))
        cam_cos, valid = localisation.au_cosine(cam(model, variables, x, batch["label"]), au,
                                                normalise=guidance.cam_normalise)
        valid = valid & batch["mask"]
        out["att_cos"] = sums["att_cos"] + localisation.per_class_sums(att_cos, valid, onehot)
        out["cam_cos"] = sums["cam_cos"] + localisation.per_class_sums(cam_cos, valid, onehot)
    return out, jax.nn.softmax(logits)


def evaluate(run, variables: dict, source) -> dict:
    """Loss and classification metrics (``metrics.from_scores``: accuracy, F1, confusion,
    ROC-AUC, EER accuracy) of ``variables`` (``{'params': …, **model_state}``) on every video
    of ``source``; with AU guidance also ``au_alignment`` (ATT-COS and CAM-COS per class and
    their macro mean over the expressions, neutral left out, as in Belharbi et al.; with the
    guided layers, the CAM method and ``cosine``, the normalisation of the maps)."""
    guidance, config = run.guidance, run.config
    step = jax.jit(functools.partial(eval_step, model=run.model, backbone=run.backbone,
                                     config=config, guidance=guidance),
                   out_shardings=(run.replicated, run.replicated), donate_argnums=(2,))
    sums = {"loss": jnp.float32(0)}
    if guidance:
        num_classes = config.dataset.num_classes
        sums.update(att_cos=jnp.zeros((2, num_classes)), cam_cos=jnp.zeros((2, num_classes)))
    sums = jax.device_put(sums, run.replicated)
    truth = ("au_masks",) if guidance else ()
    probabilities, labels, masks = [], [], []
    for batch in pipeline.iterate_eval(source, config, truth, protocol=True):
        sums, p = step(variables, run.shard(run.local_rows(batch)), sums)
        probabilities.append(p)  # fetched once, after the loop
        labels.append(batch["label"])
        masks.append(batch["mask"])
    result = metrics.from_scores(*metrics.gather_predictions(probabilities, labels, masks),
                                 run.class_names)
    sums = jax.device_get(sums)
    result["loss"] = float(sums["loss"] / max(result["count"], 1))
    if guidance:
        names = list(result["per_class_accuracy"])
        expressions = [n for n in names if n != "neutral"]
        result["au_alignment"] = {
            "att_cos": localisation.class_means(sums["att_cos"], names, expressions),
            "cam_cos": localisation.class_means(sums["cam_cos"], names, expressions),
            "layers": list(guidance.layers), "cam_method": guidance.cam_method,
            "cosine": guidance.cosine}
    return result
