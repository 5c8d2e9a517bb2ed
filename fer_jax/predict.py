"""``--mode=predict``: per-frame expression predictions and their explanations for any video,
image or folder of them (``config.predict.input``).

For each input: every frame is decoded (``data/media.py``: any size, frame rate or codec
OpenCV reads), the face is found, tracked, aligned and cropped by ``faces.FaceProcessor`` with
the config's ``preprocess`` settings (the code that prepares the datasets), converted to the
model's input (``input.modality``, ``input.image_size``, ``input.mean``/``std``), and
classified: frame models frame by frame, video models on sliding clips of
``input.clip_frames`` frames every ``predict.stride`` frames, each frame getting the mean of
the logits of the clips that hold it. The maps of ``explain.methods`` are computed for the
predicted class of every clip and spread back to frames the same way.

Written to ``WORKDIR/predictions/<input stem>/`` (a folder is moved into place only when
complete; a failed input leaves nothing that looks finished):
  * ``frames.csv`` — one row per decoded frame: index, time, face flag, faces detected, face
    box, one probability column per class and the predicted class; frames without a face have
    empty cells, not a guess.
  * ``summary.json`` — the video-level prediction (mean over face frames, and softmax pooling
    of their logits, Eq. 3.3 with ``predict.pooling_gamma``), frame counts with and without a
    face, the model and where its weights came from, the explanation methods and, with
    landmarks, each map's alignment with the AU regions of the predicted class.
  * ``timeline.png`` — the class probabilities over time, stretches without a face shaded.
  * ``overlay.mp4`` and ``overlay.gif`` — the frames with the face box, the predicted label and
    each method's map drawn back onto the face (one panel per method).
  * ``maps.npz`` — every method's per-frame maps on the model's input grid.
A folder of inputs is processed in one run and summarised in ``predictions/summary.csv``.

The model is the workdir's best (else newest) checkpoint, or, in a workdir without one, the
weights of ``model.init_from`` (converted weights, a Keras ``.hdf5`` file, or another run's
workdir).
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import shutil
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from fer_jax import atomic_files, checkpointing, experiment
from fer_jax.data import action_units, faces, layouts, media, pipeline, preprocess
from fer_jax.errors import UserError
from fer_jax.evaluation import explainers as explainers_lib
from fer_jax.evaluation import localisation
from fer_jax.models import pooling, pretrained

SUMMARY_TABLE = "summary.csv"


# --------------------------------------------------------------------------- the model
@dataclasses.dataclass
class Predictor:
    """A model ready to classify face crops: module, variables, classes, explainers."""

    config: object
    module: object
    variables: dict
    class_names: list[str]
    explainers: list
    source: str

    @property
    def clip_frames(self) -> int:
        return int(self.config.input.clip_frames)

    @functools.cached_property
    def forward(self):
        """jit ``(variables, clips uint8 [B, F, S, S, C]) → (logits [B, C], {label: maps})``;
        the maps explain each clip's predicted class."""
        module, config, explainers = self.module, self.config, self.explainers

        def run(variables, clips):
            x = pipeline.normalise(clips, config)
            logits = module.apply(variables, x, train=False)
            target = jnp.argmax(logits, -1)
            return logits, {e.label: e(module, variables, x, target) for e in explainers}

        return jax.jit(run)


def class_names(config) -> list[str]:
    """``predict.class_names``, else the dataset's class names, else '0', '1', …"""
    count = int(config.dataset.num_classes)
    text = str(config.predict.get("class_names", ""))
    if text.strip():
        names = [n.strip() for n in text.split(",")]
        if len(names) != count or not all(names):
            raise UserError(f"predict.class_names lists {len(names)} names for a model of "
                            f"{count} classes; give one name per class, in output order")
        return names
    if config.dataset.name == "synthetic":
        return list(action_units.EXPRESSIONS[:count])
    if config.dataset.name in layouts.LAYOUTS:
        return list(layouts.LAYOUTS[config.dataset.name].class_names)[:count]
    return [str(c) for c in range(count)]


