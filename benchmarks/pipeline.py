"""Clips/s of the training input pipeline (Grain, ``data/pipeline.py``) reading real ArrayRecord
records, per worker, against the raw JPEG decode rate of the same frames (the floor).

    python benchmarks/pipeline.py                              # the papers' clip sizes
    python benchmarks/pipeline.py --workers 0,1,2,4 --json pipeline.json
    python benchmarks/pipeline.py --reduced                    # seconds: small frames, few clips

Per model, from its experiment config (clip selection, augmentation, batch size as trained):

  timesformer  configs/timesformer_cremad.py  8×224² clips, 8 evenly spaced frames per video,
               horizontal flips (CREMA-D layout)
  resnet3d_18  configs/resnet3d18_afew.py     16×112² clips, 16 consecutive frames at a random
               start, flip, rotation, random crop and colour jitter (AFEW layout; the 3D CNNs
               of Ayral's thesis share these settings)

Records: a fixture tree of the dataset's layout (``data/fixtures.py``: synthetic face videos of
``--frames`` frames rendered at 224² for TimeSformer, 128² for the 3D CNN; 24 CREMA-D and 28
AFEW videos) goes through ``--mode=preprocess`` itself (``preprocess.run``: dlib faces and
landmarks, AU maps, crops of the model's input size stored as JPEG at quality 95, ArrayRecord),
written once into ``--cache`` and reused. Every record is a training video (the protocols'
splits need more videos than a benchmark; reading a record is the same).
``--reduced``: 48-pixel crops of 96-pixel frames, 12-frame videos, batch 2, 16 clips per row.

Rows, per model (every rate over the same clips: the frames the training pipeline's clip
selector draws for every video in the first epochs, with the pipeline's seeds):
  floor          ``cv2.imdecode`` of the clips' JPEG frames in a plain loop on one core (the
                 bytes read from the records beforehand, untimed)
  read           reading and parsing the clips' records alone (ArrayRecord, zstd), as
                 ``TfdsVideos`` does (stored AU maps left compressed), on one core: a part of
                 ``load``, so no overhead or cores are given for it
  load           ``TfdsVideos.load`` of the clips in a plain loop on one core: record read,
                 decode, colour conversion, per-frame landmarks
  workers=0      ``pipeline.train_dataset`` in this process (2 reader threads)
  workers=K      ``pipeline.train_dataset`` with K Grain worker processes
Pipeline rows run the real training path (clip selection, augmentation, batch assembly,
transfer to this process) and are timed over ``--clips`` clips after ``2·max(K, 1)`` warm-up
batches (worker start-up untimed), while this process takes the batches as a training loop
would.

Columns: ``clips/s`` (wall clock) and ``per worker`` = clips/s ÷ max(K, 1); ``CPU ms/clip``:
CPU time (user + system) of this process, its threads and its worker processes during the
timed clips, per clip; ``overhead`` = CPU ms/clip ÷ the floor's − 1 (0 % = the pipeline costs
no more than the bare decoding); ``cores/100 clips/s`` = CPU ms/clip ÷ 10, the host cores
busy feeding a consumer of 100 clips/s (N clips/s: N/100 times as many). Overhead and cores
come from CPU time, not wall time, so that other jobs on the machine (which stretch wall time,
not the CPU time a clip takes) change them little; on an idle machine with a core per worker
the per-worker wall rate is ``1000 ÷ CPU ms/clip``. Every figure is the median of
``--repeats`` passes. The table is printed and, with ``--json PATH``, written with the
environment (CPU, cores, load averages at start and end).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil  # a dependency of tensorflow-datasets and orbax
import tensorflow_datasets as tfds
from absl import flags

from fer_jax import configs
from fer_jax.data import (fixtures, layouts, pipeline, preprocess, protocols, tfds_builders,
                          tfds_source)
from fer_jax.errors import UserError
import timing
from timing import cpu_name

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclasses.dataclass(frozen=True)
class Model:
    """A model's experiment config and the fixture tree its records are made from."""

    config: str       # file in configs/
    render: int       # side of the rendered source frames (pixels)
    subjects: int     # fixture subjects
    per_class: int    # videos per class and subject
    fewest_subjects: int = 1  # --reduced (AFEW: subject s is in partition s % 2, both needed)


MODELS = {
    "timesformer": Model("timesformer_cremad.py", render=224, subjects=2, per_class=2),
    "resnet3d_18": Model("resnet3d18_afew.py", render=128, subjects=2, per_class=2,
                         fewest_subjects=2),
}
REDUCED = dict(image_size=48, render=96, frames=12, clips=16, batch=2)
"""``--reduced``: 48-pixel crops of 96-pixel frames, 12-frame videos, 16 clips, batch 2."""


