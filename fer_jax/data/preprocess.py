"""``--mode=preprocess``: a raw dataset directory → faces, landmarks, AU maps → TFDS ArrayRecord.

  python -m fer_jax.main --config=configs/timesformer_cremad.py --mode=preprocess \\
      --config.preprocess.manual_dir=/data/CREMA-D

Steps
  1. ``layouts.get(name).scan(manual_dir)`` lists the videos and the files it cannot use
     (unlabelled sequences, malformed label files, unknown codes, …).
  2. Every video not yet in the cache is processed, in ``preprocess.workers`` processes:
     frames are read (``layouts.read_frames``), the face is tracked, aligned and cropped
     (``faces.FaceProcessor``; datasets of whole-scene videos such as HMDB are only resized;
     RAF-DB's aligned faces keep their framing and get landmarks), the AU heatmaps of
     Belharbi et al. are drawn from the crop landmarks for the video's expression, and the
     result is saved as one ``.npz`` per video in the cache (written atomically, so a killed
     run leaves no half files). A re-run skips every video that is already cached, so preprocessing
     resumes where it stopped; failed videos are retried on every run.
  3. ``manifest.json`` lists the cached videos in name order and the TFDS builder
     (``data/tfds_builders.py``) writes them as ArrayRecord records.
  4. A summary — videos found, processed now, reused from the cache, failed, problems found
     by the scan, and one entry per file with a problem or a note, saying why and what was
     done ('skipped', 'failed' or 'kept') — is printed and saved as
     ``preprocess_summary.json`` next to the records and in the cache.

Nothing is dropped silently: every file the layout rejects, every video that fails, and
every kept video with something unusual (truncated, one frame, grayscale, an unusual frame
size, frames without a face or with several faces) has an entry.
"""
from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import json
import multiprocessing
import os
import time
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from fer_jax import atomic_files
from fer_jax.data import action_units, layouts, tfds_builders
from fer_jax.data.tfds_builders import Settings
from fer_jax.errors import UserError

SUMMARY_FILE = "preprocess_summary.json"


# --------------------------------------------------------------------------- configuration
def settings_from_config(config) -> Settings:
    """``Settings`` from ``config.preprocess`` (crop_size 0 = ``input.image_size``)."""
    p = config.preprocess
    crop = int(p.crop_size) or int(config.input.image_size)
    try:
        return Settings(backend=p.backend, crop_size=crop, margin=float(p.margin),
                        smoothing=int(p.smoothing), missing=p.missing,
                        jpeg_quality=int(p.jpeg_quality),
                        codebook=config.dataset.get("codebook", "figure"),
                        fan_weights=p.fan_weights, detector_weights=p.detector_weights)
    except ValueError as e:
        raise UserError(f"config.{e}") from None


def data_dir(dataset_config) -> Path:
    """Where the TFDS records live: ``dataset.data_dir`` or TFDS' default."""
    path = dataset_config.get("data_dir") or tfds.core.constants.DATA_DIR
    return Path(os.path.expanduser(path))


def cache_dir(root: Path, layout: layouts.Layout, settings: Settings) -> Path:
    """Per-video cache of dataset ``layout`` made with ``settings`` under data dir ``root``."""
    return root / "fer_jax_cache" / layout.name / settings.name(layout.faces)


def _cache_file(name: str) -> str:
    return f"{name}.npz"