def _restore(run: experiment.Run, workdir: Path) -> tuple[dict, str]:
    """Variables of the best (else newest) checkpoint of ``workdir`` and their description."""
    variables, which, step = run.restore_best(workdir)
    return variables, f"{workdir} ({which} checkpoint, step {step})"


def load(config, workdir: str) -> Predictor:
    """The model of ``workdir`` (its checkpoint) or of ``model.init_from`` (module docstring),
    built in float32 with explicit attention and no rematerialisation, as explanations
    need it (``experiment.build_model``)."""
    run = experiment.Run(config, workdir, explaining=True)
    init_from = config.model.get("init_from", "")
    if checkpointing.has_checkpoints(run.workdir):
        variables, source = _restore(run, run.workdir)
    elif init_from:
        path = pretrained.resolve(init_from)
        if path.is_dir():
            variables, source = _restore(run, path)
        else:
            weights, _, _ = pretrained.load(path)
            # Shapes only: every array must come from the file (checked below).
            shapes = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), run.variable_shapes())
            variables, report = pretrained.merge(shapes, weights)
            if report["kept"]:
                raise UserError(f"model.init_from={init_from} does not fill {len(report['kept'])}"
                                f" arrays of the configured model (e.g. "
                                f"{', '.join(report['kept'][:3])}); its predictions would be "
                                f"random: check model.kwargs and dataset.num_classes")
            variables, source = jax.tree.map(jnp.asarray, variables), str(path)
    else:
        raise UserError(f"nothing to predict with: {run.workdir} holds no checkpoint and "
                        f"model.init_from is empty; train into this workdir first or set "
                        f"--config.model.init_from")
    explainers = explainers_lib.parse_all(config.explain.methods, run.model) \
        if config.explain.methods.strip() or config.input.modality != "landmarks" else []
    return Predictor(config, run.model, variables, class_names(config), explainers, source)


# --------------------------------------------------------------------------- faces
@dataclasses.dataclass
class FaceFrames:
    """What the face pass collects for one input of N frames (crops at the model's size S)."""

    inputs: np.ndarray          # model inputs: uint8 [N, S, S, C], or float32 [N, 68, 2]
    valid: np.ndarray           # bool [N] a face was detected in that frame
    boxes: np.ndarray           # float32 [N, 4] the tracked face box (carried where invalid)
    transforms: np.ndarray      # float32 [N, 2, 3] source → crop (crop of side crop_size)
    landmarks: np.ndarray       # float32 [N, 68, 2] in model-input pixels (NaN: none)
    num_faces: np.ndarray       # int32 [N] faces detected in that frame


def processor(config) -> tuple[faces.FaceProcessor, object]:
    """The ``FaceProcessor`` of ``config.preprocess`` (every frame kept) and its settings."""
    settings = preprocess.settings_from_config(config)
    return faces.FaceProcessor(
        backend=settings.backend, crop_size=settings.crop_size, margin=settings.margin,
        smoothing=settings.smoothing, missing="carry", upsample=int(config.predict.upsample),
        detect_size=int(config.predict.detect_size),
        fan_weights=settings.fan_weights or None,
        detector_weights=settings.detector_weights or None), settings


def _model_inputs(crops: np.ndarray, landmarks: np.ndarray, config) -> np.ndarray:
    """Crops uint8 [n, c, c, 3] (and their landmarks at the model size) → model inputs."""
    size = int(config.input.image_size)
    if crops.shape[1] != size:
        crops = np.stack([cv2.resize(c, (size, size),
                                              interpolation=cv2.INTER_AREA)
                          for c in crops])
    return pipeline.model_input({"frames": crops, "landmarks": landmarks},
                                config.input.get("modality", "rgb"), size)


