"""All explanation measurements of one trained model on one split, batched under jit.

``measure(...)`` runs, for every explanation method, one jit-compiled step per batch that
computes the maps and then every measurement from them (no host round trip in between):

* seed-000 occlusion grid (``occlusion.py``) and deletion / insertion curves;
* ground truth, where the dataset provides it: AU alignment (CAM-COS, seed 003; maps of the
  true class), AU-region energy share and pointing game, temporal correlation with the
  expression intensity (``localisation.py``);
* emotion trends (seed 000): class-average min-max-normalised maps over correctly classified
  videos, per-frame mean intensity and its standard deviation.

and once per batch, independently of the methods, the class probabilities (accuracy, F1,
ROC-AUC, EER accuracy) and the facial-part occlusion confusion matrices (eyes, nose, mouth
and their combinations located from landmarks). Sums live on the device and are fetched
once at the end. Occlusion, deletion and trends use the maps of the predicted class, the
ground-truth measurements those of the true class.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.attribution.postprocess import normalise as normalise_maps
from fer_jax.data import pipeline
from fer_jax.errors import UserError
from fer_jax.evaluation import face_parts, localisation, metrics, occlusion
from fer_jax.evaluation.explainers import Explainer
from fer_jax.data.pipeline import normalise
from fer_jax.evaluation.metrics import gather_predictions


@dataclasses.dataclass(frozen=True)
class Settings:
    """Measurement options (``config.explain``, see configs.py)."""

    grid: int                                   # occlusion cells per side
    fractions: tuple[float, ...] = occlusion.FRACTIONS
    frame_counts: tuple[int, ...] = occlusion.FRAME_COUNTS
    deletion_steps: int = 16
    fill: float = 0.0                           # occluded pixels, [0, 1] units
    min_intensity: float = 0.5                  # expressive frames for localisation
    region_threshold: float = 0.5               # AU heatmap level counted as inside


def predict(model, variables, video, config) -> jnp.ndarray:
    """Logits ``[B, C]`` of pixel clips ``video`` (normalised here, as in training)."""
    return model.apply(variables, normalise(video, config), train=False)


def _masked_sum(values, mask):
    return jnp.sum(jnp.where(mask, values, 0.0))


# --------------------------------------------------------------------------- jitted steps
def method_step(sums: dict, variables, batch: dict, key, *, model, config, explainer,
                settings: Settings, grid_conditions, deletion_conditions, truth: bool):
    """Adds one padded batch's measurements for ``explainer`` to ``sums`` (see ``zero``)."""
    video, labels, mask = batch["video"], batch["label"], batch["mask"]
    num_classes = config.dataset.num_classes
    run = functools.partial(predict, model, variables, config=config)
    x = normalise(video, config)
    predicted = jnp.argmax(run(video), -1)
    cells = occlusion.to_cells(explainer(model, variables, x, predicted), video.shape[1],
                               settings.grid)
    b, t, g, _ = cells.shape
    keys = jax.random.split(key, 3)
    cell_rank = occlusion.ranks(cells.reshape(b, t, g * g), keys[0])
    frame_rank = occlusion.ranks(cells.sum(axis=(2, 3)), keys[1])
    clip_rank = occlusion.ranks(cells.reshape(b, t * g * g), keys[2])

    def occluded_hits(condition):
        keep = occlusion.occlusion_keep(cell_rank, frame_rank, condition[0], condition[1],
                                        condition[2] == 1)
        logits = run(occlusion.occlude(video, keep.reshape(b, t, g, g), settings.fill))
        return _masked_sum((jnp.argmax(logits, -1) == labels).astype(jnp.float32), mask)

    def occluded_probability(condition):
        keep = occlusion.deletion_keep(clip_rank, condition[0], condition[1] == 1)
        logits = run(occlusion.occlude(video, keep.reshape(b, t, g, g), settings.fill))
        p = jnp.take_along_axis(jax.nn.softmax(logits), predicted[:, None], axis=1)[:, 0]
        return _masked_sum(p, mask)

    out = dict(sums)
    out["occlusion"] = sums["occlusion"] + jax.lax.map(occluded_hits, grid_conditions)
    out["deletion"] = sums["deletion"] + jax.lax.map(occluded_probability, deletion_conditions)
    out["videos"] = sums["videos"] + mask.sum()

    onehot = jax.nn.one_hot(labels, num_classes)
    correct = mask & (predicted == labels)
    weights = onehot * correct[:, None]
    shown = normalise_maps(cells)  # min-max per video
    frame_mean = shown.mean(axis=(2, 3))
    out["trend_maps"] = sums["trend_maps"] + jnp.einsum("bc,bthw->cthw", weights, shown)
    out["trend_frame"] = sums["trend_frame"] + weights.T @ frame_mean
    out["trend_frame_sq"] = sums["trend_frame_sq"] + weights.T @ frame_mean**2
    out["trend_videos"] = sums["trend_videos"] + weights.sum(0)
    if truth:
        true_maps = explainer(model, variables, x, labels)
        au, intensity = batch["au_masks"], batch["intensity"]
        true_cells = occlusion.match_frames(true_maps, t).astype(jnp.float32)
        measured = {
            "au_cosine": localisation.au_cosine(true_cells, au),
            "pointing_game": localisation.pointing_game(
                true_cells, au, intensity, settings.min_intensity, settings.region_threshold),
            "temporal_correlation": localisation.temporal_correlation(true_cells, intensity),
        }
        share, chance, valid = localisation.energy_inside(
            true_cells, au, intensity, settings.min_intensity, settings.region_threshold)
        measured["energy_inside"] = (share, valid)
        measured["energy_chance"] = (chance, valid)
        for name, (values, valid) in measured.items():
            out[name] = sums[name] + localisation.per_class_sums(values, valid & mask, onehot)
    return out