# --------------------------------------------------------------------------- one video
def _encode_jpeg(frames: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """JPEG bytes of RGB frames uint8 [T, H, W, 3] → (blob uint8 [B], offsets int64 [T+1])."""
    chunks = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise UserError("JPEG encoding failed")
        chunks.append(data.reshape(-1))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    return np.concatenate(chunks).astype(np.uint8), offsets


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames uint8 [T, H, W, 3] resized so that the shorter side is ``size`` (aspect kept)."""
    height, width = frames.shape[1:3]
    scale = size / min(height, width)
    out_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(f, out_size, interpolation=cv2.INTER_AREA) for f in frames])


def _au_maps(landmarks: np.ndarray, expression: str, settings: Settings,
             faces: str) -> np.ndarray:
    """uint8 [T, S, S]: AU heatmaps of Belharbi et al. × 255 (zeros without AUs or landmarks);
    the radii of the authors' code are scaled to the face inside the crop
    (``Settings.face_fraction``)."""
    size = settings.crop_size
    face_size = size * settings.face_fraction(faces)
    out = np.zeros((len(landmarks), size, size), np.uint8)
    if expression not in action_units.EXPRESSIONS or not np.isfinite(landmarks).all():
        return out
    maps = action_units.au_maps(landmarks, expression, size, size, face_size=face_size,
                                codebook=settings.codebook)
    return np.round(maps * 255).astype(np.uint8)


def _face_arrays(frames: np.ndarray, video: layouts.RawVideo, layout: layouts.Layout,
                 settings: Settings, processor) -> tuple[dict, list[str]]:
    """Crops, landmarks, validity and AU maps of one face video, with its warnings."""
    size = settings.crop_size
    warnings = []
    if layout.faces == "aligned":  # already aligned crops: keep the framing, add landmarks
        height, width = frames.shape[1:3]
        track = processor(frames, boxes=np.array([0, 0, width, height], np.float32))
        crops = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
                          for f in frames[track.frame_indices]])
        landmarks = track.landmarks * np.array([size / width, size / height], np.float32)
    else:  # a box given by the dataset (AffectNet) replaces detection
        track = processor(frames, boxes=None if video.box is None
                          else np.asarray(video.box, np.float32))
        crops, landmarks = track.crops, track.crop_landmarks
    if track.missing:
        done = "carried the previous face" if settings.missing == "carry" else "dropped them"
        warnings.append(f"no face in {track.missing} of {track.num_input_frames} frames "
                        f"({done})")
    if track.multiple:
        warnings.append(f"several faces in {track.multiple} of {track.num_input_frames} "
                        f"frames (kept the most consistent one)")
    expression = layout.class_names[video.label]
    arrays = {"frame_indices": np.asarray(track.frame_indices, np.int32),
              "valid": np.asarray(track.valid, bool),
              "landmarks": np.asarray(landmarks, np.float32),
              "au_maps": _au_maps(np.asarray(landmarks, np.float32), expression, settings,
                                  layout.faces)}
    return {"crops": crops, **arrays}, warnings


def input_notes(frames: np.ndarray, layout: layouts.Layout) -> list[str]:
    """Facts about the input worth a summary entry: a video of one frame (except in datasets
    of still images: RAF-DB, AffectNet), grayscale frames (frames uint8 [T, H, W, 3] as
    decoded). Unusual frame sizes are found across the dataset (``_size_notes``)."""
    notes = []
    if len(frames) == 1 and not layout.still_images:
        notes.append("only 1 frame (clips repeat it)")
    first = frames[0]
    if np.array_equal(first[..., 0], first[..., 1]) and np.array_equal(first[..., 1],
                                                                        first[..., 2]):
        notes.append("grayscale frames (used as RGB with three equal channels)")
    return notes


def process_video(video: layouts.RawVideo, layout: layouts.Layout, settings: Settings,
                  processor) -> tuple[dict, list[str]]:
    """Arrays to cache for one video and its warnings; raises ``UserError`` on failure (its
    message then also carries the warnings of the reading, e.g. a truncated file).

    Returns 'jpeg' uint8 [B] + 'offsets' int64 [T+1] (the frames as JPEG), 'frame_indices'
    int32 [T], and per layout 'valid' bool [T], 'landmarks' float32 [T, 68, 2], 'au_maps'
    uint8 [T, S, S], 'frame_labels' float32 [T].
    """
    frames, warnings = layouts.read_frames(video)
    warnings += input_notes(frames, layout)
    try:
        if layout.faces == "none":
            arrays = {"crops": resize_short_side(frames, settings.crop_size),
                      "frame_indices": np.arange(len(frames), dtype=np.int32)}
        else:
            arrays, face_warnings = _face_arrays(frames, video, layout, settings, processor)
            warnings += face_warnings
    except UserError as e:
        raise type(e)("; ".join([str(e), *warnings])) from None
    if layout.frame_labels:
        labels = np.asarray(video.frame_labels, np.float32)
        if len(labels) != len(frames):
            raise UserError(f"{len(labels)} frame labels for {len(frames)} frames")
        arrays["frame_labels"] = labels[arrays["frame_indices"]]
    arrays["jpeg"], arrays["offsets"] = _encode_jpeg(arrays.pop("crops"),
                                                     settings.jpeg_quality)
    arrays["source_size"] = np.array(frames.shape[2:0:-1], np.int32)
    return arrays, warnings


def _save(path: Path, arrays: dict) -> None:
    """``np.savez`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- workers
@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened to one video: ``error`` empty on success; ``warnings`` one line each."""

    name: str
    error: str = ""
    stage: str = ""
    warnings: tuple[str, ...] = ()
    length: int = 0
    size: tuple[int, int] = (0, 0)  # source frame (width, height)


_WORKER: dict = {}


def _make_processor(layout: layouts.Layout, settings: Settings):
    if layout.faces == "none":
        return None
    from fer_jax.data import faces
    return faces.FaceProcessor(
        backend=settings.backend, crop_size=settings.crop_size, margin=settings.margin,
        smoothing=settings.smoothing, missing=settings.missing,
        fan_weights=settings.fan_weights or None,
        detector_weights=settings.detector_weights or None)


def _init_worker(layout_name: str, settings: Settings, cache: str) -> None:
    layout = layouts.get(layout_name)
    _WORKER.update(layout=layout, settings=settings, cache=Path(cache),
                   processor=_make_processor(layout, settings))


def _run_one(video: layouts.RawVideo) -> Outcome:
    """Processes and caches one video in a worker; every failure becomes an ``Outcome``.
    The cache entry also keeps the warnings, so that a resumed run still reports them."""
    from fer_jax.data import faces
    w = _WORKER
    try:
        arrays, warnings = process_video(video, w["layout"], w["settings"], w["processor"])
    except layouts.UnreadableVideo as e:
        return Outcome(video.name, str(e), "read")
    except faces.NoFaceError as e:
        return Outcome(video.name, str(e), "faces")
    except UserError as e:
        return Outcome(video.name, str(e), "process")
    except Exception as e:  # noqa: BLE001 — one bad file must not stop the dataset
        return Outcome(video.name, f"{type(e).__name__}: {e}", "process")
    arrays["warnings"] = np.array(warnings, dtype=str)
    _save(w["cache"] / _cache_file(video.name), arrays)
    return Outcome(video.name, warnings=tuple(warnings), length=len(arrays["frame_indices"]),
                   size=tuple(arrays["source_size"].tolist()))


def _process_all(videos: list, layout: layouts.Layout, settings: Settings, cache: Path,
                 workers: int) -> list[Outcome]:
    """Runs ``_run_one`` over ``videos`` in ``workers`` processes (0: here), with progress."""
    args = (layout.name, settings, str(cache))
    bar = tqdm(total=len(videos), desc=f"preprocess {layout.name}", unit="video",
               disable=not videos)
    outcomes = []
    if workers == 0:
        _init_worker(*args)
        for video in videos:
            outcomes.append(_run_one(video))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # never fork a process holding JAX
        with futures.ProcessPoolExecutor(workers, mp_context=context,
                                         initializer=_init_worker, initargs=args) as pool:
            for outcome in pool.map(_run_one, videos, chunksize=1):
                outcomes.append(outcome)
                bar.update()
    bar.close()
    return outcomes


# --------------------------------------------------------------------------- the dataset
def _cached(name: str, path: Path) -> Outcome:
    """The outcome of a video cached by an earlier run (frames, warnings, size)."""
    with np.load(path) as arrays:
        return Outcome(name, warnings=tuple(str(w) for w in arrays["warnings"]),
                       length=len(arrays["frame_indices"]),
                       size=tuple(arrays["source_size"].tolist()))


def _manifest(videos: list, cache: Path, outcomes: list[Outcome]) -> tuple[list, list]:
    """Manifest entries of the cached videos in name order, and the outcomes of those
    reused from earlier runs (with the warnings they had then)."""
    fresh = {o.name: o for o in outcomes}
    entries, reused = [], []
    for video in videos:
        path = cache / _cache_file(video.name)
        if not path.exists():
            continue
        outcome = fresh.get(video.name)
        if outcome is None:
            outcome = _cached(video.name, path)
            reused.append(outcome)
        entries.append({"name": video.name, "file": _cache_file(video.name),
                        "label": int(video.label), "subject": video.subject,
                        "partition": video.partition, "info": dict(video.info),
                        "length": outcome.length})
    return entries, reused


def _write_records(layout: layouts.Layout, settings: Settings, root: Path, cache: Path,
                   manual_dir: str, entries: list[dict]) -> tfds_builders.VideoBuilder:
    atomic_files.write_atomic(cache / "manifest.json", json.dumps({"videos": entries}))
    builder = tfds_builders.builder(layout.name, str(root), settings, cache_dir=str(cache))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        download_mode=tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS))
    return builder


def _size_notes(kept: list[Outcome]) -> list[tuple[str, str]]:
    """(name, note) for videos whose frame size differs from the dataset's most common one."""
    sizes = [o.size for o in kept]
    if not sizes:
        return []
    usual = max(set(sizes), key=sizes.count)
    count = sizes.count(usual)
    return [(o.name, f"frame size {o.size[0]}×{o.size[1]} unlike the usual "
                     f"{usual[0]}×{usual[1]} of {count} videos (cropped and resized as usual)")
            for o in kept if o.size != usual]


def _summary(layout, settings, manual_dir, found, problems, outcomes, reused,
             records) -> dict:
    failed = [o for o in outcomes if o.error]
    kept = [o for o in outcomes + reused if not o.error]
    notes = [(o.name, w) for o in kept for w in o.warnings]
    if not layout.varied_sizes:  # e.g. AffectNet's photos come in every size
        notes += _size_notes(kept)
    names = {o.name for o in kept}
    files = ([{"file": p.path, "stage": "scan", "reason": p.reason,
               "status": "kept" if str(Path(p.path).with_suffix("")) in names else "skipped"}
              for p in problems]
             + [{"file": o.name, "stage": o.stage, "status": "failed", "reason": o.error}
                for o in failed]
             + [{"file": name, "stage": "process", "status": "kept", "reason": note}
                for name, note in sorted(notes)])
    return {
        "dataset": layout.name, "manual_dir": str(manual_dir), "records": "",
        "settings": dataclasses.asdict(settings),
        "counts": {"found": found, "processed": len(outcomes) - len(failed),
                   "reused": len(reused), "failed": len(failed), "scan_problems": len(problems),
                   "with_notes": len({name for name, _ in notes}), "records": records},
        "seconds": 0.0, "files": files}


def print_summary(summary: dict, limit: int = 30) -> None:
    """The summary on the console: counts, then one line per file entry (at most ``limit``)."""
    c = summary["counts"]
    print(f"{summary['dataset']}: {c['records']} videos in {summary['records'] or '-'} "
          f"({c['found']} found: {c['processed']} processed now, {c['reused']} reused; "
          f"{c['failed']} failed; {c['scan_problems']} problems found by the scan; "
          f"{c['with_notes']} kept with notes) in {summary['seconds']} s")
    for entry in summary["files"][:limit]:
        print(f"  {entry['status']:>7s} [{entry['stage']}] {entry['file']}: {entry['reason']}")
    if len(summary["files"]) > limit:
        print(f"  … {len(summary['files']) - limit} more entries in "
              f"{Path(summary['records']) / SUMMARY_FILE}")


def run(config) -> dict:
    """Preprocesses ``config.dataset.name`` from ``config.preprocess.manual_dir`` (see module
    docstring); returns the summary dict (also saved as ``preprocess_summary.json``)."""
    start = time.perf_counter()
    layout = layouts.get(config.dataset.name)
    manual_dir = config.preprocess.manual_dir
    if not manual_dir:
        raise UserError(f"set --config.preprocess.manual_dir to the folder holding the raw "
                        f"{layout.name} files ({layout.instructions.splitlines()[0]})")
    settings = settings_from_config(config)
    workers = int(config.preprocess.workers)
    if workers < 0:
        raise UserError(f"config.preprocess.workers must be >= 0, got {workers}")
    root = data_dir(config.dataset)
    cache = cache_dir(root, layout, settings)
    videos, problems = layout.scan(manual_dir)
    todo = [v for v in videos if not (cache / _cache_file(v.name)).exists()]
    cache.mkdir(parents=True, exist_ok=True)
    _make_processor(layout, settings)  # a bad backend or weight file fails here, once
    outcomes = _process_all(todo, layout, settings, cache, workers)
    entries, reused = _manifest(videos, cache, outcomes)
    summary = _summary(layout, settings, manual_dir, len(videos), problems, outcomes, reused,
                       len(entries))
    if entries:
        summary["records"] = str(_write_records(layout, settings, root, cache, manual_dir,
                                                entries).data_dir)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    text = json.dumps(summary, indent=1)
    atomic_files.write_atomic(cache / SUMMARY_FILE, text)
    if not entries:
        print_summary(summary)
        raise UserError(f"no {layout.name} video could be preprocessed from {manual_dir} "
                        f"({len(videos)} found, {len(problems)} problems found by the scan); "
                        f"the reasons are listed above and in {cache / SUMMARY_FILE}")
    atomic_files.write_atomic(Path(summary["records"]) / SUMMARY_FILE, text)
    return summary
