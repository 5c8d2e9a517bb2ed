"""Grain pipeline: clip selection, per-(video, epoch) determinism, epochs, resume, padding."""
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from fer_jax.data import pipeline
from fer_jax.errors import UserError


class CountingSource:
    """Video v has length 6 + v % 5; pixel value of frame t of video v is (v * 10 + t) % 256."""

    def __init__(self, n=20, num_classes=4, size=16):
        self.labels = (np.arange(n) % num_classes).astype(np.int32)
        self.size = size

    def __len__(self):
        return len(self.labels)

    def num_frames(self, index):
        return 6 + index % 5

    def load(self, index, frame_indices=None):
        if frame_indices is None:
            frame_indices = np.arange(self.num_frames(index))
        assert np.all(frame_indices < self.num_frames(index))
        values = (index * 10 + np.asarray(frame_indices)) % 256
        frames = np.broadcast_to(values[:, None, None, None].astype(np.uint8),
                                 (len(values), self.size, self.size, 3)).copy()
        return {"frames": frames, "label": self.labels[index]}


def _config(batch_size=4, augment=False, clip="random", workers=0):
    config = ml_collections.ConfigDict()
    config.train = dict(batch_size=batch_size)
    config.eval = dict(full_video=False, max_frames=0)
    flip = 0.5 if augment else 0.0
    config.input = dict(clip_frames=4, train_clip=clip, eval_clip="centre", image_size=16,
                        num_workers=workers,
                        augment=dict(hflip=flip, rotation=10.0 if augment else 0.0,
                                     crop_scale=(0.8, 1.0) if augment else (1.0, 1.0),
                                     brightness=0.2 * augment, contrast=0.2 * augment,
                                     saturation=0.2 * augment, hue=0.02 * augment))
    return config


@pytest.mark.parametrize("length", [3, 4, 9])
def test_clip_selectors(length):
    rng = np.random.default_rng(0)
    even, _ = pipeline.clip_selector("evenly_spaced", 4)(0, 0, length, rng)
    assert even[0] == 0 and even[-1] == length - 1 and np.all(np.diff(even) >= 0)
    for name in ("random", "centre"):
        for _ in range(20):
            clip, blank = pipeline.clip_selector(name, 4)(0, 0, length, rng)
            assert len(clip) == 4 and clip.min() >= 0 and clip.max() == min(
                clip[0] + 3, length - 1) and not blank.any()
    # Short videos are padded by repeating the last frame.
    if length < 4:
        np.testing.assert_array_equal(pipeline.clip_selector("centre", 4)(0, 0, length, rng)[0],
                                      [0, 1, 2, 2])
    with pytest.raises(UserError, match="unknown clip selection 'nope'"):
        pipeline.clip_selector("nope", 4)


def _batches(dataset):
    return [{k: np.asarray(v) for k, v in b.items()} for b in dataset]


def test_epochs_are_permutations_and_batches_do_not_straddle():
    source = CountingSource(n=18)
    batches = _batches(pipeline.train_dataset(source, _config(batch_size=4), 3, seed=1))
    assert len(batches) == 3 * (18 // 4)
    per_epoch = np.split(np.concatenate([b["index"] for b in batches]), 3)
    for epoch in per_epoch:
        assert len(set(epoch)) == 16          # each video at most once, N mod B dropped
    assert not np.array_equal(per_epoch[0], per_epoch[1])
    for b in batches:  # labels travel with their videos
        np.testing.assert_array_equal(b["label"], source.labels[b["index"]])
        assert b["video"].dtype == np.uint8 and b["video"].shape == (4, 4, 16, 16, 3)


def test_draws_are_deterministic_per_seed_epoch_video():
    source = CountingSource()
    a = _batches(pipeline.train_dataset(source, _config(augment=True), 2, seed=3))
    b = _batches(pipeline.train_dataset(source, _config(augment=True), 2, seed=3))
    c = _batches(pipeline.train_dataset(source, _config(augment=True), 2, seed=4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["video"], y["video"])
    assert any(not np.array_equal(x["index"], y["index"]) for x, y in zip(a, c))


def test_iterator_state_resumes_exactly():
    source = CountingSource()
    dataset = pipeline.train_dataset(source, _config(augment=True), 2, seed=0)
    full = _batches(dataset)
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    state = iterator.get_state()
    resumed = iter(dataset)
    resumed.set_state(state)
    rest = [{k: np.asarray(v) for k, v in b.items()} for b in resumed]
    assert len(rest) == len(full) - 3
    for x, y in zip(rest, full[3:]):
        np.testing.assert_array_equal(x["video"], y["video"])
        np.testing.assert_array_equal(x["index"], y["index"])


def test_worker_processes_give_the_same_batches():
    source = CountingSource()
    local = _batches(pipeline.train_dataset(source, _config(augment=True), 1, seed=0))
    workers = _batches(pipeline.train_dataset(source, _config(augment=True, workers=2), 1,
                                              seed=0))
    assert len(local) == len(workers)
    for x, y in zip(local, workers):
        np.testing.assert_array_equal(x["video"], y["video"])


LEAK_SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
if __name__ == "__main__":
    from absl import flags
    flags.FLAGS(["leak"])
    from fer_jax.data import pipeline
    from test_pipeline import CountingSource, _config
    iterator = iter(pipeline.train_dataset(CountingSource(), _config(workers=1), 1, seed=0))
    for _ in range(3):
        next(iterator)
    time.sleep(1)  # the worker fills its prefetch buffer
    if {close}:
        pipeline.close(iterator)
        time.sleep(1)  # Grain unlinks freed blocks on a background thread
    # else: the iterator is still open when the interpreter exits
"""


@pytest.mark.parametrize("close", [True, False], ids=["closed", "left_open"])
def test_closing_a_worker_iterator_frees_its_shared_memory(tmp_path, close):
    # Grain's worker hands batches over in shared-memory blocks; those in flight when training
    # stops must be unlinked by pipeline.close, not reclaimed (with a warning per block) by
    # Python's resource tracker at exit — as they are when the iterator is left open.
    script = tmp_path / "leak.py"
    script.write_text(LEAK_SCRIPT.format(tests=str(Path(__file__).parent), close=close))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    leaked = "leaked shared_memory objects" in result.stderr
    assert leaked != close, result.stderr[-3000:]


def test_eval_covers_every_video_once_with_padding_mask():
    source = CountingSource(n=10)
    batches = list(pipeline.iterate_eval(source, _config(batch_size=4)))
    assert [b["mask"].sum() for b in batches] == [4, 4, 2]
    assert all(len(b["label"]) == 4 for b in batches)
    indices = np.concatenate([b["index"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(indices, np.arange(10))
    # Centre clip of video 3 (length 9): frames 2..5 → pixel values 32..35.
    np.testing.assert_array_equal(batches[0]["video"][3, :, 0, 0, 0], [32, 33, 34, 35])


def test_too_few_videos_for_a_batch_is_a_clear_error():
    with pytest.raises(UserError, match="has 3 videos but train.batch_size is 4"):
        pipeline.train_dataset(CountingSource(n=3), _config(batch_size=4), 1, seed=0)