def track_faces(reader: media.MediaReader, face_processor: faces.FaceProcessor, config,
                progress: tqdm) -> FaceFrames:
    """Decodes ``reader`` chunk by chunk (``predict.chunk_frames``) and tracks the face across
    chunks; chunks without any face give invalid frames."""
    size = int(config.input.image_size)
    parts, previous = [], None
    for chunk in reader.chunks(max(int(config.predict.chunk_frames), 1)):
        n = len(chunk)
        try:
            track = face_processor(chunk, previous_box=previous)
        except faces.NoFaceError:
            blank = np.zeros((n, face_processor.crop_size, face_processor.crop_size, 3),
                             np.uint8)
            parts.append(dict(crops=blank, valid=np.zeros(n, bool),
                              boxes=np.full((n, 4), np.nan, np.float32),
                              transforms=np.full((n, 2, 3), np.nan, np.float32),
                              landmarks=np.full((n, 68, 2), np.nan, np.float32),
                              num_faces=np.zeros(n, np.int32)))
        else:
            previous = track.boxes[np.flatnonzero(track.valid)[-1]]
            parts.append(dict(crops=track.crops, valid=track.valid, boxes=track.boxes,
                              transforms=track.transforms,
                              landmarks=track.crop_landmarks * (size / track.crops.shape[1]),
                              num_faces=track.num_faces))
        progress.update(n)
    joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    crops = joined.pop("crops")
    return FaceFrames(inputs=_model_inputs(crops, joined["landmarks"], config), **joined)


# --------------------------------------------------------------------------- classification
def clip_starts(num_frames: int, clip_frames: int, stride: int) -> np.ndarray:
    """Starts of the sliding clips over ``num_frames`` frames: every ``stride`` frames, the
    last clip ending at the last frame (one clip, padded, for videos shorter than a clip)."""
    last = max(num_frames - clip_frames, 0)
    starts = list(range(0, last + 1, max(stride, 1)))
    if starts[-1] != last:
        starts.append(last)
    return np.asarray(starts, np.int32)


