"""Video length standardisation (Ayral's thesis, §2.2.3.3): padding of short videos by
``input.pad`` (repeat / loop / zeros) in every clip selector, temporal resize without padding,
and the multi-clip test protocol ``eval.clips`` (mean of the K clips' logits)."""
import dataclasses
import functools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fast import fast_jit
from fer_jax import au_guidance, configs, models, train
from fer_jax.evaluation import classification
from fer_jax.data import pipeline, synthetic
from fer_jax.errors import UserError

F = 8
SHORT, LONG = 5, 12  # video lengths below and above the clip length F
EXPECTED_SHORT = {  # (indices, blank) of the clip from frame 0 of the 5-frame video
    "repeat": ([0, 1, 2, 3, 4, 4, 4, 4], [0] * 8),
    "loop": ([0, 1, 2, 3, 4, 0, 1, 2], [0] * 8),
    "zeros": ([0, 1, 2, 3, 4, 4, 4, 4], [0, 0, 0, 0, 0, 1, 1, 1]),
}


@dataclasses.dataclass(frozen=True)
class _Table:
    def wait_published(self, epoch):
        pass


@dataclasses.dataclass(frozen=True)
class _FixedSampler:
    """A score-table sampler stand-in that always draws ``start``."""

    start: int
    table: _Table = _Table()

    def sample(self, video, epoch):
        return self.start


def _check(selection, indices, blank):
    np.testing.assert_array_equal(selection[0], indices)
    np.testing.assert_array_equal(selection[1], np.asarray(blank, bool))
    assert selection[0].dtype == np.int32 and selection[1].shape == (len(indices),)


# --------------------------------------------------------------------------- indices
@pytest.mark.parametrize("pad", pipeline.PAD_MODES)
def test_clip_at_pads_short_videos_and_not_long_ones(pad):
    _check(pipeline.clip_at(0, F, SHORT, pad), *EXPECTED_SHORT[pad])
    _check(pipeline.clip_at(3, F, LONG, pad), np.arange(3, 11), [0] * F)
    # A clip running past the end of a long video pads the same way.
    tail = {"repeat": [11, 11], "loop": [0, 1], "zeros": [11, 11]}[pad]
    _check(pipeline.clip_at(6, F, LONG, pad), list(range(6, 12)) + tail,
           [0] * 6 + [pad == "zeros"] * 2)