def base_step(sums: dict, variables, batch: dict, *, model, config, fill: float,
              parts: bool):
    """Class probabilities of the batch (returned, ``[B, C]``) and, with ``parts``, the
    facial-part occlusion confusion matrices added to ``sums['parts']`` [K + 1, C, C]."""
    num_classes = config.dataset.num_classes
    run = functools.partial(predict, model, variables, config=config)
    probabilities = jax.nn.softmax(run(batch["video"]))
    if not parts:
        return sums, probabilities
    video, labels = batch["video"], batch["label"]
    masks = jnp.stack([jnp.zeros(video.shape[:4], bool)] + [
        face_parts.part_mask(batch["landmarks"], combination, *video.shape[2:4])
        for combination in face_parts.COMBINATIONS])
    weights = jax.nn.one_hot(labels, num_classes) * batch["mask"][:, None]

    def confusion(hidden):
        logits = run(occlusion.fill_pixels(video, hidden, fill))
        return weights.T @ jax.nn.one_hot(jnp.argmax(logits, -1), num_classes)

    return {"parts": sums["parts"] + jax.lax.map(confusion, masks)}, probabilities


def zero(num_classes: int, num_frames: int, settings: Settings, truth: bool) -> dict:
    """Empty sums of ``method_step``."""
    shape = (2, len(settings.fractions), len(settings.frame_counts))
    sums = {"occlusion": jnp.zeros(np.prod(shape)),
            "deletion": jnp.zeros(2 * (settings.deletion_steps + 1)),
            "videos": jnp.float32(0),
            "trend_maps": jnp.zeros((num_classes, num_frames, settings.grid, settings.grid)),
            "trend_frame": jnp.zeros((num_classes, num_frames)),
            "trend_frame_sq": jnp.zeros((num_classes, num_frames)),
            "trend_videos": jnp.zeros(num_classes)}
    if truth:
        for name in ("au_cosine", "pointing_game", "temporal_correlation", "energy_inside",
                     "energy_chance"):
            sums[name] = jnp.zeros((2, num_classes))
    return sums


# --------------------------------------------------------------------------- summaries
def summarise_method(sums: dict, settings: Settings, class_names, truth: bool) -> dict:
    """Host sums of one method → the JSON-ready measurements (and trend arrays)."""
    videos = float(sums["videos"])
    shape = (2, len(settings.fractions), len(settings.frame_counts))
    accuracy = sums["occlusion"].reshape(shape) / max(videos, 1)
    difference = accuracy[1] - accuracy[0]
    curves = sums["deletion"].reshape(2, -1) / max(videos, 1)
    steps = np.linspace(0, 1, settings.deletion_steps + 1)
    result = {
        "occlusion": {"most": accuracy[0].tolist(), "least": accuracy[1].tolist(),
                      "difference": difference.tolist(),
                      # (0 %, 0 frames) is the clean accuracy in both rows: left out
                      "mean_difference": float((difference.sum() - difference[0, 0])
                                               / max(difference.size - 1, 1))},
        "deletion": {"curve": curves[0].tolist(), "auc": float(np.trapezoid(curves[0], steps))},
        "insertion": {"curve": curves[1].tolist(), "auc": float(np.trapezoid(curves[1], steps))},
    }
    counts = sums["trend_videos"]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums["trend_frame"] / counts[:, None]
        std = np.sqrt(np.maximum(sums["trend_frame_sq"] / counts[:, None] - mean**2, 0))
        maps = sums["trend_maps"] / counts[:, None, None, None]
    result["trends"] = {"frame_mean": np.where(counts[:, None] > 0, mean, np.nan),
                        "frame_std": np.where(counts[:, None] > 0, std, np.nan),
                        "maps": np.where(counts[:, None, None, None] > 0, maps, np.nan),
                        "videos": counts.astype(int).tolist()}
    if truth:
        expressive = [n for n in class_names if n != "neutral"]
        for name in ("au_cosine", "pointing_game", "temporal_correlation", "energy_inside",
                     "energy_chance"):
            result[name] = localisation.class_means(sums[name], class_names, expressive)
    return result


