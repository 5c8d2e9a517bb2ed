"""All explanation measurements of one trained model on one split, batched under jit.

``measure(...)`` runs, for every explanation method, one jit-compiled step per batch that
computes the maps and then every chosen measurement from them (no host round trip in
between). The measurements are plug-ins, one module each in ``evaluation/measurements/``
(``base.Measurement``: ``zero`` / ``add`` sums on the device, ``summarise`` on the host),
chosen by ``config.explain.measurements`` ('' = all, in the registry's order) and skipped
where the split lacks the ground truth they ``need``:

* Du Toit's occlusion grid and deletion / insertion curves (``occlusion.py``; maps of the
  predicted class);
* ground truth, where the dataset provides it: AU-region energy share, pointing game, AU
  alignment (CAM-COS, Belharbi et al.), temporal correlation with the expression intensity
  (``localisation.py``; maps of the true class);
* emotion trends (Du Toit): class-average min-max-normalised maps over correctly classified
  videos, per-frame mean intensity and its standard deviation.

* the sanity checks, when named (``evaluation/sanity.py``): cascading parameter
  randomisation and data randomisation (Adebayo et al.), input invariance (Kindermans et al.).

Before any batch, ``prepare`` gives each measurement the chance to make arrays of its own
once per run (re-initialised parameters, shifted-input parameters, another model's variables;
passed to every step as traced arguments) or to bow out (``measurements.Skip``: logged, listed
in ``results['skipped']``). The step builds one ``measurements.Batch`` (predictions; the maps
of the predicted and of the true class, each computed once, on first use) and hands it to
every measurement. Once per
batch, independently of the methods, ``base_step`` computes the class probabilities
(accuracy, F1, ROC-AUC, EER accuracy) and the facial-part occlusion confusion matrices (eyes,
nose, mouth and their combinations located from landmarks). Sums live on the device and are
fetched once at the end.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from fer_jax.data import pipeline
from fer_jax.errors import UserError
from fer_jax.evaluation import face_parts, metrics, occlusion
from fer_jax.evaluation import measurements as measurements_lib
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
    cosine: str = "normalised"                  # CAM-COS maps: normalised (min-max) | raw


def predict(model, variables, video, config) -> jnp.ndarray:
    """Logits ``[B, C]`` of pixel clips ``video`` (normalised here, as in training)."""
    return model.apply(variables, normalise(video, config), train=False)


def context(config, class_names, settings: Settings,
            references: dict | None = None) -> measurements_lib.Context:
    """The measurements' ``Context`` of a run; ``references``: other trained models'
    variables by name (``explain.compare_workdir``'s as ``'compare'``)."""
    return measurements_lib.Context(num_classes=config.dataset.num_classes,
                                    num_frames=config.input.clip_frames,
                                    class_names=tuple(class_names), settings=settings,
                                    seed=int(config.get("seed", 0)),
                                    references=dict(references or {}))


def _placed_like(arrays, variables):
    """``arrays`` on the devices (and sharding) of ``variables``' first leaf, if it has one."""
    leaves = jax.tree.leaves(variables)
    sharding = getattr(leaves[0], "sharding", None) if leaves else None
    return jax.device_put(arrays, sharding) if sharding is not None else arrays


def prepare(chosen: list, model, variables, config, context: measurements_lib.Context
            ) -> tuple[list, dict, measurements_lib.Context, dict[str, str]]:
    """Each measurement's ``prepare`` → ``(kept, arrays, context, skipped)``: the
    measurements that run, their ``Prepared.arrays`` by name (placed like ``variables``),
    ``context`` with their ``Prepared.setup``, and ``{name: reason}`` of those that raised
    ``measurements.Skip`` (each logged as one line)."""
    x = jnp.zeros((1,) + pipeline.input_shape(config), jnp.float32)
    kept, arrays, setup, skipped = [], {}, {}, {}
    for measurement in chosen:
        try:
            prepared = measurement.prepare(model, variables, x, context)
        except measurements_lib.Skip as e:
            skipped[measurement.name] = str(e)
            logging.warning("measurement %s skipped: %s", measurement.name, e)
            continue
        kept.append(measurement)
        if prepared is not None and prepared.arrays is not None:
            arrays[measurement.name] = _placed_like(prepared.arrays, variables)
        if prepared is not None and prepared.setup is not None:
            setup[measurement.name] = prepared.setup
    return kept, arrays, dataclasses.replace(context, setup=setup), skipped


# --------------------------------------------------------------------------- jitted steps
def method_step(sums: dict, variables, batch: dict, key, prepared: dict | None = None, *,
                model, config, explainer, chosen: list,
                context: measurements_lib.Context):
    """Adds one padded batch's measurements for ``explainer`` to ``sums`` (see ``zero``):
    every measurement of ``chosen`` reads the same ``measurements.Batch``, whose maps are
    computed once; ``prepared``: the arrays of ``prepare`` by measurement name."""
    run = functools.partial(predict, model, variables, config=config)
    x = normalise(batch["video"], config)
    view = measurements_lib.Batch(
        batch, predicted=jnp.argmax(run(batch["video"]), -1), key=key, logits=run,
        explain=lambda v, inputs, target: explainer(model, v, inputs, target),
        context=context, variables=variables, x=x,
        apply=lambda v, inputs: model.apply(v, inputs, train=False), prepared=prepared)
    return {"videos": sums["videos"] + batch["mask"].sum(),
            "measurements": {m.name: m.add(sums["measurements"][m.name], view, context)
                             for m in chosen}}


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


def zero(chosen: list, context: measurements_lib.Context) -> dict:
    """Empty sums of ``method_step``: the video count and each measurement's sums."""
    return {"videos": jnp.float32(0),
            "measurements": {m.name: m.zero(context) for m in chosen}}


# --------------------------------------------------------------------------- summaries
def summarise_method(sums: dict, chosen: list, context: measurements_lib.Context) -> dict:
    """Host sums of one method → the JSON-ready measurements (and trend arrays), in the
    order of ``chosen``."""
    result = {}
    for m in chosen:
        result.update(m.summarise(sums["measurements"][m.name], context))
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
            seed: int = 0, measurements: list | None = None,
            references: dict | None = None) -> dict:
    """Runs the measurements on ``source``; returns JSON-ready results plus NumPy arrays
    (``probabilities``, ``labels``, trend maps), see the module docstring.

    ``shard`` puts a host batch on the devices (``experiment.Run.shard``); ``max_videos`` limits
    the split (0 = all); ``measurements`` (``base.Measurement`` list; default: those of
    ``config.explain.measurements``) are run where the split has the ground truth they need;
    ``references``: other trained models' variables by name (``Context.references``).
    ``results['skipped']`` holds ``{name: reason}`` of those ``prepare`` left out,
    ``results['setup']`` what the others' ``prepare`` found.
    """
    if config.input.get("modality", "rgb") == "landmarks":
        raise UserError("explanation measurements occlude pixels; a landmark model has no "
                        "image input (use --mode=eval for its metrics)")
    num_videos = min(len(source), max_videos) if max_videos else len(source)
    if num_videos == 0:
        raise UserError("the evaluated split has no videos")
    videos = np.arange(num_videos)
    fields = available_truth(source)
    parts = "landmarks" in fields
    if measurements is None:
        measurements = measurements_lib.select(config.explain.get("measurements", ""))
    chosen = measurements_lib.applicable(measurements, fields)
    num_classes = config.dataset.num_classes
    class_names = list(getattr(source, "class_names", [])) or [str(c) for c in
                                                                 range(num_classes)]
    run_context = context(config, class_names, settings, references)
    for measurement in chosen:
        measurement.check(run_context)
    chosen, prepared, run_context, skipped = prepare(chosen, model, variables, config,
                                                      run_context)

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
               "truth": list(fields), "methods": {}, "seconds": {}, "skipped": skipped,
               "setup": dict(run_context.setup)}
    if parts:
        confusions = np.asarray(jax.device_get(sums["parts"])).astype(np.int64)
        names = ["none"] + [face_parts.combination_name(c) for c in face_parts.COMBINATIONS]
        results["face_parts"] = {n: metrics.from_confusion(c, class_names)
                                 for n, c in zip(names, confusions)}
    results["seconds"]["classification"] = time.perf_counter() - started

    for explainer in explainers:
        started = time.perf_counter()
        step = jax.jit(functools.partial(
            method_step, model=model, config=config, explainer=explainer, chosen=chosen,
            context=run_context), donate_argnums=(0,))
        sums = zero(chosen, run_context)
        key = jax.random.key(seed)
        with _progress(num_videos, explainer.label) as bar:
            for i, batch in enumerate(batches()):
                sums = step(sums, variables, shard(batch), jax.random.fold_in(key, i),
                            prepared)
                bar.update(int(batch["mask"].sum()))
        host = jax.tree.map(np.asarray, jax.device_get(sums))
        results["methods"][explainer.label] = summarise_method(host, chosen, run_context)
        results["seconds"][explainer.label] = time.perf_counter() - started
    results["probabilities"], results["labels"] = probabilities, labels
    return results
