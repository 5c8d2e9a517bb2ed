"""Rendering speed of the synthetic benchmark (fer_jax.data.synthetic).

    python benchmarks/synthetic.py --videos 500
    python benchmarks/synthetic.py --videos 200 --sizes 64 112 224 --nuisance 0 1
    python benchmarks/synthetic.py --videos 0 --sheet /tmp/synthetic_sheet.png

Prints videos/s and frames/s for: ground truth only (no pixels), rendering without AU masks and
rendering with AU masks, for every image size and nuisance level asked for. OpenCV runs on one
thread unless --threads says otherwise, so the figures are per core. ``--sheet`` also saves a
contact sheet of the first size and nuisance level: one row per class, every other frame across,
with a bar under each frame showing the expression intensity (green), occluded frames (red),
dark frames (blue) and distractor frames (yellow).
"""
from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from fer_jax.data import synthetic


def _rate(source: synthetic.SyntheticFaces, videos: int, mode: str) -> tuple[float, float]:
    """(videos/s, frames/s) over the first ``videos`` videos of ``source``."""
    frames = 0
    start = time.perf_counter()
    for index in range(videos):
        if mode == "truth":
            frames += len(source.ground_truth(index)["intensity"])
        else:
            frames += len(source.load(index, au_masks=mode == "au masks")["frames"])
    elapsed = time.perf_counter() - start
    return videos / elapsed, frames / elapsed


def _sheet_row(source: synthetic.SyntheticFaces, index: int, scale: int) -> np.ndarray:
    """uint8 RGB row: every other frame of video ``index`` with a ground-truth bar under each."""
    sample = source.load(index)
    size = source.config.image_size
    tiles = []
    for t in range(0, len(sample["frames"]), 2):
        bar = np.full((6, size, 3), 255, np.uint8)
        bar[:3, : int(round(sample["intensity"][t] * size))] = (40, 170, 60)
        for flag, colour, column in (("occluded", (220, 40, 40), 0), ("dark", (40, 60, 220), 1),
                                     ("distractor", (230, 200, 30), 2)):
            if sample[flag][t]:
                bar[3:, column * size // 3:(column + 1) * size // 3] = colour
        tiles.append(np.concatenate([sample["frames"][t], bar], axis=0))
    row = np.concatenate(tiles, axis=1)
    label = np.full((row.shape[0], 72, 3), 255, np.uint8)
    cv2.putText(label, source.class_names[sample["label"]], (3, row.shape[0] // 2),
                cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    row = np.concatenate([label, row], axis=1)
    return cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def save_sheet(source: synthetic.SyntheticFaces, path: str, scale: int = 2) -> None:
    """Save a contact sheet (PNG) with the first video of every class of ``source``."""
    rows = [_sheet_row(source, int(np.flatnonzero(source.labels == c)[0]), scale)
            for c in range(source.config.num_classes)]
    cv2.imwrite(path, cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=500, help="videos timed per setting")
    parser.add_argument("--frames", type=int, default=24, help="frames per video")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64], help="image sizes")
    parser.add_argument("--nuisance", type=float, nargs="+", default=[0.5],
                        help="nuisance levels")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads")
    parser.add_argument("--sheet", help="also save a contact sheet (PNG) to this path")
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    if args.sheet:
        config = synthetic.SyntheticConfig(num_frames=args.frames, image_size=args.sizes[0],
                                           nuisance=args.nuisance[0])
        save_sheet(synthetic.SyntheticFaces("train", 7 * config.num_classes, config), args.sheet)
        print(f"contact sheet: {args.sheet}")
    if args.videos <= 0:
        return
    print(f"{args.videos} videos of {args.frames} frames per setting, OpenCV threads: "
          f"{args.threads}")
    print(f"{'size':>5} {'nuisance':>8} {'mode':>12} {'videos/s':>10} {'frames/s':>10}")
    for size in args.sizes:
        for nuisance in args.nuisance:
            config = synthetic.SyntheticConfig(num_frames=args.frames, image_size=size,
                                               nuisance=nuisance)
            source = synthetic.SyntheticFaces("train", args.videos, config)
            source.load(0, au_masks=True)  # warm caches (identities, noise bank)
            for mode in ("truth", "frames", "au masks"):
                videos_per_s, frames_per_s = _rate(source, args.videos, mode)
                print(f"{size:>5} {nuisance:>8.2f} {mode:>12} {videos_per_s:>10.1f} "
                      f"{frames_per_s:>10.0f}")


if __name__ == "__main__":
    main()