@pytest.mark.parametrize("pad", pipeline.PAD_MODES)
@pytest.mark.parametrize("name", ["random", "centre", "sampler"])
def test_clip_selectors_pad_by_mode(name, pad):
    def selector(start):
        if name == "sampler":
            return pipeline.SamplerClip(_FixedSampler(start), F, pad)
        return pipeline.clip_selector(name, F, pad)

    # Short video: every selector starts at frame 0 (the sampler's table has one clip).
    _check(selector(0)(0, 0, SHORT, np.random.default_rng(0)), *EXPECTED_SHORT[pad])
    # Long video: F consecutive frames, nothing padded.
    start = {"random": int(np.random.default_rng(1).integers(0, LONG - F + 1)),
             "centre": (LONG - F) // 2, "sampler": 3}[name]
    _check(selector(3)(0, 0, LONG, np.random.default_rng(1)), np.arange(start, start + F),
           [0] * F)
    copy = pickle.loads(pickle.dumps(selector(3)))  # Grain workers receive pickles
    assert copy == selector(3) and copy.pad == pad


@pytest.mark.parametrize("pad", pipeline.PAD_MODES)
def test_evenly_spaced_resizes_the_whole_video_and_never_pads(pad):
    selector = pipeline.clip_selector("evenly_spaced", F, pad)
    rng = np.random.default_rng(0)
    _check(selector(0, 0, SHORT, rng), [0, 1, 1, 2, 2, 3, 3, 4], [0] * F)
    _check(selector(0, 0, LONG, rng), [0, 2, 3, 5, 6, 8, 9, 11], [0] * F)
    for length in (1, 3, 8, 40):
        indices, blank = selector(0, 0, length, rng)
        assert indices[0] == 0 and indices[-1] == length - 1 and not blank.any()
        assert np.all(np.diff(indices) >= 0)
        if length <= F:  # a short video shows every one of its frames
            assert set(indices) == set(range(length))


def test_unknown_pad_mode_is_a_one_line_error():
    message = "unknown input.pad 'mirror'; choose one of repeat, loop, zeros"
    for make in (lambda: pipeline.clip_selector("random", F, "mirror"),
                 lambda: pipeline.clip_selector("evenly_spaced", F, "mirror"),
                 lambda: pipeline.CentreClip(F, "mirror"),
                 lambda: pipeline.SamplerClip(_FixedSampler(0), F, "mirror"),
                 lambda: pipeline.clip_at(0, F, SHORT, "mirror")):
        with pytest.raises(UserError, match=message):
            make()


def test_multi_clip_starts_are_evenly_spaced():
    np.testing.assert_array_equal(pipeline.clip_starts(20, F, 3), [0, 6, 12])
    np.testing.assert_array_equal(pipeline.clip_starts(17, F, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(pipeline.clip_starts(LONG, F, 3), [0, 2, 4])
    np.testing.assert_array_equal(pipeline.clip_starts(SHORT, F, 3), [0, 0, 0])
    np.testing.assert_array_equal(pipeline.clip_starts(F, F, 2), [0, 0])
    np.testing.assert_array_equal(pipeline.clip_starts(20, F, 1), [0])


# --------------------------------------------------------------------------- batches
@pytest.fixture(scope="module")
def source():
    """16 synthetic videos of 5 to 12 frames, 32 px: some shorter than a clip, some longer."""
    config = synthetic.SyntheticConfig(num_frames=(SHORT, LONG), image_size=32, num_subjects=6,
                                       onset_frames=(0, 1), apex_frames=(1, 2),
                                       offset_frames=(0, 1), nuisance=0.3)
    faces = synthetic.SyntheticFaces("train", 16, config)
    assert (faces.lengths < F).any() and (faces.lengths > F).any()
    return faces


def _config(pad="repeat", clips=0, modality="rgb", augment=False):
    config = configs.defaults()
    config.input.update(clip_frames=F, train_clip="random", eval_clip="centre", image_size=32,
                        num_workers=0, pad=pad, modality=modality)
    if augment:  # contrast and brightness would turn black frames grey if applied after them
        config.input.augment.update(hflip=0.5, rotation=10.0, crop_scale=(0.8, 1.0),
                                    brightness=0.3, contrast=0.3, saturation=0.2, hue=0.05)
    config.eval.clips = clips
    config.train.batch_size = 4
    return config


def _batches(dataset):
    return [{k: np.asarray(v) for k, v in b.items()} for b in dataset]


def _padding(length, start):
    """bool [F]: clip positions past the end of a ``length``-frame video."""
    return start + np.arange(F) >= length


def test_zero_padded_training_batches_have_black_padding(source):
    batches = _batches(pipeline.train_dataset(source, _config("zeros", augment=True), 1,
                                              seed=0, clean=True, au_maps=True))
    padded_rows = 0
    for batch in batches:
        for row, video in enumerate(batch["index"]):
            padded = _padding(source.num_frames(int(video)), int(batch["start"][row]))
            padded_rows += padded.any()
            for key in ("video", "clean_video", "au_masks"):
                assert not batch[key][row][padded].any(), key
            assert all(frame.any() for frame in batch["video"][row][~padded])
            assert all(frame.any() for frame in batch["clean_video"][row][~padded])
    assert padded_rows > 0


def test_zero_padded_eval_batches_have_black_padding(source):
    truth = ("landmarks", "intensity")
    for modality, fields in (("rgb", ()), ("rgb", truth), ("landmarks", ())):
        batches = _batches(pipeline.eval_dataset(source, _config("zeros", modality=modality),
                                                 fields))
        for batch in batches:
            for row, video in enumerate(batch["index"]):
                padded = _padding(source.num_frames(int(video)), 0)
                for key in ("video",) + fields:
                    assert not batch[key][row][padded].any(), (modality, key)
                if source.num_frames(int(video)) < F:
                    assert all(frame.any() for frame in batch["video"][row][~padded])


def test_looped_eval_clip_wraps_round(source):
    batches = _batches(pipeline.eval_dataset(source, _config("loop")))
    for batch in batches:
        for row, video in enumerate(batch["index"]):
            length = source.num_frames(int(video))
            start = max(length - F, 0) // 2
            frames = source.load(int(video), (start + np.arange(F)) % length)["frames"]
            np.testing.assert_array_equal(batch["video"][row], frames)


@pytest.mark.parametrize("pad", ["repeat", "zeros"])
def test_multi_clip_eval_batches(source, pad):
    clips = 3
    batches = _batches(pipeline.eval_dataset(source, _config(pad, clips=clips), protocol=True))
    assert sum(len(b["index"]) for b in batches) == len(source)
    for batch in batches:
        assert batch["video"].shape == (len(batch["index"]), clips, F, 32, 32, 3)
        assert batch["video"].dtype == np.uint8
        for row, video in enumerate(batch["index"]):
            length = source.num_frames(int(video))
            starts = pipeline.clip_starts(length, F, clips)
            np.testing.assert_array_equal(batch["clip_starts"][row], starts)
            assert starts[0] == 0 and starts[-1] == max(length - F, 0)
            for k, start in enumerate(starts):
                expected = source.load(int(video), pipeline.clip_at(start, F, length)[0])
                frames = expected["frames"]
                if pad == "zeros":
                    frames = np.where(_padding(length, start)[:, None, None, None], 0, frames)
                np.testing.assert_array_equal(batch["video"][row, k], frames)
    landmarks = next(iter(pipeline.eval_dataset(source, _config(pad, clips, "landmarks"),
                                                protocol=True)))
    assert np.asarray(landmarks["video"]).shape == (4, clips, F, 68, 2)


def test_ground_truth_and_attribution_evaluations_keep_one_clip(source):
    batch = next(iter(pipeline.eval_dataset(source, _config(clips=3), ("intensity",),
                                            protocol=True)))
    assert np.asarray(batch["video"]).shape == (4, F, 32, 32, 3) and "clip_starts" not in batch
    batch = next(iter(pipeline.eval_dataset(source, _config(clips=3))))  # explain / report
    assert np.asarray(batch["video"]).shape == (4, F, 32, 32, 3) and "clip_starts" not in batch


def test_eval_clips_errors():
    config = _config(clips=2)
    config.eval.full_video = True
    with pytest.raises(UserError, match="eval.clips and eval.full_video"):
        pipeline.eval_clips(config)
    config = _config(clips=-1)
    with pytest.raises(UserError, match="eval.clips must be a number of clips >= 0"):
        pipeline.eval_clips(config)
    config = _config(clips=2)
    config.au_guidance.measure = True
    with pytest.raises(UserError, match="cannot be combined with eval.clips"):
        au_guidance.from_config(config, None)


# --------------------------------------------------------------------------- model
def test_clip_aggregate_logits_is_the_mean_over_clips():
    config = _config(clips=3)
    model = models.build("resnet3d_18", num_classes=7, width=1 / 16, stage_sizes=(1, 1, 1, 1))
    video = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 16, 16, 3), np.uint8)
    variables = fast_jit(functools.partial(model.init, train=False))(
        jax.random.PRNGKey(0), jnp.zeros((1, 4, 16, 16, 3)))
    batch = {"video": jnp.asarray(video), "clip_starts": jnp.zeros((2, 3), jnp.int32),
             "label": jnp.array([1, 2], jnp.int32), "mask": jnp.ones(2, bool)}

    @fast_jit
    def compute(variables, batch):
        aggregated = classification.clip_aggregate_logits(model, variables, batch, config)
        one_by_one = jnp.stack([model.apply(variables, pipeline.normalise(
            batch["video"][:, k], config), train=False) for k in range(3)], axis=1)
        # eval_step dispatches multi-clip batches (``clip_starts``) to the aggregation.
        _, probabilities = classification.eval_step(variables, batch, {"loss": jnp.float32(0)},
                                           model=model, backbone=model, config=config)
        return aggregated, one_by_one, probabilities

    logits, one_by_one, probabilities = compute(variables, batch)
    assert logits.shape == (2, 7) and one_by_one.shape == (2, 3, 7)
    np.testing.assert_allclose(logits, one_by_one.mean(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(probabilities, jax.nn.softmax(logits), rtol=1e-5, atol=1e-6)


def test_smoke_run_with_multi_clip_validation(tmp_path):
    config = configs.defaults()
    configs.smoke(config, model_kwargs=dict(hidden_size=16, num_layers=1, num_heads=2))
    # Videos of 10 to 14 frames, clips of 12: some videos are looped.
    config.dataset = configs.synthetic_dataset(num_frames=(10, 14), image_size=32,
                                               num_subjects=20, train_videos=16,
                                               validation_videos=8, test_videos=8)
    config.input.update(clip_frames=12, pad="loop", train_clip="random")
    config.eval.clips = 3
    result = train.train_and_evaluate(config, str(tmp_path))
    assert result["stopped"] == "completed" and result["epochs_completed"] == 2
    assert result["final_validation"]["count"] == 8
    assert np.isfinite(result["final_validation"]["loss"])