def classify(predictor: Predictor, inputs: np.ndarray) -> tuple[np.ndarray, dict, list[str]]:
    """Per-frame logits float32 [N, C] and maps {label: float32 [N, h, w]} of ``inputs``
    (model inputs of N frames), and notes (methods whose maps are not spatial)."""
    config, f = predictor.config, predictor.clip_frames
    n = len(inputs)
    stride = int(config.predict.stride) or max(f // 2, 1)
    starts = clip_starts(n, f, stride)
    clips = np.stack([pipeline.clip_at(s, f, n, config.input.pad)[0] for s in starts])  # [K, F]
    # Fewer clips than a batch (an image, a short video) are padded to the next power of two,
    # not to a whole batch: an image costs one clip, and at most log2(batch_size) + 1 batch
    # shapes are ever compiled.
    batch = min(max(int(config.predict.batch_size), 1),
                1 << (len(clips) - 1).bit_length())
    logits_sum = np.zeros((n, len(predictor.class_names)), np.float64)
    counts = np.zeros(n, np.float64)
    maps_sum: dict[str, np.ndarray] = {}
    skipped: set[str] = set()
    for first in range(0, len(clips), batch):
        rows = clips[first:first + batch]
        padded = np.concatenate([rows, np.repeat(rows[-1:], batch - len(rows), 0)])
        logits, maps = jax.device_get(predictor.forward(predictor.variables, inputs[padded]))
        frames = rows.reshape(-1)  # the frames of the batch's real clips, clip by clip
        np.add.at(logits_sum, frames,
                  np.repeat(np.asarray(logits)[:len(rows)], f, axis=0).astype(np.float64))
        np.add.at(counts, frames, 1.0)
        for label, m in maps.items():
            m = np.asarray(m, np.float32)[:len(rows)]
            if m.ndim != 4:  # e.g. landmark × frame maps: nothing to draw on a face
                skipped.add(f"{label}: maps of shape {m.shape[1:]} are not per-frame images; "
                            f"not drawn")
                continue
            per_frame = m[:, (np.arange(f) * m.shape[1]) // f]  # [k, F, h, w]
            if label not in maps_sum:
                maps_sum[label] = np.zeros((n,) + m.shape[2:], np.float64)
            np.add.at(maps_sum[label], frames,
                      per_frame.reshape((-1,) + m.shape[2:]))
    logits = (logits_sum / counts[:, None]).astype(np.float32)
    return logits, {k: (v / counts[:, None, None]).astype(np.float32)
                    for k, v in maps_sum.items()}, sorted(skipped)


def video_prediction(logits: np.ndarray, valid: np.ndarray, names: list[str],
                     gamma: float) -> dict:
    """Video-level prediction from per-frame logits [N, C] of the face frames ``valid``."""
    if not valid.any():
        return {}
    probabilities = np.asarray(jax.nn.softmax(logits[valid]))
    mean = probabilities.mean(0)
    pooled = np.asarray(jax.nn.softmax(pooling.softmax_pool(jnp.asarray(logits[valid]),
                                                            gamma, axis=0)))
    return {"mean": {"label": names[int(mean.argmax())],
                     "probabilities": dict(zip(names, map(float, mean)))},
            "softmax_pooling": {"gamma": gamma, "label": names[int(pooled.argmax())],
                                "probabilities": dict(zip(names, map(float, pooled)))}}


def au_alignment(maps: dict, frames: FaceFrames, predicted: np.ndarray, names: list[str],
                 settings, config) -> dict:
    """Per predicted expression class: how each method's maps fall on the AU regions
    (Belharbi et al.) of that class, drawn from each face frame's landmarks: ``energy_share``
    (positive map mass inside the regions), ``pointing_game`` (share of frames whose map
    maximum lies inside) and ``uniform`` (the region's share of the face crop: what a uniform
    map scores in both)."""
    size = int(config.input.image_size)
    has_points = np.isfinite(frames.landmarks).all(axis=(1, 2)) & frames.valid
    out = {}
    for c, name in enumerate(names):
        chosen = np.flatnonzero(has_points & (predicted == c))
        if name not in action_units.EXPRESSIONS or not action_units.is_valid(name) \
                or not len(chosen):
            continue
        au = action_units.au_maps(frames.landmarks[chosen], name, size, size,
                                  face_size=size * settings.face_fraction("detected"),
                                  codebook=config.dataset.get("codebook", "figure"))[None]
        intensity = jnp.ones((1, len(chosen)))
        threshold = config.explain.region_threshold
        entry = {"frames": int(len(chosen)), "methods": {}}
        for label, m in maps.items():
            share, region, ok = localisation.energy_inside(m[chosen][None], au, intensity,
                                                           0.5, threshold)
            hits, _ = localisation.pointing_game(m[chosen][None], au, intensity, 0.5,
                                                 threshold)
            entry["uniform"] = float(region[0])
            entry["methods"][label] = {"energy_share": float(share[0]) if ok[0] else None,
                                       "pointing_game": float(hits[0])}
        out[name] = entry
    return out


# --------------------------------------------------------------------------- outputs
def _write_csv(path: Path, times: np.ndarray, frames: FaceFrames, probabilities: np.ndarray,
               names: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "time_s", "face", "faces_detected", "box_x0", "box_y0",
                         "box_x1", "box_y1", *names, "predicted"])
        for t in range(len(times)):
            face = bool(frames.valid[t])
            box = [f"{v:.1f}" for v in frames.boxes[t]] if face else [""] * 4
            probs = [f"{p:.5f}" for p in probabilities[t]] if face else [""] * len(names)
            writer.writerow([t, f"{times[t]:.4f}", int(face), int(frames.num_faces[t]), *box,
                             *probs, names[int(probabilities[t].argmax())] if face else ""])


def _normalised(maps: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Maps [N, h, w] scaled to [0, 1] by the min and max over the face frames."""
    if not valid.any():
        return np.zeros_like(maps)
    low, high = maps[valid].min(), maps[valid].max()
    return (maps - low) / (high - low) if high > low else np.zeros_like(maps)


def _overlays(reader: media.MediaReader, frames: FaceFrames, probabilities: np.ndarray,
              maps: dict, names: list[str], crop_size: int, folder: Path, config,
              progress: tqdm) -> list[str]:
    """Second decoding pass: writes overlay.mp4 (every frame) and overlay.gif (evenly spaced
    frames); returns their paths."""
    from fer_jax import viz
    from fer_jax.viz import video as video_lib

    panels = list(maps) or ["prediction"]
    columns = 1 if len(panels) == 1 else 2
    width = max(int(config.predict.overlay_width) // columns, 64)
    scale = width / reader.width
    height = max(int(round(reader.height * scale)) // 2 * 2, 2)
    width = width // 2 * 2
    scaled = {k: _normalised(v, frames.valid) for k, v in maps.items()}
    n = len(frames.valid)
    gif_at = set(np.linspace(0, n - 1, min(int(config.predict.gif_frames), n)).round()
                 .astype(int).tolist())
    gif, fps = [], reader.fps or 4.0
    mp4 = folder / "overlay.mp4"
    rows = -(-len(panels) // columns)
    with video_lib.Mp4Writer(mp4, fps, width * min(columns, len(panels)), height * rows) \
            as writer:
        t = 0
        for chunk in reader.chunks(max(int(config.predict.chunk_frames), 1)):
            for frame in chunk[:n - t]:
                face = frames.valid[t]
                label = (f"{names[int(probabilities[t].argmax())]} "
                         f"{probabilities[t].max():.2f}") if face else "no face"
                tiles = []
                for panel in panels:
                    image = frame
                    if face and panel in scaled:
                        image = viz.map_on_face(frame, frames.transforms[t], scaled[panel][t],
                                                crop_size)
                    image = viz.label_frame(image, label, frames.boxes[t] if face else None,
                                            heading=panel)
                    tiles.append(cv2_resize(image, width, height))
                composed = viz.tile(tiles, columns)
                writer.write(composed)
                if t in gif_at:
                    gif.append(composed)
                t += 1
            progress.update(len(chunk))
    gif_scale = min(1.0, 480 / gif[0].shape[1])
    small = np.stack([cv2_resize(g, int(g.shape[1] * gif_scale) // 2 * 2,
                                 int(g.shape[0] * gif_scale) // 2 * 2) for g in gif])
    gif_path = viz.write_video(folder / "overlay.gif", small,
                               fps=max(len(gif) / max(n / fps, 1e-6), 1.0))
    return [str(mp4), str(gif_path)]


def cv2_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` resized to ``width`` × ``height`` (area filter when shrinking)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _output_folder(root: Path, path: Path, taken: set[str]) -> Path:
    """``root/<stem>``, or ``root/<stem>_<suffix>`` when another input has the same stem."""
    name = path.stem if path.stem not in taken else f"{path.stem}_{path.suffix.lstrip('.')}"
    taken.add(name)
    return root / name


def predict_file(predictor: Predictor, face_processor, settings, path: Path,
                 folder: Path) -> dict:
    """Everything of the module docstring for one input; returns its summary. The outputs
    are written to ``folder.partial`` and moved to ``folder`` when complete."""
    config, names = predictor.config, predictor.class_names
    reader = media.open_media(path)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    total = reader.num_frames or None
    with tqdm(total=total, desc=f"{path.name}: faces", unit="frame", disable=None,
              leave=False) as progress:
        frames = track_faces(reader, face_processor, config, progress)
    n = len(frames.valid)
    fps = reader.fps
    times = np.arange(n) / fps if fps else np.arange(n, dtype=np.float64)
    summary = {"input": str(path), "kind": reader.kind, "frames": n, "fps": fps or None,
               "duration_s": n / fps if fps else None, "width": reader.width,
               "height": reader.height, "frames_with_face": int(frames.valid.sum()),
               "frames_without_face": int(n - frames.valid.sum()),
               "frames_with_several_faces": int((frames.num_faces > 1).sum()),
               "most_faces_in_a_frame": int(frames.num_faces.max()),
               "model": {"name": config.model.name, "weights": predictor.source,
                         "classes": names},
               "methods": [e.label for e in predictor.explainers], "notes": []}
    if reader.num_frames and n < reader.num_frames:
        summary["notes"].append(f"decoded {n} of the {reader.num_frames} frames the container "
                                f"announces (truncated file?); the others are not listed")
    if frames.valid.any():
        logits, maps, notes = classify(predictor, frames.inputs)
        summary["notes"] += notes
        probabilities = np.asarray(jax.nn.softmax(logits))
        predicted = probabilities.argmax(-1)
        summary["status"] = "ok"
        summary["prediction"] = video_prediction(
            logits, frames.valid, names, float(config.predict.pooling_gamma))
        if config.predict.au_alignment and maps:
            summary["au_alignment"] = au_alignment(maps, frames, predicted, names, settings,
                                                   config)
        np.savez_compressed(partial / "maps.npz", valid=frames.valid,
                            **{e.key: maps[e.label] for e in predictor.explainers
                               if e.label in maps})
    else:
        probabilities = np.full((n, len(names)), np.nan, np.float32)
        maps = {}
        summary["status"] = "no face"
        summary["notes"].append(f"no face found in any of the {n} frames by backend "
                                f"{face_processor.backend_name!r}; nothing was classified")
    _write_csv(partial / "frames.csv", times, frames, np.nan_to_num(probabilities), names)
    from fer_jax import viz
    viz.prediction_timeline(times if fps else np.arange(n), np.where(
        frames.valid[:, None], probabilities, np.nan), frames.valid, names,
        title=f"{path.name}: " + (summary["prediction"]["mean"]["label"]
                                  if frames.valid.any() else "no face"),
        path=partial / "timeline.png")
    files = ["frames.csv", "timeline.png"] + (["maps.npz"] if maps else [])
    if frames.valid.any() and config.predict.overlay:
        with tqdm(total=n, desc=f"{path.name}: overlay", unit="frame", disable=None,
                  leave=False) as progress:
            _overlays(reader, frames, probabilities, maps, names, face_processor.crop_size,
                      partial, config, progress)
        files += ["overlay.mp4", "overlay.gif"]
    summary["files"] = [str(folder / f) for f in files + ["summary.json"]]
    atomic_files.write_json(partial / "summary.json", summary)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return summary


def list_inputs(text: str) -> list[Path]:
    """The files of ``predict.input``: the file itself, or the visible files of a folder."""
    if not str(text).strip():
        raise UserError("--mode=predict needs an input: --config.predict.input=VIDEO, IMAGE "
                        "or FOLDER")
    path = Path(text).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not found:
            raise UserError(f"predict.input {path} is an empty folder; put videos or images "
                            f"in it")
        return found
    if not path.is_file():
        raise UserError(f"predict.input {path}: no such file or folder")
    return [path]


def _table_row(summary: dict) -> dict:
    prediction = summary.get("prediction", {})
    return {"input": summary["input"], "status": summary["status"],
            "frames": summary.get("frames", ""),
            "frames_with_face": summary.get("frames_with_face", ""),
            "label": prediction.get("mean", {}).get("label", ""),
            "probability": (f"{max(prediction['mean']['probabilities'].values()):.3f}"
                            if prediction else ""),
            "softmax_pooling_label": prediction.get("softmax_pooling", {}).get("label", ""),
            "note": "; ".join(summary.get("notes", []))[:300]}


def run(config, workdir: str) -> dict:
    """``--mode=predict`` (module docstring); returns ``{'outputs': folder, 'results': [summary
    per input]}``. A single unreadable file is a ``UserError``; in a folder, unreadable files
    get a summary row with status 'unreadable' and the others go on."""
    inputs = list_inputs(config.predict.input)
    single = len(inputs) == 1 and Path(config.predict.input).expanduser().is_file()
    if single:  # a file that cannot be read fails before the model is loaded
        media.open_media(inputs[0])
    predictor = load(config, workdir)
    face_processor, settings = processor(config)
    root = Path(workdir).expanduser() / "predictions"
    taken: set[str] = set()
    results = []
    for path in tqdm(inputs, desc="inputs", unit="file", disable=None if len(inputs) > 1
                     else True):
        folder = _output_folder(root, path, taken)
        try:
            results.append(predict_file(predictor, face_processor, settings, path, folder))
        except UserError as e:
            shutil.rmtree(folder.with_name(folder.name + ".partial"), ignore_errors=True)
            if single:
                raise
            results.append({"input": str(path), "status": "unreadable", "notes": [str(e)]})
    if len(inputs) > 1 or not single:
        root.mkdir(parents=True, exist_ok=True)
        rows = [_table_row(r) for r in results]
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_files.write_atomic(root / SUMMARY_TABLE, table.getvalue())
    return {"outputs": str(root), "results": results}