def model_config(name: str, data_dir: Path, raw: Path, reduced: bool):
    """The experiment config of ``name`` reading records from ``data_dir`` (made from ``raw``);
    ``reduced``: 48-pixel input, batch 2. ``input.num_workers`` is set per row."""
    config = configs.load(str(CONFIG_DIR / MODELS[name].config))
    config.dataset.data_dir = str(data_dir)
    config.preprocess.update(manual_dir=str(raw), crop_size=0,
                             workers=0 if reduced else min(2, os.cpu_count() or 1))
    if reduced:
        config.input.image_size = REDUCED["image_size"]
        config.train.batch_size = REDUCED["batch"]
    return config


def records(name: str, cache: Path, frames: int, reduced: bool):
    """The config of ``name`` with records in ``cache`` (written by ``preprocess.run`` on a
    fixture tree the first time; reused afterwards) and the seconds spent writing them."""
    spec = MODELS[name]
    render = REDUCED["render"] if reduced else spec.render
    subjects, per_class = (spec.fewest_subjects, 1) if reduced else (spec.subjects, spec.per_class)
    probe = configs.load(str(CONFIG_DIR / spec.config))
    dataset = probe.dataset.name
    size = REDUCED["image_size"] if reduced else probe.input.image_size
    folder = cache / f"{dataset}-{render}px-{size}crop-{frames}f-{subjects}x{per_class}"
    raw, data = folder / "raw", folder / "data"
    config = model_config(name, data, raw, reduced)
    start = time.perf_counter()
    try:
        tfds_source.open_builder(config)
        return config, 0.0
    except UserError:  # not prepared yet
        pass
    marker = folder / "tree.json"
    if not marker.exists():
        if raw.exists():
            raise UserError(f"{raw} holds an unfinished fixture tree: delete {folder}")
        names = fixtures.make_tree(dataset, raw, subjects=subjects, per_class=per_class,
                                   frames=frames, image_size=render)
        marker.write_text(json.dumps(names))
    summary = preprocess.run(config)
    if summary["counts"]["failed"]:
        raise UserError(f"{summary['counts']['failed']} fixture videos failed preprocessing; "
                        f"see {summary['records']}/{preprocess.SUMMARY_FILE}")
    return config, time.perf_counter() - start


def all_records(config) -> tfds_source.TfdsVideos:
    """Every record of the config's prepared dataset as one training split (the protocols'
    splits need more videos than a benchmark does; reading is the same)."""
    builder = tfds_source.open_builder(config)
    meta, lengths = tfds_source.meta_of(builder)
    subset = protocols.Subset(np.arange(len(meta.names), dtype=np.int64), meta.labels)
    layout = layouts.get(config.dataset.name)
    return tfds_source.TfdsVideos(builder, meta, lengths, subset, meta.class_names,
                                  builder.builder_config.settings.face_fraction(layout.faces))


def drawn_clips(source, config, seed: int, count: int) -> list[tuple[int, np.ndarray]]:
    """``count`` (video, frame indices int32 [F]) pairs: what the training clip selector draws
    for every video of ``source`` in epochs 0, 1, … with the pipeline's seeds
    (``np.random.default_rng([seed, epoch, video])``, whose first draw is the selector's)."""
    selector = pipeline.clip_selector(config.input.train_clip, config.input.clip_frames,
                                      config.input.get("pad", "repeat"))
    clips, epoch = [], 0
    while len(clips) < count:
        for video in range(len(source)):
            rng = np.random.default_rng([seed, epoch, video])
            clips.append((video, selector(video, epoch, source.num_frames(video), rng)[0]))
        epoch += 1
    return clips[:count]


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process, all its threads
    (``time.process_time``, nanoseconds), and every live process below it (Grain's workers;
    ``psutil``, in clock ticks)."""
    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


class Clock:
    """Wall and CPU seconds (``cpu_seconds``) between ``start()`` and the first ``stop()``."""

    def start(self) -> None:
        self._wall, self._cpu, self._stopped = time.perf_counter(), cpu_seconds(), None

    def stop(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds) since ``start()``; later calls repeat the first."""
        if self._stopped is None:
            self._stopped = time.perf_counter() - self._wall, cpu_seconds() - self._cpu
        return self._stopped


def measured(run, clips: int, repeats: int) -> dict:
    """``clips_per_second`` (wall) and ``cpu_ms_per_clip``, each the median over ``repeats``
    calls of ``run(clock)``, which does ``clips`` clips after ``clock.start()`` (and calls
    ``clock.stop()`` itself when something that is not timed follows)."""
    walls, cpus = [], []
    for _ in range(repeats):
        clock = Clock()
        run(clock)
        wall, cpu = clock.stop()
        walls.append(wall)
        cpus.append(cpu)
    return {"clips_per_second": clips / statistics.median(walls),
            "cpu_ms_per_clip": 1e3 * statistics.median(cpus) / clips}