# --------------------------------------------------------------------------- driver
def available_truth(source) -> tuple[str, ...]:
    """The ground truth the measurements can use from ``source`` (probing its first frame)."""
    example = source.load(0, np.zeros(1, np.int64))
    fields = tuple(f for f in ("landmarks", "intensity") if f in example)
    return fields + (("au_masks",) if "landmarks" in example else ())


def _progress(total: int, description: str):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit="video", dynamic_ncols=True,
                mininterval=2.0)


def measure(model, variables, config, source, explainers: list[Explainer],
            settings: Settings, batch_size: int, shard=lambda b: b, max_videos: int = 0,
            seed: int = 0) -> dict:
    """Runs every measurement on ``source``; returns JSON-ready results plus NumPy arrays
    (``probabilities``, ``labels``, trend maps), see the module docstring.

    ``shard`` puts a host batch on the devices (``train.Run.shard``); ``max_videos`` limits
    the split (0 = all).
    """
    if config.input.get("modality", "rgb") == "landmarks":
        raise UserError("explanation measurements occlude pixels; a landmark model has no "
                        "image input (use --mode=eval for its metrics)")
    num_videos = min(len(source), max_videos) if max_videos else len(source)
    if num_videos == 0:
        raise UserError("the evaluated split has no videos")
    videos = np.arange(num_videos)
    fields = available_truth(source)
    parts, truth = "landmarks" in fields, {"au_masks", "intensity"} <= set(fields)
    num_classes, num_frames = config.dataset.num_classes, config.input.clip_frames
    class_names = list(getattr(source, "class_names", [])) or [str(c) for c in
                                                                 range(num_classes)]
    grid_conditions = jnp.asarray(occlusion.grid_conditions(
        settings.fractions, settings.frame_counts, settings.grid**2, num_frames))
    deletion_conditions = jnp.asarray(occlusion.deletion_conditions(
        settings.deletion_steps, num_frames * settings.grid**2))

    def batches():
        return pipeline.iterate_eval(source, config, fields, batch_size, videos)

    started = time.perf_counter()
    base = jax.jit(functools.partial(base_step, model=model, config=config,
                                     fill=settings.fill, parts=parts), donate_argnums=(0,))
    sums = {"parts": jnp.zeros((len(face_parts.COMBINATIONS) + 1, num_classes, num_classes))}
    probabilities, labels, masks = [], [], []
    with _progress(num_videos, "classification and facial parts") as bar:
        for batch in batches():
            sums, p = base(sums, variables, shard(batch))
            probabilities.append(p)
            labels.append(batch["label"])
            masks.append(batch["mask"])
            bar.update(int(batch["mask"].sum()))
    probabilities, labels = gather_predictions(probabilities, labels, masks)
    results = {"classification": metrics.from_scores(probabilities, labels, class_names),
               "videos": num_videos, "class_names": class_names,
               "truth": list(fields), "methods": {}, "seconds": {}}
    if parts:
        confusions = np.asarray(jax.device_get(sums["parts"])).astype(np.int64)
        names = ["none"] + [face_parts.combination_name(c) for c in face_parts.COMBINATIONS]
        results["face_parts"] = {n: metrics.from_confusion(c, class_names)
                                 for n, c in zip(names, confusions)}
    results["seconds"]["classification"] = time.perf_counter() - started

    for explainer in explainers:
        started = time.perf_counter()
        step = jax.jit(functools.partial(
            method_step, model=model, config=config, explainer=explainer, settings=settings,
            grid_conditions=grid_conditions, deletion_conditions=deletion_conditions,
            truth=truth), donate_argnums=(0,))
        sums = zero(num_classes, num_frames, settings, truth)
        key = jax.random.key(seed)
        with _progress(num_videos, explainer.label) as bar:
            for i, batch in enumerate(batches()):
                sums = step(sums, variables, shard(batch), jax.random.fold_in(key, i))
                bar.update(int(batch["mask"].sum()))
        host = jax.tree.map(np.asarray, jax.device_get(sums))
        results["methods"][explainer.label] = summarise_method(host, settings, class_names,
                                                               truth)
        results["seconds"][explainer.label] = time.perf_counter() - started
    results["probabilities"], results["labels"] = probabilities, labels
    return results
