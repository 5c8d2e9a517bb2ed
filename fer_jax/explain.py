"""``--mode=explain`` and ``--mode=report``: explanations of a trained model, and their
measurements in a self-contained HTML report.

explain
  For the videos ``explain.videos`` of ``explain.split``: every method's maps of the predicted
  (or true, ``explain.target=label``) class. Writes to ``WORKDIR/explanations/<split>_<i>/``:
  ``<method>.png`` (frame grid: input, the AU heatmap (Belharbi et al.) of the true class where
  the dataset has landmarks, then the overlay), ``<method>.gif`` and ``.mp4`` (overlay
  animations), ``maps.npz`` (raw maps, one array per method) and ``explanations.json``.
  Models with an attention module (``model.attention``, thesis chapter 4) add what it
  computed: ``attention_mask.png`` (mask attention overlaid on the faces, per frame) and
  ``self_attention.png`` (the T×T temporal self-attention matrix, mean over heads, with its
  temporal profile); adaptive softmax pooling adds ``pooling_betas.png`` (the learned β of
  each class) to the explanations folder.
  Without ``explain.methods``, AU-guided configs explain with their CAM and layer attention
  (Belharbi et al., Fig. 4), other models with their defaults (``evaluation/explainers.py``).
  Both modes build the model in float32 with explicit attention and without
  rematerialisation, whatever ``model.precision``, ``model.attention_implementation`` and
  ``model.remat`` the run was trained with (the parameters are float32 either way).

report
  ``evaluation.suite.measure`` on ``explain.split`` (occlusion test, deletion / insertion,
  infidelity, sparseness / complexity, ground-truth localisation and AU alignment where the
  dataset has them, emotion trends, facial-part occlusion, classification metrics;
  sensitivity-max and the sanity checks when named in ``explain.measurements``), then ``WORKDIR/report.html`` (opens offline), ``report.json``
  (every figure in the report) and ``report_trends.npz`` (class-average maps). With
  ``explain.compare_workdir`` the newest checkpoint of that workdir (the same model, e.g.
  trained with ``train.shuffle_labels``) is loaded too, for the ``data_randomisation``
  measurement.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax import atomic_files, experiment
from fer_jax.data import pipeline
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers as explainers_lib
from fer_jax.evaluation import measurements as measurements_lib
from fer_jax.evaluation import suite

DEFAULT_GRID = 8


@dataclasses.dataclass
class Trained:
    """A trained model ready to explain: run (model, mesh), variables and the split."""

    run: experiment.Run
    variables: dict
    checkpoint: str
    step: int
    source: object
    explainers: list


def load(config, workdir: str) -> Trained:
    """The best (else newest) checkpoint of ``workdir`` and the split ``explain.split``; the
    model in float32 with explicit attention and no rematerialisation, whatever
    ``model.precision``, ``attention_implementation`` and ``remat`` say
    (``experiment.build_model``)."""
    run = experiment.Run(config, workdir, explaining=True)
    variables, which, step = run.restore_best()
    methods = config.explain.methods
    if not methods.strip() and run.guidance:
        methods = (f"{run.guidance.cam_method},"
                   f"layer_attention(layer={run.guidance.layers[0]!r})")
    explainers = explainers_lib.parse_all(methods, run.model)
    return Trained(run, variables, which, step, run.source(config.explain.split), explainers)


def settings(config, model) -> suite.Settings:
    """``suite.Settings`` from ``config.explain``; grid 0 → the model's patch grid, else 8."""
    e = config.explain
    grid = e.grid or (config.input.image_size // model.patch_size
                      if hasattr(model, "patch_size") else DEFAULT_GRID)
    if grid < 1 or grid > config.input.image_size:
        raise UserError(f"explain.grid={grid} must lie in 1..input.image_size "
                        f"({config.input.image_size})")
    return suite.Settings(grid=grid, fractions=tuple(e.fractions),
                          frame_counts=tuple(e.frame_counts), deletion_steps=e.deletion_steps,
                          fill=e.fill, min_intensity=e.min_intensity,
                          region_threshold=e.region_threshold,
                          cosine=e.get("cosine", "normalised"))


def parse_videos(text: str, num_videos: int) -> list[int]:
    """``'0,3,7'`` → [0, 3, 7], checked against the split size."""
    try:
        videos = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise UserError(f"explain.videos must be comma-separated video indices, got "
                        f"{text!r}") from None
    bad = [v for v in videos if not 0 <= v < num_videos]
    if not videos or bad:
        raise UserError(f"explain.videos {text!r}: give indices in 0..{num_videos - 1}")
    return videos