def floor_rate(jpegs: dict, clips: list, repeats: int) -> dict:
    """``measured``: ``cv2.imdecode`` (IMREAD_COLOR) of every frame of ``clips`` in a loop."""
    def run(clock):
        clock.start()
        for video, frames in clips:
            data = jpegs[video]
            for i in frames.tolist():
                cv2.imdecode(np.frombuffer(data[i], np.uint8), cv2.IMREAD_COLOR)
    return measured(run, len(clips), repeats)


def read_rate(data, source, clips: list, repeats: int) -> dict:
    """``measured``: reading and parsing the records of ``clips`` from ``data`` (no frame
    decoded)."""
    def run(clock):
        clock.start()
        for video, _ in clips:
            data[int(source.records[video])]
    return measured(run, len(clips), repeats)


def load_rate(source, clips: list, repeats: int) -> dict:
    """``measured``: ``source.load(video, frames)`` over ``clips`` in a loop."""
    def run(clock):
        clock.start()
        for video, frames in clips:
            source.load(video, frames)
    return measured(run, len(clips), repeats)


def pipeline_rate(source, config, workers: int, clips: int, seed: int, repeats: int) -> dict:
    """``measured``: ``pipeline.train_dataset`` with ``workers`` Grain processes, over
    ``clips`` clips (rounded up to whole batches) after ``2·max(workers, 1)`` untimed
    batches."""
    config.input.num_workers = workers
    batch = config.train.batch_size
    warmup = 2 * max(workers, 1)
    batches = -(-clips // batch)
    per_epoch = pipeline.steps_per_epoch(len(source), batch)
    epochs = -(-(warmup + batches) // per_epoch)

    def run(clock):
        iterator = iter(pipeline.train_dataset(source, config, epochs, seed))
        try:
            for _ in range(warmup):
                next(iterator)
            clock.start()
            for _ in range(batches):
                out = next(iterator)
            clock.stop()  # while the workers, whose CPU time counts, still run
        finally:
            pipeline.close(iterator)
        if out["video"].shape[0] != batch:
            raise RuntimeError(f"batch of {out['video'].shape[0]} clips, expected {batch}")
    return measured(run, batches * batch, repeats)


def measure_model(name: str, args, cache: Path) -> list[dict]:
    """The rows of one model (module docstring)."""
    config, written = records(name, cache, args.frames, args.reduced)
    source = all_records(config)
    clips = drawn_clips(source, config, args.seed, args.clips)
    builder = tfds_source.open_builder(config)
    # Read as TfdsVideos reads them. fer_jax before LAZY_FEATURES decoded every feature; the
    # default lets this script measure that code too (README: before and after).
    lazy = getattr(tfds_source, "LAZY_FEATURES", ())
    data = builder.as_data_source(tfds_builders.SPLIT, decoders={
        k: tfds.decode.SkipDecoding() for k in lazy if k in builder.info.features})
    jpegs = {v: data[int(source.records[v])]["frames"] for v in {v for v, _ in clips}}
    sample = cv2.imdecode(np.frombuffer(jpegs[clips[0][0]][0], np.uint8), cv2.IMREAD_COLOR)
    frame_bytes = np.mean([len(b) for v in jpegs for b in jpegs[v]])
    head = {"model": name, "clip": [config.input.clip_frames, config.input.image_size,
                                    config.input.image_size, 3],
            "stored_frame": list(sample.shape), "jpeg_bytes_per_frame": float(frame_bytes),
            "videos": len(source), "frames_per_video": float(np.mean(
                [source.num_frames(v) for v in range(len(source))])),
            "batch": config.train.batch_size, "records_seconds": written}
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # the plain loops run on one core
    try:
        rows = [{**head, "stage": "floor", "workers": None,
                 **floor_rate(jpegs, clips, args.repeats)},
                {**head, "stage": "read", "workers": None,
                 **read_rate(data, source, clips, args.repeats)},
                {**head, "stage": "load", "workers": None,
                 **load_rate(source, clips, args.repeats)}]
    finally:
        cv2.setNumThreads(threads)
    for workers in args.workers:
        rows.append({**head, "stage": "pipeline", "workers": workers,
                     **pipeline_rate(source, config, workers, args.clips, args.seed,
                                     args.repeats)})
    floor = rows[0]["cpu_ms_per_clip"]
    for row in rows:
        whole = row["stage"] != "read"  # reading alone is a part of the work, not all of it
        row.update(per_worker=row["clips_per_second"] / max(row["workers"] or 1, 1),
                   overhead=row["cpu_ms_per_clip"] / floor - 1 if whole else None,
                   cores_per_100=row["cpu_ms_per_clip"] / 10 if whole else None)
    return rows


HEADER = (f"{'model':<13}{'clip':>12}{'stage':>11}{'clips/s':>10}{'per worker':>12}"
          f"{'CPU ms/clip':>13}{'overhead':>10}{'cores/100 clips/s':>19}")


def format_row(r: dict) -> str:
    """One line of the table."""
    stage = r["stage"] if r["workers"] is None else f"workers={r['workers']}"
    clip = "×".join(map(str, r["clip"][:3]))
    if r["overhead"] is None:
        overhead, cores = f"{'-':>10}", f"{'-':>19}"
    else:
        overhead, cores = f"{100 * r['overhead']:>9.0f}%", f"{r['cores_per_100']:>19.2f}"
    return (f"{r['model']:<13}{clip:>12}{stage:>11}{r['clips_per_second']:>10.1f}"
            f"{r['per_worker']:>12.1f}{r['cpu_ms_per_clip']:>13.2f}{overhead}{cores}")


def _workers(value: str) -> list[int]:
    try:
        counts = [int(v) for v in value.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--workers takes comma-separated counts >= 0, got {value!r}") from None
    if not counts or min(counts) < 0:
        raise argparse.ArgumentTypeError(
            f"--workers takes comma-separated counts >= 0, got {value!r}")
    return counts


def _models(value: str) -> list[str]:
    names = list(MODELS) if value == "all" else [v for v in value.split(",") if v]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model {unknown[0] if unknown else value!r}; choose from "
            f"{', '.join(MODELS)} or all")
    return names


def main(argv: list[str] | None = None) -> dict:
    """Runs the benchmark with command-line ``argv``; returns (and with ``--json`` writes)
    ``{'environment': {...}, 'rows': [...]}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=_models, default="all",
                        help=f"comma-separated: {', '.join(MODELS)} (default all)")
    parser.add_argument("--workers", type=_workers, default="0,1,2",
                        help="Grain worker counts, comma-separated (0 = in-process)")
    parser.add_argument("--clips", type=int, default=None,
                        help="clips timed per row (default 400; --reduced 16)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per fixture video (default 64; --reduced 12)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="passes per row, the median kept (default 3; --reduced 1)")
    parser.add_argument("--seed", type=int, default=0, help="the pipeline's seed")
    parser.add_argument("--cache", default=os.path.join(
                            os.environ.get("TMPDIR", "/tmp"), "fer_jax_pipeline_benchmark"),
                        help="folder of the fixture trees and records (reused)")
    parser.add_argument("--reduced", action="store_true",
                        help="48-pixel crops, 12-frame videos, 16 clips: seconds, for tests")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--quiet", action="store_true", help="print no table")
    args = parser.parse_args(argv)
    if not flags.FLAGS.is_parsed():  # Grain's worker processes read absl flags
        flags.FLAGS([sys.argv[0]])
    # As in fer_jax.main: shared-memory blocks of batches still in flight when an iterator is
    # closed are reclaimed by the resource tracker at exit, which would warn about each.
    if "ignore:resource_tracker:UserWarning" not in sys.warnoptions:
        sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    defaults = (dict(clips=REDUCED["clips"], frames=REDUCED["frames"], repeats=1)
                if args.reduced else dict(clips=400, frames=64, repeats=3))
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.clips < 1 or args.repeats < 1:
        parser.error("--clips and --repeats must be >= 1")
    if args.frames < 10:
        parser.error(f"--frames must be >= 10 (fixture videos), got {args.frames}")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    environment = {"cpu": cpu_name(), "cpu_count": os.cpu_count(),
                   "load_average_start": list(os.getloadavg()), "reduced": args.reduced,
                   "clips": args.clips, "repeats": args.repeats, "frames": args.frames,
                   "opencv": cv2.__version__}
    if not args.quiet:
        print(f"host {environment['cpu']} ({environment['cpu_count']} cores), load average "
              f"{environment['load_average_start'][0]:.2f}; {args.clips} clips per row, "
              f"median of {args.repeats}{', reduced sizes' if args.reduced else ''}",
              flush=True)
        print(HEADER, flush=True)
    rows = []
    for name in args.models:
        for row in measure_model(name, args, cache):
            rows.append(row)
            if not args.quiet:
                print(format_row(row), flush=True)
    environment["load_average_end"] = list(os.getloadavg())
    return timing.result(environment, rows, args.json)


if __name__ == "__main__":
    main()
