"""Speed of the face preprocessing (fer_jax.data.faces, fer_jax.data.preprocess) on this CPU.

    python benchmarks/preprocess.py
    python benchmarks/preprocess.py --videos 8 --frames 48 --fan-weights 2DFAN4-11f355bf06.pth.tar

Part 1, per backend and input: videos/s and frames/s of detection + tracking + landmarks +
alignment (``FaceProcessor``) and of the same plus the AU maps (Belharbi et al.) of the crops, on
(a) synthetic face videos rendered at 128 px and (b) a real face (scikit-image's astronaut)
moved across a 480×360 frame (CREMA-D's frame size), with ratios against dlib measured in
the same run. face_alignment runs with the weights of ``--fan-weights``; without them it runs
with random FAN weights, which costs the same compute (its landmarks are then meaningless,
so only the timing is reported).

Part 2: ``--mode=preprocess`` end to end on a generated AFEW-layout tree (reading, faces,
AU maps, JPEG, cache, ArrayRecord) with 0 workers (in-process) and with ``--workers``
processes; prints the ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import ml_collections
import numpy as np

from fer_jax import configs
from fer_jax.data import action_units, faces, fixtures, preprocess, synthetic


def synthetic_videos(count: int, frames: int) -> list[np.ndarray]:
    """``count`` rendered videos uint8 [frames, 128, 128, 3] (faces of several classes)."""
    source = synthetic.SyntheticFaces("test", count, synthetic.SyntheticConfig(
        image_size=128, num_frames=frames, nuisance=0.0))
    return [source.load(i)["frames"] for i in range(count)]


def astronaut_videos(count: int, frames: int) -> list[np.ndarray]:
    """``count`` videos uint8 [frames, 360, 480, 3]: the astronaut's face drifting and turning."""
    from skimage import data

    face = data.astronaut()[40:240, 120:320]  # 200×200 around the face
    videos = []
    rng = np.random.default_rng(0)
    for _ in range(count):
        x0, y0 = rng.uniform(60, 200), rng.uniform(40, 120)
        video = np.zeros((frames, 360, 480, 3), np.uint8)
        for t in range(frames):
            angle = 8 * np.sin(t / 5)
            m = cv2.getRotationMatrix2D((100, 100), angle, 1.0)
            m[:, 2] += (x0 + 2 * t % 40, y0 + t % 20)
            video[t] = cv2.warpAffine(face, m, (480, 360), borderValue=(90, 90, 90))
        videos.append(video)
    return videos


def random_fan_weights(path: Path) -> str:
    """A randomly initialised 2DFAN-4 state_dict saved at ``path`` (timing only)."""
    import torch
    from face_alignment.models import FAN

    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), path)
    return str(path)


def time_backend(processor: faces.FaceProcessor, videos: list[np.ndarray],
                 crop: int) -> tuple[float, float, int]:
    """(seconds without AU maps, seconds with AU maps, videos without any face) over
    ``videos``, after a warm-up call (model loading) that is not timed."""
    processor(videos[0][:1], boxes=np.array([0, 0, 8, 8], np.float32))
    faces_only = with_au = 0.0
    no_face = 0
    for video in videos:
        start = time.perf_counter()
        try:
            track = processor(video)
        except faces.NoFaceError:
            no_face += 1
            faces_only += time.perf_counter() - start
            with_au += time.perf_counter() - start
            continue
        mid = time.perf_counter()
        if np.isfinite(track.crop_landmarks).all():
            action_units.au_maps(track.crop_landmarks, "fear", crop, crop)
        end = time.perf_counter()
        faces_only += mid - start
        with_au += end - start
    return faces_only, with_au, no_face


def part1(args, workdir: Path) -> None:
    inputs = {"synthetic 128 px": synthetic_videos(args.videos, args.frames),
              "astronaut 480×360": astronaut_videos(args.videos, args.frames)}
    fan = args.fan_weights or random_fan_weights(workdir / "fan_random.pth")
    backends = {"dlib": dict(backend="dlib"), "opencv": dict(backend="opencv"),
                "face_alignment": dict(backend="face_alignment", fan_weights=fan)}
    print(f"{args.videos} videos × {args.frames} frames per input, crop {args.crop} px"
          + ("" if args.fan_weights else "; face_alignment with random weights (timing only)"))
    print(f"{'input':<20s}{'backend':<16s}{'videos/s':>10s}{'frames/s':>10s}"
          f"{'+AU videos/s':>14s}{'vs dlib':>9s}{'no face':>9s}")
    for input_name, videos in inputs.items():
        baseline = None
        for name, kwargs in backends.items():
            if name == "face_alignment" and args.skip_fan:
                continue
            processor = faces.FaceProcessor(crop_size=args.crop, **kwargs)
            videos_run = videos[:2] if name == "face_alignment" else videos
            seconds, seconds_au, no_face = time_backend(processor, videos_run, args.crop)
            n = len(videos_run)
            rate = n / seconds_au
            baseline = baseline or rate
            print(f"{input_name:<20s}{name:<16s}{n / seconds:>10.2f}"
                  f"{n * args.frames / seconds:>10.1f}{rate:>14.2f}{rate / baseline:>8.2f}×"
                  f"{no_face:>6d}/{n}")


def preprocess_config(raw: Path, data: Path, workers: int, crop: int):
    config = configs.defaults()
    config.dataset = configs.real_dataset("afew", 7, data_dir=str(data))
    config.preprocess.update(manual_dir=str(raw), crop_size=crop, workers=workers)
    return ml_collections.FrozenConfigDict(config)


def part2(args, workdir: Path) -> None:
    raw = workdir / "afew"
    names = fixtures.make_tree("afew", str(raw), per_class=args.tree_videos, frames=args.frames,
                               image_size=128)
    seconds = {}
    for workers in (0, args.workers):
        data = workdir / f"data{workers}"
        start = time.perf_counter()
        summary = preprocess.run(preprocess_config(raw, data, workers, args.crop))
        seconds[workers] = time.perf_counter() - start
        assert summary["counts"]["records"] == len(names), summary["counts"]
    n = len(names)
    print(f"--mode=preprocess, AFEW layout, {n} videos × {args.frames} frames (128 px), dlib:")
    for workers, s in seconds.items():
        print(f"  workers={workers}: {s:6.1f} s  {n / s:6.2f} videos/s  "
              f"{seconds[0] / s:5.2f}× vs in-process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4, help="videos per input (part 1)")
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--crop", type=int, default=112, help="aligned crop size")
    parser.add_argument("--fan-weights", default="", help="real 2DFAN-4 weights, if any")
    parser.add_argument("--skip-fan", action="store_true", help="leave out face_alignment")
    parser.add_argument("--tree-videos", type=int, default=2,
                        help="videos per class and partition of the AFEW tree (part 2)")
    parser.add_argument("--workers", type=int, default=2, help="processes of part 2")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        part1(args, Path(tmp))
        part2(args, Path(tmp))


if __name__ == "__main__":
    main()