def explain_videos(trained: Trained, config, videos: list[int], target: str = "predicted"
                   ) -> dict:
    """Maps of every method for ``videos`` (indices of the split).

    Returns host arrays: 'frames' uint8 [N, T, H, W, 3], 'labels', 'predicted' int [N],
    'maps' dict method label → float32 [N, T', h, w] (the method's own resolution), and where
    the dataset has landmarks 'au_maps' float32 [N, T, H, W] (the true class's AU heatmaps)."""
    if target not in ("predicted", "label"):
        raise UserError(f"explain.target must be 'predicted' or 'label', got {target!r}")
    model, variables = trained.run.model, trained.variables
    truth = tuple(f for f in suite.available_truth(trained.source) if f == "au_masks") \
        if config.input.get("modality", "rgb") != "landmarks" else ()
    batch = next(iter(pipeline.iterate_eval(trained.source, config, truth, len(videos),
                                            videos)))
    video = jnp.asarray(batch["video"])
    logits = suite.predict(model, variables, video, config)
    predicted = jnp.argmax(logits, -1)
    chosen = predicted if target == "predicted" else jnp.asarray(batch["label"])
    x = pipeline.normalise(video, config)
    maps = {}
    for explainer in trained.explainers:
        fn = jax.jit(functools.partial(explainer, model))
        maps[explainer.label] = np.asarray(fn(variables, x, chosen), np.float32)
    frames = np.asarray(batch["video"])
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    out = {"frames": frames, "labels": np.asarray(batch["label"]),
           "predicted": np.asarray(predicted), "probabilities":
           np.asarray(jax.nn.softmax(logits)), "maps": maps, "videos": list(videos),
           "attention": attention_outputs(model, variables, x)}
    if truth:
        out["au_maps"] = np.asarray(batch["au_masks"], np.float32)
    return out


def attention_outputs(model, variables: dict, x: jnp.ndarray) -> dict[str, np.ndarray]:
    """What the model's attention module sowed for the clips ``x`` (models/attention.py):
    'mask' ``[N, T', h, w]`` or ``[N, T']``, 'attention' (probabilities), 'theta'; empty
    without a module."""
    if "attention" not in variables["params"]:  # no module: no second forward pass
        return {}
    _, state = jax.jit(functools.partial(model.apply, train=False, mutable=["intermediates"])
                       )(variables, x)
    sown = state.get("intermediates", {}).get("attention", {})
    return {name: np.asarray(values[0], np.float32) for name, values in sown.items()}


def _attention_figures(folder, frames: np.ndarray, sown: dict, n: int, title: str) -> list:
    """Writes the attention module's figures of video ``n``; returns their paths."""
    from fer_jax.viz import attention_maps
    paths = []
    if "mask" in sown:
        paths.append(folder / "attention_mask.png")
        attention_maps.mask_overlay(frames, sown["mask"][n], title=title, path=paths[-1])
    probabilities = sown.get("attention")
    if probabilities is not None and probabilities.ndim == 4:  # temporal or 3D [N, h, M, M]
        matrix = probabilities[n]
        if matrix.shape[-1] <= len(frames):  # one entity per (output) frame: temporal
            paths.append(folder / "self_attention.png")
            attention_maps.self_attention_matrix(
                matrix, frames=frames if matrix.shape[-1] == len(frames) else None,
                title=title, path=paths[-1])
    return [str(p) for p in paths]


def explain(config, workdir: str) -> dict:
    """``--mode=explain`` (module docstring); returns the index written to
    ``explanations.json``."""
    from fer_jax import viz
    trained = load(config, workdir)
    videos = parse_videos(config.explain.videos, len(trained.source))
    out = explain_videos(trained, config, videos, config.explain.target)
    names = list(getattr(trained.source, "class_names", [])) or None
    root = trained.run.workdir / "explanations"
    index = {"checkpoint": trained.checkpoint, "step": trained.step, "videos": []}
    for n, video in enumerate(videos):
        folder = root / f"{config.explain.split}_{video}"
        folder.mkdir(parents=True, exist_ok=True)
        frames = out["frames"][n]
        label, predicted = int(out["labels"][n]), int(out["predicted"][n])
        entry = {"video": video, "label": names[label] if names else label,
                 "predicted": names[predicted] if names else predicted,
                 "confidence": float(out["probabilities"][n, predicted]), "files": []}
        rows, labels = [frames], ["input"]
        if "au_maps" in out:  # Belharbi et al., Fig. 4: where the AUs of the true class are
            rows.append(viz.overlay(frames, out["au_maps"][n]))
            labels.append("AU map")
        for explainer in trained.explainers:
            maps = out["maps"][explainer.label][n]
            overlay = viz.overlay(frames, maps)
            grid = viz.frame_grid(rows + [overlay], row_labels=labels + [explainer.label],
                                  scale=config.explain.upscale,
                                  title=f"video {video}: {entry['label']} → "
                                        f"{entry['predicted']}")
            png = folder / f"{explainer.key}.png"
            png.write_bytes(viz.png_bytes(grid))
            entry["files"].append(str(png))
            for suffix in (".gif", ".mp4"):
                path = viz.write_video(folder / f"{explainer.key}{suffix}", overlay,
                                       fps=config.explain.fps, upscale=config.explain.upscale)
                entry["files"].append(str(path))
        entry["files"] += _attention_figures(
            folder, frames, out["attention"], n,
            f"video {video}: {entry['label']} → {entry['predicted']}")
        np.savez_compressed(folder / "maps.npz", **{e.key: out["maps"][e.label][n]
                                                     for e in trained.explainers})
        entry["files"].append(str(folder / "maps.npz"))
        index["videos"].append(entry)
    betas = trained.variables["params"].get("adaptive_pool", {}).get("beta")
    if betas is not None:  # thesis Eq. 2.1: the learned temperature of each class
        from fer_jax.viz import attention_maps
        path = root / "pooling_betas.png"
        attention_maps.pooling_betas(np.asarray(betas), names or [str(c) for c in
                                                                range(len(betas))],
                                     title="learned softmax-pooling temperature β", path=path)
        index["pooling_betas"] = str(path)
    atomic_files.write_json(root / "explanations.json", index)
    return index


def choose_examples(labels: np.ndarray, predicted: np.ndarray, per_class: int,
                    num_classes: int) -> list[int]:
    """Up to ``per_class`` correctly classified videos per class (first ones in the split),
    falling back to misclassified ones for classes the model never gets right."""
    chosen = []
    for c in range(num_classes):
        of_class = np.flatnonzero(labels == c)
        right = of_class[predicted[of_class] == c]
        chosen.extend(np.concatenate([right, np.setdiff1d(of_class, right)])[:per_class])
    return [int(v) for v in chosen]


COMPARED = "data_randomisation"  # the measurement that reads explain.compare_workdir


def load_compare(run: experiment.Run, workdir: str) -> tuple[dict, str, int, Path]:
    """``(variables, 'latest' | 'best', step, path)`` of the newest checkpoint of another
    workdir of the same model (``explain.compare_workdir``): the newest, because a model
    trained on permuted labels has a meaningless best validation score."""
    path = Path(workdir).expanduser().absolute()
    if path == run.workdir:
        raise UserError(f"explain.compare_workdir is the workdir being reported ({path}); give "
                        f"the workdir of the other model (e.g. trained with "
                        f"--config.train.shuffle_labels=True)")
    if not path.is_dir():
        raise UserError(f"explain.compare_workdir {path} does not exist")
    variables, which, step = run.restore_best(path, prefer_best=False)
    return variables, which, step, path


def report(config, workdir: str) -> dict:
    """``--mode=report`` (module docstring); returns the measurements (JSON part)."""
    from fer_jax.viz import report as report_lib
    e = config.explain
    chosen = measurements_lib.select(e.get("measurements", ""))  # names checked first
    compare = str(e.get("compare_workdir", "") or "")
    if compare and COMPARED not in [m.name for m in chosen]:
        raise UserError(f"explain.compare_workdir is only read by the {COMPARED} "
                        f"measurement; add it to explain.measurements (e.g. "
                        f"--config.explain.measurements=default,{COMPARED})")
    if not compare and COMPARED in [m.name for m in chosen]:
        raise UserError(f"the {COMPARED} measurement needs explain.compare_workdir: the "
                        f"workdir of the same model trained with "
                        f"--config.train.shuffle_labels=True")
    trained = load(config, workdir)
    references, compared = {}, {}
    if compare:
        variables, which, step, path = load_compare(trained.run, compare)
        references["compare"] = variables
        compared = {"compare_workdir": str(path), "compare_checkpoint": which,
                    "compare_step": step}
    options = settings(config, trained.run.model)
    results = suite.measure(trained.run.model, trained.variables, config, trained.source,
                            trained.explainers, options,
                            batch_size=e.batch_size or config.train.batch_size,
                            shard=trained.run.shard, max_videos=e.max_videos,
                            seed=config.seed, measurements=chosen, references=references)
    results.update(compared)
    labels, probabilities = results.pop("labels"), results.pop("probabilities")
    videos = choose_examples(labels, probabilities.argmax(-1), e.examples_per_class,
                             config.dataset.num_classes)
    examples = explain_videos(trained, config, videos)
    workdir = trained.run.workdir
    results.update(checkpoint=trained.checkpoint, checkpoint_step=trained.step,
                   split=e.split, settings=dataclasses.asdict(options),
                   model=config.model.name, workdir=str(workdir))
    document = report_lib.build(results, examples,
                                suite.context(config, results["class_names"], options))
    document.write(workdir / "report.html")
    method_keys = {explainer.label: explainer.key for explainer in trained.explainers}
    for measurement in measurements_lib.applicable(chosen, results["truth"]):
        arrays = measurement.export(results, method_keys)  # e.g. trend maps
        if arrays is not None:
            np.savez_compressed(workdir / f"report_{measurement.name}.npz", **arrays)
    atomic_files.write_json(workdir / "report.json", results)
    return results
